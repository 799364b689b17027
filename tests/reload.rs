//! Reloading the config of a running daemon (`POST /api/v1/reload`; SIGHUP
//! does the same, see tests/serve.rs). The promises: a valid file's
//! connection, schedule, ACL and webhook changes apply without a restart; a
//! run under way when the reload comes finishes, and the new configuration
//! never runs the same connection beside it; a file that does not validate,
//! or a change only a restart can apply, is refused with the reason and
//! the running configuration goes on as before.

mod common;

use idpsync_core::auth::Scope;
use idpsync_core::store::entity::sync_run;
use idpsync_core::sync::DriverRegistry;
use idpsync_core::testing::{TestApp, TestStore};
use idpsync_driver::compliance::{CompliantFake, Running, tenant};
use idpsync_driver::fake::Faults;
use idpsync_driver_okta::fake::FakeOkta;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// The Okta fake's connection `idp`, with `schedule` if given, followed by
/// `more` (other connections, a `[server]` table...).
fn config(okta: &Running<FakeOkta>, schedule: Option<&str>, more: &str) -> String {
    let settings = okta.fake.settings(&okta.server.base_url, 5);
    let table = toml::to_string(&settings).expect("settings are a TOML table");
    let schedule = schedule
        .map(|cron| format!("schedule = \"{cron}\"\n"))
        .unwrap_or_default();
    format!(
        "{more}\n[[connections]]\nid = \"idp\"\nkind = \"okta\"\n{schedule}[connections.okta]\n{table}\n"
    )
}

struct Daemon {
    app: TestApp,
    api: common::Api,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start(test_store: &TestStore, text: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("idpsync.toml");
        std::fs::write(&file, text).unwrap();
        let mut registry = DriverRegistry::default();
        registry.register(FakeOkta::kind());
        let app = TestApp::builder(&test_store.store)
            .config_file(&file)
            .drivers(registry)
            .daemon()
            .start()
            .await;
        let api = common::Api {
            client: app.client.clone(),
            base: app.url(""),
            token: app.token("admin", Scope::Admin, None).await,
        };
        Daemon {
            app,
            api,
            file,
            _dir: dir,
        }
    }

    /// Writes `text` to the daemon's file and asks it to reload.
    async fn reload(&self, text: &str) -> (u16, Value) {
        std::fs::write(&self.file, text).unwrap();
        self.api.post("/api/v1/reload", Value::Null).await
    }

    async fn runs(&self, trigger: &str) -> u64 {
        sync_run::Entity::find()
            .filter(sync_run::Column::ConnectionId.eq("idp"))
            .filter(sync_run::Column::Trigger.eq(trigger))
            .count(self.app.store().db())
            .await
            .unwrap()
    }
}

/// Waits until `okta` has had no request for half a second: no pull is
/// under way.
async fn quiet(okta: &Running<FakeOkta>) {
    loop {
        let seen = okta.fake.faults.requests();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if okta.fake.faults.requests() == seen {
            return;
        }
    }
}

fn configured(connections: &Value, id: &str) -> bool {
    connections
        .as_array()
        .or_else(|| connections["items"].as_array())
        .expect("a list of connections")
        .iter()
        .any(|c| c["id"] == id && c["configured"] == true)
}

const EVERY_SECOND: &str = "* * * * * *";

idpsync_core::store_test!(
    a_reload_adds_and_removes_connections_and_starts_and_stops_schedules,
    async |test_store: &TestStore| {
        let okta = Running::<FakeOkta>::start(tenant()).await;
        let hr = "[[connections]]\nid = \"hr\"\nkind = \"scim\"\n";
        let crm = "[[connections]]\nid = \"crm\"\nkind = \"scim\"\n";
        let daemon = Daemon::start(test_store, &config(&okta, None, hr)).await;
        assert!(configured(
            &daemon.api.get("/api/v1/connections").await,
            "hr"
        ));

        let (status, summary) = daemon.reload(&config(&okta, Some(EVERY_SECOND), crm)).await;
        assert_eq!(status, 200, "{summary}");
        assert_eq!(summary["connections_added"], serde_json::json!(["crm"]));
        assert_eq!(summary["connections_removed"], serde_json::json!(["hr"]));
        assert_eq!(summary["connections_kept"], serde_json::json!(["idp"]));
        let connections = daemon.api.get("/api/v1/connections").await;
        assert!(configured(&connections, "crm"), "{connections}");
        assert!(!configured(&connections, "hr"), "{connections}");
        common::eventually("the new schedule runs idp", || async {
            daemon.runs("schedule").await >= 2
        })
        .await;

        // Without its schedule, idp is not run again once the run under
        // way (if any) ends.
        let (status, summary) = daemon.reload(&config(&okta, None, crm)).await;
        assert_eq!(status, 200, "{summary}");
        quiet(&okta).await;
        let (settled, asked) = (daemon.runs("schedule").await, okta.fake.faults.requests());
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(daemon.runs("schedule").await, settled);
        assert_eq!(okta.fake.faults.requests(), asked, "nothing read the IdP");
        daemon.app.shut_down().await;
    }
);

idpsync_core::store_test!(
    an_invalid_file_or_a_restart_only_change_is_refused_and_the_old_config_runs_on,
    async |test_store: &TestStore| {
        let okta = Running::<FakeOkta>::start(tenant()).await;
        let good = config(&okta, Some(EVERY_SECOND), "");
        let daemon = Daemon::start(test_store, &good).await;
        common::eventually("the schedule runs idp", || async {
            daemon.runs("schedule").await >= 1
        })
        .await;

        let broken = good.replace(EVERY_SECOND, "every tuesday");
        let (status, error) = daemon.reload(&broken).await;
        assert_eq!(status, 422, "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        let line = broken
            .lines()
            .position(|l| l.starts_with("schedule"))
            .unwrap()
            + 1;
        assert!(
            message.contains(&format!(":{line}:"))
                && message.contains("connections[0].schedule")
                && message.contains("the running configuration is kept"),
            "{message}"
        );

        let moved = format!("[server]\nlisten = \"127.0.0.1:1\"\n{good}");
        let (status, error) = daemon.reload(&moved).await;
        assert_eq!(status, 409, "{error}");
        assert_eq!(error["error"]["code"], "needs_restart");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("server.listen changed"),
            "{error}"
        );

        // The schedule of the config in force goes on.
        let before = daemon.runs("schedule").await;
        common::eventually("the kept schedule runs idp again", || async {
            daemon.runs("schedule").await > before
        })
        .await;
        let metrics = daemon
            .app
            .client
            .get(daemon.app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for result in ["invalid", "needs_restart"] {
            assert!(
                metrics
                    .lines()
                    .any(|line| line.starts_with("idpsync_config_reloads_total")
                        && line.contains(&format!("result=\"{result}\""))),
                "{metrics}"
            );
        }
        daemon.app.shut_down().await;
    }
);

idpsync_core::store_test!(
    a_run_under_way_finishes_across_a_reload_and_is_not_run_twice,
    async |test_store: &TestStore| {
        let okta = Running::<FakeOkta>::start(tenant()).await;
        let text = config(&okta, None, "");
        let daemon = Daemon::start(test_store, &text).await;
        // Every answer of the IdP takes 150 ms: the pull takes seconds.
        okta.fake.faults.set(Faults {
            delay: Duration::from_millis(150),
            ..Faults::default()
        });
        let api = common::Api {
            client: daemon.api.client.clone(),
            base: daemon.api.base.clone(),
            token: daemon.api.token.clone(),
        };
        let sync =
            tokio::spawn(
                async move { api.post("/api/v1/connections/idp/sync", Value::Null).await },
            );
        common::eventually("the run is reading the IdP", || async {
            okta.fake.faults.requests() >= 2
        })
        .await;

        // The reload gives idp a schedule of every second; the run under
        // way keeps it from starting beside it.
        let (status, summary) = daemon.reload(&config(&okta, Some(EVERY_SECOND), "")).await;
        assert_eq!(status, 200, "{summary}");
        let (status, report) = sync.await.unwrap();
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["status"], "applied", "{report}");
        assert_eq!(daemon.runs("schedule").await, 0, "nothing ran beside it");
        okta.fake.faults.set(Faults::default());
        common::eventually("the new schedule runs idp after it", || async {
            daemon.runs("schedule").await >= 1
        })
        .await;
        daemon.app.shut_down().await;
    }
);

idpsync_core::store_test!(
    a_scheduled_run_under_way_when_a_reload_removes_its_schedule_is_finished,
    async |test_store: &TestStore| {
        let okta = Running::<FakeOkta>::start(tenant()).await;
        // Every answer of the IdP takes 150 ms: a run takes seconds.
        okta.fake.faults.set(Faults {
            delay: Duration::from_millis(150),
            ..Faults::default()
        });
        let daemon = Daemon::start(test_store, &config(&okta, Some(EVERY_SECOND), "")).await;
        common::eventually("a scheduled run is reading the IdP", || async {
            okta.fake.faults.requests() >= 2
        })
        .await;

        // The new configuration has no schedule: the retired schedule
        // starts nothing more, but the run it started is not abandoned.
        let (status, summary) = daemon.reload(&config(&okta, None, "")).await;
        assert_eq!(status, 200, "{summary}");
        common::eventually("the run under way is recorded", || async {
            daemon.runs("schedule").await >= 1
        })
        .await;
        quiet(&okta).await;
        assert_eq!(
            daemon.runs("schedule").await,
            1,
            "the run under way was recorded, and no other started"
        );
        daemon.app.shut_down().await;
    }
);
