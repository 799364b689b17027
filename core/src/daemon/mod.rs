//! The daemon's configuration-dependent half, and its reload.
//!
//! What one configuration builds is an [`Engine`]: the configuration, the
//! reconciler (its compiled ACL rules and deletion limits), the sync runner
//! and the notification endpoints. The daemon holds the current engine in
//! a [`LiveEngine`]; handlers take it once per request, and a reload
//! (`SIGHUP`, `POST /api/v1/reload`) validates the file, builds a new
//! engine beside the old one and swaps it in whole. Work in flight keeps
//! the engine it started with; a run is never cut by a reload.
//!
//! Workers (schedules, webhook deliveries, notification triggers and the
//! subscription keeper) belong to a generation: one per engine. A reload
//! retires the old generation (it starts nothing new, finishes what is
//! under way) and starts the new one; see [`workers`].
//!
//! What survives a reload untouched: the store, the event bus, the console's
//! sessions, the runs in flight (the sync runner's in-process run lock and
//! the reconciler's SCIM write coalescer are carried over, so an old and a
//! new engine never run one connection at once). What a reload refuses,
//! keeping the running configuration: an invalid file (every problem with
//! its line:column) and a change to what only a restart can apply
//! (`[server] listen`, `[database]`).

pub mod life;
pub mod reload;
pub mod workers;

use crate::config::Config;
use crate::hooks::Hooks;
use crate::reconcile::Reconciler;
use crate::sync::SyncRunner;
use std::sync::Arc;
use tokio::sync::watch;

pub use life::WorkerLife;
pub use reload::{ReloadError, Reloaded};

/// What one configuration builds.
pub struct Engine {
    pub config: Arc<Config>,
    pub reconciler: Reconciler,
    pub sync: SyncRunner,
    /// IdP change notifications of the configured connections.
    pub hooks: Hooks,
}

impl Engine {
    /// The first engine of a daemon.
    pub fn new(config: Arc<Config>, reconciler: Reconciler, sync: SyncRunner) -> Engine {
        let hooks = Hooks::new(&config, &sync);
        Engine {
            config,
            reconciler,
            sync,
            hooks,
        }
    }

    /// The engine `config` builds, carrying over what must outlive a reload
    /// (see the module's documentation).
    pub fn reconfigured(&self, config: Config) -> Engine {
        let config = Arc::new(config);
        let reconciler = self.reconciler.reconfigured(&config);
        let sync = self.sync.reconfigured(reconciler.clone(), config.clone());
        Engine::new(config, reconciler, sync)
    }
}

/// The current engine, replaced whole by a reload. Cloning shares it.
#[derive(Clone)]
pub struct LiveEngine {
    current: Arc<watch::Sender<Arc<Engine>>>,
}

impl LiveEngine {
    pub fn new(engine: Engine) -> Self {
        LiveEngine {
            current: Arc::new(watch::channel(Arc::new(engine)).0),
        }
    }

    /// The engine now; it stays whole for as long as it is held, whatever
    /// reloads happen meanwhile.
    pub fn current(&self) -> Arc<Engine> {
        self.current.borrow().clone()
    }

    /// Makes `engine` the current one (holders of the old one keep it).
    pub(crate) fn replace(&self, engine: Engine) {
        self.current.send_replace(Arc::new(engine));
    }

    /// Follows the replacements (the workers' supervisor does).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Engine>> {
        self.current.subscribe()
    }
}
