//! Two daemons on one PostgreSQL with the same scheduled connection: the
//! advisory lock lets only one of them sync it at a time, so the runs never
//! overlap and the other daemon reports the run as already in progress.

mod common;

use idpsync_core::store::entity::status::RunStatus;
use idpsync_core::store::entity::sync_run;
use idpsync_core::testing::postgres_or_skip;
use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver_keycloak::fake::FakeKeycloak;
use sea_orm::{EntityTrait, QueryOrder};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_never_syncs_twice_at_once_across_daemons() {
    let Some(test_store) =
        postgres_or_skip("two_daemons::a_connection_never_syncs_twice_at_once_across_daemons")
            .await
    else {
        return;
    };
    let schema = test_store.pg_schema().unwrap().to_string();
    let database_url = format!("{}?options=-c%20search_path%3D{schema}", test_store.url);

    let fake = FakeKeycloak::new(
        "acme",
        Dataset::generate(&DatasetSpec {
            users: 40,
            groups: 4,
            nested_groups: 1,
            memberships_per_user: 1,
            inactive_every: 0,
            seed: 9,
        }),
    );
    // Slow answers make each pull span several schedule ticks.
    fake.faults
        .update(|faults| faults.delay = Duration::from_millis(60));
    let server = fake.start().await.unwrap();
    let settings = fake.settings(&server.base_url, 10);

    let dir = tempfile::tempdir().unwrap();
    let mut daemons = Vec::new();
    let mut logs = Vec::new();
    for name in ["a", "b"] {
        let port = common::free_port();
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
[database]
url = "{database_url}"
[[connections]]
id = "kc"
kind = "keycloak"
schedule = "* * * * * *"
[connections.keycloak]
base_url = "{}"
realm = "acme"
client_id = "{}"
client_secret = "{}"
page_size = 10
"#,
            settings["base_url"].as_str().unwrap(),
            settings["client_id"].as_str().unwrap(),
            settings["client_secret"].as_str().unwrap(),
        );
        let config_path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.path().join(format!("{name}.log"));
        let child = common::idpsync(&config_path, &["serve"])
            .env("IDPSYNC_LOG", "info,sea_orm_migration=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        let daemon = common::Daemon { child, port };
        daemon.wait_healthy();
        daemons.push(daemon);
        logs.push(log_path);
    }

    // Let both schedules fire for a while (bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = sync_run::Entity::find()
            .all(test_store.store.db())
            .await
            .unwrap();
        let skipped = logs.iter().any(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains("already in progress")
        });
        if runs.len() >= 4 && skipped {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not enough runs or no contention within 60 s: {} runs",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for daemon in daemons {
        assert!(daemon.terminate().success());
    }

    let runs = sync_run::Entity::find()
        .order_by_asc(sync_run::Column::StartedAt)
        .all(test_store.store.db())
        .await
        .unwrap();
    for pair in runs.windows(2) {
        let (earlier, later) = (&pair[0], &pair[1]);
        let finished = earlier.finished_at.expect("finished");
        assert!(
            later.started_at >= finished,
            "run {} started at {} before run {} finished at {}",
            later.id,
            later.started_at,
            earlier.id,
            finished
        );
    }
    assert!(
        runs.iter().all(|run| run.status == RunStatus::Succeeded),
        "{runs:?}"
    );
    test_store.cleanup().await;
}
