//! The sync runner with a scripted driver, on SQLite and PostgreSQL: a
//! failed or short pull applies nothing and is recorded; failures back off
//! and quarantine; a delta applies only changes; one run per connection at a
//! time, across "daemons" too (separate runners and pools on one database).

use idpsync_core::config::{self, Config};
use idpsync_core::events::{self, EventBus};
use idpsync_core::reconcile::{ChangeCounts, Outcome, Reconciler, Trigger};
use idpsync_core::store::Store;
use idpsync_core::store::entity::status::{Health, RunStatus};
use idpsync_core::store::entity::{connection, source_user, sync_run};
use idpsync_core::store_test;
use idpsync_core::sync::{DriverRegistry, QUARANTINE_AFTER, SyncError, SyncRunner, SyncStatus};
use idpsync_core::testing::{Backend, TestStore};
use idpsync_driver::http::HttpKit;
use idpsync_driver::{
    Capabilities, DeclaredTotals, DeltaCursor, Driver, DriverContext, DriverError, DriverFactory,
    MembershipEdge, PullMode, PullOutcome, RecordSink, SourceGroup, SourceUser, UserUpdate,
};
use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait, QueryOrder};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What the scripted IdP does on the next pull.
#[derive(Clone, Default)]
struct Script {
    users: Vec<SourceUser>,
    /// Fail after sending the first page.
    fail_mid_pull: bool,
    /// Declare this many users instead of the real count.
    declared_users: Option<u64>,
    /// Hold the pull until notified.
    gate: Option<Arc<Notify>>,
    /// In a delta, list every user id present at the source.
    list_present: bool,
    /// In a delta, send these users instead of the changed ones.
    delta_users: Option<Vec<SourceUser>>,
    /// Panic in the middle of the pull (a bug).
    panic_mid_pull: bool,
    /// In a full pull, send these users in part after the whole ones.
    full_updates: Vec<UserUpdate>,
    /// Seen modes, for assertions.
    modes: Arc<Mutex<Vec<PullMode>>>,
}

#[derive(Clone)]
struct ScriptedFactory(Arc<Mutex<Script>>);

struct ScriptedDriver(Arc<Mutex<Script>>);

impl DriverFactory for ScriptedFactory {
    fn kind(&self) -> &'static str {
        "scripted"
    }
    fn build(
        &self,
        _settings: &serde_json::Value,
        _context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(ScriptedDriver(self.0.clone())))
    }
    fn validate(&self, _settings: &serde_json::Value) -> Result<(), DriverError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl Driver for ScriptedDriver {
    async fn check(&self) -> Result<Capabilities, DriverError> {
        Ok(Capabilities {
            delta: true,
            nested_groups: false,
            page_size: 2,
            summary: "scripted".into(),
        })
    }

    async fn pull(
        &self,
        mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let script = self.0.lock().unwrap().clone();
        script.modes.lock().unwrap().push(mode.clone());
        if let Some(gate) = &script.gate {
            gate.notified().await;
        }
        if script.panic_mid_pull {
            panic!("injected: index out of bounds");
        }
        if let PullMode::Delta(cursor) = mode {
            // The delta: only users whose name changed since the cursor.
            let changed: Vec<SourceUser> = script.delta_users.clone().unwrap_or_else(|| {
                script
                    .users
                    .iter()
                    .filter(|u| u.display_name.as_deref() == Some("changed"))
                    .cloned()
                    .collect()
            });
            sink.users(changed).await?;
            if script.list_present {
                for page in script.users.chunks(2) {
                    sink.present_users(page.iter().map(|u| u.external_id.clone()).collect())
                        .await?;
                }
            }
            return Ok(PullOutcome {
                next_cursor: Some(DeltaCursor(format!("{}+", cursor.0))),
                declared: DeclaredTotals::default(),
                complete_snapshot: false,
            });
        }
        let mut pages = script.users.chunks(2);
        if let Some(first) = pages.next() {
            sink.users(first.to_vec()).await?;
        }
        if script.fail_mid_pull {
            return Err(DriverError::Transient(
                "injected: connection reset on page 2".into(),
            ));
        }
        for page in pages {
            sink.users(page.to_vec()).await?;
        }
        if !script.full_updates.is_empty() {
            sink.user_updates(script.full_updates.clone()).await?;
        }
        sink.groups(vec![SourceGroup::new("g", "Everyone")]).await?;
        sink.memberships(
            script
                .users
                .iter()
                .map(|u| MembershipEdge::user("g", u.external_id.clone()))
                .collect(),
        )
        .await?;
        Ok(PullOutcome {
            next_cursor: Some(DeltaCursor("c1".into())),
            declared: DeclaredTotals {
                users: Some(script.declared_users.unwrap_or(script.users.len() as u64)),
                groups: None,
            },
            complete_snapshot: true,
        })
    }
}

const CONFIG: &str = r#"
[[connections]]
id = "hr"
kind = "scripted"
[connections.safety]
max_deletions = "100%"
"#;

fn users(n: usize) -> Vec<SourceUser> {
    (0..n)
        .map(|i| SourceUser::new(format!("u{i}"), format!("user{i}")))
        .collect()
}

async fn runner(store: &Store, script: Arc<Mutex<Script>>) -> SyncRunner {
    runner_with(store, script, CONFIG).await
}

async fn runner_with(store: &Store, script: Arc<Mutex<Script>>, toml: &str) -> SyncRunner {
    let mut registry = DriverRegistry::default();
    registry.register(ScriptedFactory(script));
    let config: Config = config::load_str(toml, "test.toml", &registry, &|_| None).unwrap();
    store
        .register_config(&config.connections, &config.acl_groups)
        .await
        .unwrap();
    let reconciler = Reconciler::new(store.clone(), &config, EventBus::default());
    SyncRunner::new(
        reconciler,
        Arc::new(registry),
        Arc::new(config),
        HttpKit::new(Default::default()).unwrap(),
    )
}

/// A runner of a scripted IdP that has `users`, and the script to change.
async fn scripted(store: &Store, users: Vec<SourceUser>) -> (Arc<Mutex<Script>>, SyncRunner) {
    let script = Arc::new(Mutex::new(Script {
        users,
        ..Default::default()
    }));
    let runner = runner(store, script.clone()).await;
    (script, runner)
}

/// The external ids of the stored users, sorted.
async fn stored_ids(store: &Store) -> Vec<String> {
    source_user::Entity::find()
        .order_by_asc(source_user::Column::ExternalId)
        .all(store.db())
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.external_id)
        .collect()
}

async fn n_users(store: &Store) -> u64 {
    source_user::Entity::find().count(store.db()).await.unwrap()
}

async fn sync(runner: &SyncRunner, full: bool) -> idpsync_core::sync::SyncReport {
    runner
        .run("hr", Trigger::Manual, false, full, std::future::pending())
        .await
        .unwrap()
}

store_test!(
    a_failed_or_short_pull_applies_nothing_and_the_next_run_converges,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let (script, runner) = scripted(store, users(5)).await;
        assert_eq!(sync(&runner, false).await.status, SyncStatus::Applied);
        assert_eq!(n_users(store).await, 5);

        script.lock().unwrap().users = users(7);
        script.lock().unwrap().fail_mid_pull = true;
        let failed = sync(&runner, true).await;
        assert_eq!(failed.status, SyncStatus::Failed);
        assert!(
            failed
                .error
                .as_deref()
                .unwrap()
                .contains("connection reset on page 2")
        );
        assert_eq!(
            n_users(store).await,
            5,
            "nothing of the failed pull is applied"
        );

        script.lock().unwrap().fail_mid_pull = false;
        script.lock().unwrap().declared_users = Some(9);
        let short = sync(&runner, true).await;
        assert_eq!(short.status, SyncStatus::Failed);
        assert!(
            short
                .error
                .as_deref()
                .unwrap()
                .contains("declared 9 users, 7 were received"),
            "{:?}",
            short.error
        );
        assert_eq!(n_users(store).await, 5);

        script.lock().unwrap().declared_users = None;
        assert_eq!(sync(&runner, true).await.status, SyncStatus::Applied);
        assert_eq!(n_users(store).await, 7);
        let runs: Vec<RunStatus> = sync_run::Entity::find()
            .order_by_asc(sync_run::Column::Id)
            .all(store.db())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(
            runs,
            [
                RunStatus::Succeeded,
                RunStatus::Failed,
                RunStatus::Failed,
                RunStatus::Succeeded
            ]
        );
        let row = connection::Entity::find_by_id("hr")
            .one(store.db())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((row.health, row.consecutive_failures), (Health::Healthy, 0));
    }
);

/// Every stored user as (external id, userName, display name, active).
async fn stored_users(store: &Store) -> Vec<(String, String, Option<String>, bool)> {
    source_user::Entity::find()
        .order_by_asc(source_user::Column::ExternalId)
        .all(store.db())
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.external_id, u.user_name, u.display_name, u.active))
        .collect()
}

/// The changes of a run that must have been applied.
fn applied(report: idpsync_core::sync::SyncReport) -> ChangeCounts {
    match report.outcome {
        Some(Outcome::Applied(run)) => run.changes,
        _ => panic!("not applied: {:?} {:?}", report.status, report.error),
    }
}

/// A runner whose syncs stage every user on disk.
async fn staging_on_disk(
    store: &Store,
    users: Vec<SourceUser>,
) -> (Arc<Mutex<Script>>, SyncRunner) {
    let script = Arc::new(Mutex::new(Script {
        users,
        ..Default::default()
    }));
    let toml = format!("[sync]\nstaging_memory_mib = 0\n{CONFIG}");
    let runner = runner_with(store, script.clone(), &toml).await;
    (script, runner)
}

store_test!(
    a_first_sync_staged_on_disk_stores_the_last_copy_of_each_user_once,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let mut sent = users(5);
        sent[1].display_name = Some("first copy".into());
        let mut again = sent[1].clone();
        again.display_name = Some("last copy".into());
        again.active = false;
        sent.push(again);
        let (script, runner) = staging_on_disk(store, sent).await;
        script.lock().unwrap().declared_users = Some(5);
        let first = sync(&runner, true).await;
        assert_eq!(first.received.users, 5);
        assert_eq!(applied(first).users_created, 5);
        let stored = stored_users(store).await;
        assert_eq!(stored.len(), 5);
        assert_eq!(
            stored[1],
            ("u1".into(), "user1".into(), Some("last copy".into()), false)
        );
        assert_eq!(stored[4], ("u4".into(), "user4".into(), None, true));
        // Stored as records are: the same pull again changes nothing.
        assert_eq!(sync(&runner, true).await.status, SyncStatus::Unchanged);
    }
);

store_test!(
    a_staged_re_run_writes_only_what_changed_and_removes_what_is_gone,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let (script, runner) = staging_on_disk(store, users(6)).await;
        assert_eq!(sync(&runner, true).await.status, SyncStatus::Applied);
        {
            let mut script = script.lock().unwrap();
            script.users.remove(5);
            script.users[2].display_name = Some("renamed".into());
            // Repeated, the last copy as stored: not a change.
            let mut first_copy = script.users[0].clone();
            first_copy.display_name = Some("an earlier copy".into());
            script.users.insert(0, first_copy);
            script.declared_users = Some(5);
        }
        let changes = applied(sync(&runner, true).await);
        assert_eq!(
            (
                changes.users_created,
                changes.users_updated,
                changes.users_deleted
            ),
            (0, 1, 1)
        );
        let stored = stored_users(store).await;
        assert_eq!(stored.len(), 5);
        assert_eq!(stored[0].2, None, "u0 as its last copy has it");
        assert_eq!(stored[2].2.as_deref(), Some("renamed"));
        assert_eq!(sync(&runner, true).await.status, SyncStatus::Unchanged);
    }
);

store_test!(
    a_staged_first_sync_that_fails_or_clashes_applies_nothing_and_is_recorded,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let (script, runner) = staging_on_disk(store, users(6)).await;
        script.lock().unwrap().fail_mid_pull = true;
        let failed = sync(&runner, true).await;
        assert_eq!(failed.status, SyncStatus::Failed);
        assert!(failed.error.unwrap().contains("connection reset on page 2"));

        script.lock().unwrap().fail_mid_pull = false;
        script
            .lock()
            .unwrap()
            .users
            .push(SourceUser::new("u9", "USER2"));
        let clash = sync(&runner, true).await;
        assert_eq!(clash.status, SyncStatus::Failed);
        let error = clash.error.unwrap();
        assert!(
            error.starts_with("the IdP sent inconsistent records: userName \"USER2\" is used by both \"u2\" and \"u9\""),
            "{error}"
        );
        assert_eq!(n_users(store).await, 0, "nothing of either run is applied");
        let runs = sync_run::Entity::find().all(store.db()).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert!(runs.iter().all(|run| run.status == RunStatus::Failed));
    }
);

store_test!(
    a_first_sync_that_sends_a_user_in_part_is_applied_as_collected,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let (script, runner) = staging_on_disk(store, users(4)).await;
        let mut renamed = UserUpdate::new("u3");
        renamed.user_name = Some("user3-renamed".into());
        script.lock().unwrap().full_updates = vec![renamed];
        let first = sync(&runner, true).await;
        assert_eq!(first.status, SyncStatus::Applied, "{:?}", first.error);
        let stored = stored_users(store).await;
        assert_eq!(stored.len(), 4);
        assert_eq!(stored[3].1, "user3-renamed");
    }
);

/// The connection's health and failure count.
async fn health(store: &Store) -> (Health, i32) {
    let row = connection::Entity::find_by_id("hr")
        .one(store.db())
        .await
        .unwrap()
        .unwrap();
    (row.health, row.consecutive_failures)
}

store_test!(
    an_error_of_any_kind_ends_as_a_recorded_failed_run_with_its_event,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let (script, runner) = scripted(store, users(3)).await;
        assert_eq!(sync(&runner, false).await.status, SyncStatus::Applied);
        let cursor = events::read_after(store.db(), 0, 100_000)
            .await
            .unwrap()
            .last()
            .unwrap()
            .id;

        // A database error in the apply: a table the apply writes is gone.
        script.lock().unwrap().delta_users = Some(vec![SourceUser::new("u9", "user9")]);
        let rename = async |from: &str, to: &str| {
            let write = store.begin_write().await.unwrap();
            write
                .tx
                .execute_unprepared(&format!("ALTER TABLE {from} RENAME TO {to}"))
                .await
                .unwrap();
            write.commit().await.unwrap();
        };
        rename("source_users", "users_gone").await;
        let failed = sync(&runner, false).await;
        rename("users_gone", "source_users").await;
        assert_eq!(failed.status, SyncStatus::Failed, "{failed:?}");
        let message = failed.error.clone().unwrap();
        assert!(message.contains("source_users"), "{message}");
        assert_eq!(health(store).await, (Health::Backoff, 1));

        // A bug: the driver panics.
        script.lock().unwrap().panic_mid_pull = true;
        let panicked = sync(&runner, false).await;
        assert_eq!(panicked.status, SyncStatus::Failed);
        assert_eq!(
            panicked.error.as_deref(),
            Some("the run stopped on a bug: injected: index out of bounds")
        );
        assert_eq!(health(store).await, (Health::Backoff, 2));

        let runs: Vec<(RunStatus, Option<String>)> = sync_run::Entity::find()
            .order_by_asc(sync_run::Column::Id)
            .all(store.db())
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.status, r.error))
            .collect();
        assert_eq!(
            runs[1..],
            [
                (RunStatus::Failed, Some(message.clone())),
                (RunStatus::Failed, panicked.error.clone())
            ]
        );
        let failures: Vec<serde_json::Value> = events::read_after(store.db(), cursor, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|event| {
                assert_eq!(event.kind, "sync.failed");
                assert_eq!(event.connection_id.as_deref(), Some("hr"));
                event.payload
            })
            .collect();
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0]["error"], message.as_str());
        assert_eq!(failures[0]["run_id"], failed.run_id.unwrap());
        assert_eq!(failures[1]["mode"], "delta");
        assert_eq!(n_users(store).await, 3, "nothing of either run applied");

        script.lock().unwrap().panic_mid_pull = false;
        script.lock().unwrap().delta_users = None;
        assert_eq!(sync(&runner, false).await.status, SyncStatus::Unchanged);
        assert_eq!(health(store).await, (Health::Healthy, 0));
    }
);

store_test!(
    a_delta_that_gives_a_name_still_held_by_a_user_it_does_not_mention_reads_everything,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let (script, runner) = scripted(store, users(3)).await;
        assert_eq!(sync(&runner, false).await.status, SyncStatus::Applied);
        // user0 was deleted in a way the delta cannot see, and a new
        // account took the name: the delta lists only the new account.
        let mut now = users(3);
        now[0] = SourceUser::new("u9", "user0");
        script.lock().unwrap().users = now;
        script.lock().unwrap().delta_users = Some(vec![SourceUser::new("u9", "user0")]);
        let report = sync(&runner, false).await;
        assert_eq!(
            (report.status, report.mode),
            (SyncStatus::Applied, "full"),
            "{report:?}"
        );
        assert_eq!(stored_ids(store).await, ["u1", "u2", "u9"]);
    }
);

store_test!(
    a_delta_that_lists_the_ids_present_at_the_source_removes_the_ones_it_no_longer_lists,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let (script, runner) = scripted(store, users(5)).await;
        assert_eq!(sync(&runner, false).await.status, SyncStatus::Applied);
        assert_eq!(n_users(store).await, 5);

        // Two people are gone at the source. A delta that does not list who
        // is present cannot know.
        script.lock().unwrap().users = users(3);
        assert_eq!(sync(&runner, false).await.status, SyncStatus::Unchanged);
        assert_eq!(n_users(store).await, 5);

        // One that lists them (in pages) removes exactly the two.
        script.lock().unwrap().list_present = true;
        let report = sync(&runner, false).await;
        assert_eq!(report.status, SyncStatus::Applied);
        assert_eq!(stored_ids(store).await, ["u0", "u1", "u2"]);
    }
);

store_test!(
    repeated_failures_back_off_then_quarantine,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let script = Arc::new(Mutex::new(Script {
            users: users(3),
            fail_mid_pull: true,
            ..Default::default()
        }));
        let runner = runner(store, script.clone()).await;
        for attempt in 1..=QUARANTINE_AFTER {
            assert_eq!(sync(&runner, false).await.status, SyncStatus::Failed);
            let row = connection::Entity::find_by_id("hr")
                .one(store.db())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(row.consecutive_failures, attempt);
            assert!(row.next_run_at.is_some());
            let expected = if attempt < QUARANTINE_AFTER {
                Health::Backoff
            } else {
                Health::Quarantined
            };
            assert_eq!(row.health, expected);
        }
        script.lock().unwrap().fail_mid_pull = false;
        assert_eq!(
            sync(&runner, false).await.status,
            SyncStatus::Applied,
            "a manual run clears the quarantine"
        );
        let row = connection::Entity::find_by_id("hr")
            .one(store.db())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((row.health.as_str(), row.next_run_at), ("healthy", None));
    }
);

store_test!(
    an_incremental_connection_reads_everything_once_its_last_full_pull_is_a_day_old,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let (script, runner) = scripted(store, users(4)).await;
        let modes = script.lock().unwrap().modes.clone();
        let is_full = |mode: &PullMode| matches!(mode, PullMode::Full);
        sync(&runner, false).await;
        sync(&runner, false).await;
        // Someone left at the source, in a way the deltas never report.
        script.lock().unwrap().users = users(3);
        assert_eq!(sync(&runner, false).await.status, SyncStatus::Unchanged);
        assert_eq!(
            modes
                .lock()
                .unwrap()
                .iter()
                .map(is_full)
                .collect::<Vec<_>>(),
            [true, false, false]
        );

        // A day later.
        let write = store.begin_write().await.unwrap();
        sync_run::Entity::update_many()
            .col_expr(
                sync_run::Column::StartedAt,
                sea_orm::sea_query::Expr::value(chrono::Utc::now() - chrono::Duration::hours(25)),
            )
            .exec(&write.tx)
            .await
            .unwrap();
        write.commit().await.unwrap();
        let report = sync(&runner, false).await;
        assert_eq!((report.status, report.mode), (SyncStatus::Applied, "full"));
        assert_eq!(
            n_users(store).await,
            3,
            "the periodic full pull removes them"
        );
        assert!(is_full(modes.lock().unwrap().last().unwrap()));
        sync(&runner, false).await;
        assert!(
            !is_full(modes.lock().unwrap().last().unwrap()),
            "then deltas again"
        );
    }
);

store_test!(
    a_delta_pull_uses_the_stored_cursor_and_applies_only_changes,
    async |test_store: &TestStore| {
        let store = &test_store.store;
        let (script, runner) = scripted(store, users(4)).await;
        sync(&runner, false).await;
        script.lock().unwrap().users[1].display_name = Some("changed".into());
        let report = sync(&runner, false).await;
        assert_eq!(
            (report.mode, report.status, report.received.users),
            ("delta", SyncStatus::Applied, 1)
        );
        let modes = script.lock().unwrap().modes.lock().unwrap().clone();
        assert_eq!(
            modes,
            [PullMode::Full, PullMode::Delta(DeltaCursor("c1".into()))]
        );
        let row = connection::Entity::find_by_id("hr")
            .one(store.db())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.delta_cursor.as_deref(), Some("c1+"));
        assert_eq!(
            n_users(store).await,
            4,
            "a delta removes nobody it does not name"
        );
    }
);

store_test!(
    a_connection_never_syncs_twice_at_once,
    async |test_store: &TestStore| {
        let gate = Arc::new(Notify::new());
        let script = Arc::new(Mutex::new(Script {
            users: users(2),
            gate: Some(gate.clone()),
            ..Default::default()
        }));
        let first = runner(&test_store.store, script.clone()).await;
        // A second "daemon": its own runner and, on PostgreSQL, its own pool.
        let second_store = match test_store.backend {
            Backend::Postgres => Store::connect(&test_store.url, 2, test_store.pg_schema())
                .await
                .unwrap(),
            Backend::Sqlite => test_store.store.clone(),
        };
        let second = runner(&second_store, script.clone()).await;

        let running = {
            let first = first.clone();
            tokio::spawn(async move {
                first
                    .run(
                        "hr",
                        Trigger::Schedule,
                        false,
                        false,
                        std::future::pending(),
                    )
                    .await
            })
        };
        // Wait until the first run is inside its pull.
        while script.lock().unwrap().modes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let same_process = first
            .run("hr", Trigger::Manual, false, false, std::future::pending())
            .await;
        assert!(
            matches!(same_process, Err(SyncError::AlreadyRunning(_))),
            "{same_process:?}"
        );
        if test_store.backend == Backend::Postgres {
            let other_daemon = second
                .run("hr", Trigger::Manual, false, false, std::future::pending())
                .await;
            assert!(
                matches!(other_daemon, Err(SyncError::AlreadyRunning(_))),
                "{other_daemon:?}"
            );
        }
        gate.notify_one();
        assert_eq!(running.await.unwrap().unwrap().status, SyncStatus::Applied);
        script.lock().unwrap().gate = None;
        assert_eq!(
            second
                .run("hr", Trigger::Manual, false, false, std::future::pending())
                .await
                .unwrap()
                .status,
            SyncStatus::Unchanged
        );
    }
);

store_test!(
    a_run_stopped_by_shutdown_before_applying_is_abandoned,
    async |test_store: &TestStore| {
        let gate = Arc::new(Notify::new());
        let script = Arc::new(Mutex::new(Script {
            users: users(2),
            gate: Some(gate),
            ..Default::default()
        }));
        let runner = runner(&test_store.store, script).await;
        let report = runner
            .run("hr", Trigger::Schedule, false, false, async {})
            .await
            .unwrap();
        assert_eq!(report.status, SyncStatus::Abandoned);
        assert_eq!(n_users(&test_store.store).await, 0);
        assert_eq!(
            sync_run::Entity::find()
                .count(test_store.store.db())
                .await
                .unwrap(),
            0
        );
    }
);
