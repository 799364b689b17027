//! The SCIM endpoint over real HTTP on loopback, on SQLite and PostgreSQL:
//! replays of how Entra ID and Okta call it, every error case, filters
//! evaluated by the database, large member batches and /Bulk.

use idpsync_core::api::AppState;
use idpsync_core::auth::Scope;
use idpsync_core::devices::{self, NewDevice};
use idpsync_core::events;
use idpsync_core::store_test;
use idpsync_core::testing::{TestApp, TestStore};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[[connections]]
id = "entra"
kind = "scim"
[[connections]]
id = "okta"
kind = "scim"
[[acl_groups]]
name = "engineering"
[[acl_groups.from]]
connection = "entra"
group = "Engineering"
"#;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

struct Scim {
    root: String,
    client: reqwest::Client,
    entra: String,
    okta: String,
    admin: String,
    state: AppState,
}

impl Scim {
    async fn start(test_store: &TestStore) -> Scim {
        Scim::start_with(test_store, CONFIG).await
    }

    async fn start_with(test_store: &TestStore, config_text: &str) -> Scim {
        let app = TestApp::builder(&test_store.store)
            .config(config_text)
            .start()
            .await;
        Scim {
            root: app.url("/scim/v2"),
            entra: app.token("entra", Scope::Scim, Some("entra")).await,
            okta: app.token("okta", Scope::Scim, Some("okta")).await,
            admin: app.token("admin", Scope::Admin, None).await,
            client: app.client,
            state: app.state,
        }
    }

    async fn call(
        &self,
        method: &str,
        connection: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let url = format!("{}/{connection}{path}", self.root);
        let mut request = self.client.request(method.parse().unwrap(), url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    async fn entra(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call(method, "entra", path, Some(&self.entra), body)
            .await
    }

    async fn okta(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.call(method, "okta", path, Some(&self.okta), body)
            .await
    }
}

fn scim_type(body: &Value) -> &str {
    body["scimType"].as_str().unwrap_or("")
}

/// An Entra request to `path` (under the connection's root) with a SCIM
/// body, sent from a task; resolves to its status.
fn send_later(
    scim: &Scim,
    method: &str,
    path: &str,
    body: Value,
    if_match: Option<&str>,
) -> tokio::task::JoinHandle<u16> {
    let mut request = scim
        .client
        .request(
            method.parse().unwrap(),
            format!("{}/entra{path}", scim.root),
        )
        .bearer_auth(&scim.entra)
        .header("content-type", "application/scim+json")
        .body(body.to_string());
    if let Some(etag) = if_match {
        request = request.header("if-match", etag);
    }
    tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
}

/// A PatchOp body of one operation.
fn patch_op(operation: Value) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [operation]
    })
}

/// Kim, created over Entra's SCIM connection: her id and ETag.
async fn create_kim(scim: &Scim) -> (String, String) {
    let (_, headers, created) = scim
        .entra("POST", "/Users", Some(entra_user("kim@example.com", "kim")))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    (id, headers["etag"].to_str().unwrap().to_string())
}

/// Waits until `n` SCIM writes are queued or under way.
async fn writes_waiting(scim: &Scim, n: usize) {
    scim.state
        .engine()
        .reconciler
        .writes_in_flight_reach(n)
        .await;
}

fn entra_user(user_name: &str, external_id: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": external_id,
        "userName": user_name,
        "active": "True",
        "displayName": "Ann Lee",
        "emails": [{"primary": true, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Ann Lee", "familyName": "Lee", "givenName": "Ann"},
        "roles": [],
        ENTERPRISE: {"department": "Engineering", "employeeNumber": "1001", "manager": "mgr-1"}
    })
}

store_test!(
    discovery_is_open_and_truthful,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let (status, headers, config) = scim
            .call("GET", "entra", "/ServiceProviderConfig", None, None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/scim+json");
        assert_eq!(config["patch"]["supported"], true);
        assert_eq!(config["bulk"]["maxOperations"], 1000);
        assert_eq!(config["etag"]["supported"], true);
        let (_, _, types) = scim
            .call("GET", "entra", "/ResourceTypes", None, None)
            .await;
        assert_eq!(types["totalResults"], 2);
        let (status, _, user_type) = scim
            .call("GET", "entra", "/ResourceTypes/User", None, None)
            .await;
        assert_eq!(
            (status, user_type["schemaExtensions"][0]["schema"].as_str()),
            (StatusCode::OK, Some(ENTERPRISE))
        );
        let (_, _, schemas) = scim.call("GET", "entra", "/Schemas", None, None).await;
        assert_eq!(schemas["totalResults"], 3);
        let (status, _, _) = scim
            .call(
                "GET",
                "entra",
                &format!("/Schemas/{ENTERPRISE}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, 200);
        let (status, _, error) = scim
            .call(
                "POST",
                "entra",
                "/ServiceProviderConfig",
                None,
                Some(json!({})),
            )
            .await;
        assert_eq!(
            (status, error["status"].as_str()),
            (StatusCode::METHOD_NOT_ALLOWED, Some("405"))
        );
        // The same documents for any connection id: discovery does not
        // tell which ids are configured.
        let (status, _, unknown) = scim
            .call("GET", "nope", "/ServiceProviderConfig", None, None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(unknown["patch"], config["patch"]);
    }
);

store_test!(
    an_unknown_connection_answers_exactly_like_a_bad_token,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let known = scim
            .call("GET", "entra", "/Users", Some("idps_forged"), None)
            .await;
        for token in [None, Some("idps_forged"), Some(scim.entra.as_str())] {
            let unknown = scim.call("GET", "nosuch", "/Users", token, None).await;
            assert_eq!(unknown.0, 401, "{token:?}");
            assert_eq!(unknown.2, known.2, "the same body");
            assert_eq!(unknown.1["www-authenticate"], known.1["www-authenticate"]);
        }
    }
);

store_test!(
    the_bearer_scheme_is_case_insensitive,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let response = scim
                .client
                .get(format!("{}/entra/Users", scim.root))
                .header("authorization", format!("{scheme}  {}", scim.entra))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{scheme}");
        }
        let basic = scim
            .client
            .get(format!("{}/entra/Users", scim.root))
            .header("authorization", format!("Basic {}", scim.entra))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 401);
    }
);

store_test!(
    read_only_and_immutable_attributes_are_refused_and_types_checked,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let (_, _, user) = scim
            .okta("POST", "/Users", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ann@example.com", "groups": [], "active": true})))
            .await;
        let id = user["id"]
            .as_str()
            .expect("created, with Okta's empty groups")
            .to_string();
        let (_, _, group) = scim
            .okta(
                "POST",
                "/Groups",
                Some(json!({"displayName": "Eng", "members": []})),
            )
            .await;
        let group_id = group["id"].as_str().unwrap().to_string();
        let patch = |operations: Value| {
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}),
            )
        };
        let user_path = format!("/Users/{id}");
        let refused = [
            (
                "PATCH",
                user_path.clone(),
                patch(json!([{"op": "replace", "value": {"id": "someone-else"}}])),
                "mutability",
            ),
            (
                "PATCH",
                user_path.clone(),
                patch(
                    json!([{"op": "replace", "path": "meta.lastModified", "value": "2020-01-01T00:00:00Z"}]),
                ),
                "mutability",
            ),
            (
                "PATCH",
                user_path.clone(),
                patch(json!([{"op": "add", "path": "groups", "value": [{"value": group_id}]}])),
                "mutability",
            ),
            (
                "PUT",
                user_path.clone(),
                Some(json!({"id": "someone-else", "userName": "ann@example.com"})),
                "mutability",
            ),
            (
                "PUT",
                user_path.clone(),
                Some(json!({"userName": "ann@example.com", "groups": [{"value": group_id}]})),
                "mutability",
            ),
            (
                "PATCH",
                user_path.clone(),
                patch(json!([{"op": "replace", "path": "nickName", "value": {"first": "A"}}])),
                "invalidValue",
            ),
            (
                "POST",
                "/Users".to_string(),
                Some(json!({"userName": "bob@example.com", "nickName": {"a": 1}})),
                "invalidValue",
            ),
            (
                "POST",
                "/Users".to_string(),
                Some(json!({"userName": "bob@example.com", "members": [{"value": id}]})),
                "invalidValue",
            ),
            (
                "POST",
                "/Users".to_string(),
                Some(json!({"userName": "bob@example.com", "phoneNumbers": "555"})),
                "invalidValue",
            ),
        ];
        for (method, path, body, expected) in refused {
            let (status, _, error) = scim.okta(method, &path, body.clone()).await;
            assert_eq!(
                (status.as_u16(), scim_type(&error)),
                (400, expected),
                "{method} {path} {body:?}: {error}"
            );
        }
        // What Okta and Entra really send still goes through: the group's
        // own id in a rename, "False" as a boolean, a PUT with its own id.
        let (status, _, renamed) = scim
            .okta("PATCH", &format!("/Groups/{group_id}"), patch(json!([{"op": "replace", "value": {"id": group_id, "displayName": "Engineering"}}])))
            .await;
        assert_eq!(
            (status.as_u16(), renamed["displayName"].as_str()),
            (200, Some("Engineering"))
        );
        let (status, _, off) = scim
            .okta(
                "PATCH",
                &user_path,
                patch(json!([{"op": "Replace", "path": "active", "value": "False"}])),
            )
            .await;
        assert_eq!(
            (status.as_u16(), off["active"].as_bool()),
            (200, Some(false))
        );
        let (status, _, _) = scim
            .okta("PUT", &user_path, Some(json!({"id": id, "userName": "ann@example.com", "active": true, "meta": {"resourceType": "User"}})))
            .await;
        assert_eq!(
            status, 200,
            "a PUT's own id and meta (read-only input) are accepted"
        );
        let (_, _, list) = scim.okta("GET", "/Users", None).await;
        assert_eq!(list["totalResults"], 1, "nothing refused was written");
    }
);

store_test!(
    every_refusal_below_the_handlers_has_a_scim_error_body,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let url = |path: &str| format!("{}/entra{path}", scim.root);
        let token = scim.entra.clone();
        let send = |request: reqwest::RequestBuilder| {
            let token = token.clone();
            async move {
                let response = request.bearer_auth(&token).send().await.unwrap();
                let status = response.status().as_u16();
                let headers = response.headers().clone();
                let body: Value =
                    serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
                assert_eq!(headers["content-type"], "application/scim+json", "{status}");
                assert_eq!(body["status"].as_str(), Some(status.to_string().as_str()));
                assert_eq!(
                    body["schemas"][0],
                    "urn:ietf:params:scim:api:messages:2.0:Error"
                );
                (status, headers, body)
            }
        };
        // A method a route does not take.
        let (status, headers, _) = send(scim.client.delete(url("/Users"))).await;
        assert_eq!(status, 405);
        assert!(headers.contains_key("allow"));
        // Bodies too large: over the endpoint's limit and over the server's.
        for size in [1_100_000, 3_000_000] {
            let body = format!(
                "{{\"userName\": \"big\", \"title\": \"{}\"}}",
                "x".repeat(size)
            );
            let (status, _, _) = send(scim.client.post(url("/Users")).body(body)).await;
            assert_eq!(status, 413, "{size} bytes");
        }
        // Invalid UTF-8.
        let (status, _, error) = send(
            scim.client
                .post(url("/Users"))
                .body(b"{\"userName\": \"\xff\xfe\"}".to_vec()),
        )
        .await;
        assert_eq!((status, scim_type(&error)), (400, "invalidSyntax"));
        // An over-long URI.
        let filter = format!("userName eq \"{}\"", "a".repeat(9_000));
        let (status, _, _) =
            send(scim.client.get(url("/Users")).query(&[("filter", filter)])).await;
        assert_eq!(status, 414);
    }
);

/// A client that sends a body over the limit in full gets the 413 and its
/// error body, not a connection reset half way through its upload (the
/// server reads what was declared, up to 16 MiB, before it answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_sent_in_full_gets_its_413_answer() {
    let test_store = TestStore::sqlite().await;
    let scim = Scim::start(&test_store).await;
    let url = reqwest::Url::parse(&format!("{}/entra/Users", scim.root)).unwrap();
    let address = format!("127.0.0.1:{}", url.port().unwrap());
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/scim+json",
        url.path(),
        scim.entra
    );
    // Far more than the socket buffers hold: without the read on the
    // server's side, the upload stops at a closed connection.
    let answer = tokio::task::spawn_blocking(move || {
        idpsync_core::testing::upload_in_full(&address, &head, 12 * 1024 * 1024)
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("urn:ietf:params:scim:api:messages:2.0:Error"),
        "{answer}"
    );
    test_store.cleanup().await;
}

store_test!(
    only_a_scim_token_of_this_connection_gets_in,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let body = Some(entra_user("ann@example.com", "ann"));
        for token in [
            None,
            Some(scim.admin.as_str()),
            Some(scim.okta.as_str()),
            Some("idps_forged"),
        ] {
            let (status, headers, error) = scim
                .call("POST", "entra", "/Users", token, body.clone())
                .await;
            assert_eq!(status, 401, "{token:?}");
            assert_eq!(error["status"], "401");
            assert_eq!(headers["www-authenticate"], "Bearer");
            let (status, _, _) = scim.call("GET", "entra", "/Users", token, None).await;
            assert_eq!(status, 401);
        }
        test_store.store.revoke_token("entra").await.unwrap();
        assert_eq!(scim.entra("GET", "/Users", None).await.0, 401);
        let (_, _, list) = scim.okta("GET", "/Users", None).await;
        assert_eq!(
            list["totalResults"], 0,
            "nothing was written by the refused requests"
        );
        assert!(
            events::read_after(test_store.store.db(), 0, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
);

store_test!(entra_provisioning_replay, async |test_store: &TestStore| {
    let scim = Scim::start(test_store).await;
    // Matching before create: zero hits is an empty 200.
    let (status, _, empty) = scim
        .entra(
            "GET",
            "/Users?filter=userName+eq+%22ann%40example.com%22",
            None,
        )
        .await;
    assert_eq!(
        (
            status,
            empty["totalResults"].as_u64(),
            empty["Resources"].as_array().map(Vec::len)
        ),
        (StatusCode::OK, Some(0), Some(0))
    );

    let (status, headers, created) = scim
        .entra("POST", "/Users", Some(entra_user("ann@example.com", "ann")))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        headers["location"].to_str().unwrap(),
        created["meta"]["location"].as_str().unwrap()
    );
    assert_eq!(
        headers["etag"].to_str().unwrap(),
        created["meta"]["version"].as_str().unwrap()
    );
    assert_eq!(created["active"], true, "string booleans are accepted");
    assert_eq!(
        created[ENTERPRISE]["manager"],
        json!({"value": "mgr-1"}),
        "bare manager ids become complex"
    );
    assert_eq!(created["meta"]["resourceType"], "User");

    let (_, _, found) = scim
        .entra(
            "GET",
            "/Users?filter=userName%20eq%20%22ANN%40example.com%22",
            None,
        )
        .await;
    assert_eq!(
        found["totalResults"], 1,
        "userName matches case-insensitively"
    );
    let (_, _, by_external) = scim
        .entra("GET", "/Users?filter=externalId%20eq%20%22ann%22", None)
        .await;
    assert_eq!(by_external["Resources"][0]["id"], id);
    let (_, _, wrong_case) = scim
        .entra("GET", "/Users?filter=externalId%20eq%20%22ANN%22", None)
        .await;
    assert_eq!(wrong_case["totalResults"], 0, "externalId is caseExact");

    // A device of Ann's, then Entra disables her.
    let device = devices::register(
        &scim.state.store,
        &scim.state.bus,
        NewDevice {
            owner_connection_id: "entra".into(),
            owner_external_id: id.clone(),
            name: "ann-laptop".into(),
            node_key: "nk-ann".into(),
        },
    )
    .await
    .unwrap();
    let cursor = events::last_id(test_store.store.db()).await.unwrap();
    let (status, _, patched) = scim
        .entra("PATCH", &format!("/Users/{id}"), Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [
                {"op": "Replace", "path": "active", "value": "False"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "ann.lee@example.com"},
                {"op": "Replace", "path": format!("{ENTERPRISE}:department"), "value": "Sales"}
            ]
        })))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["active"], false);
    assert_eq!(patched["emails"][0]["value"], "ann.lee@example.com");
    assert_eq!(patched[ENTERPRISE]["department"], "Sales");
    // The events are committed when the response is sent.
    let kinds: Vec<String> = events::read_after(test_store.store.db(), cursor, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["user.deactivated", "device.revoked"]);
    let (_, _, still_listed) = scim
        .entra("GET", "/Users?filter=active%20eq%20false", None)
        .await;
    assert_eq!(
        still_listed["totalResults"], 1,
        "inactive users are still returned"
    );
    let _ = device;

    // A periodic cycle re-sends an unchanged value: a no-op 200.
    let (status, _, _) = scim.entra("PATCH", &format!("/Users/{id}"), Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}))).await;
    assert_eq!(status, 200);
    assert_eq!(
        events::last_id(test_store.store.db()).await.unwrap(),
        cursor + 2,
        "no new events for a no-op"
    );

    // Groups: created empty, members patched in, removed with a value list.
    let (_, _, bob) = scim
        .entra("POST", "/Users", Some(entra_user("bob@example.com", "bob")))
        .await;
    let bob_id = bob["id"].as_str().unwrap().to_string();
    let (status, _, group) = scim.entra("POST", "/Groups", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Engineering", "externalId": "eng", "members": []}))).await;
    assert_eq!(status, 201, "{group}");
    let group_id = group["id"].as_str().unwrap().to_string();
    let (status, _, _) = scim.entra("PATCH", &format!("/Groups/{group_id}"), Some(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Add", "path": "members", "value": [{"value": id}, {"value": bob_id}]}]
    }))).await;
    assert_eq!(status, 200);
    let (_, _, lookup) = scim
        .entra(
            "GET",
            "/Groups?excludedAttributes=members&filter=displayName%20eq%20%22engineering%22",
            None,
        )
        .await;
    assert_eq!(lookup["totalResults"], 1);
    assert!(lookup["Resources"][0].get("members").is_none());
    let (status, _, after_remove) = scim
        .entra(
            "PATCH",
            &format!("/Groups/{group_id}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "Remove", "path": "members", "value": [{"value": id}]}]
            })),
        )
        .await;
    assert_eq!(status, 200);
    let members: Vec<&str> = after_remove["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        members,
        [bob_id.as_str()],
        "only the listed member is removed"
    );
    let (_, _, with_member) = scim
        .entra(
            "GET",
            &format!("/Groups?filter=members%20eq%20%22{bob_id}%22"),
            None,
        )
        .await;
    assert_eq!(with_member["totalResults"], 1);

    // Hard delete.
    let (status, _, _) = scim.entra("DELETE", &format!("/Users/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _, gone) = scim.entra("GET", &format!("/Users/{id}"), None).await;
    assert_eq!(
        (status, gone["status"].as_str()),
        (StatusCode::NOT_FOUND, Some("404"))
    );
});

store_test!(okta_provisioning_replay, async |test_store: &TestStore| {
    let scim = Scim::start(test_store).await;
    let (status, _, page) = scim.okta("GET", "/Users?startIndex=1&count=2", None).await;
    assert_eq!(
        (
            status,
            page["startIndex"].as_u64(),
            page["itemsPerPage"].as_u64()
        ),
        (StatusCode::OK, Some(1), Some(0))
    );
    let (_, _, none) = scim
        .okta(
            "GET",
            "/Users?filter=userName%20eq%20%22dana%40example.com%22&startIndex=1&count=100",
            None,
        )
        .await;
    assert_eq!(none["totalResults"], 0);
    let (status, _, dana) = scim
        .okta(
            "POST",
            "/Users",
            Some(json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "dana@example.com",
                "name": {"givenName": "Dana", "familyName": "Ng"},
                "emails": [{"primary": true, "value": "dana@example.com", "type": "work"}],
                "displayName": "Dana Ng", "locale": "en-US", "externalId": "00u1okta",
                "groups": [], "password": "1mz050nq", "active": true
            })),
        )
        .await;
    assert_eq!(status, 201, "{dana}");
    assert!(
        dana.get("password").is_none(),
        "passwords are never returned or stored"
    );
    let id = dana["id"].as_str().unwrap().to_string();

    // Profile update by PUT of the whole user.
    let mut updated = dana.clone();
    updated["name"]["familyName"] = json!("Ng-Smith");
    updated["displayName"] = json!("Dana Ng-Smith");
    let (status, _, put) = scim
        .okta("PUT", &format!("/Users/{id}"), Some(updated))
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["name"]["familyName"], "Ng-Smith");
    assert_ne!(put["meta"]["version"], dana["meta"]["version"]);

    // Deactivation: no-path replace.
    let (status, _, off) = scim
        .okta(
            "PATCH",
            &format!("/Users/{id}"),
            Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}]
            })),
        )
        .await;
    assert_eq!(
        (status, off["active"].as_bool()),
        (StatusCode::OK, Some(false))
    );

    // Group push.
    let mut member_ids = Vec::new();
    for name in ["eve", "finn", "gus"] {
        let (_, _, user) = scim
            .okta(
                "POST",
                "/Users",
                Some(json!({"userName": format!("{name}@example.com"), "active": true})),
            )
            .await;
        member_ids.push(user["id"].as_str().unwrap().to_string());
    }
    let (_, _, group) = scim.okta("POST", "/Groups", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops", "members": [{"value": member_ids[0], "display": "eve"}]}))).await;
    let group_id = group["id"].as_str().unwrap().to_string();
    let (status, _, pushed) = scim.okta("PATCH", &format!("/Groups/{group_id}"), Some(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "remove", "path": format!("members[value eq \"{}\"]", member_ids[0])},
            {"op": "add", "path": "members", "value": [{"value": member_ids[1], "display": "finn"}, {"value": member_ids[2], "display": "gus"}]},
            {"op": "replace", "value": {"id": group_id, "displayName": "Operations"}}
        ]
    }))).await;
    assert_eq!(status, 200, "{pushed}");
    assert_eq!(pushed["displayName"], "Operations");
    let mut members: Vec<&str> = pushed["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    members.sort();
    let mut expected = vec![member_ids[1].as_str(), member_ids[2].as_str()];
    expected.sort();
    assert_eq!(members, expected);
    let (status, _, replaced) = scim.okta("PATCH", &format!("/Groups/{group_id}"), Some(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "members", "value": [{"value": member_ids[0]}]}]
    }))).await;
    assert_eq!(status, 200);
    assert_eq!(replaced["members"].as_array().unwrap().len(), 1);
    let (status, _, _) = scim
        .okta("DELETE", &format!("/Groups/{group_id}"), None)
        .await;
    assert_eq!(status, 204);
});

store_test!(
    every_error_case_has_its_status_and_scim_type,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let (_, headers, user) = scim
            .entra("POST", "/Users", Some(entra_user("ann@example.com", "ann")))
            .await;
        let id = user["id"].as_str().unwrap().to_string();
        let etag = headers["etag"].to_str().unwrap().to_string();

        let (status, _, error) = scim
            .entra(
                "POST",
                "/Users",
                Some(entra_user("ANN@example.com", "other")),
            )
            .await;
        assert_eq!(
            (status.as_u16(), error["status"].as_str(), scim_type(&error)),
            (409, Some("409"), "uniqueness")
        );
        assert_eq!(
            error["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );

        let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
            (
                "GET",
                "/Users?filter=userName%20zz%20%22x%22".into(),
                None,
                400,
                "invalidFilter",
            ),
            (
                "GET",
                "/Users?filter=active%20gt%20true".into(),
                None,
                400,
                "invalidFilter",
            ),
            (
                "GET",
                "/Users?filter=meta.created%20gt%20%22yesterday%22".into(),
                None,
                400,
                "invalidFilter",
            ),
            (
                "POST",
                "/Users".into(),
                Some(json!({"displayName": "no userName"})),
                400,
                "invalidValue",
            ),
            (
                "POST",
                "/Users".into(),
                Some(json!({"userName": "x", "active": "perhaps"})),
                400,
                "invalidValue",
            ),
            (
                "PATCH",
                format!("/Users/{id}"),
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove"}]}),
                ),
                400,
                "noTarget",
            ),
            (
                "PATCH",
                format!("/Users/{id}"),
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "remove", "path": "userName"}]}),
                ),
                400,
                "mutability",
            ),
            (
                "PATCH",
                format!("/Users/{id}"),
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}]}),
                ),
                400,
                "invalidPath",
            ),
            (
                "PATCH",
                format!("/Users/{id}"),
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "frobnicate", "path": "active", "value": true}]}),
                ),
                400,
                "invalidSyntax",
            ),
            (
                "POST",
                "/Users/.search".into(),
                Some(json!({"filter": "userName eq"})),
                400,
                "invalidFilter",
            ),
            ("GET", "/Users?count=many".into(), None, 400, "invalidValue"),
            (
                "GET",
                "/Users?sortOrder=sideways".into(),
                None,
                400,
                "invalidValue",
            ),
            ("GET", "/Users/no-such-id".into(), None, 404, ""),
            (
                "PUT",
                "/Users/no-such-id".into(),
                Some(entra_user("z@example.com", "z")),
                404,
                "",
            ),
            ("GET", "/Me".into(), None, 501, ""),
        ];
        for (method, path, body, expected_status, expected_type) in cases {
            let (status, headers, error) = scim.entra(method, &path, body).await;
            assert_eq!(status.as_u16(), expected_status, "{method} {path}: {error}");
            assert_eq!(
                error["status"].as_str(),
                Some(expected_status.to_string().as_str()),
                "{method} {path}"
            );
            assert_eq!(scim_type(&error), expected_type, "{method} {path}: {error}");
            assert_eq!(headers["content-type"], "application/scim+json");
        }

        // Bad JSON and oversized bodies.
        let url = format!("{}/entra/Users", scim.root);
        let bad = scim
            .client
            .post(&url)
            .bearer_auth(&scim.entra)
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
        assert_eq!(
            scim_type(&bad.json::<Value>().await.unwrap()),
            "invalidSyntax"
        );
        let huge = json!({"userName": "big", "title": "x".repeat(1_100_000)});
        let (status, _, error) = scim.entra("POST", "/Users", Some(huge)).await;
        assert_eq!(
            (status.as_u16(), error["status"].as_str()),
            (413, Some("413"))
        );

        // ETags.
        let conditional = |header: &'static str, value: String, method: &'static str| {
            let client = scim.client.clone();
            let url = format!("{}/entra/Users/{id}", scim.root);
            let token = scim.entra.clone();
            async move {
                let request = client
                    .request(method.parse().unwrap(), url)
                    .bearer_auth(token)
                    .header(header, value);
                let request = if method == "PATCH" {
                    request.body(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": "CTO"}]}).to_string())
                } else {
                    request
                };
                request.send().await.unwrap().status().as_u16()
            }
        };
        assert_eq!(conditional("if-none-match", etag.clone(), "GET").await, 304);
        assert_eq!(
            conditional("if-match", "W/\"999\"".into(), "PATCH").await,
            412
        );
        assert_eq!(conditional("if-match", etag.clone(), "PATCH").await, 200);
        assert_eq!(
            conditional("if-match", etag, "DELETE").await,
            412,
            "the PATCH moved the version"
        );

        // A SCIM version other than v2.
        let old = scim
            .client
            .get(format!("{}/../v1/entra/Users", scim.root))
            .bearer_auth(&scim.entra)
            .send()
            .await
            .unwrap();
        assert_eq!(old.status(), 400);
        assert_eq!(
            scim_type(&old.json::<Value>().await.unwrap()),
            "invalidVers"
        );
    }
);

store_test!(
    filters_sorting_paging_and_projection_run_in_the_database,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let people = [
            ("ann@acme.test", "Lee", "Engineering", true, "work", "2001"),
            ("bob@acme.test", "Kim", "Sales", true, "home", "2002"),
            (
                "cat@other.test",
                "Diaz",
                "Engineering",
                false,
                "work",
                "2003",
            ),
            ("dan@acme.test", "Ozturk", "Support", true, "work", "2004"),
        ];
        for (user_name, family, department, active, email_type, number) in people {
            let (status, _, body) = scim.entra("POST", "/Users", Some(json!({
            "userName": user_name, "active": active, "externalId": number,
            "name": {"givenName": user_name.split('@').next().unwrap(), "familyName": family},
            "emails": [{"value": user_name, "type": email_type, "primary": true}],
            ENTERPRISE: {"department": department, "employeeNumber": number}
        }))).await;
            assert_eq!(status, 201, "{body}");
        }
        let names = |body: &Value| -> Vec<String> {
            body["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r["userName"]
                        .as_str()
                        .unwrap()
                        .split('@')
                        .next()
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        let department_filter = format!("{ENTERPRISE}:department eq \"engineering\"");
        let cases: Vec<(&str, Vec<&str>)> = vec![
            (r#"userName sw "A""#, vec!["ann"]),
            (
                r#"userName ew "@acme.test" and active eq true"#,
                vec!["ann", "bob", "dan"],
            ),
            (
                r#"emails[type eq "work" and value co "acme"]"#,
                vec!["ann", "dan"],
            ),
            (
                r#"emails[type eq "work"].value ew "other.test""#,
                vec!["cat"],
            ),
            (r#"emails.value co "BOB""#, vec!["bob"]),
            (&department_filter, vec!["ann", "cat"]),
            (
                r#"name.familyName gt "L" or not (active eq true)"#,
                vec!["ann", "cat", "dan"],
            ),
            (r#"externalId ge "2003""#, vec!["cat", "dan"]),
            (r#"title pr"#, vec![]),
            (
                r#"name.givenName pr and userName ne "bob@acme.test""#,
                vec!["ann", "cat", "dan"],
            ),
            (
                r#"meta.lastModified gt "2000-01-01T00:00:00Z""#,
                vec!["ann", "bob", "cat", "dan"],
            ),
            (r#"nickName eq null"#, vec!["ann", "bob", "cat", "dan"]),
        ];
        for (filter, expected) in cases {
            let (status, _, body) = scim.entra("POST", "/Users/.search", Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": filter, "sortBy": "userName"
        }))).await;
            assert_eq!(status, 200, "{filter}: {body}");
            assert_eq!(names(&body), expected, "{filter}");
            assert_eq!(body["totalResults"], expected.len(), "{filter}");
        }
        let (_, _, sorted) = scim
            .entra(
                "GET",
                "/Users?sortBy=name.familyName&sortOrder=descending",
                None,
            )
            .await;
        assert_eq!(names(&sorted), ["dan", "ann", "bob", "cat"]);
        let (_, _, page) = scim
            .entra("GET", "/Users?sortBy=userName&startIndex=2&count=2", None)
            .await;
        assert_eq!(
            (
                names(&page),
                page["totalResults"].as_u64(),
                page["itemsPerPage"].as_u64(),
                page["startIndex"].as_u64()
            ),
            (
                vec!["bob".to_string(), "cat".to_string()],
                Some(4),
                Some(2),
                Some(2)
            )
        );
        // A full first page is not all there is: the matches are counted.
        let (_, _, first) = scim
            .entra("GET", "/Users?sortBy=userName&count=2", None)
            .await;
        assert_eq!(
            (names(&first), first["totalResults"].as_u64()),
            (vec!["ann".to_string(), "bob".to_string()], Some(4))
        );
        let (_, _, counted) = scim.entra("GET", "/Users?count=0", None).await;
        assert_eq!(
            (
                counted["totalResults"].as_u64(),
                counted["Resources"].as_array().map(Vec::len)
            ),
            (Some(4), Some(0))
        );
        let (_, _, projected) = scim.entra("GET", "/Users?attributes=userName,name.familyName&filter=userName%20eq%20%22ann%40acme.test%22", None).await;
        let ann = &projected["Resources"][0];
        assert_eq!(ann["name"], json!({"familyName": "Lee"}));
        assert!(ann.get("emails").is_none() && ann.get("id").is_some());
        let (_, _, everything) = scim
            .entra(
                "POST",
                "/.search",
                Some(json!({"filter": "displayName pr or userName pr"})),
            )
            .await;
        assert_eq!(everything["totalResults"], 4);
        // Another connection sees none of it.
        let (_, _, okta) = scim.okta("GET", "/Users", None).await;
        assert_eq!(okta["totalResults"], 0);
    }
);

store_test!(
    thousands_of_members_change_in_one_patch,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let users: Vec<Value> = (0..3000).map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("u{i}"), "data": {"userName": format!("user{i}@acme.test")}})).collect();
        let (status, _, bulk) = scim.entra("POST", "/Bulk", Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": users[..1000].to_vec()}))).await;
        assert_eq!(status, 200, "{bulk}");
        let ids: Vec<String> = bulk["Operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| {
                op["location"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(ids.len(), 1000);
        let (_, _, group) = scim
            .entra(
                "POST",
                "/Groups",
                Some(json!({"displayName": "Engineering", "members": []})),
            )
            .await;
        let group_id = group["id"].as_str().unwrap().to_string();
        let add: Vec<Value> = ids.iter().map(|id| json!({"value": id})).collect();
        let (status, _, patched) = scim
            .entra(
                "PATCH",
                &format!("/Groups/{group_id}?excludedAttributes=members"),
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "add", "path": "members", "value": add}]
                })),
            )
            .await;
        assert_eq!(status, 200, "{patched}");
        assert!(patched.get("members").is_none());
        let acl = scim.state.store.db();
        let members = idpsync_core::store::entity::acl_group_member::Entity::find();
        use sea_orm::{EntityTrait, PaginatorTrait};
        assert_eq!(
            members.count(acl).await.unwrap(),
            1000,
            "every member reached the ACL group"
        );
        let remove: Vec<Value> = ids[..600].iter().map(|id| json!({"value": id})).collect();
        let (status, _, _) = scim
            .entra(
                "PATCH",
                &format!("/Groups/{group_id}"),
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "Remove", "path": "members", "value": remove}]
                })),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(
            idpsync_core::store::entity::acl_group_member::Entity::find()
                .count(acl)
                .await
                .unwrap(),
            400
        );
    }
);

store_test!(
    bulk_resolves_references_and_enforces_limits,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let (status, _, bulk) = scim.okta("POST", "/Bulk", Some(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "failOnErrors": 2,
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "g", "data": {"displayName": "Team", "members": [{"value": "bulkId:u"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "u", "data": {"userName": "hal@acme.test"}},
            {"method": "PATCH", "path": "/Users/bulkId:u", "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": "Lead"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "HAL@acme.test"}}
        ]
    }))).await;
        assert_eq!(status, 200, "{bulk}");
        let statuses: Vec<&str> = bulk["Operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["201", "201", "200", "409"], "{bulk}");
        // Each write answers the version it made; a later operation names
        // it as its If-Match (`version`), and a stale one is refused.
        let patched = &bulk["Operations"][2];
        let version = patched["version"].as_str().unwrap();
        let hal = patched["location"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        let title = |value: &str, version: &str| json!({"method": "PATCH", "path": format!("/Users/{hal}"), "version": version, "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": "title", "value": value}]}});
        let (_, _, bulk) = scim
            .okta(
                "POST",
                "/Bulk",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                    "Operations": [title("Head", version), title("Chief", version)]
                })),
            )
            .await;
        let statuses: Vec<&str> = bulk["Operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["200", "412"], "{bulk}");
        let (_, _, user) = scim.okta("GET", &format!("/Users/{hal}"), None).await;
        assert_eq!(user["title"], "Head");
        let (_, _, team) = scim
            .okta("GET", "/Groups?filter=displayName%20eq%20%22Team%22", None)
            .await;
        assert_eq!(
            team["Resources"][0]["members"][0]["display"],
            "hal@acme.test"
        );

        let (status, _, circular) = scim.okta("POST", "/Bulk", Some(json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "a", "data": {"displayName": "A", "members": [{"value": "bulkId:b"}]}},
            {"method": "POST", "path": "/Groups", "bulkId": "b", "data": {"displayName": "B", "members": [{"value": "bulkId:a"}]}}
        ]
    }))).await;
        assert_eq!(status, 200);
        assert_eq!(circular["Operations"][0]["status"], "409");

        let too_many: Vec<Value> = (0..1001)
            .map(|i| json!({"method": "DELETE", "path": format!("/Users/x{i}")}))
            .collect();
        let (status, _, error) = scim.okta("POST", "/Bulk", Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": too_many}))).await;
        assert_eq!(
            (status.as_u16(), error["status"].as_str()),
            (413, Some("413"))
        );
    }
);

store_test!(
    a_filter_matching_too_many_resources_is_refused,
    async |test_store: &TestStore| {
        let scim = Scim::start_with(
            test_store,
            &format!("[server]\nscim_max_filter_matches = 2\n{CONFIG}"),
        )
        .await;
        for name in ["a", "b", "c"] {
            scim.entra(
                "POST",
                "/Users",
                Some(json!({"userName": format!("{name}@acme.test")})),
            )
            .await;
        }
        let (status, _, error) = scim.entra("GET", "/Users?filter=userName%20pr", None).await;
        assert_eq!(
            (status.as_u16(), scim_type(&error)),
            (400, "tooMany"),
            "{error}"
        );
        let (status, _, narrow) = scim
            .entra("GET", "/Users?filter=userName%20sw%20%22a%22", None)
            .await;
        assert_eq!(
            (status.as_u16(), narrow["totalResults"].as_u64()),
            (200, Some(1))
        );
        let (status, _, unfiltered) = scim.entra("GET", "/Users", None).await;
        assert_eq!(
            (status.as_u16(), unfiltered["totalResults"].as_u64()),
            (200, Some(3)),
            "paging through everything is fine"
        );
    }
);

store_test!(
    unknown_group_members_are_echoed_but_grant_nothing,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let (_, _, ann) = scim
            .entra("POST", "/Users", Some(json!({"userName": "ann@acme.test"})))
            .await;
        let ann_id = ann["id"].as_str().unwrap();
        let (status, _, group) = scim.entra("POST", "/Groups", Some(json!({
        "displayName": "Engineering",
        "members": [{"value": ann_id}, {"value": "ghost-1", "type": "User", "$ref": "https://elsewhere/Users/ghost-1"}]
    }))).await;
        assert_eq!(status, 201, "{group}");
        let members = group["members"].as_array().unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(
            members[1],
            json!({"value": "ghost-1", "type": "User", "$ref": "https://elsewhere/Users/ghost-1"})
        );
        use sea_orm::{EntityTrait, PaginatorTrait};
        let acl_members = idpsync_core::store::entity::acl_group_member::Entity::find()
            .count(test_store.store.db())
            .await
            .unwrap();
        assert_eq!(acl_members, 1, "only ann, who exists, is an ACL member");
        let group_id = group["id"].as_str().unwrap();
        let (_, _, patched) = scim
            .entra(
                "PATCH",
                &format!("/Groups/{group_id}"),
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "remove", "path": "members[value eq \"ghost-1\"]"}]
                })),
            )
            .await;
        assert_eq!(patched["members"].as_array().unwrap().len(), 1);
    }
);

store_test!(
    renaming_a_user_to_a_taken_user_name_is_a_uniqueness_conflict,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        scim.entra("POST", "/Users", Some(entra_user("ann@example.com", "ann")))
            .await;
        let (_, _, bob) = scim
            .entra("POST", "/Users", Some(entra_user("bob@example.com", "bob")))
            .await;
        let bob_id = bob["id"].as_str().unwrap().to_string();

        let (status, _, error) = scim
            .entra(
                "PUT",
                &format!("/Users/{bob_id}"),
                Some(entra_user("Ann@Example.com", "bob")),
            )
            .await;
        assert_eq!((status.as_u16(), scim_type(&error)), (409, "uniqueness"));
        assert!(
            error["detail"]
                .as_str()
                .unwrap()
                .contains("Ann@Example.com")
        );

        let (status, _, error) = scim
            .entra(
                "PATCH",
                &format!("/Users/{bob_id}"),
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "userName", "value": "ANN@example.com"}]
                })),
            )
            .await;
        assert_eq!((status.as_u16(), scim_type(&error)), (409, "uniqueness"));

        // Bob keeps his name; changing only its case is no conflict.
        let (status, _, bob) = scim
            .entra(
                "PATCH",
                &format!("/Users/{bob_id}"),
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "path": "userName", "value": "Bob@example.com"}]
                })),
            )
            .await;
        assert_eq!(status.as_u16(), 200, "{bob}");
        assert_eq!(bob["userName"], "Bob@example.com");
    }
);

store_test!(
    concurrent_patches_of_one_user_all_stand,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let (id, _) = create_kim(&scim).await;

        // Both PATCHes arrive while the writer is busy, so both are
        // waiting at once; each must change the user as the other left it.
        let busy_writer = scim.state.store.begin_write().await.unwrap();
        let replace = |path: &str, value: &str| {
            let operation = json!({"op": "replace", "path": path, "value": value});
            send_later(
                &scim,
                "PATCH",
                &format!("/Users/{id}"),
                patch_op(operation),
                None,
            )
        };
        let renamed = replace("displayName", "Kim Park");
        let titled = replace("title", "Engineer");
        writes_waiting(&scim, 2).await;
        drop(busy_writer);
        assert_eq!(renamed.await.unwrap(), 200);
        assert_eq!(titled.await.unwrap(), 200);

        let (_, _, user) = scim.entra("GET", &format!("/Users/{id}"), None).await;
        assert_eq!(
            (user["displayName"].as_str(), user["title"].as_str()),
            (Some("Kim Park"), Some("Engineer")),
            "{user}"
        );
    }
);

store_test!(
    of_two_writes_naming_one_version_only_one_applies,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let (id, etag) = create_kim(&scim).await;

        // Both carry the version they read; they wait for the writer
        // together, so only the transaction can tell them apart.
        let busy_writer = scim.state.store.begin_write().await.unwrap();
        let path = format!("/Users/{id}");
        let title = json!({"op": "replace", "path": "title", "value": "Engineer"});
        let first = send_later(&scim, "PATCH", &path, patch_op(title), Some(&etag));
        writes_waiting(&scim, 1).await;
        let mut replacement = entra_user("kim@example.com", "kim");
        replacement["title"] = "Manager".into();
        let second = send_later(&scim, "PUT", &path, replacement, Some(&etag));
        writes_waiting(&scim, 2).await;
        drop(busy_writer);
        // Which of the two gets the writer first is the database's choice
        // (on PostgreSQL, waiting order is not promised); the promise is
        // that exactly one applies and the other is refused with 412,
        // leaving nothing of itself behind.
        let answers = (first.await.unwrap(), second.await.unwrap());
        let (_, _, user) = scim.entra("GET", &format!("/Users/{id}"), None).await;
        match answers {
            (200, 412) => assert_eq!(user["title"], "Engineer", "{user}"),
            (412, 200) => assert_eq!(user["title"], "Manager", "{user}"),
            other => panic!("exactly one write applies, got {other:?}"),
        }
    }
);

store_test!(
    of_two_deletes_of_one_resource_the_second_finds_nothing,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let path = format!("/Users/{}", create_kim(&scim).await.0);
        let (_, _, group) = scim
            .entra("POST", "/Groups", Some(json!({"displayName": "eng"})))
            .await;
        let group_path = format!("/Groups/{}", group["id"].as_str().unwrap());

        let busy_writer = scim.state.store.begin_write().await.unwrap();
        let deletes = [
            send_later(&scim, "DELETE", &path, Value::Null, None),
            send_later(&scim, "DELETE", &path, Value::Null, None),
            send_later(&scim, "DELETE", &group_path, Value::Null, None),
            send_later(&scim, "DELETE", &group_path, Value::Null, None),
        ];
        writes_waiting(&scim, deletes.len()).await;
        drop(busy_writer);
        let mut statuses = Vec::new();
        for delete in deletes {
            statuses.push(delete.await.unwrap());
        }
        statuses.sort();
        assert_eq!(statuses, [204, 204, 404, 404]);
    }
);

store_test!(
    concurrent_patches_of_one_group_all_stand,
    async |test_store: &TestStore| {
        let scim = Scim::start(test_store).await;
        let (kim_id, _) = create_kim(&scim).await;
        let (_, _, group) = scim
            .entra(
                "POST",
                "/Groups",
                Some(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": "eng"
                })),
            )
            .await;
        let id = group["id"].as_str().unwrap().to_string();

        // All four arrive while the writer is busy; each must change the
        // group as the others left it: the new name, a member, and two
        // members naming nothing stored yet (kept on the group's document).
        let busy_writer = scim.state.store.begin_write().await.unwrap();
        let path = format!("/Groups/{id}");
        let patch = |operation: Value| send_later(&scim, "PATCH", &path, patch_op(operation), None);
        let add =
            |member: &str| json!({"op": "add", "path": "members", "value": [{"value": member}]});
        let patches = [
            patch(json!({"op": "replace", "path": "displayName", "value": "Engineering"})),
            patch(add(&kim_id)),
            patch(add("not-pushed-1")),
            patch(add("not-pushed-2")),
        ];
        writes_waiting(&scim, patches.len()).await;
        drop(busy_writer);
        for patched in patches {
            assert_eq!(patched.await.unwrap(), 200);
        }

        let (_, _, group) = scim.entra("GET", &format!("/Groups/{id}"), None).await;
        assert_eq!(group["displayName"], "Engineering", "{group}");
        let mut members: Vec<&str> = group["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|member| member["value"].as_str().unwrap())
            .collect();
        members.sort();
        let mut expected = vec![kim_id.as_str(), "not-pushed-1", "not-pushed-2"];
        expected.sort();
        assert_eq!(members, expected, "{group}");
    }
);
