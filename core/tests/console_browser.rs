//! The console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `scripts/test` installs when missing), driven
//! over the W3C WebDriver protocol against the engine on loopback: sign in,
//! see the connections, approve a held run after reading whom it deletes,
//! revoke a device in one window and watch its event
//! arrive live in another without reloading, create and revoke a token, and
//! be refused a change with a read token. Each page's screenshot is written
//! to `target/console-screenshots/` as a test artifact.

use idpsync_core::auth::Scope;
use idpsync_core::testing::browser::Driver;
use idpsync_core::testing::{TestApp, TestStore, device_status};
use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_works_the_console_in_chromium_and_a_reader_is_refused() {
    let test_store = TestStore::sqlite().await;
    let app = TestApp::builder(&test_store.store)
        .config("[[connections]]\nid = \"hr\"\nkind = \"scim\"\n[[connections]]\nid = \"payroll\"\nkind = \"scim\"\n")
        .start()
        .await;
    let admin = app.token("ops", Scope::Admin, None).await;
    let reader = app.token("auditor", Scope::Read, None).await;
    let laptop = app.person_with_laptop("hr", "ann@acme.test").await;
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    let driver = Driver::start().await;
    let browser = driver.browser(shots.clone()).await;

    browser.screenshot("sign-in").await;
    browser.sign_in(&app.url(""), &admin).await;
    assert!(browser.source().await.contains("<th scope=\"row\">hr</th>"));
    browser.screenshot("connections").await;

    // A held run: four people imported, then a listing of one. The admin
    // reads who it would delete and approves it, confirming.
    let import = |names: &'static [&'static str]| {
        let users: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"external_id": format!("id-{n}"), "user_name": n, "active": true}))
            .collect();
        app.client
            .post(app.url("/api/v1/connections/payroll/import"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"users": users}))
            .send()
    };
    import(&["zoe", "yan", "xia", "wes"]).await.unwrap();
    let held: serde_json::Value = import(&["zoe"]).await.unwrap().json().await.unwrap();
    let run = held["run_id"].as_i64().expect("a held run");
    browser.open(&app.url("/console/runs")).await;
    browser.wait_for("is held").await;
    assert!(browser.source().await.contains("xia"));
    browser.screenshot("runs-held").await;
    browser
        .click(&format!(
            "form[action=\"/console/runs/{run}/approve\"] button"
        ))
        .await;
    browser.accept_confirmation().await;
    browser.wait_for("<td>approved</td>").await;
    assert!(!browser.source().await.contains("is held"));

    // The events page stays open in one window...
    let events_window = browser.window().await;
    browser.open(&app.url("/console/events")).await;
    browser.screenshot("events-before").await;
    // ...while another revokes the laptop, confirming the dialog.
    let devices_window = browser.new_window().await;
    browser.switch_to(&devices_window).await;
    browser.open(&app.url("/console/devices")).await;
    browser.screenshot("devices").await;
    browser
        .click(&format!(
            "form[action=\"/console/devices/{laptop}/revoke\"] button"
        ))
        .await;
    browser.accept_confirmation().await;
    browser.wait_for("revoked in the console by ops").await;
    assert_eq!(device_status(app.store(), laptop).await, "revoked");
    // The event arrives in the first window without a reload.
    browser.switch_to(&events_window).await;
    browser.wait_for("device.revoked").await;
    browser.screenshot("events-live").await;

    // A token: created (shown once), then revoked.
    browser.open(&app.url("/console/tokens")).await;
    browser.type_into("#name", "ci-reader").await;
    browser
        .click("form[action=\"/console/tokens\"] button")
        .await;
    browser.wait_for("shown this once").await;
    browser.screenshot("token-created").await;
    browser
        .click("form[action=\"/console/tokens/ci-reader/revoke\"] button")
        .await;
    browser.accept_confirmation().await;
    browser.wait_for("revoked</td>").await;
    browser.screenshot("tokens").await;

    // A reader signs in, sees the devices, and is refused a change even
    // when the form is forged in the page.
    browser
        .click("form[action=\"/console/sign-out\"] button")
        .await;
    browser.wait_for_url("/console/sign-in").await;
    browser.sign_in(&app.url(""), &reader).await;
    browser.open(&app.url("/console/devices")).await;
    assert!(
        !browser.source().await.contains(">Revoke<"),
        "no buttons for a reader"
    );
    let second = app.person_with_laptop("hr", "bob@acme.test").await;
    browser
        .script(&format!(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '/console/devices/{second}/revoke';
             const c = document.createElement('input'); c.name = 'csrf'; c.value = document.querySelector('input[name=csrf]').value;
             f.appendChild(c); document.body.appendChild(f); f.submit();"
        ))
        .await;
    browser.wait_for("read token").await;
    browser.screenshot("read-only-refused").await;
    assert_eq!(device_status(app.store(), second).await, "approved");
    for shot in [
        "sign-in",
        "connections",
        "devices",
        "events-live",
        "tokens",
        "read-only-refused",
    ] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
}
