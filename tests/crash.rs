//! The daemon killed with SIGKILL in the middle of work, then restarted on
//! the same SQLite file: a large pull's apply and a burst of SCIM writes
//! leave the store exactly as it was before or after each change (no part
//! of a change set, events matching state, every acknowledged write
//! there), and the next run converges.

mod common;

use common::Workdir;
use idpsync_core::events;
use idpsync_core::store::Store;
use idpsync_core::store::entity::source_user;
use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver_keycloak::fake::FakeKeycloak;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const USERS: usize = 20_000;

/// `idpsync serve` with its log lines (info) sent to a channel.
fn serve_logging(workdir: &Workdir, port: u16) -> (Child, mpsc::Receiver<String>) {
    let mut child = common::idpsync(&workdir.config_path, &["serve"])
        .env("IDPSYNC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start idpsync serve");
    let (lines, received) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    common::wait_listening(port);
    (child, received)
}

fn token(workdir: &Workdir, args: &[&str]) -> String {
    let output = workdir.run(&[&["token", "create", "--name"], args].concat());
    assert!(output.status.success(), "{}", common::stderr(&output));
    common::stdout(&output).trim().to_string()
}

/// The users of `connection` in the store, and its events of `kind`.
async fn users_and_events(store: &Store, connection: &str, kind: &str) -> (u64, usize) {
    let users = source_user::Entity::find()
        .filter(source_user::Column::ConnectionId.eq(connection))
        .count(store.db())
        .await
        .unwrap();
    let events = events::read_after(store.db(), 0, 10_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.kind == kind && event.connection_id.as_deref() == Some(connection))
        .count();
    (users, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_mid_apply_leaves_the_store_as_before_and_the_next_run_converges() {
    let fake = FakeKeycloak::new(
        "acme",
        Dataset::generate(&DatasetSpec {
            users: USERS,
            groups: 100,
            nested_groups: 10,
            memberships_per_user: 2,
            inactive_every: 0,
            seed: 9,
        }),
    );
    let server = fake.start().await.unwrap();
    let settings = fake.settings(&server.base_url, 500);
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{{port}}"
[database]
url = "{{db}}"
[[connections]]
id = "kc"
kind = "keycloak"
[connections.keycloak]
base_url = "{}"
realm = "acme"
client_id = "{}"
client_secret = "{}"
page_size = 500
"#,
        settings["base_url"].as_str().unwrap(),
        settings["client_id"].as_str().unwrap(),
        settings["client_secret"].as_str().unwrap(),
    );
    let client = reqwest::Client::new();

    // Killed a moment after the pull is staged and the apply begins. The
    // later the kill, the likelier the apply finished first: then again,
    // on a fresh store, sooner.
    let mut killed_mid_apply = None;
    for delay_ms in [150, 30, 0] {
        let (workdir, port) = Workdir::new(&config);
        let admin = token(&workdir, &["admin", "--scope", "admin"]);
        let sync_url = format!("http://127.0.0.1:{port}/api/v1/connections/kc/sync");
        let (mut daemon, lines) = serve_logging(&workdir, port);
        let pending = tokio::spawn(client.post(&sync_url).bearer_auth(&admin).send());
        let started_applying = tokio::task::spawn_blocking(move || {
            lines
                .iter()
                .any(|line| line.contains("pull complete; applying"))
        })
        .await
        .unwrap();
        assert!(started_applying, "the daemon said it was applying");
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        daemon.kill().unwrap();
        daemon.wait().unwrap();
        let _ = pending.await;

        let store = Store::connect(&workdir.db_url(), 1, None).await.unwrap();
        let (users, created) = users_and_events(&store, "kc", "user.created").await;
        store.db().clone().close().await.unwrap();
        if users == 0 {
            assert_eq!(created, 0, "no event of a change that is not there");
            killed_mid_apply = Some((workdir, port, admin, sync_url));
            break;
        }
        // The apply had committed: all of it, with every event.
        assert_eq!(users, USERS as u64, "no part of a change set");
        assert_eq!(created, USERS);
    }
    let Some((workdir, port, admin, sync_url)) = killed_mid_apply else {
        panic!("no kill landed in the apply; the specification was not exercised");
    };

    // Restarted, the next run applies everything once.
    let (mut daemon, _lines) = serve_logging(&workdir, port);
    let report: Value = client
        .post(&sync_url)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["status"], "applied", "{report}");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let store = Store::connect(&workdir.db_url(), 1, None).await.unwrap();
    assert_eq!(
        users_and_events(&store, "kc", "user.created").await,
        (USERS as u64, USERS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_writes_acknowledged_before_a_kill_are_all_there_after_it() {
    let config = r#"
[server]
listen = "127.0.0.1:{port}"
[database]
url = "{db}"
[[connections]]
id = "idp"
kind = "scim"
[connections.safety]
max_deletions = "100%"
"#;
    let (workdir, port) = Workdir::new(config);
    let scim_token = token(&workdir, &["idp", "--scope", "scim", "--connection", "idp"]);
    let (mut daemon, _lines) = serve_logging(&workdir, port);
    let base = format!("http://127.0.0.1:{port}/scim/v2/idp");
    let client = reqwest::Client::new();

    // Eight clients create users and deactivate every second one, until
    // the daemon dies under them. Each acknowledged write is remembered.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, bool)>::new()));
    let mut clients = Vec::new();
    for worker in 0..8 {
        let (client, base, token) = (client.clone(), base.clone(), scim_token.clone());
        let acknowledged = acknowledged.clone();
        clients.push(tokio::spawn(async move {
            for n in 0.. {
                let body =
                    json!({"userName": format!("w{worker}-{n}@example.test"), "active": true});
                let Ok(response) = client
                    .post(format!("{base}/Users"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                else {
                    return;
                };
                if response.status() != 201 {
                    return;
                }
                let Ok(created) = response.json::<Value>().await else {
                    return;
                };
                let id = created["id"].as_str().unwrap().to_string();
                acknowledged.lock().unwrap().push((id.clone(), true));
                if n % 2 == 0 {
                    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                        "Operations": [{"op": "replace", "path": "active", "value": false}]});
                    match client
                        .patch(format!("{base}/Users/{id}"))
                        .bearer_auth(&token)
                        .json(&patch)
                        .send()
                        .await
                    {
                        Ok(response) if response.status() == 200 => {
                            acknowledged.lock().unwrap().push((id, false))
                        }
                        _ => return,
                    }
                }
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    for client in clients {
        let _ = client.await;
    }

    // Every acknowledged write is in the store, and the events are exactly
    // the state's: one user.created per user, one user.deactivated per
    // inactive user.
    let store = Store::connect(&workdir.db_url(), 1, None).await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    let stored: std::collections::HashMap<String, bool> = source_user::Entity::find()
        .filter(source_user::Column::ConnectionId.eq("idp"))
        .all(store.db())
        .await
        .unwrap()
        .into_iter()
        .map(|user| (user.external_id, user.active))
        .collect();
    for (id, active) in &acknowledged {
        let found = stored.get(id);
        assert!(found.is_some(), "acknowledged user {id} is there");
        if !active {
            assert_eq!(found, Some(&false), "acknowledged deactivation of {id}");
        }
    }
    let (users, created) = users_and_events(&store, "idp", "user.created").await;
    assert_eq!(users as usize, stored.len());
    assert_eq!(created, stored.len(), "one user.created per stored user");
    let (_, deactivated) = users_and_events(&store, "idp", "user.deactivated").await;
    assert_eq!(
        deactivated,
        stored.values().filter(|active| !**active).count(),
        "one user.deactivated per inactive user"
    );
    store.db().clone().close().await.unwrap();

    // Restarted, the endpoint works on.
    let (mut daemon, _lines) = serve_logging(&workdir, port);
    let response = client
        .post(format!("{base}/Users"))
        .bearer_auth(&scim_token)
        .json(&json!({"userName": "after@example.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}
