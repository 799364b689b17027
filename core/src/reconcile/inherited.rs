//! Inherited memberships, computed by the database: for a set of affected
//! groups, a recursive query walks their nested groups down to those
//! groups' direct users, and `inherited_memberships` is brought in line
//! with the result, without the edges ever being loaded into memory. A
//! user who is also a direct member of the group is left out: effective
//! membership (the `effective_memberships` view) is the direct edges and
//! the inherited rows side by side, never the same pair twice. The same SQL
//! runs on SQLite and PostgreSQL; `UNION` in the recursive step makes a
//! cycle of nested groups terminate.
//!
//! Groups that have no inherited row yet (every group without nested
//! groups, and all of a first sync) get theirs inserted straight from the
//! recursive query. For the others, scratch tables hold the affected group
//! ids and the rows they should have (`idpsync_wanted_inherited`), so both
//! differences are set operations inside the database. The scratch tables
//! (temporary on PostgreSQL, in the main schema on SQLite: see
//! `create_scratch_tables`) are filled in the caller's transaction and
//! emptied when the call ends; a call that fails rolls its rows back with
//! the transaction, so between transactions they are always empty.

use crate::store::raw_sql::statement;
use foldhash::HashSet;
use futures_util::TryStreamExt;
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, StreamTrait, Value};

/// Group ids per INSERT into the scratch table.
const IDS_PER_INSERT: usize = 1000;

/// What changed in `inherited_memberships`.
#[derive(Debug, Default)]
pub struct InheritedChange {
    pub added: usize,
    pub removed: usize,
    /// Users who gained or lost an inherited membership (a change of direct
    /// edges is the caller's to know), when asked for.
    pub dirty_users: HashSet<i64>,
}

async fn exec(db: &impl ConnectionTrait, text: &str, values: Vec<Value>) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    Ok(db
        .execute_raw(statement(backend, text, values))
        .await?
        .rows_affected())
}

/// The `user_id`s `text` selects, streamed into the set: a first sync's
/// million rows were held whole before (each as the driver's row).
async fn user_ids(
    db: &(impl ConnectionTrait + StreamTrait),
    text: &str,
) -> Result<HashSet<i64>, DbErr> {
    let backend = ConnectionTrait::get_database_backend(db);
    let rows = db.stream_raw(statement(backend, text, Vec::new())).await?;
    let mut rows = std::pin::pin!(rows);
    let mut ids = HashSet::default();
    while let Some(row) = rows.try_next().await? {
        ids.insert(row.try_get::<i64>("", "user_id")?);
    }
    Ok(ids)
}

/// Inserts into `table` the inherited memberships of the groups in the
/// scratch table `seed`: a recursive walk down their nested groups (at any
/// depth, the seed itself only if a cycle leads back to it) to those groups'
/// direct users, leaving out the seed group's own direct members. A user
/// reached along two paths is inserted once: on SQLite by a conflict
/// clause; on PostgreSQL, where a conflict clause makes every row's insert
/// speculative (1M rows of a 300k-user first sync: 6 s to insert after
/// 1.9 s to find), by `DISTINCT`, whose sort also inserts rows in key
/// order. That needs `table` to hold no row of a seed group: fresh groups
/// have none, and the scratch table is emptied after each use.
async fn insert_inherited(
    db: &impl ConnectionTrait,
    table: &str,
    seed: &str,
) -> Result<u64, DbErr> {
    let (distinct, once) = match db.get_database_backend() {
        DatabaseBackend::Postgres => ("DISTINCT", "ORDER BY 1, 2"),
        _ => ("", "ON CONFLICT (group_id, user_id) DO NOTHING"),
    };
    exec(
        db,
        &format!(
            "INSERT INTO {table} (group_id, user_id) \
             WITH RECURSIVE closure (ancestor, descendant) AS ( \
                 SELECT m.group_id, m.member_group_id \
                 FROM {seed} s JOIN group_memberships m ON m.group_id = s.group_id \
                 UNION \
                 SELECT closure.ancestor, m.member_group_id \
                 FROM closure JOIN group_memberships m ON m.group_id = closure.descendant \
             ) \
             SELECT {distinct} closure.ancestor, m.user_id \
             FROM closure JOIN user_memberships m ON m.group_id = closure.descendant \
             WHERE NOT EXISTS (SELECT 1 FROM user_memberships d \
                               WHERE d.group_id = closure.ancestor AND d.user_id = m.user_id) \
             {once}"
        ),
        Vec::new(),
    )
    .await
}

/// Makes this connection's scratch tables, on PostgreSQL: temporary ones,
/// so that concurrent applies never wait on each other's keys. On SQLite
/// they are tables of the main schema (migration step 9; one writer at a
/// time): a connection that never opened its temporary database may switch
/// `temp_store` inside a transaction, as a bulk apply's index build does
/// (see `store::index_build`).
async fn create_scratch_tables(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
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
        "CREATE TEMPORARY TABLE IF NOT EXISTS idpsync_wanted_inherited \
         (group_id BIGINT NOT NULL, user_id BIGINT NOT NULL, PRIMARY KEY (group_id, user_id))",
        Vec::new(),
    )
    .await?;
    Ok(())
}

/// Recomputes the inherited memberships of `affected` groups of one
/// connection from the direct edges now stored; with `want_users`, also
/// finds the users who gained or lost one (`dirty_users`).
///
/// Groups with no inherited row yet (groups without nested groups, new
/// groups, all of a first sync) take a short path: their rows are inserted
/// straight from the recursive query, with no scratch copy to compare
/// against.
pub async fn recompute(
    db: &(impl ConnectionTrait + StreamTrait),
    affected: &[i64],
    want_users: bool,
) -> Result<InheritedChange, DbErr> {
    if affected.is_empty() {
        return Ok(InheritedChange::default());
    }
    create_scratch_tables(db).await?;
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
         WHERE NOT EXISTS (SELECT 1 FROM inherited_memberships i WHERE i.group_id = a.group_id)",
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
    let mut change = recompute_stored(db, want_users).await?;

    // Fresh groups: nothing to remove, nothing already there.
    let added = insert_inherited(db, "inherited_memberships", "idpsync_fresh_groups").await?;
    change.added += added as usize;
    if added > 0 && want_users {
        change.dirty_users.extend(
            user_ids(
                db,
                "SELECT DISTINCT user_id FROM inherited_memberships \
                 WHERE group_id IN (SELECT group_id FROM idpsync_fresh_groups)",
            )
            .await?,
        );
    }
    clear(db).await?;
    Ok(change)
}

/// Brings the stored rows of the groups left in `idpsync_affected_groups`
/// (groups that have inherited rows) in line with the direct edges.
async fn recompute_stored(
    db: &(impl ConnectionTrait + StreamTrait),
    want_users: bool,
) -> Result<InheritedChange, DbErr> {
    insert_inherited(db, "idpsync_wanted_inherited", "idpsync_affected_groups").await?;

    const STALE: &str = "FROM inherited_memberships e \
         WHERE e.group_id IN (SELECT group_id FROM idpsync_affected_groups) \
         AND NOT EXISTS (SELECT 1 FROM idpsync_wanted_inherited w \
                         WHERE w.group_id = e.group_id AND w.user_id = e.user_id)";
    const MISSING: &str = "FROM idpsync_wanted_inherited w \
         WHERE NOT EXISTS (SELECT 1 FROM inherited_memberships e \
                           WHERE e.group_id = w.group_id AND e.user_id = w.user_id)";
    let mut dirty_users = if want_users {
        user_ids(db, &format!("SELECT DISTINCT e.user_id AS user_id {STALE}")).await?
    } else {
        HashSet::default()
    };
    let removed = exec(
        db,
        "DELETE FROM inherited_memberships \
         WHERE group_id IN (SELECT group_id FROM idpsync_affected_groups) \
         AND NOT EXISTS (SELECT 1 FROM idpsync_wanted_inherited w \
                         WHERE w.group_id = inherited_memberships.group_id \
                         AND w.user_id = inherited_memberships.user_id)",
        Vec::new(),
    )
    .await?;
    if want_users {
        dirty_users.extend(
            user_ids(
                db,
                &format!("SELECT DISTINCT w.user_id AS user_id {MISSING}"),
            )
            .await?,
        );
    }
    let added = exec(
        db,
        &format!(
            "INSERT INTO inherited_memberships (group_id, user_id) \
             SELECT w.group_id, w.user_id {MISSING}"
        ),
        Vec::new(),
    )
    .await?;
    Ok(InheritedChange {
        added: added as usize,
        removed: removed as usize,
        dirty_users,
    })
}

async fn clear(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    for table in [
        "idpsync_affected_groups",
        "idpsync_fresh_groups",
        "idpsync_wanted_inherited",
    ] {
        exec(db, &format!("DELETE FROM {table}"), Vec::new()).await?;
    }
    Ok(())
}
