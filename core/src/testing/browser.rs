//! A real headless Chromium for tests of the console (Debian's `chromium`
//! and `chromium-driver`; `scripts/test` installs them), driven over the
//! W3C WebDriver protocol by a `chromedriver` child on a loopback port.

use base64::Engine;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver child on a loopback port; killed when dropped.
pub struct Driver {
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
pub struct Browser<'a> {
    driver: &'a Driver,
    session: String,
    shots: PathBuf,
}

impl Driver {
    pub async fn start() -> Driver {
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

    pub async fn browser(&self, shots: PathBuf) -> Browser<'_> {
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

    pub async fn open(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn source(&self) -> String {
        self.get("/source").await.as_str().unwrap().to_string()
    }

    pub async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_string()
    }

    pub async fn find(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT].as_str().unwrap().to_string()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/value"), json!({"text": text}))
            .await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    pub async fn accept_confirmation(&self) {
        self.post("/alert/accept", json!({})).await;
    }

    pub async fn script(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
            .await
    }

    /// Waits up to 10 s for the page to contain `text` (without reloading).
    pub async fn wait_for(&self, text: &str) {
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
    pub async fn wait_for_url(&self, suffix: &str) {
        for _ in 0..100 {
            if self.url().await.ends_with(suffix) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never reached {suffix}: at {}", self.url().await);
    }

    pub async fn screenshot(&self, name: &str) {
        let png = self.get("/screenshot").await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), bytes).unwrap();
    }

    pub async fn new_window(&self) -> String {
        let window = self.post("/window/new", json!({"type": "window"})).await;
        window["handle"].as_str().unwrap().to_string()
    }

    pub async fn switch_to(&self, handle: &str) {
        self.post("/window", json!({"handle": handle})).await;
    }

    pub async fn window(&self) -> String {
        self.get("/window").await.as_str().unwrap().to_string()
    }

    /// Signs in at the console under `base` (`http://host:port`).
    pub async fn sign_in(&self, base: &str, token: &str) {
        self.open(&format!("{base}/console/connections")).await;
        self.wait_for_url("/console/sign-in").await;
        self.type_into("#token", token).await;
        self.click("button[type=submit]").await;
        self.wait_for_url("/console/connections").await;
    }
}
