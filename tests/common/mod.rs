//! Harness for end-to-end tests: runs the real `idpsync` binary against a
//! config and database in a temporary directory, on a loopback port.

#![allow(dead_code)]

pub mod engine;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory with a config file; the database is a SQLite file
/// inside it unless the config says otherwise.
pub struct Workdir {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Workdir {
    /// Writes `config` (where `{db}` stands for the SQLite URL and `{port}`
    /// for a free loopback port) to `idpsync.toml`.
    pub fn new(config: &str) -> (Workdir, u16) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let db_url = format!("sqlite://{}", dir.path().join("idpsync.db").display());
        let text = config
            .replace("{db}", &db_url)
            .replace("{port}", &port.to_string());
        let config_path = dir.path().join("idpsync.toml");
        std::fs::write(&config_path, text).expect("write config");
        (Workdir { dir, config_path }, port)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("idpsync.db")
    }

    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self.db_path().display())
    }

    /// Runs `idpsync --config <file> <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        idpsync(&self.config_path, args)
            .output()
            .expect("run the idpsync binary")
    }

    /// Starts `idpsync serve` in the background.
    pub fn serve(&self, port: u16) -> Daemon {
        let child = idpsync(&self.config_path, &["serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start idpsync serve");
        let daemon = Daemon { child, port };
        daemon.wait_healthy();
        daemon
    }
}

pub fn idpsync(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idpsync"));
    command
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("IDPSYNC_CONFIG")
        .env("IDPSYNC_LOG", "warn");
    command
}

/// A running daemon; killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
}

impl Daemon {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn wait_healthy(&self) {
        wait_listening(self.port);
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for idpsync") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "idpsync did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when this is dropped, also when a test panics:
/// a failed test leaves no daemon running behind it.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (at most 30 s) until something listens on the loopback `port`.
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("idpsync serve did not listen on port {port} within 30 s");
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("find a free port")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The admin API of a daemon, with a token.
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// The first event of `kind` about `connection` committed after the
    /// event `after`, read by long-polling the feed (woken at commit, no
    /// polling delay); at most 60 s.
    pub async fn next_event(&self, after: i64, kind: &str, connection: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut cursor = after;
        loop {
            assert!(
                Instant::now() < deadline,
                "no {kind} of {connection} within 60 s"
            );
            let page = self.get(&format!("/events?after={cursor}&wait=10")).await;
            for event in page["events"].as_array().cloned().unwrap_or_default() {
                if event["kind"] == kind && event["connection_id"] == connection {
                    return event;
                }
            }
            cursor = page["cursor"].as_i64().unwrap_or(cursor);
        }
    }

    /// The id of the newest event (0 when there is none).
    pub async fn last_event_id(&self) -> i64 {
        let mut cursor = 0;
        loop {
            let page = self
                .get(&format!("/events?after={cursor}&limit=1000"))
                .await;
            let next = page["cursor"].as_i64().unwrap_or(cursor);
            if next == cursor {
                return cursor;
            }
            cursor = next;
        }
    }

    /// Waits (bounded) until `connection` has `n` finished runs; returns the
    /// newest. (Polled: an unchanged run writes no event to wait for.)
    pub async fn wait_for_runs(&self, connection: &str, n: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let runs = self.get(&format!("/runs?connection={connection}")).await;
            let items = runs["items"].as_array().cloned().unwrap_or_default();
            if items.len() >= n {
                return items[0].clone();
            }
            assert!(Instant::now() < deadline, "no run #{n} within 60 s: {runs}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Builds the plugin crate `package` (a cdylib in this workspace) and returns
/// the path of its shared library: the same file an admin would point
/// `[connections.plugin].path` at. It is built into its own target folder,
/// because the `cargo test` running this holds the lock on the main one.
pub fn plugin_library(package: &str) -> PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target").join("plugin-test");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--quiet", "-p", package, "--target-dir"])
        .arg(&target)
        .output()
        .expect("run cargo build for a plugin");
    assert!(
        output.status.success(),
        "cargo build -p {package} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let library = target
        .join("debug")
        .join(format!("lib{}.so", package.replace('-', "_")));
    assert!(library.is_file(), "{} was not built", library.display());
    library
}

/// The connections `idpsync demo` pulls from its fake IdPs (its SCIM
/// connection is `hr-scim`).
pub const DEMO_PULLED: [&str; 8] = [
    "entra",
    "okta",
    "google",
    "keycloak",
    "jumpcloud",
    "auth0",
    "authentik",
    "zitadel",
];

/// Waits (up to 20 s) until `check` holds.
pub async fn eventually<F: std::future::Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
