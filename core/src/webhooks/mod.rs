//! Webhooks: every event whose kind matches a webhook's patterns is POSTed to
//! its URL as JSON, signed with HMAC-SHA256 (`X-Idpsync-Signature:
//! sha256=<hex>` over the body).
//!
//! The event log is the durable outbox. Each webhook keeps, in
//! `webhook_deliveries`, the id of the last event it delivered and the retry
//! state of the next one; events are delivered in order, at least once, with
//! exponential backoff and jitter, and delivery resumes after a restart where
//! it stopped. The dispatcher runs beside the reconciler and never blocks it.
//! A webhook added to the config starts at the end of the log.

use crate::config::WebhookConfig;
use crate::daemon::WorkerLife;
use crate::events::{self, Event, EventBus, FALLBACK_POLL};
use crate::store::Store;
use crate::store::entity::webhook_delivery;
use chrono::Utc;
use hmac::{Hmac, KeyInit, Mac};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, DbErr, EntityTrait, Set};
use sha2::Sha256;
use std::time::Duration;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-idpsync-signature";

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `kind` matches `pattern`, where `*` matches any run of characters.
pub fn kind_matches(pattern: &str, kind: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = kind.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (index, part) in parts.iter().enumerate() {
        if index == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(position) => rest = &rest[position + part.len()..],
            None => return false,
        }
    }
    true
}

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// Delay before attempt `attempts + 1`: doubling, capped, with up to 20% jitter.
    pub fn delay(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(20);
        let base = self.first.saturating_mul(1 << exponent).min(self.max);
        let jitter = rand::random::<f64>() * 0.2;
        base.mul_f64(1.0 - jitter)
    }
}

/// Delivers events to the configured webhooks until shut down.
pub struct Dispatcher {
    store: Store,
    bus: EventBus,
    client: reqwest::Client,
    backoff: Backoff,
}

impl Dispatcher {
    pub fn new(store: Store, bus: EventBus) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("idpsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with rustls builds");
        Dispatcher {
            store,
            bus,
            client,
            backoff: Backoff::default(),
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Starts one task per webhook; each stops between deliveries once
    /// `life` is over.
    pub fn spawn(
        self,
        webhooks: Vec<WebhookConfig>,
        life: WorkerLife,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.workers(webhooks)
            .map(|worker| {
                let life = life.clone();
                tokio::spawn(async move { worker.run(life).await })
            })
            .collect()
    }

    /// Runs a worker per webhook in the caller's task, until each has
    /// stopped (see [`Dispatcher::spawn`]).
    pub async fn run(self, webhooks: Vec<WebhookConfig>, life: WorkerLife) {
        futures_util::future::join_all(
            self.workers(webhooks)
                .map(|worker| worker.run(life.clone())),
        )
        .await;
    }

    fn workers(self, webhooks: Vec<WebhookConfig>) -> impl Iterator<Item = Worker> {
        webhooks.into_iter().map(move |webhook| Worker {
            store: self.store.clone(),
            bus: self.bus.clone(),
            client: self.client.clone(),
            backoff: self.backoff,
            webhook,
        })
    }
}

struct Worker {
    store: Store,
    bus: EventBus,
    client: reqwest::Client,
    backoff: Backoff,
    webhook: WebhookConfig,
}

impl Worker {
    async fn run(self, life: WorkerLife) {
        let name = self.webhook.name.clone();
        let mut wake = self.bus.subscribe();
        loop {
            if life.is_over() {
                return;
            }
            let pause = match self.step().await {
                Ok(Step::Busy) => continue,
                Ok(Step::Idle) => FALLBACK_POLL,
                Ok(Step::RetryIn(delay)) => delay,
                Err(error) => {
                    tracing::warn!(webhook = %name, %error, "webhook dispatcher cannot read its state; retrying");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = life.over() => {}
                _ = wake.changed() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    async fn state(&self) -> Result<webhook_delivery::Model, DbErr> {
        let db = self.store.db();
        if let Some(state) = webhook_delivery::Entity::find_by_id(&self.webhook.name)
            .one(db)
            .await?
        {
            return Ok(state);
        }
        let write = self.store.begin_write().await.map_err(store_error)?;
        let end_of_log = events::last_id(&write.tx).await?;
        webhook_delivery::Entity::insert(webhook_delivery::ActiveModel {
            webhook: Set(self.webhook.name.clone()),
            last_event_id: Set(end_of_log),
            attempts: Set(0),
            next_attempt_at: Set(None),
            last_error: Set(None),
            last_delivered_at: Set(None),
            updated_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(webhook_delivery::Column::Webhook)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&write.tx)
        .await?;
        write.commit().await.map_err(store_error)?;
        webhook_delivery::Entity::find_by_id(&self.webhook.name)
            .one(db)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound(self.webhook.name.clone()))
    }

    /// Delivers what is due; says when to look again.
    async fn step(&self) -> Result<Step, DbErr> {
        let state = self.state().await?;
        if let Some(at) = state.next_attempt_at {
            let now = Utc::now();
            if at > now {
                return Ok(Step::RetryIn((at - now).to_std().unwrap_or_default()));
            }
        }
        let batch = events::read_after(self.store.db(), state.last_event_id, 100).await?;
        if batch.is_empty() {
            return Ok(Step::Idle);
        }
        let mut cursor = state.last_event_id;
        let mut saved_cursor = state.last_event_id;
        for event in batch {
            if !self
                .webhook
                .events
                .iter()
                .any(|pattern| kind_matches(pattern, &event.kind))
            {
                cursor = event.id;
                continue;
            }
            match self.deliver(&event).await {
                Ok(()) => {
                    cursor = event.id;
                    saved_cursor = cursor;
                    metrics::counter!("idpsync_webhook_deliveries_total", "webhook" => self.webhook.name.clone(), "outcome" => "delivered").increment(1);
                    self.save(cursor, 0, None, None, true).await?;
                }
                Err(error) => {
                    let attempts = state.attempts + 1;
                    let delay = self.backoff.delay(attempts as u32);
                    metrics::counter!("idpsync_webhook_deliveries_total", "webhook" => self.webhook.name.clone(), "outcome" => "failed").increment(1);
                    tracing::warn!(webhook = %self.webhook.name, event_id = event.id, attempts, retry_in_ms = delay.as_millis() as u64, %error, "webhook delivery failed");
                    self.save(cursor, attempts, Some(delay), Some(error), false)
                        .await?;
                    return Ok(Step::RetryIn(delay));
                }
            }
        }
        if cursor != saved_cursor {
            self.save(cursor, 0, None, None, false).await?;
        }
        Ok(Step::Busy)
    }

    async fn save(
        &self,
        cursor: i64,
        attempts: i32,
        retry_in: Option<Duration>,
        error: Option<String>,
        delivered: bool,
    ) -> Result<(), DbErr> {
        let now = Utc::now();
        let mut row = webhook_delivery::ActiveModel {
            webhook: Set(self.webhook.name.clone()),
            last_event_id: Set(cursor),
            attempts: Set(attempts),
            next_attempt_at: Set(
                retry_in.map(|delay| now + chrono::Duration::from_std(delay).unwrap_or_default())
            ),
            last_error: Set(error),
            updated_at: Set(now),
            ..Default::default()
        };
        if delivered {
            row.last_delivered_at = Set(Some(now));
        }
        let write = self.store.begin_write().await.map_err(store_error)?;
        row.update(&write.tx).await?;
        write.commit().await.map_err(store_error)?;
        Ok(())
    }

    async fn deliver(&self, event: &Event) -> Result<(), String> {
        let body = serde_json::to_vec(event).map_err(|error| error.to_string())?;
        let response = self
            .client
            .post(&self.webhook.url)
            .timeout(Duration::from_secs(self.webhook.timeout_secs.max(1)))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                SIGNATURE_HEADER,
                signature(self.webhook.secret.expose(), &body),
            )
            .header("x-idpsync-event-id", event.id.to_string())
            .header("x-idpsync-event-kind", &event.kind)
            .body(body)
            .send()
            .await
            // The URL may carry credentials: keep it out of errors.
            .map_err(|error| error.without_url().to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered {}", response.status()))
        }
    }
}

fn store_error(error: crate::store::StoreError) -> DbErr {
    match error {
        crate::store::StoreError::Db(db) => db,
        other => DbErr::Custom(other.to_string()),
    }
}

enum Step {
    /// More may be due right away.
    Busy,
    /// Nothing to deliver.
    Idle,
    /// Delivery failed; try again after this delay.
    RetryIn(Duration),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_event_kinds() {
        assert!(kind_matches("*", "device.revoked"));
        assert!(kind_matches("device.*", "device.revoked"));
        assert!(!kind_matches("device.*", "user.deleted"));
        assert!(kind_matches("user.deleted", "user.deleted"));
        assert!(!kind_matches("user.deleted", "user.deleted.extra"));
        assert!(kind_matches("*.member_*", "acl_group.member_added"));
        assert!(!kind_matches("*.member_*", "acl_group.created"));
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let backoff = Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        let first = backoff.delay(1);
        assert!(first <= Duration::from_secs(1) && first >= Duration::from_millis(800));
        let fourth = backoff.delay(4);
        assert!(fourth <= Duration::from_secs(8) && fourth >= Duration::from_millis(6400));
        assert!(backoff.delay(30) <= Duration::from_secs(10));
    }
}
