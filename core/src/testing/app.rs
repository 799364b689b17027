//! [`TestApp`]: the engine wired as `idpsync serve` wires it, on a loopback
//! port, for tests (and the bench) that talk to it over HTTP or call its
//! parts. The one way to start the engine in a test.

use crate::api::{AppState, router};
use crate::auth::Scope;
use crate::config::{self, Config};
use crate::store::{NewToken, Store};
use crate::sync::DriverRegistry;
use std::net::SocketAddr;

/// The engine on a loopback port.
pub struct TestApp {
    /// The daemon's state: the store, the reconciler, the sync runner.
    pub state: AppState,
    /// Where the router listens (`127.0.0.1:<free port>`).
    pub address: SocketAddr,
    /// A client for it.
    pub client: reqwest::Client,
    /// With [`TestAppBuilder::daemon`]: what stops the daemon.
    daemon: Option<Daemon>,
}

/// A daemon served by `api::serve`, workers and all.
struct Daemon {
    stop: tokio::sync::oneshot::Sender<()>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// How a [`TestApp`] is configured; [`TestAppBuilder::start`] starts it.
pub struct TestAppBuilder {
    store: Store,
    config_text: Option<String>,
    config_file: Option<std::path::PathBuf>,
    registry: DriverRegistry,
    daemon: bool,
}

impl TestApp {
    /// An engine on `store`, with no connections until [`TestAppBuilder::config`].
    pub fn builder(store: &Store) -> TestAppBuilder {
        TestAppBuilder {
            store: store.clone(),
            config_text: None,
            config_file: None,
            registry: DriverRegistry::default(),
            daemon: false,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A new token with `scope` (bound to `connection` for SCIM tokens).
    pub async fn token(&self, name: &str, scope: Scope, connection: Option<&str>) -> String {
        let (plaintext, _) = self
            .store()
            .create_token(NewToken {
                name: name.into(),
                scopes: vec![scope],
                connection_id: connection.map(str::to_string),
                expires_at: None,
            })
            .await
            .unwrap_or_else(|e| panic!("creating the token {name}: {e}"));
        plaintext
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Shuts a [`TestAppBuilder::daemon`] down as SIGTERM does, and waits
    /// until it has stopped (its workers included).
    pub async fn shut_down(mut self) {
        if let Some(daemon) = self.daemon.take() {
            let _ = daemon.stop.send(());
            daemon
                .served
                .await
                .expect("the daemon task ends")
                .expect("the daemon shuts down cleanly");
        }
    }

    /// A person pushed over SCIM into `connection` (with a token of their
    /// own), who then has an approved laptop; the laptop's id.
    pub async fn person_with_laptop(&self, connection: &str, user_name: &str) -> i64 {
        let scim = self
            .token(&format!("scim-{user_name}"), Scope::Scim, Some(connection))
            .await;
        let created: serde_json::Value = self
            .client
            .post(self.url(&format!("/scim/v2/{connection}/Users")))
            .bearer_auth(scim)
            .header("content-type", "application/scim+json")
            .body(serde_json::json!({"userName": user_name, "active": true}).to_string())
            .send()
            .await
            .and_then(|answer| answer.error_for_status())
            .unwrap_or_else(|e| panic!("creating {user_name} over SCIM: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("reading {user_name}: {e}"));
        let id = created["id"].as_str().expect("a SCIM id");
        super::approved_device(
            self.store(),
            &self.state.bus,
            connection,
            id,
            &format!("nk-{user_name}"),
        )
        .await
    }
}

impl TestAppBuilder {
    /// The TOML the engine runs (connections, ACL groups, ...); its
    /// connections are registered in the store at start.
    pub fn config(mut self, text: &str) -> Self {
        self.config_text = Some(text.to_string());
        self
    }

    /// The config from the file at `path`, as [`TestAppBuilder::config`],
    /// and reloads (`POST /api/v1/reload`) re-read that file as the daemon
    /// does (with the process's environment, so no `${APP_URL}`).
    pub fn config_file(mut self, path: &std::path::Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        self.config_text = Some(text);
        self.config_file = Some(path.to_path_buf());
        self
    }

    /// The drivers the config's pull connections use (SCIM is always known).
    pub fn drivers(mut self, registry: DriverRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// Serve as `idpsync serve` does, with the workers (schedule, webhooks,
    /// notifications), not only the router; stop with [`TestApp::shut_down`].
    pub fn daemon(mut self) -> Self {
        self.daemon = true;
        self
    }

    /// Loads the config (panicking with its errors; `${APP_URL}` in it is
    /// the app's own `http://127.0.0.1:<port>`), registers its connections
    /// and serves the daemon's router on a free loopback port.
    pub async fn start(self) -> TestApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let address = listener.local_addr().expect("a bound listener");
        let app_url = format!("http://{address}");
        let env = |name: &str| (name == "APP_URL").then(|| app_url.clone());
        let config = match &self.config_text {
            Some(text) => {
                // The registry knows `scim` and its drivers' kinds.
                let config = config::load_str(text, "test.toml", &self.registry, &env)
                    .unwrap_or_else(|errors| panic!("{errors}"));
                self.store
                    .register_config(&config.connections, &config.acl_groups)
                    .await
                    .unwrap_or_else(|e| panic!("registering the config: {e}"));
                config
            }
            None => Config::default(),
        };
        let mut state = AppState::with_drivers(config, self.store, self.registry);
        if let Some(path) = self.config_file {
            state = state.reloadable_from(path);
        }
        let daemon = if self.daemon {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let served = tokio::spawn(crate::api::serve(listener, state.clone(), async move {
                let _ = stopped.await;
            }));
            Some(Daemon { stop, served })
        } else {
            let app = router(state.clone());
            tokio::spawn(async move { axum::serve(listener, app).await });
            None
        };
        TestApp {
            state,
            address,
            client: reqwest::Client::new(),
            daemon,
        }
    }
}
