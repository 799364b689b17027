//! The daemon's workers, a generation per engine.
//!
//! A generation is what one engine runs in the background: a task per
//! scheduled connection, a delivery task per webhook, and the notification
//! triggers and subscription keeper. When the engine is replaced, the
//! supervisor retires the old generation and starts the new one at once,
//! with two orderings kept:
//!
//! * a connection never runs twice at once: the sync runner's run lock is
//!   carried into the new engine (and a run lock in the store covers
//!   daemons sharing a database);
//! * a webhook's new deliverer starts once the old one has stopped, so an
//!   event in flight is not sent twice by the two of them.
//!
//! Shutdown ends every generation; see [`Workers::stop`].

use super::{Engine, LiveEngine, WorkerLife};
use crate::events::EventBus;
use crate::store::Store;
use crate::webhooks::Dispatcher;
use std::sync::Arc;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The running workers of the daemon, following its engine.
pub struct Workers {
    shutdown: watch::Sender<bool>,
    supervisor: JoinHandle<Vec<JoinHandle<()>>>,
}

impl Workers {
    /// Starts the current engine's generation, and each later one as the
    /// engine is replaced.
    pub fn start(live: &LiveEngine, store: Store, bus: EventBus) -> Workers {
        let (shutdown, shutting_down) = watch::channel(false);
        let engines = live.subscribe();
        let supervisor = tokio::spawn(supervise(engines, store, bus, shutting_down));
        Workers {
            shutdown,
            supervisor,
        }
    }

    /// Stops every generation: waiting tasks end at once, runs not yet
    /// applying are abandoned; tasks still running at `deadline` are
    /// aborted.
    pub async fn stop(self, deadline: Instant) {
        self.shutdown.send_replace(true);
        let tasks = match tokio::time::timeout_at(deadline, self.supervisor).await {
            Ok(Ok(tasks)) => tasks,
            _ => return,
        };
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

/// One engine's workers.
struct Generation {
    retire: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Resolves once this generation's webhook deliverers have stopped.
    webhooks_done: oneshot::Receiver<()>,
}

impl Generation {
    fn start(
        engine: &Engine,
        store: &Store,
        bus: &EventBus,
        shutdown: &watch::Receiver<bool>,
        after_webhooks_of: Option<oneshot::Receiver<()>>,
    ) -> Generation {
        let (retire, retired) = watch::channel(false);
        let life = WorkerLife::new(retired, shutdown.clone());
        let mut tasks =
            crate::sync::schedule::spawn(engine.sync.clone(), &engine.config, life.clone());
        tasks.extend(engine.hooks.spawn(engine.sync.clone(), life.clone()));
        let (done, webhooks_done) = oneshot::channel();
        let dispatcher = Dispatcher::new(store.clone(), bus.clone());
        let webhooks = engine.config.webhooks.clone();
        tasks.push(tokio::spawn(async move {
            if let Some(previous) = after_webhooks_of {
                // Ends with an error once the old deliverers' task is gone.
                let _ = previous.await;
            }
            let _done_when_dropped = done;
            dispatcher.run(webhooks, life).await;
        }));
        Generation {
            retire,
            tasks,
            webhooks_done,
        }
    }
}

async fn supervise(
    mut engines: watch::Receiver<Arc<Engine>>,
    store: Store,
    bus: EventBus,
    shutdown: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let first = engines.borrow_and_update().clone();
    let mut current = Generation::start(&first, &store, &bus, &shutdown, None);
    let mut retired: Vec<JoinHandle<()>> = Vec::new();
    let life = WorkerLife::until(shutdown.clone());
    loop {
        tokio::select! {
            changed = engines.changed() => {
                if changed.is_err() {
                    break;
                }
                let engine = engines.borrow_and_update().clone();
                current.retire.send_replace(true);
                let next = Generation::start(
                    &engine,
                    &store,
                    &bus,
                    &shutdown,
                    Some(current.webhooks_done),
                );
                retired.retain(|task| !task.is_finished());
                retired.extend(current.tasks);
                current = next;
            }
            _ = life.shutting_down() => break,
        }
    }
    retired.extend(current.tasks);
    retired
}
