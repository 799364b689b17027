//! Effective (transitive) memberships, computed by the database: for a set
//! of affected groups, a recursive query walks nested groups down to their
//! direct users, and the stored rows are brought in line with the result,
//! without the edges ever being loaded into memory. The same SQL runs on
//! SQLite and PostgreSQL; `UNION` in the recursive step makes a cycle of
//! nested groups terminate.
//!
//! Groups that have no effective row yet (every group of a first sync) get
//! theirs inserted straight from the recursive query. For the others,
//! scratch tables hold the affected group ids and the memberships they
//! should have (`idpsync_wanted_effective`), so both differences are set
//! operations inside the database. The scratch tables live in the caller's
//! transaction and are emptied when the call ends; a call that fails rolls
//! its rows back with the transaction.

use crate::store::raw_sql::statement;
use foldhash::HashSet;
use sea_orm::{ConnectionTrait, DbErr, Value};

/// Group ids per INSERT into the scratch table.
const IDS_PER_INSERT: usize = 1000;

/// What changed in `effective_memberships`.
#[derive(Debug, Default)]
pub struct EffectiveChange {
    pub added: usize,
    pub removed: usize,
    /// Users who gained or lost an effective group.
    pub dirty_users: HashSet<i64>,
}

async fn exec(db: &impl ConnectionTrait, text: &str, values: Vec<Value>) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    Ok(db
        .execute_raw(statement(backend, text, values))
        .await?
        .rows_affected())
}

async fn user_ids(db: &impl ConnectionTrait, text: &str) -> Result<HashSet<i64>, DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(statement(backend, text, Vec::new()))
        .await?;
    rows.iter()
        .map(|row| row.try_get::<i64>("", "user_id"))
        .collect()
}

/// Inserts into `table` the effective memberships of the groups in the
/// scratch table `seed`: a recursive walk down nested groups to their direct
/// users. `WHERE true` tells SQLite's parser that `ON CONFLICT` belongs to
/// the INSERT; the conflict clause drops a user reached along two paths.
async fn insert_closure(db: &impl ConnectionTrait, table: &str, seed: &str) -> Result<u64, DbErr> {
    exec(
        db,
        &format!(
            "INSERT INTO {table} (group_id, user_id) \
             WITH RECURSIVE closure (ancestor, descendant) AS ( \
                 SELECT group_id, group_id FROM {seed} \
                 UNION \
                 SELECT closure.ancestor, m.member_group_id \
                 FROM closure JOIN group_memberships m ON m.group_id = closure.descendant \
             ) \
             SELECT closure.ancestor, m.user_id \
             FROM closure JOIN user_memberships m ON m.group_id = closure.descendant \
             WHERE true ON CONFLICT (group_id, user_id) DO NOTHING"
        ),
        Vec::new(),
    )
    .await
}

/// Recomputes the effective memberships of `affected` groups of
/// one connection from the direct edges now stored.
///
/// Groups with no effective row yet (new groups, all of a first sync) take
/// a short path: their memberships are inserted straight from the
/// recursive query, with no scratch copy to compare against (on a first
/// sync of a million edges that copy cost a second and 60 MB).
pub async fn recompute(
    db: &impl ConnectionTrait,
    affected: &[i64],
) -> Result<EffectiveChange, DbErr> {
    if affected.is_empty() {
        return Ok(EffectiveChange::default());
    }
    for table in ["idpsync_affected_groups", "idpsync_fresh_groups"] {
        exec(
            db,
            &format!("CREATE TEMPORARY TABLE IF NOT EXISTS {table} (group_id BIGINT PRIMARY KEY)"),
            Vec::new(),
        )
        .await?;
    }
    exec(
        db,
        "CREATE TEMPORARY TABLE IF NOT EXISTS idpsync_wanted_effective \
         (group_id BIGINT NOT NULL, user_id BIGINT NOT NULL, PRIMARY KEY (group_id, user_id))",
        Vec::new(),
    )
    .await?;
    for chunk in affected.chunks(IDS_PER_INSERT) {
        let placeholders = vec!["(?)"; chunk.len()].join(",");
        exec(
            db,
            &format!("INSERT INTO idpsync_affected_groups (group_id) VALUES {placeholders}"),
            chunk.iter().map(|id| Value::from(*id)).collect(),
        )
        .await?;
    }
    exec(
        db,
        "INSERT INTO idpsync_fresh_groups (group_id) \
         SELECT a.group_id FROM idpsync_affected_groups a \
         WHERE NOT EXISTS (SELECT 1 FROM effective_memberships e WHERE e.group_id = a.group_id)",
        Vec::new(),
    )
    .await?;
    exec(
        db,
        "DELETE FROM idpsync_affected_groups \
         WHERE group_id IN (SELECT group_id FROM idpsync_fresh_groups)",
        Vec::new(),
    )
    .await?;
    let mut change = recompute_stored(db).await?;

    // Fresh groups: nothing to remove, nothing already there.
    let added = insert_closure(db, "effective_memberships", "idpsync_fresh_groups").await?;
    if added > 0 {
        change.added += added as usize;
        change.dirty_users.extend(
            user_ids(
                db,
                "SELECT DISTINCT user_id FROM effective_memberships \
                 WHERE group_id IN (SELECT group_id FROM idpsync_fresh_groups)",
            )
            .await?,
        );
    }
    clear(db).await?;
    Ok(change)
}

/// Brings the stored rows of the groups left in `idpsync_affected_groups`
/// (groups that have effective rows) in line with the direct edges.
async fn recompute_stored(db: &impl ConnectionTrait) -> Result<EffectiveChange, DbErr> {
    insert_closure(db, "idpsync_wanted_effective", "idpsync_affected_groups").await?;

    const STALE: &str = "FROM effective_memberships e \
         WHERE e.group_id IN (SELECT group_id FROM idpsync_affected_groups) \
         AND NOT EXISTS (SELECT 1 FROM idpsync_wanted_effective w \
                         WHERE w.group_id = e.group_id AND w.user_id = e.user_id)";
    const MISSING: &str = "FROM idpsync_wanted_effective w \
         WHERE NOT EXISTS (SELECT 1 FROM effective_memberships e \
                           WHERE e.group_id = w.group_id AND e.user_id = w.user_id)";
    let mut dirty_users =
        user_ids(db, &format!("SELECT DISTINCT e.user_id AS user_id {STALE}")).await?;
    let removed = exec(
        db,
        "DELETE FROM effective_memberships \
         WHERE group_id IN (SELECT group_id FROM idpsync_affected_groups) \
         AND NOT EXISTS (SELECT 1 FROM idpsync_wanted_effective w \
                         WHERE w.group_id = effective_memberships.group_id \
                         AND w.user_id = effective_memberships.user_id)",
        Vec::new(),
    )
    .await?;
    dirty_users.extend(
        user_ids(
            db,
            &format!("SELECT DISTINCT w.user_id AS user_id {MISSING}"),
        )
        .await?,
    );
    let added = exec(
        db,
        &format!(
            "INSERT INTO effective_memberships (group_id, user_id) \
             SELECT w.group_id, w.user_id {MISSING}"
        ),
        Vec::new(),
    )
    .await?;
    Ok(EffectiveChange {
        added: added as usize,
        removed: removed as usize,
        dirty_users,
    })
}

async fn clear(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    for table in [
        "idpsync_affected_groups",
        "idpsync_fresh_groups",
        "idpsync_wanted_effective",
    ] {
        exec(db, &format!("DELETE FROM {table}"), Vec::new()).await?;
    }
    Ok(())
}
