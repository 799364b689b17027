//! The admin API over real HTTP on loopback, on SQLite and PostgreSQL:
//! authentication and scopes, directory views, devices, held runs, the
//! long-polling event feed and the OpenAPI document.

use idpsync_core::auth::Scope;
use idpsync_core::store_test;
use idpsync_core::testing::{TestApp, TestStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[[connections]]
id = "okta"
kind = "scim"
[connections.safety]
max_deletions = 1

[[acl_groups]]
name = "engineering"
[[acl_groups.from]]
connection = "okta"
group = "Engineering"
"#;

/// A daemon's router on a loopback port plus one token per scope.
struct TestApi {
    base: String,
    client: reqwest::Client,
    admin: String,
    read: String,
    devices: String,
    scim: String,
}

impl TestApi {
    async fn start(test_store: &TestStore) -> TestApi {
        let app = TestApp::builder(&test_store.store)
            .config(CONFIG)
            .start()
            .await;
        TestApi {
            base: app.url("/api/v1"),
            admin: app.token("admin", Scope::Admin, None).await,
            read: app.token("read", Scope::Read, None).await,
            devices: app.token("devices", Scope::Devices, None).await,
            scim: app.token("scim", Scope::Scim, Some("okta")).await,
            client: app.client,
        }
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn post(&self, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }
}

fn tenant(bob_active: bool, with_carol: bool) -> Value {
    let mut users = vec![
        json!({"external_id": "u1", "user_name": "alice", "active": true}),
        json!({"external_id": "u2", "user_name": "bob", "active": bob_active}),
        json!({"external_id": "u4", "user_name": "dave", "active": true}),
    ];
    if with_carol {
        users.push(json!({"external_id": "u3", "user_name": "carol", "active": true}));
    }
    json!({
        "users": users,
        "groups": [{"external_id": "g1", "display_name": "Engineering"}, {"external_id": "g2", "display_name": "Platform"}],
        "memberships": [
            {"group_external_id": "g1", "member": {"type": "user", "external_id": "u1"}},
            {"group_external_id": "g1", "member": {"type": "group", "external_id": "g2"}},
            {"group_external_id": "g2", "member": {"type": "user", "external_id": "u2"}}
        ]
    })
}

store_test!(
    tokens_are_checked_for_presence_liveness_and_scope,
    async |test_store_ref: &TestStore| {
        {
            let api = TestApi::start(test_store_ref).await;
            let missing = api
                .client
                .get(format!("{}/connections", api.base))
                .send()
                .await
                .unwrap();
            assert_eq!(missing.status(), 401);
            assert_eq!(missing.headers()["www-authenticate"], "Bearer");
            let body: Value = missing.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");

            assert_eq!(api.get("idps_0000", "/connections").await.0, 401);
            assert_eq!(api.get("not-even-a-token", "/connections").await.0, 401);
            assert_eq!(
                api.get(&api.scim, "/connections").await.0,
                403,
                "a SCIM token cannot read the admin API"
            );
            assert_eq!(api.get(&api.read, "/connections").await.0, 200);
            assert_eq!(
                api.post(&api.read, "/connections/okta/import", tenant(true, true))
                    .await
                    .0,
                403
            );
            assert_eq!(
                api.post(&api.admin, "/connections/okta/import", tenant(true, true))
                    .await
                    .0,
                200
            );

            test_store_ref.store.revoke_token("read").await.unwrap();
            assert_eq!(api.get(&api.read, "/connections").await.0, 401);
        }
    }
);

store_test!(
    imported_people_groups_and_acl_members_are_readable,
    async |test_store_ref: &TestStore| {
        {
            let api = TestApi::start(test_store_ref).await;
            let (status, outcome) = api
                .post(&api.admin, "/connections/okta/import", tenant(true, true))
                .await;
            assert_eq!(status, 200, "{outcome}");
            assert_eq!(outcome["outcome"], "applied");
            assert_eq!(outcome["changes"]["users_created"], 4);

            let (_, connections) = api.get(&api.read, "/connections").await;
            assert_eq!(connections[0]["id"], "okta");
            assert_eq!(connections[0]["users"], 4);
            assert_eq!(connections[0]["last_runs"][0]["status"], "succeeded");

            let (_, first_page) = api.get(&api.read, "/users?connection=okta&limit=3").await;
            assert_eq!(first_page["items"].as_array().unwrap().len(), 3);
            let after = first_page["next_after"].as_i64().expect("a next page");
            let (_, second_page) = api
                .get(
                    &api.read,
                    &format!("/users?connection=okta&limit=3&after={after}"),
                )
                .await;
            assert_eq!(second_page["items"].as_array().unwrap().len(), 1);
            assert!(second_page["next_after"].is_null());

            let (_, groups) = api.get(&api.read, "/groups?connection=okta").await;
            let engineering = groups["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["display_name"] == "Engineering")
                .unwrap();
            let id = engineering["id"].as_i64().unwrap();
            let (_, direct) = api.get(&api.read, &format!("/groups/{id}/members")).await;
            let direct: Vec<(String, String)> = direct["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["type"].as_str().unwrap().into(),
                        m["name"].as_str().unwrap().into(),
                    )
                })
                .collect();
            // Nested groups come first, then users.
            assert_eq!(
                direct,
                [
                    ("group".into(), "Platform".into()),
                    ("user".into(), "alice".into())
                ]
            );
            // One per page: the cursor crosses from the groups to the users.
            let (_, first) = api
                .get(&api.read, &format!("/groups/{id}/members?limit=1"))
                .await;
            assert_eq!(first["items"][0]["name"], "Platform");
            let after = first["next_after"].as_i64().unwrap();
            let (_, second) = api
                .get(
                    &api.read,
                    &format!("/groups/{id}/members?limit=1&after={after}"),
                )
                .await;
            assert_eq!(second["items"][0]["name"], "alice");
            let after = second["next_after"].as_i64().unwrap();
            let (_, third) = api
                .get(
                    &api.read,
                    &format!("/groups/{id}/members?limit=1&after={after}"),
                )
                .await;
            assert!(third["items"].as_array().unwrap().is_empty());
            assert!(third["next_after"].is_null());
            let (_, effective) = api
                .get(&api.read, &format!("/groups/{id}/members?effective=true"))
                .await;
            let mut names: Vec<&str> = effective["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["name"].as_str().unwrap())
                .collect();
            names.sort();
            assert_eq!(names, ["alice", "bob"]);

            let (_, acl) = api.get(&api.read, "/acl-groups").await;
            assert_eq!(acl[0]["name"], "engineering");
            assert_eq!(acl[0]["members"], 2);
            let (_, acl_members) = api.get(&api.read, "/acl-groups/engineering/members").await;
            assert_eq!(acl_members["items"].as_array().unwrap().len(), 2);

            let alice = first_page["items"][0]["id"].as_i64().unwrap();
            let (_, detail) = api.get(&api.read, &format!("/users/{alice}")).await;
            assert_eq!(detail["user_name"], "alice");
            assert_eq!(detail["acl_groups"], json!(["engineering"]));

            let (status, error) = api.get(&api.read, "/users?status=sleepy").await;
            assert_eq!(status, 400);
            assert!(
                error["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("active or inactive")
            );
            assert_eq!(api.get(&api.read, "/users?limit=ten").await.0, 400);
            assert_eq!(api.get(&api.read, "/nope").await.0, 404);
        }
    }
);

store_test!(
    devices_follow_their_owner_and_the_feed_shows_it,
    async |test_store_ref: &TestStore| {
        {
            let api = TestApi::start(test_store_ref).await;
            api.post(&api.admin, "/connections/okta/import", tenant(true, true))
                .await;
            let (status, device) = api
            .post(&api.devices, "/devices", json!({"owner_connection_id": "okta", "owner_external_id": "u2", "name": "bob-laptop", "node_key": "nk-1"}))
            .await;
            assert_eq!(status, 201, "{device}");
            assert_eq!(device["status"], "pending");
            let id = device["id"].as_i64().unwrap();
            let (status, approved) = api
                .post(&api.devices, &format!("/devices/{id}/approve"), Value::Null)
                .await;
            assert_eq!(
                (status, approved["status"].as_str()),
                (StatusCode::OK, Some("approved"))
            );
            assert_eq!(
                api.post(&api.read, &format!("/devices/{id}/lock"), Value::Null)
                    .await
                    .0,
                403
            );
            assert_eq!(
                api.post(&api.devices, &format!("/devices/{id}/explode"), Value::Null)
                    .await
                    .0,
                404
            );
            let (_, duplicate) = api
            .post(&api.devices, "/devices", json!({"owner_connection_id": "okta", "owner_external_id": "u1", "name": "x", "node_key": "nk-1"}))
            .await;
            assert_eq!(duplicate["error"]["code"], "conflict");

            // A consumer long-polls the feed from the current cursor.
            let (_, feed) = api.get(&api.read, "/events?after=0&limit=1000").await;
            let cursor = feed["cursor"].as_i64().unwrap();
            let waiter = {
                let client = api.client.clone();
                let url = format!("{}/events?after={cursor}&wait=30", api.base);
                let token = api.read.clone();
                tokio::spawn(async move {
                    let response = client.get(url).bearer_auth(token).send().await.unwrap();
                    response.json::<Value>().await.unwrap()
                })
            };
            tokio::task::yield_now().await;
            let (status, outcome) = api
                .post(&api.admin, "/connections/okta/import", tenant(false, true))
                .await;
            assert_eq!(status, 200, "{outcome}");
            let woke = waiter.await.unwrap();
            let kinds: Vec<&str> = woke["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["kind"].as_str().unwrap())
                .collect();
            assert!(
                kinds.starts_with(&["user.deactivated", "device.revoked"]),
                "{kinds:?}"
            );
            let revoked = &woke["events"][1];
            assert_eq!(revoked["payload"]["node_key"], "nk-1");
            assert_eq!(
                revoked["payload"]["reason"],
                "user deactivated at the source (okta)"
            );

            let (_, after) = api.get(&api.read, &format!("/devices/{id}")).await;
            assert_eq!(after["status"], "revoked");
            let (status, error) = api
                .post(&api.admin, &format!("/devices/{id}/approve"), Value::Null)
                .await;
            assert_eq!(status, 409);
            assert!(
                error["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("revocation is final")
            );
            let (status, _) = api
            .post(&api.devices, "/devices", json!({"owner_connection_id": "okta", "owner_external_id": "u2", "name": "new", "node_key": "nk-2"}))
            .await;
            assert_eq!(status, 409, "an inactive user cannot register a device");

            // An empty wait returns at once with no events and the same cursor.
            let (_, idle) = api
                .get(&api.read, &format!("/events?after={}", i64::MAX - 1))
                .await;
            assert_eq!(idle["events"], json!([]));
        }
    }
);

store_test!(
    a_held_run_is_listed_and_applied_on_approval,
    async |test_store_ref: &TestStore| {
        {
            let api = TestApi::start(test_store_ref).await;
            api.post(&api.admin, "/connections/okta/import", tenant(true, true))
                .await;
            let mut two_gone = tenant(true, false);
            two_gone["users"]
                .as_array_mut()
                .unwrap()
                .retain(|u| u["user_name"] != "dave");
            let (_, plan) = api
                .post(
                    &api.admin,
                    "/connections/okta/import?dry_run=true",
                    two_gone.clone(),
                )
                .await;
            assert_eq!(plan["outcome"], "planned");
            assert_eq!(plan["gate"]["held"], true);

            let (_, held) = api
                .post(&api.admin, "/connections/okta/import", two_gone)
                .await;
            assert_eq!(held["outcome"], "held");
            let run_id = held["run_id"].as_i64().unwrap();
            let (_, runs) = api.get(&api.read, "/runs?status=held").await;
            assert_eq!(runs["items"][0]["id"], run_id);
            assert_eq!(
                api.post(&api.read, &format!("/runs/{run_id}/approve"), Value::Null)
                    .await
                    .0,
                403
            );

            let (status, applied) = api
                .post(&api.admin, &format!("/runs/{run_id}/approve"), Value::Null)
                .await;
            assert_eq!(status, 200, "{applied}");
            assert_eq!(applied["changes"]["users_deleted"], 2);
            let (status, again) = api
                .post(&api.admin, &format!("/runs/{run_id}/approve"), Value::Null)
                .await;
            assert_eq!(status, 409, "{again}");
            let (_, run) = api.get(&api.read, &format!("/runs/{run_id}")).await;
            assert_eq!(run["status"], "approved");
            assert_eq!(api.get(&api.read, "/runs/999999").await.0, 404);
        }
    }
);

store_test!(
    every_path_in_the_openapi_document_is_served,
    async |test_store_ref: &TestStore| {
        {
            let api = TestApi::start(test_store_ref).await;
            api.post(&api.admin, "/connections/okta/import", tenant(true, true))
                .await;
            let document: Value = api
                .client
                .get(format!("{}/openapi.json", api.base))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(document["openapi"], "3.1.0");
            let paths = document["paths"].as_object().unwrap();
            assert!(paths.len() >= 15);
            for (path, operations) in paths {
                let concrete = path
                    .replace("{id}", "1")
                    .replace("{name}", "engineering")
                    .replace("{action}", "lock");
                for method in operations.as_object().unwrap().keys() {
                    let request = match method.as_str() {
                        "get" => api.client.get(format!("{}{concrete}", api.base)),
                        "post" => api
                            .client
                            .post(format!("{}{concrete}", api.base))
                            .json(&json!({})),
                        other => panic!("unexpected method {other}"),
                    };
                    let response = request.bearer_auth(&api.admin).send().await.unwrap();
                    let status = response.status();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    assert_ne!(
                        body["error"]["message"], "no such endpoint",
                        "{method} {path} is documented but not routed"
                    );
                    assert_ne!(status, 405, "{method} {path}");
                }
            }
        }
    }
);

store_test!(
    answers_carry_exactly_the_fields_their_schemas_document,
    async |test_store_ref: &TestStore| {
        {
            let api = TestApi::start(test_store_ref).await;
            api.post(&api.admin, "/connections/okta/import", tenant(true, true))
                .await;
            let (_, document) = api.get(&api.read, "/openapi.json").await;
            let schemas = &document["components"]["schemas"];
            // Each answer's fields against the schema the document names
            // for it: nothing undocumented, nothing required missing.
            let check = |schema: &str, answer: &Value| {
                let schema = &schemas[schema];
                let properties = schema["properties"].as_object().unwrap();
                let fields = answer.as_object().unwrap();
                for field in fields.keys() {
                    assert!(properties.contains_key(field), "{field} is not in {schema}");
                }
                for required in schema["required"].as_array().into_iter().flatten() {
                    assert!(
                        fields.contains_key(required.as_str().unwrap()),
                        "{required} missing from {answer}"
                    );
                }
            };
            let (_, connection) = api.get(&api.read, "/connections/okta").await;
            check("ConnectionView", &connection);
            check("RunView", &connection["last_runs"][0]);
            let (_, users) = api.get(&api.read, "/users").await;
            check("UserView", &users["items"][0]);
            let (_, groups) = api.get(&api.read, "/groups").await;
            check("GroupView", &groups["items"][0]);
            let group = groups["items"][0]["id"].as_i64().unwrap();
            let (_, members) = api
                .get(&api.read, &format!("/groups/{group}/members"))
                .await;
            check("MemberView", &members["items"][0]);
            let (_, acl_groups) = api.get(&api.read, "/acl-groups").await;
            check("AclGroupView", &acl_groups[0]);
            let (_, feed) = api.get(&api.read, "/events").await;
            check("FeedPage", &feed);
            check("Event", &feed["events"][0]);
        }
    }
);

/// An IdP that sends a notification over the 1 MiB limit hears 413 after
/// its upload, not a connection reset half way through it (the server
/// reads what was declared, up to 16 MiB, before it answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_hook_delivery_sent_in_full_gets_its_413_answer() {
    let test_store = TestStore::sqlite().await;
    let app = TestApp::builder(&test_store.store)
        .config(CONFIG)
        .start()
        .await;
    let url = reqwest::Url::parse(&app.url("/hooks/okta/okta")).unwrap();
    let address = format!("127.0.0.1:{}", url.port().unwrap());
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json",
        url.path()
    );
    let answer = tokio::task::spawn_blocking(move || {
        idpsync_core::testing::upload_in_full(&address, &head, 12 * 1024 * 1024)
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    test_store.cleanup().await;
}
