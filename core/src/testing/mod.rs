//! Test harness (feature `testing`): a [`TestStore`] on a real SQLite file or
//! on a fresh schema of a real PostgreSQL server, [`store_test!`] that runs
//! one test body against both, and [`TestApp`], the engine on a loopback
//! port.
//!
//! PostgreSQL is found at `IDPSYNC_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). When it does not answer, the
//! PostgreSQL half prints a `SKIPPED` line and passes, unless
//! `IDPSYNC_REQUIRE_PG=1`, in which case it fails.

mod app;
pub mod browser;

pub use app::{TestApp, TestAppBuilder};

use crate::store::Store;
use sea_orm::{ConnectionTrait, Database};

/// The default PostgreSQL of the project's machines.
pub const DEFAULT_TEST_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Which database a [`TestStore`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A migrated store that lives as long as this value (SQLite file in a
/// temporary directory, or a PostgreSQL schema dropped by [`TestStore::cleanup`]).
pub struct TestStore {
    pub store: Store,
    pub url: String,
    pub backend: Backend,
    pg_schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// A store on a new SQLite file.
    pub async fn sqlite() -> TestStore {
        TestStore::sqlite_with(crate::config::Durability::Full).await
    }

    /// A store on a new SQLite file, committing with `durability`.
    pub async fn sqlite_with(durability: crate::config::Durability) -> TestStore {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("idpsync.db").display());
        let store = Store::open_with(&url, 4, durability)
            .await
            .expect("open the SQLite store");
        TestStore {
            store,
            url,
            backend: Backend::Sqlite,
            pg_schema: None,
            _dir: Some(dir),
        }
    }

    /// A store on a fresh schema of the test PostgreSQL, or `Err(reason)` if
    /// no PostgreSQL answers.
    pub async fn postgres() -> Result<TestStore, String> {
        let url =
            std::env::var("IDPSYNC_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_TEST_PG_URL.into());
        let admin = Database::connect(&url)
            .await
            .map_err(|error| format!("no PostgreSQL at {url}: {error}"))?;
        let schema = format!(
            "idpsync_test_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        admin
            .execute_unprepared(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .map_err(|error| format!("cannot create schema {schema}: {error}"))?;
        admin.close().await.ok();
        let store = Store::connect(&url, 4, Some(&schema))
            .await
            .map_err(|error| format!("cannot connect with schema {schema}: {error}"))?;
        store
            .migrate()
            .await
            .expect("migrate the PostgreSQL schema");
        Ok(TestStore {
            store,
            url,
            backend: Backend::Postgres,
            pg_schema: Some(schema),
            _dir: None,
        })
    }

    /// A connection of its own to this store's database that may write,
    /// as another program's would: for a test that changes the database
    /// behind the engine's back (a table taken away, an older schema, a
    /// newer idpsync's migration). The store's own pool refuses writes
    /// ([`Store::db`]). The caller closes it.
    pub async fn outside_connection(&self) -> sea_orm::DatabaseConnection {
        let mut options = sea_orm::ConnectOptions::new(self.url.clone());
        options.max_connections(1).sqlx_logging(false);
        if let Some(schema) = &self.pg_schema {
            options.set_schema_search_path(schema.clone());
        }
        Database::connect(options)
            .await
            .expect("connect to the test database")
    }

    /// Takes every connection of a SQLite store's pools, the readers' and
    /// the writer's, and holds them while the returned value lives: what a
    /// test does to show that some work needs none of them.
    pub async fn take_every_pooled_connection(
        &self,
    ) -> Vec<sea_orm::sqlx::pool::PoolConnection<sea_orm::sqlx::Sqlite>> {
        let mut taken = Vec::new();
        for db in [self.store.db(), self.store.writer()] {
            let pool = db.get_sqlite_connection_pool();
            for _ in 0..pool.options().get_max_connections() {
                taken.push(pool.acquire().await.expect("a pooled connection"));
            }
        }
        taken
    }

    /// The PostgreSQL schema of this store, if any.
    pub fn pg_schema(&self) -> Option<&str> {
        self.pg_schema.as_deref()
    }

    /// Drops the PostgreSQL schema; the SQLite directory goes on drop.
    pub async fn cleanup(self) {
        if let Some(schema) = &self.pg_schema {
            let outside = self.outside_connection().await;
            outside
                .execute_unprepared(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .await
                .ok();
            outside.close().await.ok();
        }
    }
}

/// For the PostgreSQL half of a test: the store, or `None` after printing
/// why it is skipped. Panics instead when `IDPSYNC_REQUIRE_PG=1`.
pub async fn postgres_or_skip(test_name: &str) -> Option<TestStore> {
    match TestStore::postgres().await {
        Ok(store) => Some(store),
        Err(reason) => {
            if std::env::var("IDPSYNC_REQUIRE_PG").as_deref() == Ok("1") {
                panic!("{test_name}: PostgreSQL is required (IDPSYNC_REQUIRE_PG=1): {reason}");
            }
            eprintln!("SKIPPED {test_name} on PostgreSQL: {reason}");
            None
        }
    }
}

/// Defines a test module with a `sqlite` and a `postgres` test that both run
/// Registers a device of `owner` (an external id of `connection`) with
/// `node_key`, and approves it; returns its id. Tests that watch a device
/// be revoked (or not) start from one.
pub async fn approved_device(
    store: &Store,
    bus: &crate::events::EventBus,
    connection: &str,
    owner: &str,
    node_key: &str,
) -> i64 {
    use crate::devices::{self, DeviceStatus, NewDevice};
    let device = devices::register(
        store,
        bus,
        NewDevice {
            owner_connection_id: connection.into(),
            owner_external_id: owner.into(),
            name: format!("laptop-{node_key}"),
            node_key: node_key.into(),
        },
    )
    .await
    .expect("register the device");
    devices::set_status(store, bus, device.id, DeviceStatus::Approved, None)
        .await
        .expect("approve the device");
    device.id
}

/// A device's status (`approved`, `revoked`, ...).
pub async fn device_status(store: &Store, id: i64) -> String {
    use sea_orm::EntityTrait;
    crate::store::entity::device::Entity::find_by_id(id)
        .one(store.db())
        .await
        .expect("read the device")
        .expect("the device exists")
        .status
}

/// `$body`, an async closure taking `&TestStore`.
///
/// ```text
/// store_test!(applying_twice_writes_nothing, async |test_store: &TestStore| { ... });
/// ```
#[macro_export]
macro_rules! store_test {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let test_store = $crate::testing::TestStore::sqlite().await;
                ($body)(&test_store).await;
                test_store.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let name = concat!(module_path!(), "::postgres");
                if let Some(test_store) = $crate::testing::postgres_or_skip(name).await {
                    ($body)(&test_store).await;
                    test_store.cleanup().await;
                }
            }
        }
    };
}

/// Sends `head` (a request line and headers, without the blank line that
/// ends them) and then a body of `body_len` spaces, with its
/// Content-Length, over a plain blocking socket to `address`; returns the
/// answer as far as its Content-Length (or the connection's end). Panics
/// if the server stops taking the body: for checking that a refusal is
/// heard after the whole upload, which an HTTP client cannot show.
pub fn upload_in_full(address: &str, head: &str, body_len: usize) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "{head}\r\nContent-Length: {body_len}\r\n\r\n").unwrap();
    stream
        .write_all(&vec![b' '; body_len])
        .expect("the whole body is taken");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(error) => panic!("reading the answer: {error}"),
        }
        let text = String::from_utf8_lossy(&answer);
        if let Some((headers, body)) = text.split_once("\r\n\r\n") {
            let length = headers.lines().find_map(|line| {
                line.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|n| n.trim().parse::<usize>().unwrap_or(0))
            });
            if length.is_some_and(|length| body.len() >= length) {
                break;
            }
        }
    }
    String::from_utf8(answer).unwrap()
}
