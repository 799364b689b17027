//! The store: the only code that talks to the database.
//!
//! SQLite (a file in WAL mode, created on first start) is the default;
//! PostgreSQL runs the same code and migrations. Writers are serialised so the
//! event cursor is committed in order: on SQLite by an in-process lock, on
//! PostgreSQL by a transaction-scoped advisory lock taken by
//! [`Store::begin_write`], which also holds across several daemons.
//!
//! Rule: every write goes through [`Store::begin_write`], and the database
//! holds it. On a SQLite file the pool behind [`Store::db`] is opened
//! `query_only`, so a write there fails at once ("attempt to write a
//! readonly database"), and `begin_write` runs on connections of its own.
//! On PostgreSQL the pool's transactions are read-only by default
//! (`default_transaction_read_only`; a write fails with "cannot execute
//! INSERT in a read-only transaction"), and `begin_write`'s say `READ
//! WRITE`.
//!
//! On SQLite `begin_write`'s transactions begin `IMMEDIATE`, taking the
//! database's write lock at `BEGIN`, where SQLite's busy timeout applies:
//! a deferred transaction that has read and then writes while another
//! connection holds the lock fails at once with SQLITE_BUSY (SQLite does
//! not wait there, to avoid a deadlock). Another connection can hold it
//! after the in-process lock is given back: a dropped transaction's
//! `ROLLBACK` is only queued to its connection's thread.

pub mod backup;
pub mod edges;
pub mod entity;
pub mod index_build;
pub mod pipeline;
pub(crate) mod raw_sql;
pub mod rows;
pub mod scim_query;
mod tokens;

pub use tokens::{NewToken, TokenRecord, VERIFIED_FOR};

use crate::config::{AclGroupConfig, ConnectionConfig, Durability};
use chrono::Utc;
use idpsync_migrations::{Migrator, MigratorTrait};
use sea_orm::sea_query::OnConflict;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, Set, Statement, TransactionTrait,
};
use std::sync::Arc;
use std::time::Duration;

/// A lock held across daemons ([`Store::try_lock_across_daemons`]) until
/// [`DaemonLock::release`].
pub struct DaemonLock(Option<sea_orm::DatabaseTransaction>);

impl DaemonLock {
    /// Releases the lock now, not when the dropped transaction's connection
    /// is next used: whoever asks next must find it free.
    pub async fn release(self) {
        if let Some(tx) = self.0
            && let Err(error) = tx.rollback().await
        {
            tracing::warn!(%error, "releasing a lock across daemons failed");
        }
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    Conflict { what: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// Reads: on a SQLite file its connections are `query_only`, on
    /// PostgreSQL its transactions read-only unless `begin_write` began them.
    db: DatabaseConnection,
    /// Where [`Store::begin_write`] begins: on a SQLite file a pool of
    /// [`SQLITE_WRITER_CONNECTIONS`] connections that may write, elsewhere
    /// `db`.
    writer: DatabaseConnection,
    /// How a connection that may write is made: migrations run on one of
    /// their own, and on a SQLite file backups and bulk writes too (see
    /// [`Store::sqlite_file`]). `None` for an in-memory SQLite database,
    /// which another connection would not see.
    writable: Option<ConnectOptions>,
    sqlite_writer: Arc<tokio::sync::Mutex<()>>,
    verified_tokens: Arc<tokens::VerifiedTokens>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// A write transaction that holds the writer lock until commit or drop.
/// Dropping it without [`WriteTx::commit`] rolls everything back.
pub struct WriteTx {
    pub tx: DatabaseTransaction,
    /// The connection of its own a [`Store::begin_bulk_write`] runs on,
    /// closed when the transaction ends. Fields drop in this order: `tx`
    /// (its `ROLLBACK` queued if it was not committed, and run by the
    /// connection's thread later: the next SQLite write waits for it at its
    /// `BEGIN IMMEDIATE`), this, then the lock.
    own: Option<DatabaseConnection>,
    _sqlite_guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        let WriteTx {
            tx,
            own,
            _sqlite_guard,
        } = self;
        let committed = tx.commit().await;
        if let Some(own) = own {
            // Committed or not, nothing is left to do on it; a close that
            // fails leaves the connection to be dropped.
            own.close().await.ok();
        }
        committed?;
        Ok(())
    }
}

/// Lets a SQLite connection give back the pages its cache holds and no
/// statement uses (`PRAGMA shrink_memory`); nothing on PostgreSQL. A
/// pooled connection otherwise keeps the cache a big read filled, up to
/// [`SQLITE_CACHE_KIB`], while the next connection fills its own.
pub async fn release_cache(db: &impl ConnectionTrait) -> Result<()> {
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        db.execute_unprepared("PRAGMA shrink_memory").await?;
    }
    Ok(())
}

/// Connections [`Store::begin_write`] runs on, on a SQLite file, apart from
/// the read pool. Two, not one: one writer connection made each write
/// wait for the last one's connection to come back to the pool, a task
/// hop after its commit (SCIM POST at 16 clients, six runs each, median
/// 3685 req/s with one, 4450 with two, 4294 when writes shared the read
/// pool).
const SQLITE_WRITER_CONNECTIONS: u32 = 2;

/// Page cache per SQLite connection, in KiB (a bound, not a reservation).
pub(crate) const SQLITE_CACHE_KIB: u32 = 16 * 1024;

impl Store {
    /// Connects to `url` and brings the schema up to date.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store> {
        let store = Store::connect(url, max_connections, None).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// [`Store::open`] with `durability` (SQLite's commits).
    pub async fn open_with(
        url: &str,
        max_connections: u32,
        durability: Durability,
    ) -> Result<Store> {
        let store = Store::connect_with(url, max_connections, None, durability).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating. `pg_schema` sets PostgreSQL's search_path
    /// (tests use a fresh schema each). Commits are durable
    /// ([`Durability::Full`]).
    pub async fn connect(
        url: &str,
        max_connections: u32,
        pg_schema: Option<&str>,
    ) -> Result<Store> {
        Store::connect_with(url, max_connections, pg_schema, Durability::Full).await
    }

    /// [`Store::connect`] with `durability`.
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        pg_schema: Option<&str>,
        durability: Durability,
    ) -> Result<Store> {
        let mut options = ConnectOptions::new(url.to_string());
        options
            .max_connections(max_connections.max(1))
            .connect_timeout(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(30))
            .sqlx_logging(false);
        if let Some(schema) = pg_schema {
            options.set_schema_search_path(schema.to_string());
        }
        // sqlx pings every connection as it returns to the pool, and by
        // default again as it is taken out: a second round trip per
        // statement. A SQLite file has no other end to hang up; a PostgreSQL
        // connection idle for a while may have been closed by the server or
        // a proxy, so it is tested then.
        if sqlite_path(url).is_some() {
            options.test_before_acquire(false);
        } else {
            options.test_before_acquire_if_idle_for(Duration::from_secs(10));
        }
        if let Some(path) = sqlite_path(url) {
            if let Some(parent) = std::path::Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                std::fs::create_dir_all(parent).map_err(|error| {
                    StoreError::Open(format!("cannot create {}: {error}", parent.display()))
                })?;
            }
            let synchronous = match durability {
                // In WAL mode FULL syncs the WAL at every commit; group
                // commit (SCIM) and one transaction per run keep commits few.
                Durability::Full => SqliteSynchronous::Full,
                Durability::Relaxed => SqliteSynchronous::Normal,
            };
            let mut writing = options.clone();
            writing.map_sqlx_sqlite_opts(move |opts| sqlite_pragmas(opts, synchronous, false));
            options.map_sqlx_sqlite_opts(move |opts| sqlite_pragmas(opts, synchronous, true));
            let mut writers = writing.clone();
            writers
                .max_connections(SQLITE_WRITER_CONNECTIONS)
                .min_connections(0);
            let writer = connect(writers).await?;
            let db = connect(options).await?;
            return Ok(Store {
                db,
                writer,
                writable: Some(writing),
                sqlite_writer: Arc::new(tokio::sync::Mutex::new(())),
                verified_tokens: Arc::default(),
            });
        }
        let writable = url.starts_with("postgres").then(|| options.clone());
        if writable.is_some() {
            // Every transaction of the pool is read-only unless it says
            // otherwise, as `begin_write`'s do.
            options.map_sqlx_postgres_opts(|opts| {
                opts.options([("default_transaction_read_only", "on")])
            });
        }
        let db = connect(options).await?;
        Ok(Store {
            writer: db.clone(),
            db,
            writable,
            sqlite_writer: Arc::new(tokio::sync::Mutex::new(())),
            verified_tokens: Arc::default(),
        })
    }

    /// The migrations the database has and this binary does not know: a
    /// newer idpsync migrated it. Empty for a fresh or older database.
    pub async fn unknown_migrations(&self) -> Result<Vec<String>> {
        let known: Vec<String> = Migrator::migrations()
            .iter()
            .map(|migration| migration.name().to_string())
            .collect();
        let backend = self.backend();
        // No table yet: a fresh database.
        let applied = match self
            .db
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT version FROM seaql_migrations ORDER BY version",
            ))
            .await
        {
            Ok(rows) => rows,
            Err(_) => return Ok(Vec::new()),
        };
        let mut unknown = Vec::new();
        for row in applied {
            let version: String = row.try_get("", "version")?;
            if !known.contains(&version) {
                unknown.push(version);
            }
        }
        Ok(unknown)
    }

    /// The migrations [`Store::migrate`] would apply, in order, without
    /// applying any (refused, like it, for a newer schema). Writes nothing,
    /// not even the migrations' own table.
    pub async fn pending_migrations(&self) -> Result<Vec<String>> {
        self.refuse_newer_schema().await?;
        Ok(Migrator::get_pending_migrations_read_only(&self.db)
            .await?
            .iter()
            .map(|migration| migration.name().to_string())
            .collect())
    }

    async fn refuse_newer_schema(&self) -> Result<()> {
        let unknown = self.unknown_migrations().await?;
        if unknown.is_empty() {
            return Ok(());
        }
        Err(StoreError::Open(format!(
            "the database's schema is newer than this idpsync: it has {} that this version does not know ({}); it was left untouched. Run the idpsync that migrated it (or newer), or restore a backup taken before the upgrade",
            if unknown.len() == 1 {
                "a migration"
            } else {
                "migrations"
            },
            unknown.join(", ")
        )))
    }

    /// Applies every pending migration; returns the names applied now. A
    /// database migrated by a newer idpsync is refused before anything is
    /// written.
    pub async fn migrate(&self) -> Result<Vec<String>> {
        self.refuse_newer_schema().await?;
        // On a connection of their own, closed after: the pool behind `db`
        // refuses to write, and on SQLite `ALTER TABLE` reads the
        // temporary schema, which opens a connection's temporary database
        // for as long as the connection lives; a pooled connection with
        // one could not move a bulk index build's sort to disk (see
        // `index_build`). An in-memory database has only its own pool.
        let Some(options) = &self.writable else {
            return migrate_on(&self.db).await;
        };
        // Most starts have nothing to apply: they open no connection.
        if Migrator::get_pending_migrations_read_only(&self.db)
            .await?
            .is_empty()
        {
            return Ok(Vec::new());
        }
        let migrating = connect_alone(options).await?;
        let migrated = migrate_on(&migrating).await;
        migrating.close().await.ok();
        migrated
    }

    /// The pool to read from. A write belongs in [`Store::begin_write`];
    /// this pool refuses one (on an in-memory SQLite database excepted).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The pool [`Store::begin_write`] begins on (on a SQLite file its own,
    /// apart from [`Store::db`]'s): for tests that take it.
    #[cfg(feature = "testing")]
    pub fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// How a connection of its own to this SQLite file is made; `None` on
    /// PostgreSQL and for an in-memory database.
    fn sqlite_file(&self) -> Option<&ConnectOptions> {
        self.writable
            .as_ref()
            .filter(|_| self.backend() == DatabaseBackend::Sqlite)
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await?;
        Ok(())
    }

    /// Takes the lock named `name` among the daemons sharing this database,
    /// if no other daemon holds it: on PostgreSQL a transaction-scoped
    /// advisory lock (scoped by schema: one database may hold several
    /// deployments); on SQLite, which one daemon serves, it is always free
    /// (in-process exclusion is the caller's). `None`: another daemon holds it.
    pub async fn try_lock_across_daemons(&self, name: &str) -> Result<Option<DaemonLock>> {
        if self.backend() != DatabaseBackend::Postgres {
            return Ok(Some(DaemonLock(None)));
        }
        let tx = self.db.begin().await?;
        let row = tx
            .query_one_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock(hashtext(current_schema() || ':' || $1)) AS locked",
                [name.into()],
            ))
            .await?;
        let locked: bool = row
            .map(|r| r.try_get("", "locked"))
            .transpose()?
            .unwrap_or(false);
        Ok(locked.then_some(DaemonLock(Some(tx))))
    }

    /// Starts a write transaction holding the single-writer lock.
    pub async fn begin_write(&self) -> Result<WriteTx> {
        match self.backend() {
            DatabaseBackend::Postgres => {
                let tx = self.writer.begin().await?;
                // One round trip: the pool's transactions are read-only
                // unless they say otherwise first, and the writer lock is
                // scoped by schema (one database may hold several
                // deployments).
                tx.execute_unprepared(
                    "SET TRANSACTION READ WRITE; \
                     SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':idpsync-writer'))",
                )
                .await?;
                Ok(WriteTx {
                    tx,
                    _sqlite_guard: None,
                    own: None,
                })
            }
            _ => {
                let guard = self.sqlite_writer.clone().lock_owned().await;
                let tx = begin_sqlite_write(&self.writer).await?;
                Ok(WriteTx {
                    tx,
                    _sqlite_guard: Some(guard),
                    own: None,
                })
            }
        }
    }

    /// [`Store::begin_write`] for an apply that may write in bulk (a full
    /// pull's). On a SQLite file it runs on a connection of its own,
    /// closed when the transaction ends: a pooled connection would keep
    /// what the apply leaves in it for the life of the process, the
    /// prepared bulk inserts in its statement cache (thousands of rows,
    /// tens of thousands of parameters each: ~30 MiB after a million-user
    /// first sync) and its page cache (up to [`SQLITE_CACHE_KIB`]), where
    /// the pool's other work needs neither. On PostgreSQL, whose prepared
    /// statements live in the server, and on an in-memory SQLite database,
    /// which another connection would not see, it is `begin_write`.
    pub async fn begin_bulk_write(&self) -> Result<WriteTx> {
        let Some(options) = self.sqlite_file() else {
            return self.begin_write().await;
        };
        let guard = self.sqlite_writer.clone().lock_owned().await;
        let own = connect_alone(options).await?;
        let tx = begin_sqlite_write(&own).await?;
        Ok(WriteTx {
            tx,
            _sqlite_guard: Some(guard),
            own: Some(own),
        })
    }

    /// Makes the `connections` and `acl_groups` tables match the config:
    /// configured ones are inserted (their data is never deleted here: a
    /// connection removed from the config keeps its history).
    pub async fn register_config(
        &self,
        connections: &[ConnectionConfig],
        acl_groups: &[AclGroupConfig],
    ) -> Result<()> {
        let write = self.begin_write().await?;
        let now = Utc::now();
        for connection in connections {
            entity::connection::Entity::insert(entity::connection::ActiveModel {
                id: Set(connection.id.clone()),
                kind: Set(connection.kind.clone()),
                delta_cursor: Set(None),
                state_version: Set(0),
                health: Set(entity::status::Health::Healthy),
                consecutive_failures: Set(0),
                next_run_at: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .on_conflict(
                OnConflict::column(entity::connection::Column::Id)
                    .update_columns([entity::connection::Column::Kind])
                    .to_owned(),
            )
            .exec(&write.tx)
            .await?;
        }
        for acl_group in acl_groups {
            entity::acl_group::Entity::insert(entity::acl_group::ActiveModel {
                name: Set(acl_group.name.clone()),
                description: Set(acl_group.description.clone()),
                created_at: Set(now),
                ..Default::default()
            })
            .on_conflict(
                OnConflict::column(entity::acl_group::Column::Name)
                    .update_columns([entity::acl_group::Column::Description])
                    .to_owned(),
            )
            .exec(&write.tx)
            .await?;
        }
        write.commit().await
    }

    /// The newest runs, optionally of one connection.
    pub async fn recent_runs(
        &self,
        connection_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<entity::sync_run::Model>> {
        use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
        let mut query =
            entity::sync_run::Entity::find().order_by_desc(entity::sync_run::Column::Id);
        if let Some(connection_id) = connection_id {
            query = query.filter(entity::sync_run::Column::ConnectionId.eq(connection_id));
        }
        Ok(query.limit(limit).all(&self.db).await?)
    }

    /// All connection rows, by id.
    pub async fn connections(&self) -> Result<Vec<entity::connection::Model>> {
        Ok(entity::connection::Entity::find().all(&self.db).await?)
    }
}

/// Applies every pending migration on `db`; returns the names applied now.
async fn migrate_on(db: &DatabaseConnection) -> Result<Vec<String>> {
    let before: Vec<String> = Migrator::get_applied_migrations(db)
        .await
        .unwrap_or_default()
        .iter()
        .map(|migration| migration.name().to_string())
        .collect();
    Migrator::up(db, None).await?;
    let after = Migrator::get_applied_migrations(db).await?;
    Ok(after
        .iter()
        .map(|migration| migration.name().to_string())
        .filter(|name| !before.contains(name))
        .collect())
}

/// The file path of a `sqlite:` URL, or `None` for other URLs and in-memory.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// The pragmas of every connection to a SQLite file; `read_only` ones
/// (the pool behind [`Store::db`]) refuse to write.
fn sqlite_pragmas(
    opts: SqliteConnectOptions,
    synchronous: SqliteSynchronous,
    read_only: bool,
) -> SqliteConnectOptions {
    opts.create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(30))
        // A big sync writes far more pages than SQLite's default 2 MiB
        // cache holds: it would spill them to the WAL and read them back
        // (measured: half the apply's time). On the pair-keyed edge tables,
        // filled in key order, 16 MiB applies a million edges as fast as 64
        // MiB did (8 MiB: 15% slower) and keeps 48 MiB less resident.
        .pragma("cache_size", format!("-{}", SQLITE_CACHE_KIB))
        // Temporary storage in memory. With `file`, the 1M-user first
        // sync's index build spilled its sort to disk (edges 23 -> 18 s,
        // Entra's peak RSS 997 -> 849 MiB), but every SCIM write got slower
        // (16 clients: POST 5.8-6.5k -> 4.7-5.4k/s, PATCH 4.9-5.2k ->
        // 3.9-4.4k/s). The bulk index build alone switches to `file` and
        // back (see `index_build`).
        .pragma("temp_store", "memory")
        .pragma("query_only", if read_only { "ON" } else { "OFF" })
}

async fn connect(options: ConnectOptions) -> Result<DatabaseConnection> {
    Database::connect(options)
        .await
        .map_err(|error| StoreError::Open(redact_db_error(&error.to_string())))
}

/// A SQLite write transaction on `db`: `BEGIN IMMEDIATE` (see the module
/// docs), which waits up to the busy timeout for the write lock.
async fn begin_sqlite_write(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    let immediate = sea_orm::TransactionOptions {
        sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
        ..Default::default()
    };
    Ok(db.begin_with_options(immediate).await?)
}

/// A pool of one connection made from the store's `options`, for work
/// that must not leave anything in (or take anything from) the store's
/// pool: the caller closes it when done.
async fn connect_alone(options: &ConnectOptions) -> Result<DatabaseConnection> {
    let mut one = options.clone();
    one.max_connections(1).min_connections(0);
    connect(one).await
}

/// Removes a password from any URL in a driver error message.
fn redact_db_error(message: &str) -> String {
    let re = regex::Regex::new(r"(postgres(?:ql)?://[^:/@\s]+):[^@\s]+@").expect("valid regex");
    re.replace_all(message, "$1:**redacted**@").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_path_is_read_from_the_url() {
        assert_eq!(
            sqlite_path("sqlite://data/x.db?mode=rwc"),
            Some("data/x.db")
        );
        assert_eq!(sqlite_path("sqlite:///tmp/x.db"), Some("/tmp/x.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }

    #[test]
    fn database_errors_never_show_a_password() {
        let message = redact_db_error("error connecting to postgres://admin:s3cret@db:5432/x");
        assert!(!message.contains("s3cret"), "{message}");
        assert!(message.contains("postgres://admin:**redacted**@db"));
    }
}
