//! `/metrics`: the Prometheus exposition. Every metric family the daemon
//! emits is listed once in [`FAMILIES`] with its HELP text (a test checks
//! the list against every `metrics::` macro in the source), and the
//! connections' health gauges are read from the store at each scrape, so
//! they are right from the first scrape after a start and whoever changed
//! the health (this daemon, another one, `idpsync sync` on the command
//! line). The process's own gauges (memory, open files) are read from
//! `/proc/self` at each scrape too ([`process`]).

pub mod process;

use crate::config::Config;
use crate::store::Store;
use crate::store::entity::connection;
use crate::store::entity::status::Health;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::EntityTrait;
use std::sync::OnceLock;

/// How a family is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric family: name, kind, HELP.
pub const FAMILIES: &[(&str, Family, &str)] = &[
    (
        "idpsync_build_info",
        Family::Gauge,
        "The running version (label version); always 1.",
    ),
    (
        "idpsync_metrics_scrapes_total",
        Family::Counter,
        "Scrapes of /metrics.",
    ),
    (
        "idpsync_sync_runs_total",
        Family::Counter,
        "Pull runs by connection and outcome.",
    ),
    (
        "idpsync_sync_duration_seconds",
        Family::Histogram,
        "Wall time of pull runs, by connection.",
    ),
    (
        "idpsync_reconcile_runs_total",
        Family::Counter,
        "Change sets reconciled, by connection and outcome (applied, unchanged, held, dry run).",
    ),
    (
        "idpsync_events_total",
        Family::Counter,
        "Events written by reconciliations, by connection.",
    ),
    (
        "idpsync_devices_revoked_total",
        Family::Counter,
        "Devices revoked by the reconciler, by connection.",
    ),
    (
        "idpsync_webhook_deliveries_total",
        Family::Counter,
        "Webhook delivery attempts, by webhook and outcome.",
    ),
    (
        "idpsync_connection_consecutive_failures",
        Family::Gauge,
        "Failed runs in a row of each configured pull connection (0 when its last run succeeded), as stored.",
    ),
    (
        "idpsync_connection_quarantined",
        Family::Gauge,
        "1 when a configured connection is quarantined (no scheduled runs until a manual run succeeds), else 0, as stored.",
    ),
    (
        "idpsync_notifications_received_total",
        Family::Counter,
        "IdP notification deliveries accepted, by connection and what they were (change, missed, lifecycle, handshake).",
    ),
    (
        "idpsync_notifications_refused_total",
        Family::Counter,
        "IdP notification deliveries refused, by connection and reason (unknown_connection, flood, bad_secret, malformed, not_enabled).",
    ),
    (
        "idpsync_notifications_duplicate_total",
        Family::Counter,
        "Notices already acted on (an IdP's redelivery), by connection.",
    ),
    (
        "idpsync_notification_runs_total",
        Family::Counter,
        "Runs started by IdP notifications, by connection and status.",
    ),
    (
        "idpsync_notification_lag_seconds",
        Family::Histogram,
        "From the first notice of a burst to the end of the run it started, by connection.",
    ),
    (
        "idpsync_hook_subscription_failures_total",
        Family::Counter,
        "Failed attempts to make or renew an IdP subscription, by connection.",
    ),
    (
        "idpsync_hook_subscription_expiry_timestamp_seconds",
        Family::Gauge,
        "When each IdP subscription lapses unless renewed (Unix time), by connection and resource.",
    ),
    (
        "idpsync_config_reloads_total",
        Family::Counter,
        "Config reloads (SIGHUP, POST /api/v1/reload), by result: applied, or why the running config was kept (invalid, needs_restart, no_file, store).",
    ),
    (
        "process_resident_memory_bytes",
        Family::Gauge,
        "Resident memory of this process, in bytes (Linux VmRSS).",
    ),
    (
        "idpsync_resident_memory_peak_bytes",
        Family::Gauge,
        "The most resident memory this process has held at once since it started, in bytes (Linux VmHWM): a full pull's top.",
    ),
    (
        "process_virtual_memory_bytes",
        Family::Gauge,
        "Virtual memory of this process, in bytes (Linux VmSize).",
    ),
    (
        "process_open_fds",
        Family::Gauge,
        "Open file descriptors of this process: database files and connections, sockets.",
    ),
    (
        "process_max_fds",
        Family::Gauge,
        "The soft limit on this process's open file descriptors.",
    ),
];

/// The process-wide Prometheus recorder, installed (and every family
/// described) on first use.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then our
            // handle renders nothing but the process still runs.
            let _ = metrics::set_global_recorder(recorder);
            for (name, family, help) in FAMILIES {
                match family {
                    Family::Counter => metrics::describe_counter!(*name, *help),
                    Family::Gauge => metrics::describe_gauge!(*name, *help),
                    Family::Histogram => metrics::describe_histogram!(*name, *help),
                }
            }
            metrics::gauge!("idpsync_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

/// Sets the health gauges of every configured connection from the store.
pub async fn export_health(store: &Store, config: &Config) -> Result<(), sea_orm::DbErr> {
    for row in connection::Entity::find().all(store.db()).await? {
        if config.connection(&row.id).is_none() {
            continue;
        }
        metrics::gauge!("idpsync_connection_consecutive_failures", "connection" => row.id.clone())
            .set(f64::from(row.consecutive_failures));
        metrics::gauge!("idpsync_connection_quarantined", "connection" => row.id.clone()).set(
            if row.health == Health::Quarantined {
                1.0
            } else {
                0.0
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::FAMILIES;
    use std::collections::BTreeSet;
    use std::path::Path;

    fn sources(dir: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(std::fs::read_to_string(&path).unwrap());
            }
        }
    }

    /// Every family the code emits has its HELP, and nothing is described
    /// that no code emits.
    #[test]
    fn every_emitted_metric_family_is_described_once() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts = Vec::new();
        sources(&root.join("src"), &mut texts);
        sources(&root.join("../src"), &mut texts);
        let mut emitted = BTreeSet::new();
        for text in &texts {
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for piece in text.split(&format!("metrics::{macro_name}")).skip(1) {
                    if let Some(name) = piece.trim_start().strip_prefix('"') {
                        emitted.insert(name.split('"').next().unwrap().to_string());
                    }
                }
            }
        }
        let described: BTreeSet<String> = FAMILIES.iter().map(|(n, _, _)| n.to_string()).collect();
        assert_eq!(described.len(), FAMILIES.len(), "a family is listed twice");
        assert_eq!(emitted, described);
    }
}
