//! From notices to runs: one task per endpoint waits for notices, gathers
//! a burst for [`COALESCE`], drops the ones this or another daemon already
//! acted on (their keys in `hook_deliveries`), and runs the connection
//! once through [`SyncRunner::run`] (a delta where the driver has one).
//! Notices that arrive during the run lead to one more run after it. A
//! connection that is quarantined or backing off waits as it does for its
//! schedule.

use super::{COALESCE, Hooks, MIN_RUN_INTERVAL};
use crate::daemon::WorkerLife;
use crate::reconcile::Trigger;
use crate::store::Store;
use crate::store::entity::hook_delivery;
use crate::sync::schedule::held_back;
use crate::sync::{SyncError, SyncRunner, SyncStatus};
use chrono::Utc;
use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Notices queued for the next run of one connection.
#[derive(Default)]
pub(super) struct Queue {
    batch: Mutex<Batch>,
    arrived: Notify,
}

#[derive(Default)]
struct Batch {
    /// Keys of keyed notices, to be checked against those acted on.
    keys: Vec<String>,
    /// A notice without a key came (Graph's, a `missed`): it always runs.
    unkeyed: bool,
    /// When the first notice of the batch arrived: the lag is measured
    /// from it.
    since: Option<Instant>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && !self.unkeyed
    }
}

impl Queue {
    pub(super) fn push(&self, key: Option<String>) {
        {
            let mut batch = self.batch.lock().unwrap_or_else(|e| e.into_inner());
            match key {
                Some(key) => batch.keys.push(key),
                None => batch.unkeyed = true,
            }
            batch.since.get_or_insert_with(Instant::now);
        }
        self.arrived.notify_one();
    }

    fn take(&self) -> Batch {
        std::mem::take(&mut *self.batch.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Records `keys` as acted on; how many were new. Another daemon (or this
/// one) that recorded a key first has run or is running for it.
async fn record_new(
    store: &Store,
    connection: &str,
    keys: &[String],
) -> Result<u64, crate::store::StoreError> {
    if keys.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let mut fresh = 0;
    // Through the writer lock: on SQLite a write beside an apply fails it.
    let write = store.begin_write().await?;
    // Bounded statements: a flood's worth of keys is several inserts.
    for chunk in keys.chunks(500) {
        let rows = chunk.iter().map(|key| hook_delivery::ActiveModel {
            connection_id: Set(connection.to_string()),
            delivery_key: Set(key.clone()),
            received_at: Set(now),
        });
        fresh += hook_delivery::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([
                    hook_delivery::Column::ConnectionId,
                    hook_delivery::Column::DeliveryKey,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&write.tx)
            .await?;
    }
    write.commit().await?;
    Ok(fresh)
}

pub(super) async fn run(hooks: Hooks, connection: String, runner: SyncRunner, life: WorkerLife) {
    let queue = &hooks.endpoint(&connection).queue;
    let mut last_run: Option<Instant> = None;
    loop {
        // Retired by a reload: notices already heard still make their run
        // (the new configuration's endpoint hears the later ones).
        let retired = tokio::select! {
            _ = queue.arrived.notified() => false,
            _ = life.over() => true,
        };
        if !retired {
            let wait = last_run
                .map(|at| MIN_RUN_INTERVAL.saturating_sub(at.elapsed()))
                .unwrap_or_default()
                .max(COALESCE);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = life.over() => {}
            }
        }
        if life.is_shutting_down() {
            return;
        }
        let batch = queue.take();
        if batch.is_empty() {
            if life.is_over() {
                return;
            }
            continue;
        }
        let since = batch.since.unwrap_or_else(Instant::now);
        let fresh = match record_new(runner.store(), &connection, &batch.keys).await {
            Ok(fresh) => fresh,
            Err(error) => {
                // Better a second run than none.
                tracing::warn!(connection, %error, "cannot record notices as acted on; running anyway");
                batch.keys.len() as u64
            }
        };
        let repeated = batch.keys.len() as u64 - fresh.min(batch.keys.len() as u64);
        if repeated > 0 {
            metrics::counter!("idpsync_notifications_duplicate_total", "connection" => connection.clone()).increment(repeated);
        }
        if fresh == 0 && !batch.unkeyed {
            tracing::debug!(connection, "every notice was already acted on");
        } else if !held_back(&runner, &connection).await {
            run_once(&runner, &connection, since, &life).await;
            last_run = Some(Instant::now());
        }
        if life.is_over() {
            return;
        }
    }
}

/// Runs the connection, waiting for a run already under way (here or in
/// another daemon) to end first: it may have read the IdP before the change.
async fn run_once(runner: &SyncRunner, connection: &str, since: Instant, life: &WorkerLife) {
    let mut pause = Duration::from_millis(50);
    loop {
        match runner
            .run(
                connection,
                Trigger::Notification,
                false,
                false,
                life.shutting_down(),
            )
            .await
        {
            Err(SyncError::AlreadyRunning(_)) => {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = life.shutting_down() => return,
                }
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Ok(report) => {
                let lag = since.elapsed();
                metrics::counter!("idpsync_notification_runs_total", "connection" => connection.to_string(), "status" => report.status.as_str()).increment(1);
                metrics::histogram!("idpsync_notification_lag_seconds", "connection" => connection.to_string()).record(lag.as_secs_f64());
                if report.status == SyncStatus::Failed {
                    tracing::warn!(connection, run_id = ?report.run_id, error = report.error.as_deref().unwrap_or_default(), "notified sync failed; recorded");
                } else {
                    tracing::info!(connection, status = %report.status, run_id = ?report.run_id, lag_ms = lag.as_millis() as u64, "notified sync finished");
                }
                return;
            }
            Err(error) => {
                tracing::error!(connection, %error, "notified sync could not run");
                return;
            }
        }
    }
}
