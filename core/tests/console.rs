//! The console as a browser uses it, over HTTP on loopback: sign in with a
//! token, a session cookie after that, CSRF on every form, read tokens see
//! but cannot change, a revoked token ends its sessions, and a device
//! revoked in the console is revoked (with its event) like anywhere else.

use idpsync_core::auth::Scope;
use idpsync_core::testing::{TestApp, TestStore, device_status};
use reqwest::redirect::Policy;

/// A browser without a cookie jar: the test carries the cookie itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(app: &TestApp, token: &str) -> reqwest::Response {
    browser()
        .post(app.url("/console/sign-in"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

/// Signs in; returns the `Cookie` header value.
async fn session(app: &TestApp, token: &str) -> String {
    let answer = sign_in(app, token).await;
    assert_eq!(answer.status(), 303);
    let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_string();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    cookie.split(';').next().unwrap().to_string()
}

async fn get(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let answer = browser()
        .get(app.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

async fn post(app: &TestApp, cookie: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
    let answer = browser()
        .post(app.url(path))
        .header("cookie", cookie)
        .form(form)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// The CSRF token in a page's forms.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form") + 19;
    page[at..at + 64].to_string()
}

const CONFIG: &str = r#"
[[connections]]
id = "hr"
kind = "scim"
"#;

async fn app(test_store: &TestStore) -> TestApp {
    TestApp::builder(&test_store.store)
        .config(CONFIG)
        .start()
        .await
}

idpsync_core::store_test!(
    an_admin_signs_in_sees_connections_and_revokes_a_device,
    async |test_store: &TestStore| {
        let app = app(test_store).await;
        let admin = app.token("ops", Scope::Admin, None).await;
        // Signed out, every page sends the browser to sign in.
        let answer = browser()
            .get(app.url("/console/devices"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 303);
        assert_eq!(answer.headers()["location"], "/console/sign-in");

        let cookie = session(&app, &admin).await;
        let (status, page) = get(&app, &cookie, "/console/connections").await;
        assert_eq!(status, 200);
        assert!(page.contains("<th scope=\"row\">hr</th>"), "{page}");
        assert!(page.contains("signed in as ops"), "{page}");

        let laptop = app.person_with_laptop("hr", "ann@acme.test").await;
        let (_, page) = get(&app, &cookie, "/console/devices").await;
        let token = csrf(&page);
        let path = format!("/console/devices/{laptop}/revoke");
        // Without the form's CSRF token, nothing happens.
        let (status, _) = post(&app, &cookie, &path, &[("csrf", "forged")]).await;
        assert_eq!(status, 403);
        assert_eq!(device_status(app.store(), laptop).await, "approved");
        let (status, _) = post(&app, &cookie, &path, &[("csrf", &token)]).await;
        assert_eq!(status, 303);
        assert_eq!(device_status(app.store(), laptop).await, "revoked");

        // The live feed the events page polls carries the revocation.
        let (status, feed) = get(&app, &cookie, "/console/events/feed?after=0").await;
        assert_eq!(status, 200);
        assert!(feed.contains("device.revoked"), "{feed}");
    }
);

idpsync_core::store_test!(
    a_read_token_sees_everything_and_changes_nothing,
    async |test_store: &TestStore| {
        let app = app(test_store).await;
        let reader = app.token("auditor", Scope::Read, None).await;
        let cookie = session(&app, &reader).await;
        let laptop = app.person_with_laptop("hr", "bob@acme.test").await;
        let (status, page) = get(&app, &cookie, "/console/devices").await;
        assert_eq!(status, 200);
        assert!(page.contains("(read only)"), "{page}");
        assert!(!page.contains("Revoke"), "no buttons for a read session");
        let token = csrf(&page);
        let (status, page) = post(
            &app,
            &cookie,
            &format!("/console/devices/{laptop}/revoke"),
            &[("csrf", &token)],
        )
        .await;
        assert_eq!(status, 403);
        assert!(page.contains("read token"), "{page}");
        assert_eq!(device_status(app.store(), laptop).await, "approved");
    }
);

idpsync_core::store_test!(
    tokens_are_shown_once_and_a_revoked_token_ends_its_sessions,
    async |test_store: &TestStore| {
        let app = app(test_store).await;
        let admin = app.token("ops", Scope::Admin, None).await;
        let cookie = session(&app, &admin).await;
        let (_, page) = get(&app, &cookie, "/console/tokens").await;
        let token = csrf(&page);
        let (status, page) = post(
            &app,
            &cookie,
            "/console/tokens",
            &[("csrf", &token), ("name", "auditor"), ("scope", "read")],
        )
        .await;
        assert_eq!(status, 200);
        let shown = page.find("id=\"new-token\">").expect("shown once") + 15;
        let created = page[shown..].split('<').next().unwrap().to_string();
        assert!(created.starts_with("idps_"), "{created}");
        let (_, listing) = get(&app, &cookie, "/console/tokens").await;
        assert!(!listing.contains(&created), "the secret is shown once only");

        let auditor = session(&app, &created).await;
        assert_eq!(get(&app, &auditor, "/console/connections").await.0, 200);
        let (status, _) = post(
            &app,
            &cookie,
            "/console/tokens/auditor/revoke",
            &[("csrf", &token)],
        )
        .await;
        assert_eq!(status, 303);
        // Revoked: its session ends (the token cache trusts a verified
        // token for at most a second).
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        assert_eq!(get(&app, &auditor, "/console/connections").await.0, 303);

        // Signing in with it again is refused, saying why.
        let answer = sign_in(&app, &created).await;
        assert_eq!(answer.status(), 401);
        assert!(answer.text().await.unwrap().contains("revoked"));
    }
);

#[tokio::test]
async fn a_post_from_another_site_and_a_devices_token_are_refused() {
    let test_store = TestStore::sqlite().await;
    let app = app(&test_store).await;
    let admin = app.token("ops", Scope::Admin, None).await;
    let answer = browser()
        .post(app.url("/console/sign-in"))
        .header("origin", "https://evil.example")
        .form(&[("token", admin.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403, "login CSRF: another site's form");
    let devices = app.token("agent", Scope::Devices, None).await;
    assert_eq!(sign_in(&app, &devices).await.status(), 401);

    let cookie = session(&app, &admin).await;
    let (_, page) = get(&app, &cookie, "/console/tokens").await;
    let answer = browser()
        .post(app.url("/console/tokens"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .form(&[
            ("csrf", csrf(&page).as_str()),
            ("name", "x"),
            ("scope", "admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    assert!(
        !get(&app, &cookie, "/console/tokens")
            .await
            .1
            .contains(">x<")
    );
}

/// Imports a snapshot of `names` into `hr` through the admin API; the
/// outcome as JSON.
async fn import(app: &TestApp, admin: &str, names: &[&str]) -> serde_json::Value {
    let users: Vec<serde_json::Value> = names
        .iter()
        .map(|name| serde_json::json!({"external_id": format!("id-{name}"), "user_name": name, "active": true}))
        .collect();
    app.client
        .post(app.url("/api/v1/connections/hr/import"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"users": users, "groups": [], "memberships": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

idpsync_core::store_test!(
    a_held_run_shows_who_it_would_deprovision_and_is_rejected_or_approved,
    async |test_store: &TestStore| {
        let app = app(test_store).await;
        let admin = app.token("ops", Scope::Admin, None).await;
        import(&app, &admin, &["ann", "bob", "cat", "dan"]).await;
        // Three of four gone at once: the safety gate holds it.
        let held = import(&app, &admin, &["ann"]).await;
        assert_eq!(held["outcome"], "held", "{held}");
        let cookie = session(&app, &admin).await;
        let (status, page) = get(&app, &cookie, "/console/runs").await;
        assert_eq!(status, 200);
        assert!(page.contains("is held"), "{page}");
        assert!(page.contains("It would delete: "), "{page}");
        for name in ["bob", "cat", "dan"] {
            assert!(page.contains(name), "{name} is named in the plan: {page}");
        }
        let run = held["run_id"].as_i64().expect("the held run's id");
        let token = csrf(&page);
        let (status, _) = post(
            &app,
            &cookie,
            &format!("/console/runs/{run}/reject"),
            &[("csrf", &token)],
        )
        .await;
        assert_eq!(status, 303);
        let (_, page) = get(&app, &cookie, "/console/runs").await;
        assert!(!page.contains("is held"), "{page}");
        assert!(
            page.contains("rejected by console session of token ops"),
            "{page}"
        );
        let (_, feed) = get(&app, &cookie, "/console/events/feed?after=0&limit=1000").await;
        assert!(feed.contains("sync.rejected"), "{feed}");

        // Held again, then approved: the three are deleted.
        let held = import(&app, &admin, &["ann"]).await;
        let run = held["run_id"].as_i64().expect("held again");
        let (status, _) = post(
            &app,
            &cookie,
            &format!("/console/runs/{run}/approve"),
            &[("csrf", &token)],
        )
        .await;
        assert_eq!(status, 303);
        let (_, page) = get(&app, &cookie, "/console/connections").await;
        assert!(page.contains("<td>1 (1)</td>"), "one user left: {page}");
    }
);

idpsync_core::store_test!(
    devices_change_status_and_events_filter_by_kind_and_connection,
    async |test_store: &TestStore| {
        let app = app(test_store).await;
        let admin = app.token("ops", Scope::Admin, None).await;
        let cookie = session(&app, &admin).await;
        let laptop = app.person_with_laptop("hr", "eve@acme.test").await;
        let (_, page) = get(&app, &cookie, "/console/devices").await;
        let token = csrf(&page);
        for (action, status) in [
            ("quarantine", "quarantined"),
            ("lock", "locked"),
            ("approve", "approved"),
        ] {
            let path = format!("/console/devices/{laptop}/{action}");
            assert_eq!(post(&app, &cookie, &path, &[("csrf", &token)]).await.0, 303);
            assert_eq!(device_status(app.store(), laptop).await, status);
        }
        let (status, _) = post(
            &app,
            &cookie,
            &format!("/console/devices/{laptop}/explode"),
            &[("csrf", &token)],
        )
        .await;
        assert_eq!(status, 404);

        // Only device.locked, on the page and in the live feed.
        let (_, page) = get(
            &app,
            &cookie,
            "/console/events?kind=device.locked&connection=hr",
        )
        .await;
        assert!(page.contains("<td>device.locked</td>"), "{page}");
        assert!(!page.contains("<td>device.approved</td>"), "{page}");
        let (_, feed) = get(
            &app,
            &cookie,
            "/console/events/feed?after=0&kind=device.locked",
        )
        .await;
        let feed: serde_json::Value = serde_json::from_str(&feed).unwrap();
        let kinds: Vec<&str> = feed["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["device.locked"]);
        assert!(
            feed["cursor"].as_i64().unwrap() > 1,
            "the cursor passes what is filtered out"
        );
        let (_, other) = get(
            &app,
            &cookie,
            "/console/events/feed?after=0&connection=elsewhere",
        )
        .await;
        assert!(other.contains("\"events\":[]"), "{other}");

        // A pushed connection cannot be pulled: the page says so.
        let (status, page) = post(
            &app,
            &cookie,
            "/console/connections/hr/check",
            &[("csrf", &token)],
        )
        .await;
        assert_eq!(status, 200);
        assert!(page.contains("role=\"alert\""), "{page}");
    }
);

const DIRECTORY_CONFIG: &str = r#"
[[connections]]
id = "hr"
kind = "scim"
[[acl_groups]]
name = "engineering"
[[acl_groups.from]]
connection = "hr"
group_glob = "Eng*"
"#;

idpsync_core::store_test!(
    the_directory_searches_pages_and_says_where_acl_members_come_from,
    async |test_store: &TestStore| {
        let app = TestApp::builder(&test_store.store)
            .config(DIRECTORY_CONFIG)
            .start()
            .await;
        let admin = app.token("ops", Scope::Admin, None).await;
        let mut users: Vec<serde_json::Value> = ["ann", "bob", "cat"]
            .iter()
            .map(|name| serde_json::json!({"external_id": format!("id-{name}"), "user_name": name, "active": true}))
            .collect();
        users.extend((0..55).map(|i| {
            serde_json::json!({"external_id": format!("id-p{i:02}"), "user_name": format!("p{i:02}"), "active": true})
        }));
        let edge = |group: &str, kind: &str, member: &str| serde_json::json!({"group_external_id": group, "member": {"type": kind, "external_id": member}});
        let outcome: serde_json::Value = app
            .client
            .post(app.url("/api/v1/connections/hr/import"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({
                "users": users,
                "groups": [
                    {"external_id": "g-eng", "display_name": "Engineering"},
                    {"external_id": "g-plat", "display_name": "Platform"}
                ],
                "memberships": [
                    edge("g-eng", "user", "id-ann"),
                    edge("g-plat", "user", "id-bob"),
                    edge("g-eng", "group", "g-plat")
                ]
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(outcome["outcome"], "applied", "{outcome}");
        let cookie = session(&app, &admin).await;

        // Search by prefix, any case; paging by 50.
        let (_, page) = get(&app, &cookie, "/console/users?q=B").await;
        assert!(
            page.contains(">bob</a>") && !page.contains(">ann</a>"),
            "{page}"
        );
        let (_, page) = get(&app, &cookie, "/console/users").await;
        assert!(page.contains("rel=\"next\""), "58 users: a next page");
        let next = page
            .split("rel=\"next\" href=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .replace("&amp;", "&");
        let (_, second) = get(&app, &cookie, &next).await;
        assert!(
            second.contains(">p54</a>") && !second.contains(">ann</a>"),
            "{second}"
        );

        // Bob: in Platform directly, in Engineering through it, so in the
        // engineering ACL group.
        let bob = page
            .split(">bob</a>")
            .next()
            .and_then(|before| before.rsplit("/console/users/").next())
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_string();
        let (_, bob_page) = get(&app, &cookie, &format!("/console/users/{bob}")).await;
        for shown in [">Platform</a>", ">Engineering</a>", ">engineering</a>"] {
            assert!(bob_page.contains(shown), "{shown}: {bob_page}");
        }

        // Engineering: Platform and ann directly; ann and bob effectively.
        let engineering = bob_page
            .split(">Engineering</a>")
            .next()
            .and_then(|before| before.rsplit("/console/groups/").next())
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_string();
        let (_, group) = get(&app, &cookie, &format!("/console/groups/{engineering}")).await;
        let (direct, effective) = group.split_once("Effective members").unwrap();
        assert!(
            direct.contains(">Platform</a>") && direct.contains(">ann</a>"),
            "{direct}"
        );
        assert!(!direct.contains(">bob</a>"), "{direct}");
        assert!(
            effective.contains(">ann</a>") && effective.contains(">bob</a>"),
            "{effective}"
        );

        // The ACL group names where each member comes from.
        let (_, acl) = get(&app, &cookie, "/console/acl-groups/engineering").await;
        assert!(
            acl.contains(">bob</a>") && acl.contains(">ann</a>"),
            "{acl}"
        );
        assert!(!acl.contains(">cat</a>"), "{acl}");
        assert!(acl.contains(">Engineering</a>"), "{acl}");
        let (_, rules) = get(&app, &cookie, "/console/acl-groups").await;
        assert!(rules.contains("hr: groups matching Eng*"), "{rules}");
    }
);

idpsync_core::store_test!(
    scim_endpoints_and_bound_tokens_runs_in_detail_and_next_runs,
    async |test_store: &TestStore| {
        let app = app(test_store).await;
        let admin = app.token("ops", Scope::Admin, None).await;
        let cookie = session(&app, &admin).await;
        let (_, page) = get(&app, &cookie, "/console/tokens").await;
        let endpoint = format!("{}/scim/v2/hr", app.url(""));
        assert!(
            page.contains(&endpoint),
            "the SCIM URL to give the IdP: {page}"
        );
        let token = csrf(&page);

        // A scim token must name its connection; bound, it pushes.
        let (status, _) = post(
            &app,
            &cookie,
            "/console/tokens",
            &[
                ("csrf", &token),
                ("name", "idp"),
                ("scope", "scim"),
                ("connection", ""),
            ],
        )
        .await;
        assert_eq!(status, 400);
        let (status, page) = post(
            &app,
            &cookie,
            "/console/tokens",
            &[
                ("csrf", &token),
                ("name", "idp"),
                ("scope", "scim"),
                ("connection", "hr"),
            ],
        )
        .await;
        assert_eq!(status, 200);
        let shown = page.find("id=\"new-token\">").unwrap() + 15;
        let scim = page[shown..].split('<').next().unwrap().to_string();
        let pushed = app
            .client
            .post(format!("{endpoint}/Users"))
            .bearer_auth(&scim)
            .header("content-type", "application/scim+json")
            .body(serde_json::json!({"userName": "fay@acme.test", "active": true}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status(), 201);

        // The connection's last run links to its detail, with its counts.
        let (_, page) = get(&app, &cookie, "/console/connections").await;
        assert!(page.contains("<td>pushed</td>"), "{page}");
        let run = page
            .split("href=\"/console/runs/")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_string();
        let (status, detail) = get(&app, &cookie, &format!("/console/runs/{run}")).await;
        assert_eq!(status, 200);
        assert!(detail.contains("users_created 1"), "{detail}");
    }
);

idpsync_core::store_test!(
    a_page_the_store_cannot_answer_says_why_and_the_others_still_work,
    async |test_store: &TestStore| {
        use sea_orm::ConnectionTrait;
        let app = app(test_store).await;
        let admin = app.token("ops", Scope::Admin, None).await;
        let cookie = session(&app, &admin).await;
        app.person_with_laptop("hr", "ann@acme.test").await;
        let (status, _) = get(&app, &cookie, "/console/devices").await;
        assert_eq!(status, 200);

        let write = app.store().begin_write().await.unwrap();
        write
            .tx
            .execute_unprepared("ALTER TABLE devices RENAME TO devices_away")
            .await
            .unwrap();
        write.commit().await.unwrap();
        for path in ["/console/devices", "/console/users/1"] {
            let (status, page) = get(&app, &cookie, path).await;
            assert_eq!(status, 500, "{path}");
            assert!(page.contains("role=\"alert\""), "{page}");
            assert!(
                page.contains("devices"),
                "the reason names the table: {page}"
            );
        }
        let (status, _) = get(&app, &cookie, "/console/connections").await;
        assert_eq!(status, 200);
    }
);
