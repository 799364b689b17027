//! The store on a real SQLite file and a real PostgreSQL schema: schema,
//! uniqueness rules, cascades, API tokens and statements sent through a
//! pipeline.

use chrono::{Duration, Utc};
use idpsync_core::auth::Scope;
use idpsync_core::config::{AclGroupConfig, ConnectionConfig, SafetyConfig};
use idpsync_core::store::entity::{api_token, device, source_user};
use idpsync_core::store::pipeline::Pipelined;
use idpsync_core::store::{NewToken, Store, StoreError};
use idpsync_core::store_test;
use idpsync_core::testing::TestStore;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set, Statement};

fn scim_connection(id: &str) -> ConnectionConfig {
    ConnectionConfig {
        id: id.into(),
        kind: "scim".into(),
        enabled: true,
        schedule: None,
        schedule_jitter_secs: 0,
        full_sync_every_hours: 24,
        rate_limit_share: 1.0,
        safety: SafetyConfig::default(),
        settings: Default::default(),
    }
}

async fn with_connections(store: &Store, ids: &[&str]) {
    let connections: Vec<_> = ids.iter().map(|id| scim_connection(id)).collect();
    let acl_groups = vec![AclGroupConfig {
        name: "engineering".into(),
        description: Some("people who ship".into()),
        from: vec![],
    }];
    store
        .register_config(&connections, &acl_groups)
        .await
        .unwrap();
}

async fn insert_user(
    store: &Store,
    connection: &str,
    external_id: &str,
    user_name: &str,
) -> Result<source_user::Model, sea_orm::DbErr> {
    let now = Utc::now();
    let write = store.begin_write().await.expect("a write transaction");
    let inserted = source_user::ActiveModel {
        connection_id: Set(connection.into()),
        external_id: Set(external_id.into()),
        user_name: Set(user_name.into()),
        user_name_key: Set(user_name.to_lowercase()),
        display_name: Set(None),
        given_name: Set(None),
        family_name: Set(None),
        primary_email: Set(None),
        emails: Set("[]".into()),
        active: Set(true),
        raw_status: Set(None),
        attributes: Set("{}".into()),
        content_hash: Set("h".into()),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&write.tx)
    .await?;
    write.commit().await.expect("commit");
    Ok(inserted)
}

/// Whether `store` lets `token` in.
async fn accepts(store: &Store, token: &str) -> bool {
    store.authenticate_token(token).await.unwrap().is_some()
}

store_test!(
    migrations_are_idempotent_and_config_registration_is_repeatable,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            assert!(
                store.migrate().await.unwrap().is_empty(),
                "second migrate applies nothing"
            );
            with_connections(&store, &["okta", "entra"]).await;
            with_connections(&store, &["okta", "entra"]).await;
            let ids: Vec<String> = store
                .connections()
                .await
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect();
            assert_eq!(ids.len(), 2);
            assert!(ids.contains(&"okta".to_string()) && ids.contains(&"entra".to_string()));
        }
    }
);

store_test!(one_external_id_per_connection, |test_store: &TestStore| {
    let store = test_store.store.clone();
    async move {
        with_connections(&store, &["a", "b"]).await;
        insert_user(&store, "a", "u1", "alice").await.unwrap();
        assert!(insert_user(&store, "a", "u1", "alice2").await.is_err());
        insert_user(&store, "b", "u1", "alice")
            .await
            .expect("same ids in another connection");
    }
});

store_test!(
    user_name_is_unique_per_connection_ignoring_case,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            with_connections(&store, &["a"]).await;
            insert_user(&store, "a", "u1", "Alice@Example.com")
                .await
                .unwrap();
            let duplicate = insert_user(&store, "a", "u2", "alice@example.COM").await;
            assert!(
                duplicate.is_err(),
                "userName must be unique case-insensitively"
            );
        }
    }
);

store_test!(
    removing_a_user_keeps_devices_with_their_owner_reference,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            with_connections(&store, &["a"]).await;
            let alice = insert_user(&store, "a", "u1", "alice").await.unwrap();
            let now = Utc::now();
            let write = store.begin_write().await.unwrap();
            let laptop = device::ActiveModel {
                owner_user_id: Set(Some(alice.id)),
                owner_connection_id: Set("a".into()),
                owner_external_id: Set("u1".into()),
                name: Set("laptop".into()),
                node_key: Set("nodekey:1".into()),
                status: Set("revoked".into()),
                revoked_reason: Set(Some("user removed".into())),
                revoked_at: Set(Some(now)),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&write.tx)
            .await
            .unwrap();
            write.commit().await.unwrap();

            let write = store.begin_write().await.unwrap();
            source_user::Entity::delete_by_id(alice.id)
                .exec(&write.tx)
                .await
                .unwrap();
            write.commit().await.unwrap();
            let laptop = device::Entity::find_by_id(laptop.id)
                .one(store.db())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(laptop.owner_user_id, None);
            assert_eq!(laptop.owner_external_id, "u1");
            assert_eq!(laptop.status, "revoked");
        }
    }
);

store_test!(
    tokens_are_stored_hashed_and_checked_for_revocation_and_expiry,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let (plaintext, record) = store
                .create_token(NewToken {
                    name: "ci".into(),
                    scopes: vec![Scope::Admin],
                    connection_id: None,
                    expires_at: None,
                })
                .await
                .unwrap();
            assert!(plaintext.starts_with(&record.prefix));
            let rows = api_token::Entity::find().all(store.db()).await.unwrap();
            assert_eq!(rows.len(), 1);
            let row_text = format!("{:?}", rows[0]);
            assert!(
                !row_text.contains(&plaintext[5..]),
                "the database holds only the hash"
            );

            let found = store
                .authenticate_token(&plaintext)
                .await
                .unwrap()
                .expect("live token");
            assert!(found.has_scope(Scope::Admin) && !found.has_scope(Scope::Scim));
            assert!(found.last_used_at.is_some());
            assert!(!accepts(&store, "idps_nottherighttoken").await);
            assert!(!accepts(&store, "").await);

            let duplicate = store
                .create_token(NewToken {
                    name: "ci".into(),
                    scopes: vec![Scope::Read],
                    connection_id: None,
                    expires_at: None,
                })
                .await;
            assert!(matches!(duplicate, Err(StoreError::Conflict { .. })));

            store.revoke_token("ci").await.unwrap();
            assert!(!accepts(&store, &plaintext).await);
            assert!(matches!(
                store.revoke_token("nope").await,
                Err(StoreError::NotFound { .. })
            ));

            let (expired, _) = store
                .create_token(NewToken {
                    name: "old".into(),
                    scopes: vec![Scope::Scim],
                    connection_id: Some("okta".into()),
                    expires_at: Some(Utc::now() - Duration::seconds(1)),
                })
                .await
                .unwrap();
            assert!(!accepts(&store, &expired).await);
            assert_eq!(store.list_tokens().await.unwrap().len(), 2);
        }
    }
);

store_test!(
    a_token_revoked_by_another_process_is_refused_within_a_second,
    |test_store: &TestStore| {
        let daemon = test_store.store.clone();
        let url = test_store.url.clone();
        let pg_schema = test_store.pg_schema().map(str::to_string);
        async move {
            with_connections(&daemon, &["okta"]).await;
            let token = |name: &str| NewToken {
                name: name.into(),
                scopes: vec![Scope::Scim],
                connection_id: Some("okta".into()),
                expires_at: None,
            };
            let (by_cli, _) = daemon.create_token(token("by-cli")).await.unwrap();
            let (by_daemon, _) = daemon.create_token(token("by-daemon")).await.unwrap();
            assert!(accepts(&daemon, &by_cli).await);
            assert!(accepts(&daemon, &by_daemon).await);

            // The CLI is another process: another store on the same database.
            let cli = Store::connect(&url, 1, pg_schema.as_deref()).await.unwrap();
            cli.revoke_token("by-cli").await.unwrap();
            daemon.revoke_token("by-daemon").await.unwrap();

            assert!(
                !accepts(&daemon, &by_daemon).await,
                "revoked through this store: refused at once"
            );
            tokio::time::sleep(idpsync_core::store::VERIFIED_FOR).await;
            assert!(
                !accepts(&daemon, &by_cli).await,
                "revoked elsewhere: refused once the verification is older than VERIFIED_FOR"
            );
        }
    }
);

store_test!(
    a_verified_token_still_expires_on_time,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            with_connections(&store, &["okta"]).await;
            let (plaintext, _) = store
                .create_token(NewToken {
                    name: "short".into(),
                    scopes: vec![Scope::Scim],
                    connection_id: Some("okta".into()),
                    expires_at: Some(Utc::now() + Duration::milliseconds(300)),
                })
                .await
                .unwrap();
            assert!(accepts(&store, &plaintext).await);
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            assert!(!accepts(&store, &plaintext).await);
        }
    }
);

/// Every point lookup (`.one()`) and list page binds its LIMIT as a
/// parameter. Without the query planner stability guarantee SQLite marks
/// such a statement stale at each new binding and compiles it again on
/// every run (measured: two of three SCIM statements re-prepared, a third
/// of the SCIM throughput lost). `.cargo/config.toml` builds the bundled
/// SQLite with it on by default.
#[tokio::test]
async fn the_bundled_sqlite_keeps_query_plans_across_bindings() {
    use sea_orm::{ConnectionTrait, Statement};
    let test_store = TestStore::sqlite().await;
    let rows = test_store
        .store
        .db()
        .query_all_raw(Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "PRAGMA compile_options",
        ))
        .await
        .unwrap();
    let options: Vec<String> = rows
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect();
    assert!(
        options.iter().any(|option| option == "ENABLE_QPSG"),
        "SQLite was built without SQLITE_ENABLE_QPSG (see .cargo/config.toml): {options:?}"
    );
}

store_test!(
    statements_sent_through_a_pipeline_run_in_order_and_a_failure_is_reported,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let write = store.begin_write().await.unwrap();
            let backend = write.tx.get_database_backend();
            let sql = |text: String| Statement::from_string(backend, text);
            let mut pipeline = Pipelined::new(&write.tx);
            for user in 1..=5 {
                let insert =
                    format!("INSERT INTO user_memberships (group_id, user_id) VALUES (1, {user})");
                pipeline.send(sql(insert)).await.unwrap();
            }
            // Each statement runs after the one before it: the delete finds
            // the row inserted just before.
            let insert = "INSERT INTO user_memberships (group_id, user_id) VALUES (1, 9)";
            pipeline.send(sql(insert.into())).await.unwrap();
            let delete = "DELETE FROM user_memberships WHERE user_id = 9";
            pipeline.send(sql(delete.into())).await.unwrap();
            // The connection is lent only once the delete has run.
            let db = pipeline.idle().await.unwrap();
            assert_eq!(user_ids(db).await, vec![1, 2, 3, 4, 5]);

            // A failing statement's error comes back from the send or from
            // the next call that waits for it.
            let duplicate = "INSERT INTO user_memberships (group_id, user_id) VALUES (1, 3)";
            let sent = pipeline.send(sql(duplicate.into())).await;
            let finished = pipeline.finish().await;
            assert!(sent.is_err() || finished.is_err(), "{sent:?} {finished:?}");
        }
    }
);

store_test!(
    rows_returned_through_a_pipeline_are_handed_out_once_each_after_they_ran,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let write = store.begin_write().await.unwrap();
            let backend = write.tx.get_database_backend();
            let sql = |text: String| Statement::from_string(backend, text);
            let returning = |user: i64| {
                sql(format!(
                    "INSERT INTO user_memberships (group_id, user_id) VALUES (1, {user}) \
                     RETURNING user_id"
                ))
            };
            let taken = |rows: Vec<sea_orm::QueryResult>| -> Vec<i64> {
                rows.iter()
                    .map(|row| row.try_get::<i64>("", "user_id").unwrap())
                    .collect()
            };
            let mut pipeline = Pipelined::new(&write.tx);
            let mut seen = Vec::new();
            for user in 1..=4 {
                pipeline.send_returning(returning(user)).await.unwrap();
                // The rows of the statements that have run: the one sent
                // before, and this one if it ran at once.
                seen.extend(taken(pipeline.take_returned()));
                assert!(seen.len() >= user as usize - 1, "{seen:?}");
            }
            // An executed statement between them completes the one before
            // it, whose rows are kept, not lost.
            let plain = "INSERT INTO user_memberships (group_id, user_id) VALUES (1, 7)";
            pipeline.send(sql(plain.into())).await.unwrap();
            pipeline.send_returning(returning(5)).await.unwrap();
            pipeline.finish().await.unwrap();
            seen.extend(taken(pipeline.take_returned()));
            assert_eq!(
                seen,
                vec![1, 2, 3, 4, 5],
                "each row once, in the order sent"
            );
            assert!(pipeline.take_returned().is_empty(), "handed out once");

            // A failing statement's error comes back, from the send or from
            // the next call that waits for it, and no rows with it.
            let sent = pipeline.send_returning(returning(3)).await;
            let finished = pipeline.finish().await;
            assert!(sent.is_err() || finished.is_err(), "{sent:?} {finished:?}");
            assert!(pipeline.take_returned().is_empty());
        }
    }
);

async fn user_ids(db: &impl ConnectionTrait) -> Vec<i64> {
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT user_id FROM user_memberships ORDER BY user_id",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<i64>("", "user_id").unwrap())
    .collect()
}

/// `PRAGMA synchronous` of a fresh connection of `store`: 2 is FULL, 1 NORMAL.
async fn sqlite_synchronous(store: &Store) -> i64 {
    store
        .db()
        .query_one_raw(Statement::from_string(
            store.backend(),
            "PRAGMA synchronous",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<i64>(0)
        .unwrap()
}

#[tokio::test]
async fn sqlite_commits_reach_the_disk_before_they_are_acknowledged_unless_relaxed() {
    use idpsync_core::config::Durability;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("d.db").display());
    let durable = Store::open(&url, 2).await.unwrap();
    assert_eq!(sqlite_synchronous(&durable).await, 2, "FULL by default");
    let configured = Store::open_with(&url, 2, Durability::Full).await.unwrap();
    assert_eq!(sqlite_synchronous(&configured).await, 2);
    let relaxed = Store::open_with(&url, 2, Durability::Relaxed)
        .await
        .unwrap();
    assert_eq!(sqlite_synchronous(&relaxed).await, 1, "NORMAL when relaxed");
}

store_test!(
    a_schema_migrated_by_a_newer_idpsync_is_refused_and_left_untouched,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        assert!(store.pending_migrations().await.unwrap().is_empty());
        // A newer idpsync added a step this binary does not have.
        let newer = test_store.outside_connection().await;
        newer
            .execute_raw(Statement::from_string(
                store.backend(),
                "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m20991231_000099_from_the_future', 0)",
            ))
            .await
            .unwrap();
        newer.close().await.unwrap();
        let count = async || {
            store
                .db()
                .query_one_raw(Statement::from_string(
                    store.backend(),
                    "SELECT COUNT(*) AS n FROM seaql_migrations",
                ))
                .await
                .unwrap()
                .unwrap()
                .try_get::<i64>("", "n")
                .unwrap()
        };
        let before = count().await;
        for refused in [
            store.migrate().await.map(|_| ()),
            store.pending_migrations().await.map(|_| ()),
        ] {
            let message = refused.unwrap_err().to_string();
            assert!(
                message.contains("newer than this idpsync")
                    && message.contains("m20991231_000099_from_the_future")
                    && message.contains("left untouched"),
                "{message}"
            );
        }
        assert_eq!(count().await, before);
    }
);

/// sqlx 0.9.0 opens its sockets with Nagle's algorithm on (see
/// vendor/README.md): the later pieces of a statement sent in several
/// writes (over TLS, one write per 16 KiB record) then wait for the
/// server's delayed acknowledgement, ~40 ms a time. Every connection the
/// store opens to PostgreSQL has TCP_NODELAY set.
#[tokio::test]
async fn every_postgresql_connection_is_opened_with_tcp_nodelay() {
    let Some(test_store) = idpsync_core::testing::postgres_or_skip(
        "every_postgresql_connection_is_opened_with_tcp_nodelay",
    )
    .await
    else {
        return;
    };
    test_store
        .store
        .db()
        .execute_unprepared("SELECT 1")
        .await
        .unwrap();
    let port = postgres_port(&test_store.url);
    let sockets = tcp_sockets_to(port);
    assert!(
        !sockets.is_empty(),
        "no socket of this process reaches port {port}"
    );
    for (fd, nodelay) in sockets {
        assert!(
            nodelay,
            "the connection on fd {fd} waits on Nagle's algorithm"
        );
    }
    test_store.cleanup().await;
}

/// The port of a `postgres://` URL (5432 when it names none).
fn postgres_port(url: &str) -> u16 {
    let authority = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host.rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(5432)
}

/// This process's TCP sockets connected to `port`, each with whether
/// TCP_NODELAY is set.
#[allow(unsafe_code)]
fn tcp_sockets_to(port: u16) -> Vec<(i32, bool)> {
    use std::mem::ManuallyDrop;
    use std::net::TcpStream;
    use std::os::fd::FromRawFd;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the stream only borrows the descriptor to ask for its
        // peer and flag, and `ManuallyDrop` never closes it. Were it closed
        // meanwhile by another thread, both questions fail with EBADF.
        let stream = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
        if stream.peer_addr().is_ok_and(|peer| peer.port() == port) {
            found.push((fd, stream.nodelay().unwrap_or(false)));
        }
    }
    found
}

store_test!(
    events_appended_in_bulk_keep_their_order_payloads_and_missing_connections,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            use idpsync_core::events::{self, EVENTS_PER_INSERT, EventKind, NewEvent};
            // Over two statements' worth, every third of no connection, a
            // payload with quotes and a non-ASCII name.
            let n = EVENTS_PER_INSERT + 7;
            let new: Vec<NewEvent> = (0..n)
                .map(|i| {
                    NewEvent::new(
                        EventKind::UserCreated,
                        (i % 3 != 0).then_some("okta-main"),
                        "user",
                        format!("u{i:05}"),
                        serde_json::json!({ "n": i, "user_name": "zoë \"q\"" }),
                    )
                })
                .collect();
            let now = Utc::now();
            let write = store.begin_write().await.unwrap();
            events::append(&write.tx, &new, now).await.unwrap();
            write.commit().await.unwrap();

            let read = events::read_after(store.db(), 0, n as u64 + 1)
                .await
                .unwrap();
            assert_eq!(read.len(), n);
            // Ids in the order the events were given: the feed's order.
            assert!(read.windows(2).all(|pair| pair[0].id < pair[1].id));
            for (i, (event, given)) in read.iter().zip(&new).enumerate() {
                assert_eq!(event.subject_id, given.subject_id, "event {i}");
                assert_eq!(event.connection_id, given.connection_id, "event {i}");
                assert_eq!(event.kind, "user.created");
                assert_eq!(event.subject_type, "user");
                assert_eq!(event.payload, given.payload, "event {i}");
                assert_eq!(event.created_at.timestamp(), now.timestamp());
            }
        }
    }
);

store_test!(
    a_bulk_write_commits_for_every_reader_and_a_dropped_one_leaves_nothing,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let insert = |user: i64| {
                format!("INSERT INTO user_memberships (group_id, user_id) VALUES (1, {user})")
            };
            let bulk = store.begin_bulk_write().await.unwrap();
            bulk.tx.execute_unprepared(&insert(1)).await.unwrap();
            assert!(
                user_ids(store.db()).await.is_empty(),
                "not before the commit"
            );
            bulk.commit().await.unwrap();
            assert_eq!(user_ids(store.db()).await, [1], "read through the pool");

            let dropped = store.begin_bulk_write().await.unwrap();
            dropped.tx.execute_unprepared(&insert(2)).await.unwrap();
            drop(dropped);
            // The single-writer lock is free again, and the dropped
            // write's row was never written.
            let write =
                tokio::time::timeout(std::time::Duration::from_secs(5), store.begin_write())
                    .await
                    .expect("the writer lock is given back")
                    .unwrap();
            write.tx.execute_unprepared(&insert(3)).await.unwrap();
            write.commit().await.unwrap();
            assert_eq!(user_ids(store.db()).await, [1, 3]);
        }
    }
);

/// On a SQLite file a bulk write runs on a connection of its own, closed
/// with it, so what its statements leave in a connection (prepared bulk
/// inserts, a full page cache) does not stay in the pool: it begins and
/// commits while every pooled connection is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_write_on_a_sqlite_file_takes_no_pooled_connection() {
    let test_store = TestStore::sqlite().await;
    let store = &test_store.store;
    let taken = test_store.take_every_pooled_connection().await;
    let soon = std::time::Duration::from_secs(5);

    let bulk = tokio::time::timeout(soon, store.begin_bulk_write())
        .await
        .expect("a bulk write needs no pooled connection")
        .unwrap();
    bulk.tx
        .execute_unprepared("INSERT INTO user_memberships (group_id, user_id) VALUES (1, 1)")
        .await
        .unwrap();
    tokio::time::timeout(soon, bulk.commit())
        .await
        .expect("nor does its commit")
        .unwrap();

    // The measure can tell: another write waits for the writer's connection.
    let pooled = tokio::time::timeout(std::time::Duration::from_millis(200), store.begin_write());
    assert!(
        pooled.await.is_err(),
        "a pooled write waits while every connection is taken"
    );
    drop(taken);
    assert_eq!(user_ids(store.db()).await, [1]);
    test_store.cleanup().await;
}

// Every write goes through `Store::begin_write`, and the database holds
// that rule: the pool behind `Store::db` refuses a write (SQLite's
// `query_only`, PostgreSQL's read-only default), so one that bypassed the
// writer fails at once instead of racing it.
store_test!(
    the_read_pool_refuses_writes,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let insert = "INSERT INTO user_memberships (group_id, user_id) VALUES (1, 1)";
        let refused = store
            .db()
            .execute_unprepared(insert)
            .await
            .expect_err("a write on the read pool");
        let message = refused.to_string();
        assert!(
            message.contains("readonly database") || message.contains("read-only transaction"),
            "{message}"
        );
        let write = store.begin_write().await.unwrap();
        write
            .tx
            .execute_unprepared(insert)
            .await
            .expect("the same write through begin_write");
        write.commit().await.unwrap();
        assert_eq!(user_ids(store.db()).await, [1]);
    }
);

/// On SQLite another connection can hold the database's write lock while
/// the in-process writer lock is free: a dropped write's, whose `ROLLBACK`
/// is only queued to its connection's thread, or another program's. A
/// write that has read must then wait for the lock, not fail with
/// SQLITE_BUSY as a deferred transaction does when it turns from reading
/// to writing (a SCIM PATCH after a refused one failed so, with a 500,
/// under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_write_waits_for_the_write_lock_another_connection_holds() {
    use sea_orm::sqlx;
    let test_store = TestStore::sqlite().await;
    let store = &test_store.store;
    let outside = test_store.outside_connection().await;
    let mut holder = outside
        .get_sqlite_connection_pool()
        .acquire()
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let released = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
    });

    let write = store.begin_write().await.unwrap();
    assert!(user_ids(&write.tx).await.is_empty(), "it reads first");
    write
        .tx
        .execute_unprepared("INSERT INTO user_memberships (group_id, user_id) VALUES (1, 1)")
        .await
        .expect("the write waits for the lock");
    write.commit().await.unwrap();
    released.await.unwrap();
    assert_eq!(user_ids(store.db()).await, [1]);
    test_store.cleanup().await;
}
