//! The console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `scripts/test` installs when missing), driven
//! over the W3C WebDriver protocol against the engine on loopback: sign in,
//! see the connections, revoke a device in one window and watch its event
//! arrive live in another without reloading, create and revoke a token, and
//! be refused a change with a read token. Each page's screenshot is written
//! to `target/console-screenshots/` as a test artifact.

use base64::Engine;
use idpsync_core::auth::Scope;
use idpsync_core::testing::{TestApp, TestStore, device_status};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver child on a loopback port; killed when dropped.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
struct Browser<'a> {
    driver: &'a Driver,
    session: String,
    shots: PathBuf,
}

impl Driver {
    async fn start() -> Driver {
        assert!(
            Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists(),
            "these tests need Chromium: apt-get install chromium chromium-driver (scripts/test does)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..100 {
            if let Ok(answer) = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                && answer.status().is_success()
            {
                return driver;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not come up");
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("WebDriver {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    async fn browser(&self, shots: PathBuf) -> Browser<'_> {
        let value = self
            .call(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu",
                        "--disable-dev-shm-usage", "--window-size=1280,900"
                    ]}
                }}})),
            )
            .await;
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            driver: self,
            session: value["sessionId"].as_str().unwrap().to_string(),
            shots,
        }
    }
}

impl Browser<'_> {
    async fn post(&self, path: &str, body: Value) -> Value {
        self.driver
            .call(
                reqwest::Method::POST,
                &format!("/session/{}{path}", self.session),
                Some(body),
            )
            .await
    }

    async fn get(&self, path: &str) -> Value {
        self.driver
            .call(
                reqwest::Method::GET,
                &format!("/session/{}{path}", self.session),
                None,
            )
            .await
    }

    async fn open(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap().to_string()
    }

    async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_string()
    }

    async fn find(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT].as_str().unwrap().to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/value"), json!({"text": text}))
            .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    async fn accept_confirmation(&self) {
        self.post("/alert/accept", json!({})).await;
    }

    async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Waits up to 10 s for the page to contain `text` (without reloading).
    async fn wait_for(&self, text: &str) {
        for _ in 0..100 {
            if self.source().await.contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page never showed {text:?}:\n{}", self.source().await);
    }

    /// Waits up to 10 s for the browser to arrive at a URL ending so (a
    /// click's navigation may finish after the click returns).
    async fn wait_for_url(&self, suffix: &str) {
        for _ in 0..100 {
            if self.url().await.ends_with(suffix) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never reached {suffix}: at {}", self.url().await);
    }

    async fn screenshot(&self, name: &str) {
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), bytes).unwrap();
    }

    async fn new_window(&self) -> String {
        let window = self.post("/window/new", json!({"type": "window"})).await;
        window["handle"].as_str().unwrap().to_string()
    }

    async fn switch_to(&self, handle: &str) {
        self.post("/window", json!({"handle": handle})).await;
    }

    async fn window(&self) -> String {
        self.get("/window").await.as_str().unwrap().to_string()
    }

    async fn sign_in(&self, app: &TestApp, token: &str) {
        self.open(&app.url("/console/connections")).await;
        self.wait_for_url("/console/sign-in").await;
        self.type_into("#token", token).await;
        self.click("button[type=submit]").await;
        self.wait_for_url("/console/connections").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_works_the_console_in_chromium_and_a_reader_is_refused() {
    let test_store = TestStore::sqlite().await;
    let app = TestApp::builder(&test_store.store)
        .config("[[connections]]\nid = \"hr\"\nkind = \"scim\"\n")
        .start()
        .await;
    let admin = app.token("ops", Scope::Admin, None).await;
    let reader = app.token("auditor", Scope::Read, None).await;
    let laptop = app.person_with_laptop("hr", "ann@acme.test").await;
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    let driver = Driver::start().await;
    let browser = driver.browser(shots.clone()).await;

    browser.screenshot("sign-in").await;
    browser.sign_in(&app, &admin).await;
    assert!(browser.source().await.contains("<th scope=\"row\">hr</th>"));
    browser.screenshot("connections").await;

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
    browser.sign_in(&app, &reader).await;
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
