//! End to end: the real daemon pulls a fake Keycloak on loopback on its cron
//! schedule; a fault mid-pagination fails the run and applies nothing; the
//! next run converges; a user disabled in Keycloak loses their devices.

mod common;

use common::{Api, Workdir};
use idpsync_driver::fake::{Dataset, DatasetSpec, PageFault};
use idpsync_driver_keycloak::fake::FakeKeycloak;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_pulls_apply_faults_apply_nothing_and_deprovisioning_revokes_devices() {
    let dataset = Dataset::generate(&DatasetSpec {
        users: 300,
        groups: 20,
        nested_groups: 6,
        memberships_per_user: 2,
        inactive_every: 0,
        seed: 3,
    });
    let fake = FakeKeycloak::new("acme", dataset);
    let server = fake.start().await.unwrap();
    let settings = fake.settings(&server.base_url, 100);
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{{port}}"
[database]
url = "{{db}}"
[[connections]]
id = "kc"
kind = "keycloak"
schedule = "*/2 * * * * *"
[connections.keycloak]
base_url = "{}"
realm = "acme"
client_id = "{}"
client_secret = "${{KC_SECRET}}"
page_size = 100
[[acl_groups]]
name = "staff"
[[acl_groups.from]]
connection = "kc"
group_glob = "*"
"#,
        settings["base_url"].as_str().unwrap(),
        settings["client_id"].as_str().unwrap(),
    );
    let (workdir, port) = Workdir::new(&config);
    let token = {
        let output = common::idpsync(
            &workdir.config_path,
            &["token", "create", "--name", "t", "--scope", "admin"],
        )
        .env("KC_SECRET", settings["client_secret"].as_str().unwrap())
        .output()
        .unwrap();
        assert!(output.status.success(), "{}", common::stderr(&output));
        common::stdout(&output).trim().to_string()
    };
    let check = common::idpsync(&workdir.config_path, &["check-connection", "kc"])
        .env("KC_SECRET", settings["client_secret"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        common::stdout(&check).contains("realm acme: 300 users"),
        "{}{}",
        common::stdout(&check),
        common::stderr(&check)
    );

    let child = common::idpsync(&workdir.config_path, &["serve"])
        .env("KC_SECRET", settings["client_secret"].as_str().unwrap())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let daemon = common::Daemon { child, port };
    daemon.wait_healthy();
    let api = Api {
        client: reqwest::Client::new(),
        base: daemon.url("/api/v1"),
        token,
    };

    // The first scheduled run applies the tenant.
    let first = api.wait_for_runs("kc", 1).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(first["trigger"], "schedule");
    let connection = api.get("/connections/kc").await;
    assert_eq!(connection["users"], 300);

    // A device for the first user.
    let alice = fake.dataset.lock().unwrap().users[0].id.clone();
    let (status, device) = api.post("/devices", json!({"owner_connection_id": "kc", "owner_external_id": alice, "name": "laptop", "node_key": "nk-1"})).await;
    assert_eq!(status, 201, "{device}");

    // A truncated page mid-pagination: the next scheduled run fails and applies nothing.
    let before = api.last_event_id().await;
    fake.dataset.lock().unwrap().users[0].active = false;
    fake.faults
        .update(|faults| faults.truncate_page = Some(PageFault::new("users", 1, u32::MAX)));
    let event = api.next_event(before, "sync.failed", "kc").await;
    let failed = api
        .get(&format!("/runs/{}", event["payload"]["run_id"]))
        .await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("unreadable JSON"),
        "{failed}"
    );
    let device_now = api.get(&format!("/devices/{}", device["id"])).await;
    assert_eq!(
        device_now["status"], "pending",
        "nothing of the failed pull was applied"
    );
    let health = api.get("/connections/kc").await;
    assert_eq!(health["health"], "backoff");
    assert_eq!(health["consecutive_failures"], 1);
    let listing = common::stdout(
        &common::idpsync(&workdir.config_path, &["connections"])
            .env("KC_SECRET", settings["client_secret"].as_str().unwrap())
            .output()
            .unwrap(),
    );
    assert!(
        listing.contains("backoff") && listing.contains("failed: unexpected response"),
        "{listing}"
    );

    // Fixed at the source: the next run (manual, past the backoff) converges.
    let mut cursor = 0;
    loop {
        let page = api.get(&format!("/events?after={cursor}&limit=1000")).await;
        if page["events"].as_array().unwrap().is_empty() {
            break;
        }
        cursor = page["cursor"].as_i64().unwrap();
    }
    fake.faults.update(|faults| faults.truncate_page = None);
    let (status, report) = api.post("/connections/kc/sync", json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["status"], "applied", "{report}");
    assert_eq!(
        report["outcome"]["effects"]["devices_revoked"], 1,
        "{report}"
    );
    let device_now = api.get(&format!("/devices/{}", device["id"])).await;
    assert_eq!(device_now["status"], "revoked");
    let events = api.get(&format!("/events?after={cursor}&limit=1000")).await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let deactivated = kinds
        .iter()
        .position(|k| *k == "user.deactivated")
        .expect("user.deactivated");
    assert_eq!(kinds[deactivated + 1], "device.revoked");
    assert_eq!(api.get("/connections/kc").await["health"], "healthy");

    let metrics = reqwest::get(daemon.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("idpsync_sync_runs_total"), "{metrics}");
    assert!(metrics.contains("outcome=\"failed\""), "{metrics}");
    assert!(daemon.terminate().success());
}
