//! IdP change notifications: a pulled connection whose IdP can tell us that
//! something changed (Okta event hooks, Graph subscriptions, Google watch
//! channels) pulls right away instead of at its next scheduled run. The
//! schedule stays the safety net: a notification lost on the way delays a
//! change until the next run, and never loses it.
//!
//! * [`Hooks`] holds one [`Endpoint`] per pull connection whose driver has a
//!   [`Notifier`]; `api::hooks` hands it every request to
//!   `/hooks/<kind>/<connection>` ([`Hooks::deliver`]): unknown
//!   connections, floods and bad secrets are refused and counted; what a
//!   delivery reports is queued, never trusted as state.
//! * `trigger`: one task per endpoint turns a burst of queued notices into
//!   one delta run through [`SyncRunner::run`] (the reconciler's one path),
//!   after dropping notices already acted on by this or another daemon
//!   (`hook_deliveries`), at most one run per [`MIN_RUN_INTERVAL`].
//! * `keeper`: keeps the IdP delivering: makes, renews and stops each
//!   connection's subscriptions (`hook_subscriptions`), one daemon at a time.

mod keeper;
mod trigger;

pub use keeper::{SubscriptionRow, subscriptions};

use crate::config::Config;
use crate::daemon::WorkerLife;
use crate::sync::SyncRunner;
use idpsync_driver::Driver;
use idpsync_driver::notify::{Heard, HookAnswer, HookRequest, Notifier};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long notices are gathered before a run, so that a burst (an admin
/// offboarding a team, Okta's batches) is one run.
pub const COALESCE: Duration = Duration::from_millis(200);
/// The least time between two notification runs of one connection.
pub const MIN_RUN_INTERVAL: Duration = Duration::from_secs(1);
/// Deliveries a connection may burst before [`FLOOD_RATE`] applies.
pub const FLOOD_BURST: f64 = 200.0;
/// Deliveries a second a connection accepts, sustained; more are refused
/// with 429 (an IdP retries them later).
pub const FLOOD_RATE: f64 = 50.0;

/// The notifications of one pull connection.
pub struct Endpoint {
    kind: String,
    driver: Box<dyn Driver>,
    /// What deliveries reported and no run has taken yet.
    queue: trigger::Queue,
    /// Subscriptions the IdP asked to have renewed (by the IdP's id).
    resubscribe: Mutex<HashSet<String>>,
    flood: Mutex<Bucket>,
}

impl Endpoint {
    fn notifier(&self) -> &dyn Notifier {
        self.driver
            .notifier()
            .expect("endpoints are made only for drivers with a notifier")
    }
}

/// A token bucket: [`FLOOD_BURST`] deliveries, refilled at [`FLOOD_RATE`].
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full() -> Self {
        Bucket {
            tokens: FLOOD_BURST,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * FLOOD_RATE;
        self.tokens = (self.tokens + refill).min(FLOOD_BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Every connection's notification endpoint, shared by the HTTP handler and
/// the workers.
#[derive(Clone, Default)]
pub struct Hooks {
    endpoints: Arc<BTreeMap<String, Endpoint>>,
    public_url: Option<String>,
    /// Wakes the keeper when an IdP asks for a subscription to be renewed.
    wake_keeper: Arc<tokio::sync::Notify>,
}

impl Hooks {
    /// Endpoints for every enabled pull connection whose driver can be
    /// notified (built once; one whose settings do not build is left out,
    /// and its runs say why).
    pub fn new(config: &Config, runner: &SyncRunner) -> Self {
        let endpoints = config
            .connections
            .iter()
            .filter(|c| c.enabled && c.kind != crate::config::SCIM_KIND)
            .filter_map(|connection| match runner.driver(&connection.id) {
                Ok(driver) if driver.notifier().is_some() => Some((
                    connection.id.clone(),
                    Endpoint {
                        kind: connection.kind.clone(),
                        driver,
                        queue: trigger::Queue::default(),
                        resubscribe: Mutex::new(HashSet::new()),
                        flood: Mutex::new(Bucket::full()),
                    },
                )),
                Ok(_) => None,
                Err(error) => {
                    tracing::warn!(connection = %connection.id, %error, "notifications unavailable: the driver does not build");
                    None
                }
            })
            .collect();
        Hooks {
            endpoints: Arc::new(endpoints),
            public_url: config.server.public_url.clone(),
            wake_keeper: Arc::default(),
        }
    }

    /// The URL an IdP delivers `connection`'s notifications to.
    pub fn callback(public_url: &str, kind: &str, connection: &str) -> String {
        format!(
            "{}/hooks/{kind}/{connection}",
            public_url.trim_end_matches('/')
        )
    }

    /// Answers one request to `/hooks/<kind>/<connection>`.
    pub fn deliver(&self, kind: &str, connection: &str, request: &HookRequest<'_>) -> HookAnswer {
        let Some(endpoint) = self
            .endpoints
            .get(connection)
            .filter(|endpoint| endpoint.kind == kind)
        else {
            // Not labelled by the path: a sender must not grow the metrics.
            metrics::counter!("idpsync_notifications_refused_total", "connection" => "", "reason" => "unknown_connection").increment(1);
            return HookAnswer::empty(404);
        };
        let refused = |reason: &'static str| {
            metrics::counter!("idpsync_notifications_refused_total", "connection" => connection.to_string(), "reason" => reason).increment(1);
        };
        if !endpoint
            .flood
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            refused("flood");
            let mut answer = HookAnswer::empty(429);
            answer.body = b"too many notifications; retry later".to_vec();
            return answer;
        }
        let receipt = match endpoint.notifier().receive(request) {
            Ok(receipt) => receipt,
            Err(refusal) => {
                tracing::warn!(connection, %refusal, "notification refused");
                refused(refusal.reason());
                return refusal.answer();
            }
        };
        if receipt.heard.is_empty() {
            metrics::counter!("idpsync_notifications_received_total", "connection" => connection.to_string(), "what" => "handshake").increment(1);
        }
        for heard in receipt.heard {
            match heard {
                Heard::Changed { key, users, groups } => {
                    metrics::counter!("idpsync_notifications_received_total", "connection" => connection.to_string(), "what" => "change").increment(1);
                    tracing::debug!(connection, ?users, ?groups, "change notified");
                    endpoint.queue.push(key);
                }
                Heard::Missed => {
                    metrics::counter!("idpsync_notifications_received_total", "connection" => connection.to_string(), "what" => "missed").increment(1);
                    tracing::info!(connection, "the IdP missed notifications: pulling now");
                    endpoint.queue.push(None);
                }
                Heard::Resubscribe { subscription } => {
                    metrics::counter!("idpsync_notifications_received_total", "connection" => connection.to_string(), "what" => "lifecycle").increment(1);
                    tracing::info!(connection, %subscription, "the IdP asks for a subscription to be renewed");
                    endpoint
                        .resubscribe
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(subscription);
                    self.wake_keeper.notify_one();
                    // What changed while it lapsed is read now.
                    endpoint.queue.push(None);
                }
            }
        }
        receipt.answer
    }

    /// Starts the workers: a trigger per endpoint and the subscription
    /// keeper (which, without a `public_url`, only stops what an earlier
    /// configuration subscribed). They stop when `shutdown` turns true (the keeper after
    /// stopping the subscriptions that end with the daemon).
    pub fn spawn(&self, runner: SyncRunner, life: WorkerLife) -> Vec<tokio::task::JoinHandle<()>> {
        let mut workers: Vec<_> = self
            .endpoints
            .keys()
            .map(|connection| {
                tokio::spawn(trigger::run(
                    self.clone(),
                    connection.clone(),
                    runner.clone(),
                    life.clone(),
                ))
            })
            .collect();
        workers.push(tokio::spawn(keeper::keep(
            self.clone(),
            runner.store().clone(),
            self.public_url.clone(),
            life,
        )));
        workers
    }

    fn endpoint(&self, connection: &str) -> &Endpoint {
        &self.endpoints[connection]
    }
}
