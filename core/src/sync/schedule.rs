//! The scheduler of `idpsync serve`: one task per pull connection with a
//! `schedule`, firing on its cron expression (seconds field first) plus up to
//! `schedule_jitter_secs` of random delay. A connection in backoff waits for
//! its `next_run_at`; a quarantined one is skipped until a manual run
//! succeeds. Shutdown stops waiting tasks at once and abandons a run that has
//! not started applying; a reload retires the tasks (waiting ones end, a
//! run under way finishes) and starts the new configuration's.

use super::{SyncError, SyncRunner, SyncStatus};
use crate::config::{Config, SCIM_KIND};
use crate::daemon::WorkerLife;
use crate::reconcile::Trigger;
use crate::store::entity::connection;
use crate::store::entity::status::Health;
use chrono::Utc;
use sea_orm::EntityTrait;
use std::str::FromStr;
use std::time::Duration;

/// Starts one task per scheduled connection.
/// When `connection`'s schedule next fires after now, if it has one (the
/// jitter aside).
pub fn next_run(connection: &crate::config::ConnectionConfig) -> Option<chrono::DateTime<Utc>> {
    let schedule = cron::Schedule::from_str(connection.schedule.as_deref()?).ok()?;
    schedule.upcoming(Utc).next()
}

pub fn spawn(
    runner: SyncRunner,
    config: &Config,
    life: WorkerLife,
) -> Vec<tokio::task::JoinHandle<()>> {
    config
        .connections
        .iter()
        .filter(|c| c.enabled && c.kind != SCIM_KIND)
        .filter_map(|c| {
            let schedule = cron::Schedule::from_str(c.schedule.as_deref()?).ok()?;
            Some((
                c.id.clone(),
                schedule,
                Duration::from_secs(c.schedule_jitter_secs),
            ))
        })
        .map(|(id, schedule, jitter)| {
            let runner = runner.clone();
            let life = life.clone();
            tokio::spawn(async move { run_connection(runner, id, schedule, jitter, life).await })
        })
        .collect()
}

async fn run_connection(
    runner: SyncRunner,
    id: String,
    schedule: cron::Schedule,
    jitter: Duration,
    life: WorkerLife,
) {
    loop {
        let Some(next) = schedule.upcoming(Utc).next() else {
            return;
        };
        let delay = (next - Utc::now()).to_std().unwrap_or_default()
            + jitter.mul_f64(rand::random::<f64>());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = life.over() => return,
        }
        if held_back(&runner, &id).await {
            continue;
        }
        match runner
            .run(&id, Trigger::Schedule, false, false, life.shutting_down())
            .await
        {
            Ok(report) if report.status == SyncStatus::Failed => {
                tracing::warn!(connection = %id, run_id = ?report.run_id, error = report.error.as_deref().unwrap_or_default(), "scheduled sync failed; recorded")
            }
            Ok(report) => {
                tracing::info!(connection = %id, status = %report.status, run_id = ?report.run_id, duration_ms = report.duration_ms, "scheduled sync finished")
            }
            Err(SyncError::AlreadyRunning(_)) => {
                tracing::info!(connection = %id, "a run is already in progress; skipped")
            }
            Err(error) => tracing::error!(connection = %id, %error, "scheduled sync could not run"),
        }
        if life.is_over() {
            return;
        }
    }
}

/// Whether a run the connection did not ask for (its schedule, an IdP's
/// notification) waits: a quarantined connection until a manual run
/// succeeds, one backing off after failures until its `next_run_at`. Says
/// why in the log.
pub(crate) async fn held_back(runner: &SyncRunner, id: &str) -> bool {
    let row = connection::Entity::find_by_id(id)
        .one(runner.store().db())
        .await;
    match row {
        Ok(Some(row)) if row.health == Health::Quarantined => {
            tracing::warn!(connection = %id, failures = row.consecutive_failures, "quarantined: run skipped; run `idpsync sync {id}` once the cause is fixed");
            true
        }
        Ok(Some(row)) if row.next_run_at.is_some_and(|at| at > Utc::now()) => {
            tracing::info!(connection = %id, "backing off after failures: run skipped");
            true
        }
        Ok(_) => false,
        Err(error) => {
            tracing::warn!(connection = %id, %error, "cannot read the connection's state; skipping this run");
            true
        }
    }
}

#[cfg(test)]
mod next_run_tests {
    use super::*;

    #[test]
    fn the_next_run_is_the_schedules_next_firing_and_none_without_one() {
        let mut connection: crate::config::ConnectionConfig =
            toml::from_str("id = \"okta\"\nkind = \"okta\"\nschedule = \"0 */5 * * * *\"").unwrap();
        let next = next_run(&connection).expect("a scheduled connection runs");
        let wait = next - Utc::now();
        assert!(wait > chrono::Duration::zero() && wait <= chrono::Duration::minutes(5));
        connection.schedule = None;
        assert_eq!(next_run(&connection), None);
    }
}
