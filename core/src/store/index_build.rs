//! Building indexes inside a write transaction, as a bulk apply does after
//! inserting a first sync's edges (see `reconcile::apply`).
//!
//! An index build sorts every key of its table. SQLite sorts in memory up
//! to a small budget and then writes sorted runs to temporary files; where
//! those files live follows `temp_store`, which idpsync's connections set
//! to `memory` (their statement journals and the like: `file` made every
//! SCIM write ~18% slower). A build of ten million keys would then hold its
//! whole sort on the heap: the 1M-user first sync's peak. [`build_indexes`]
//! is the one place that switches `temp_store` to `file` and back, around
//! the builds and nothing else.
//!
//! SQLite changes `temp_store` inside a transaction only on a connection
//! that has never opened its temporary database (a `TEMPORARY` table opens
//! it, and so does any statement that reads the temporary schema, such as
//! `ALTER TABLE`), which is why no pooled connection opens it on SQLite:
//! the nesting walk's scratch tables are in the main schema there, and
//! `Store::migrate` runs on a connection of its own. Should a connection
//! have opened it anyway, the build still runs, sorting in memory, and
//! logs a warning.
//!
//! SQLite's sort holds as many bytes in memory as the connection's page
//! cache may (16 MiB here) before it writes a sorted run, and the cache
//! itself stays full of the table the build reads. For the builds, the
//! cache is [`SORT_CACHE_KIB`]: lowering it frees the pages beyond it at
//! once, and the sort writes its runs at that size (at a 1M-user first
//! sync, the apply's last peak). The connection's own size is set back
//! after, with `temp_store`.

use super::SQLITE_CACHE_KIB;
use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement};

/// SQLite's page cache, and so its sort's memory, during index builds, in
/// KiB.
pub const SORT_CACHE_KIB: u32 = 2 * 1024;

/// Where an index build's sort went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSort {
    /// SQLite, past its in-memory budget, in temporary files.
    TemporaryFiles,
    /// SQLite, wholly in memory: `temp_store` could not be switched on this
    /// connection.
    Memory,
    /// PostgreSQL: the server's own (`maintenance_work_mem`, then disk).
    Server,
}

/// Runs `creates`, `CREATE INDEX` statements, on `db` (a transaction), and
/// returns where their sorts went. On SQLite `temp_store` is `file` during
/// the builds and `memory` again before this returns, whether they
/// succeeded or not.
pub async fn build_indexes(
    db: &impl ConnectionTrait,
    creates: &[String],
) -> Result<IndexSort, DbErr> {
    let backend = db.get_database_backend();
    if backend != DatabaseBackend::Sqlite {
        run_all(db, creates).await?;
        return Ok(IndexSort::Server);
    }
    let sort = match set_temp_store(db, "FILE").await {
        Ok(()) => IndexSort::TemporaryFiles,
        Err(error) => {
            tracing::warn!(
                %error,
                "index build sorts in memory: this connection cannot move its sort to disk"
            );
            IndexSort::Memory
        }
    };
    let built = match sort {
        IndexSort::TemporaryFiles => match set_cache_kib(db, SORT_CACHE_KIB).await {
            Ok(()) => run_all(db, creates).await,
            Err(error) => Err(error),
        },
        IndexSort::Memory | IndexSort::Server => run_all(db, creates).await,
    };
    // Back even after a failed build: the connection returns to the pool,
    // where every other statement expects `memory` and its own cache. A
    // failed build is the error to report, before a failed switch back.
    let back = match sort {
        IndexSort::TemporaryFiles => {
            let cache = set_cache_kib(db, SQLITE_CACHE_KIB).await;
            set_temp_store(db, "MEMORY").await.and(cache)
        }
        IndexSort::Memory | IndexSort::Server => Ok(()),
    };
    built?;
    back?;
    Ok(sort)
}

async fn run_all(db: &impl ConnectionTrait, statements: &[String]) -> Result<(), DbErr> {
    for statement in statements {
        db.execute_raw(Statement::from_string(
            db.get_database_backend(),
            statement.clone(),
        ))
        .await?;
    }
    Ok(())
}

async fn set_cache_kib(db: &impl ConnectionTrait, kib: u32) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_string(
        DatabaseBackend::Sqlite,
        format!("PRAGMA cache_size = -{kib}"),
    ))
    .await
    .map(drop)
}

async fn set_temp_store(db: &impl ConnectionTrait, place: &str) -> Result<(), DbErr> {
    db.execute_raw(Statement::from_string(
        DatabaseBackend::Sqlite,
        format!("PRAGMA temp_store = {place}"),
    ))
    .await
    .map(drop)
}
