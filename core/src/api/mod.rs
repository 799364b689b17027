//! The HTTP surface of `idpsync serve`: `/healthz`, `/readyz`, `/metrics`
//! the admin API under `/api/v1`, SCIM under `/scim/v2/<connection>` and
//! IdP notifications under `/hooks/<kind>/<connection>`.
//! Only this module knows HTTP.

pub mod auth;
pub mod body;
pub mod error;
pub mod hooks;
pub mod metrics;
pub mod scim;
pub mod v1;

use crate::config::Config;
use crate::daemon::reload::Reloader;
use crate::daemon::workers::Workers;
use crate::daemon::{Engine, LiveEngine};
use crate::events::EventBus;
use crate::reconcile::Reconciler;
use crate::store::Store;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: PrometheusHandle,
    pub bus: EventBus,
    /// The console's signed-in browsers.
    pub console: crate::console::Sessions,
    /// What the configuration builds; replaced whole by a reload. A handler
    /// takes it once ([`AppState::engine`]) and uses that one throughout.
    pub live: LiveEngine,
    pub reloader: Reloader,
}

impl AppState {
    /// Wires the engine for one daemon: one event bus shared by the
    /// reconciler, the feed and the webhooks.
    pub fn new(config: Config, store: Store) -> Self {
        AppState::with_drivers(config, store, crate::sync::DriverRegistry::default())
    }

    /// Wires the engine with the driver kinds this build serves.
    pub fn with_drivers(
        config: Config,
        store: Store,
        drivers: crate::sync::DriverRegistry,
    ) -> Self {
        let bus = EventBus::default();
        let reconciler = Reconciler::new(store.clone(), &config, bus.clone());
        let config = Arc::new(config);
        let drivers = Arc::new(drivers);
        let http = idpsync_driver::http::HttpKit::new(Default::default())
            .expect("the HTTP client builds with rustls");
        let sync =
            crate::sync::SyncRunner::new(reconciler.clone(), drivers.clone(), config.clone(), http);
        let live = LiveEngine::new(Engine::new(config, reconciler, sync));
        AppState {
            reloader: Reloader::new(store.clone(), live.clone(), drivers),
            store,
            metrics: metrics_handle(),
            bus,
            live,
            console: crate::console::Sessions::default(),
        }
    }

    /// Reloads ([`Reloader::reload`]) re-read the config file at `path`.
    pub fn reloadable_from(mut self, path: std::path::PathBuf) -> Self {
        self.reloader = self.reloader.with_file(path);
        self
    }

    /// The engine now (see [`LiveEngine::current`]).
    pub fn engine(&self) -> Arc<Engine> {
        self.live.current()
    }
}

/// The process-wide Prometheus recorder ([`self::metrics::handle`]).
pub fn metrics_handle() -> PrometheusHandle {
    self::metrics::handle()
}

/// The router of the whole daemon.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .nest("/api/v1", v1::router())
        .nest("/console", crate::console::router())
        .nest("/scim/v2", scim::router())
        .nest("/hooks", hooks::router())
        .route(
            "/scim/{version}/{*rest}",
            axum::routing::any(scim::unsupported_version),
        )
        .with_state(state)
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n").into_response()
        }
    }
}

/// Prometheus text exposition.
async fn metrics_text(State(state): State<AppState>) -> Response {
    ::metrics::counter!("idpsync_metrics_scrapes_total").increment(1);
    if let Err(error) = self::metrics::export_health(&state.store, &state.engine().config).await {
        tracing::warn!(%error, "cannot read the connections' health for /metrics");
    }
    self::metrics::process::export();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Serves the daemon's router on `listener` until `shutdown` resolves, with
/// the workers of its engine (replaced by each reload, see
/// [`crate::daemon::workers`]); then gives the workers and the requests in
/// flight one deadline, `[server].shutdown_grace_secs` away, together:
/// long polls answer at once (an empty page keeps its cursor), workers
/// still running at the deadline are stopped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let workers = Workers::start(&state.live, state.store.clone(), state.bus.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let bus = state.bus.clone();
    let live = state.live.clone();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });
    let server = tokio::spawn(async move { server.await });
    // Once shutdown starts, workers and requests in flight share one
    // deadline, `grace` from now; long polls answer at once.
    let _ = stop_rx.await;
    let grace = std::time::Duration::from_secs(live.current().config.server.shutdown_grace_secs);
    let deadline = tokio::time::Instant::now() + grace;
    bus.close();
    workers.stop(deadline).await;
    match tokio::time::timeout_at(deadline, server).await {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) => Err(std::io::Error::other(join_error)),
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "requests or workers still running after the grace period; stopping"
            );
            Ok(())
        }
    }
}
