//! Effective (transitive) memberships, computed by the database: for a set
//! of affected groups, a recursive query walks nested groups down to their
//! direct users, and the stored rows are brought in line with the result,
//! without the edges ever being loaded into memory. The same SQL runs on
//! SQLite and PostgreSQL; `UNION` in the recursive step makes a cycle of
//! nested groups terminate.
//!
//! Two scratch tables live for the duration of one call, in the caller's
//! transaction: the affected group ids, and the memberships they should
//! have (`idpsync_wanted_effective`), so both differences are set
//! operations inside the database. They are emptied when the call ends; a
//! call that fails rolls its rows back with the transaction.

use crate::store::raw_sql::statement;
use sea_orm::{ConnectionTrait, DbErr, Value};
use std::collections::HashSet;

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

/// Recomputes the effective memberships of `affected` groups of
/// one connection from the direct edges now stored.
pub async fn recompute(
    db: &impl ConnectionTrait,
    affected: &[i64],
) -> Result<EffectiveChange, DbErr> {
    if affected.is_empty() {
        return Ok(EffectiveChange::default());
    }
    exec(
        db,
        "CREATE TEMPORARY TABLE IF NOT EXISTS idpsync_affected_groups (group_id BIGINT PRIMARY KEY)",
        Vec::new(),
    )
    .await?;
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
        "INSERT INTO idpsync_wanted_effective (group_id, user_id) \
         WITH RECURSIVE closure (ancestor, descendant) AS ( \
             SELECT group_id, group_id FROM idpsync_affected_groups \
             UNION \
             SELECT closure.ancestor, m.member_group_id \
             FROM closure JOIN group_memberships m ON m.group_id = closure.descendant \
         ) \
         SELECT DISTINCT closure.ancestor, m.user_id \
         FROM closure JOIN user_memberships m ON m.group_id = closure.descendant",
        Vec::new(),
    )
    .await?;

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
    clear(db).await?;
    Ok(EffectiveChange {
        added: added as usize,
        removed: removed as usize,
        dirty_users,
    })
}

async fn clear(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    exec(db, "DELETE FROM idpsync_affected_groups", Vec::new()).await?;
    exec(db, "DELETE FROM idpsync_wanted_effective", Vec::new()).await?;
    Ok(())
}
