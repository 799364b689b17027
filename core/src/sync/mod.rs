//! Pull syncs: the [`DriverRegistry`] of compiled-in driver kinds, the
//! [`SyncRunner`] that pulls a connection into a staging area and applies it
//! through the reconciler, and the cron [`schedule`]r of `idpsync serve`.
//!
//! A pull that fails, or ends with fewer records than the IdP declared,
//! applies nothing and is recorded as a failed run. Failures back the
//! connection off exponentially; after [`QUARANTINE_AFTER`] in a row it is
//! `quarantined` (no more scheduled runs) until a manual run succeeds.
//! At most one run of a connection happens at a time: in this process by a
//! lock set, across daemons on PostgreSQL by an advisory lock held for the run.

pub mod schedule;
mod staging;

use crate::config::{Config, ConnectionConfig, KindCatalog, SCIM_KIND};
use crate::events::{self, EventKind, NewEvent};
use crate::reconcile::staged::StagedUsers;
use crate::reconcile::{
    Delta, Edits, Outcome, ReconcileError, Reconciler, Snapshot, SourceInput, SubmitOptions,
    Trigger, user_update_edit,
};
use crate::store::entity::status::{Health, RunStatus};
use crate::store::entity::{connection, source_group, source_user, sync_run};
use crate::store::{Store, StoreError, rows};
use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use idpsync_driver::http::HttpKit;
use idpsync_driver::{
    Capabilities, CollectedRecords, DeltaCursor, DriverContext, DriverError, DriverFactory,
    MembershipEdge, PullMode, PullOutcome, UserRecord,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Serialize;
use serde_json::json;
use staging::StagingSink;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Consecutive failures after which scheduled runs stop.
pub const QUARANTINE_AFTER: i32 = 5;
/// First backoff after a failure; doubles per failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The driver kinds this build serves.
#[derive(Default, Clone)]
pub struct DriverRegistry {
    factories: HashMap<&'static str, Arc<dyn DriverFactory>>,
}

impl DriverRegistry {
    pub fn register(&mut self, factory: impl DriverFactory + 'static) {
        self.factories.insert(factory.kind(), Arc::new(factory));
    }

    pub fn factory(&self, kind: &str) -> Option<&Arc<dyn DriverFactory>> {
        self.factories.get(kind)
    }
}

impl KindCatalog for DriverRegistry {
    fn kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.factories.keys().copied().collect();
        kinds.push(SCIM_KIND);
        kinds.sort_unstable();
        kinds
    }

    fn check_settings(&self, kind: &str, settings: &toml::Value) -> Result<(), (String, String)> {
        let Some(factory) = self.factories.get(kind) else {
            return Ok(());
        };
        let json = serde_json::to_value(settings).map_err(|e| (String::new(), e.to_string()))?;
        match factory.validate(&json) {
            Ok(()) => Ok(()),
            Err(DriverError::InvalidConfig { key, message }) => Err((key, message)),
            Err(other) => Err((String::new(), other.to_string())),
        }
    }
}

/// Errors that stop a run before it is recorded.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("unknown connection \"{0}\"")]
    UnknownConnection(String),
    #[error("connection \"{0}\" is a SCIM connection: it is pushed to, not pulled")]
    NotPulled(String),
    #[error("no driver for kind \"{0}\" in this build")]
    NoDriver(String),
    #[error("connection \"{0}\" is already syncing")]
    AlreadyRunning(String),
    #[error("invalid settings: {0}")]
    Settings(DriverError),
    #[error("{0}")]
    Pull(DriverError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}", reconcile_message(.0))]
    Reconcile(#[from] ReconcileError),
    /// A run failed, and recording that failed too (the database is down).
    #[error("{error} (and recording the failed run failed: {unrecorded})")]
    Unrecorded { error: String, unrecorded: String },
}

/// A reconciliation error as a run's message: input the IdP sent that
/// cannot be applied says so.
fn reconcile_message(error: &ReconcileError) -> String {
    match error {
        ReconcileError::Input(input) => format!("the IdP sent inconsistent records: {input}"),
        other => other.to_string(),
    }
}

impl From<sea_orm::DbErr> for SyncError {
    fn from(error: sea_orm::DbErr) -> Self {
        SyncError::Store(StoreError::Db(error))
    }
}

/// How a run ended.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    pub connection_id: String,
    pub run_id: Option<i64>,
    pub status: SyncStatus,
    pub mode: &'static str,
    /// Users, groups and memberships read from the IdP.
    #[schema(value_type = Object)]
    pub received: ReceivedCounts,
    pub duration_ms: u64,
    /// Of which reading the IdP (the rest is diffing and applying).
    pub pull_ms: u64,
    pub error: Option<String>,
    /// The reconciler's outcome, when it ran.
    #[schema(value_type = Option<Object>)]
    pub outcome: Option<Outcome>,
}

/// How a run of the runner ended, as its report, the CLI's exit code and
/// the `idpsync_sync_runs_total{outcome}` metric say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// A change set was applied.
    Applied,
    /// The source matched the stored state; nothing was written.
    Unchanged,
    /// The safety gate held the change set for approval.
    Held,
    /// A dry run: the plan, nothing written.
    Planned,
    /// The run failed and was recorded as failed; nothing was applied.
    Failed,
    /// The daemon shut down before the pull was applied; nothing was
    /// applied and no run was recorded (the next start runs it again).
    Abandoned,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Applied => "applied",
            SyncStatus::Unchanged => "unchanged",
            SyncStatus::Held => "held",
            SyncStatus::Planned => "planned",
            SyncStatus::Failed => "failed",
            SyncStatus::Abandoned => "abandoned",
        }
    }
}

impl std::fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ReceivedCounts {
    pub users: usize,
    pub groups: usize,
    pub memberships: usize,
}

/// Pulls connections and applies what they report.
#[derive(Clone)]
pub struct SyncRunner {
    reconciler: Reconciler,
    registry: Arc<DriverRegistry>,
    config: Arc<Config>,
    http: HttpKit,
    running: Arc<Mutex<HashSet<String>>>,
}

/// Releases the in-process run lock when dropped.
struct RunGuard {
    running: Arc<Mutex<HashSet<String>>>,
    connection_id: String,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.connection_id);
    }
}

/// How one pull and its reconciliation ended.
enum Pass {
    Submitted(Outcome, u64),
    /// Shutdown came first.
    Abandoned,
    /// What a delta read cannot be applied as it is; a full pull can.
    ReadEverything(String),
}

/// A write refused because the userName it gives is taken.
fn is_user_name_clash(error: &ReconcileError) -> bool {
    let ReconcileError::Store(StoreError::Db(db)) = error else {
        return false;
    };
    matches!(db.sql_err(), Some(sea_orm::SqlErr::UniqueConstraintViolation(message)) if message.contains("user_name_key"))
}

/// What a pull's staged records are applied as.
enum StagedInput {
    Snapshot,
    /// A delta, with the users it sent in part as edits of the stored ones.
    Delta(Edits),
}

/// What a run knows of itself so far: what a failed run records.
struct Attempt<'a> {
    connection_id: &'a str,
    trigger: Trigger,
    dry_run: bool,
    started: DateTime<Utc>,
    clock: std::time::Instant,
    mode: &'static str,
    received: ReceivedCounts,
}

impl Attempt<'_> {
    fn report(
        &self,
        run_id: Option<i64>,
        status: SyncStatus,
        error: Option<String>,
        outcome: Option<Outcome>,
    ) -> SyncReport {
        SyncReport {
            connection_id: self.connection_id.into(),
            run_id,
            status,
            mode: self.mode,
            received: self.received,
            duration_ms: self.clock.elapsed().as_millis() as u64,
            pull_ms: 0,
            error,
            outcome,
        }
    }
}

/// The message a panic carried, if it was text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

impl SyncRunner {
    pub fn new(
        reconciler: Reconciler,
        registry: Arc<DriverRegistry>,
        config: Arc<Config>,
        http: HttpKit,
    ) -> Self {
        SyncRunner {
            reconciler,
            registry,
            config,
            http,
            running: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The runner of a reloaded configuration: same drivers and HTTP
    /// client, and the same run lock, so a run this runner started keeps
    /// the new one off its connection until it ends.
    pub fn reconfigured(&self, reconciler: Reconciler, config: Arc<Config>) -> Self {
        SyncRunner {
            reconciler,
            config,
            registry: self.registry.clone(),
            http: self.http.clone(),
            running: self.running.clone(),
        }
    }

    pub fn store(&self) -> &Store {
        self.reconciler.store()
    }

    /// The configured pull connection `connection_id`, or why there is none.
    fn pull_connection(&self, connection_id: &str) -> Result<&ConnectionConfig, SyncError> {
        let connection = self
            .config
            .connection(connection_id)
            .ok_or_else(|| SyncError::UnknownConnection(connection_id.into()))?;
        if connection.kind == SCIM_KIND {
            return Err(SyncError::NotPulled(connection_id.into()));
        }
        Ok(connection)
    }

    /// The driver of pull connection `connection_id`, built from its settings.
    pub fn driver(
        &self,
        connection_id: &str,
    ) -> Result<Box<dyn idpsync_driver::Driver>, SyncError> {
        let connection = self.pull_connection(connection_id)?;
        let factory = self
            .registry
            .factory(&connection.kind)
            .ok_or_else(|| SyncError::NoDriver(connection.kind.clone()))?;
        let settings = connection
            .kind_settings()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| SyncError::Settings(DriverError::config("", e.to_string())))?
            .unwrap_or_else(|| json!({}));
        factory
            .build(
                &settings,
                DriverContext {
                    http: self.http.for_connection(connection.rate_share()),
                },
            )
            .map_err(SyncError::Settings)
    }

    /// "Test connection": credentials and reach.
    pub async fn check(
        &self,
        connection_id: &str,
    ) -> Result<Result<Capabilities, DriverError>, SyncError> {
        Ok(self.driver(connection_id)?.check().await)
    }

    /// Runs one sync of `connection_id`. `cancel` resolving before the apply
    /// starts abandons the run cleanly (nothing applied, nothing recorded).
    ///
    /// Only a refusal is an `Err` (an unknown or SCIM connection, a run
    /// already under way, or a failure that could not even be recorded):
    /// whatever else goes wrong (settings, the driver, the database, a
    /// bug that panics) ends as a failed run, recorded with its message, a
    /// `sync.failed` event and the connection's health, and is answered as
    /// a report with status `failed`.
    pub async fn run(
        &self,
        connection_id: &str,
        trigger: Trigger,
        dry_run: bool,
        force_full: bool,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<SyncReport, SyncError> {
        self.pull_connection(connection_id)?;
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if !running.insert(connection_id.to_string()) {
                return Err(SyncError::AlreadyRunning(connection_id.into()));
            }
        }
        let _guard = RunGuard {
            running: self.running.clone(),
            connection_id: connection_id.into(),
        };
        let mut attempt = Attempt {
            connection_id,
            trigger,
            dry_run,
            started: Utc::now(),
            clock: std::time::Instant::now(),
            mode: if force_full { "full" } else { "delta" },
            received: ReceivedCounts::default(),
        };
        let result = AssertUnwindSafe(self.run_attempt(&mut attempt, force_full, cancel))
            .catch_unwind()
            .await;
        let error = match result {
            Ok(Ok(report)) => return Ok(report),
            Ok(Err(SyncError::AlreadyRunning(id))) => return Err(SyncError::AlreadyRunning(id)),
            Ok(Err(error)) => error.to_string(),
            Err(panic) => format!("the run stopped on a bug: {}", panic_message(&*panic)),
        };
        self.fail(&attempt, error).await
    }

    /// The body of [`SyncRunner::run`]: every `Err` is recorded as a failed
    /// run by the caller, with what `attempt` says so far.
    async fn run_attempt(
        &self,
        attempt: &mut Attempt<'_>,
        force_full: bool,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<SyncReport, SyncError> {
        let connection_id = attempt.connection_id;
        let driver = self.driver(connection_id)?;
        // Across daemons: the connection's advisory lock, held for the run.
        let Some(lock) = self
            .store()
            .try_lock_across_daemons(&format!("sync:{connection_id}"))
            .await?
        else {
            return Err(SyncError::AlreadyRunning(connection_id.into()));
        };
        let result = self.run_locked(driver, attempt, force_full, cancel).await;
        lock.release().await;
        result
    }

    /// [`SyncRunner::run`] once the connection's sync lock is held.
    async fn run_locked(
        &self,
        driver: Box<dyn idpsync_driver::Driver>,
        attempt: &mut Attempt<'_>,
        force_full: bool,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<SyncReport, SyncError> {
        let store = self.store();
        let connection_id = attempt.connection_id;
        let row = connection::Entity::find_by_id(connection_id)
            .one(store.db())
            .await?
            .ok_or_else(|| SyncError::UnknownConnection(connection_id.into()))?;
        let mut mode = match (&row.delta_cursor, force_full) {
            (Some(cursor), false) if !self.full_pull_due(connection_id).await? => {
                PullMode::Delta(DeltaCursor(cursor.clone()))
            }
            _ => PullMode::Full,
        };
        attempt.mode = if matches!(mode, PullMode::Full) {
            "full"
        } else {
            "delta"
        };
        let mut cancel = std::pin::pin!(cancel);
        let (result, pull_ms) = loop {
            match self
                .pull_and_submit(&*driver, mode.clone(), attempt, cancel.as_mut())
                .await?
            {
                Pass::Submitted(result, pull_ms) => break (result, pull_ms),
                Pass::Abandoned => {
                    tracing::info!(
                        connection = connection_id,
                        "sync abandoned before applying (shutdown)"
                    );
                    return Ok(attempt.report(
                        None,
                        SyncStatus::Abandoned,
                        Some("abandoned at shutdown".into()),
                        None,
                    ));
                }
                Pass::ReadEverything(why) if mode != PullMode::Full => {
                    tracing::warn!(connection = connection_id, %why, "reading everything instead");
                    mode = PullMode::Full;
                    attempt.mode = "full";
                }
                Pass::ReadEverything(why) => {
                    return Err(SyncError::Pull(DriverError::protocol(why)));
                }
            }
        };
        let (status, run_id) = match &result {
            Outcome::Applied(report) => (SyncStatus::Applied, Some(report.run_id)),
            Outcome::Unchanged(report) => (SyncStatus::Unchanged, Some(report.run_id)),
            Outcome::Held(report) => (SyncStatus::Held, Some(report.run_id)),
            Outcome::Planned(_) => (SyncStatus::Planned, None),
        };
        if !attempt.dry_run {
            self.record_health(connection_id, true).await?;
        }
        metrics::counter!("idpsync_sync_runs_total", "connection" => connection_id.to_string(), "outcome" => status.as_str()).increment(1);
        metrics::histogram!("idpsync_sync_duration_seconds", "connection" => connection_id.to_string()).record(attempt.clock.elapsed().as_secs_f64());
        let mut report = attempt.report(run_id, status, None, Some(result));
        report.pull_ms = pull_ms;
        Ok(report)
    }

    /// One pull in `mode` and the reconciliation of what it read.
    async fn pull_and_submit(
        &self,
        driver: &dyn idpsync_driver::Driver,
        mode: PullMode,
        attempt: &mut Attempt<'_>,
        cancel: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Result<Pass, SyncError> {
        let connection_id = attempt.connection_id;
        let is_delta = matches!(mode, PullMode::Delta(_));
        // A full pull's users are staged within the memory budget rather
        // than held as records: a first sync writes them as it reads them
        // back, a re-run keeps the records of the changed ones only.
        let stage_users = !is_delta;
        let mut staged = CollectedRecords::default();
        let mut sink =
            StagingSink::new(&mut staged, stage_users, self.config.sync.staging_memory());
        let pulled = tokio::select! {
            result = driver.pull(mode, &mut sink) => result,
            _ = cancel => return Ok(Pass::Abandoned),
        };
        let outcome = match pulled {
            Ok(outcome) => outcome,
            // A staging failure stopped the pull: it is the run's error.
            Err(error) => {
                return Err(sink.into_failure().map_or(SyncError::Pull(error), |io| {
                    ReconcileError::Staging(io).into()
                }));
            }
        };
        let staged_users = sink
            .finish(outcome.complete_snapshot)
            .map_err(ReconcileError::from)?;
        let pull_ms = attempt.clock.elapsed().as_millis() as u64;
        staged.merge_repeats();
        let n_staged = staged_users.as_ref().map_or(0, StagedUsers::len);
        attempt.received = ReceivedCounts {
            users: staged.users.len() + n_staged + staged.user_updates.len(),
            groups: staged.groups.len(),
            memberships: staged.memberships.len(),
        };
        let input = match self
            .staged_input(connection_id, &mut staged, &outcome)
            .await?
        {
            Ok(input) => input,
            Err(unknown) => {
                return Ok(Pass::ReadEverything(format!(
                    "the pull sent only part of user \"{unknown}\", which is not stored"
                )));
            }
        };
        if outcome.complete_snapshot
            && let Some(expected) = outcome.declared.users
            && expected != (staged.users.len() + n_staged) as u64
        {
            return Err(SyncError::Pull(DriverError::Incomplete {
                what: "users",
                expected,
                got: (staged.users.len() + n_staged) as u64,
            }));
        }
        tracing::info!(
            connection = connection_id,
            mode = attempt.mode,
            users = attempt.received.users,
            groups = attempt.received.groups,
            memberships = attempt.received.memberships,
            pull_ms,
            "pull complete; applying"
        );
        let options = SubmitOptions {
            trigger: attempt.trigger,
            dry_run: attempt.dry_run,
            delta_cursor: outcome.next_cursor.map(|cursor| cursor.0),
            started_at: Some(attempt.started),
            unrecorded_hold: false,
        };
        let submitted = match input {
            StagedInput::Snapshot => {
                let mut snapshot = Snapshot {
                    users: staged.users,
                    groups: staged.groups,
                    memberships: staged.memberships,
                    unchanged_users: Vec::new(),
                    staged_users,
                };
                let unchanged = self
                    .reconciler
                    .set_aside_unchanged(connection_id, &mut snapshot)
                    .await?;
                tracing::debug!(
                    connection = connection_id,
                    unchanged,
                    "users found as stored set aside"
                );
                self.reconciler
                    .submit(connection_id, SourceInput::Snapshot(snapshot), options)
                    .await
            }
            StagedInput::Delta(edits) => {
                removals_from_presence(self.store(), connection_id, &mut staged).await?;
                self.reconciler
                    .submit_with_edits(connection_id, delta_from(staged), &edits, options)
                    .await
            }
        };
        match submitted {
            Ok(result) => Ok(Pass::Submitted(result, pull_ms)),
            // The delta gives a user a name that a user it does not mention
            // still holds: that user is most likely gone in a way the
            // delta cannot report. A full pull knows.
            Err(error) if is_delta && is_user_name_clash(&error) => {
                Ok(Pass::ReadEverything(format!(
                    "the delta gives a userName to a user while another user it does not mention still holds it ({error})"
                )))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Whether the connection's last full pull (applied, or found nothing
    /// to change) is older than its `full_sync_every_hours`.
    async fn full_pull_due(&self, connection_id: &str) -> Result<bool, SyncError> {
        let every = self
            .config
            .connection(connection_id)
            .map_or(24, |c| c.full_sync_every_hours);
        let last_full = sync_run::Entity::find()
            .filter(sync_run::Column::ConnectionId.eq(connection_id))
            .filter(sync_run::Column::Mode.eq("full"))
            .filter(sync_run::Column::Status.is_in([RunStatus::Succeeded, RunStatus::Approved]))
            .order_by_desc(sync_run::Column::Id)
            .one(self.store().db())
            .await?;
        let due = last_full.is_none_or(|run| {
            let age = Utc::now() - run.started_at;
            age >= chrono::Duration::hours(every.min(i64::MAX as u64) as i64)
        });
        if due {
            tracing::info!(
                connection = connection_id,
                every_hours = every,
                "periodic full pull"
            );
        }
        Ok(due)
    }

    /// What a pull's staged records become: a snapshot, or a delta with
    /// its users sent in part turned into edits of the stored users. A
    /// user sent in part is whole when the part names its userName and
    /// state; `Err` names one that is neither stored nor whole (the pull
    /// cannot be applied as it is).
    async fn staged_input(
        &self,
        connection_id: &str,
        staged: &mut CollectedRecords,
        outcome: &PullOutcome,
    ) -> Result<Result<StagedInput, String>, SyncError> {
        let updates = std::mem::take(&mut staged.user_updates);
        let stored: HashSet<String> = if outcome.complete_snapshot || updates.is_empty() {
            HashSet::new()
        } else {
            rows::users_by_external_id(
                self.store().db(),
                connection_id,
                updates.iter().map(|update| update.external_id.as_str()),
            )
            .await?
            .into_iter()
            .map(|row| row.external_id)
            .collect()
        };
        let mut edits = Edits::default();
        for update in updates {
            if stored.contains(&update.external_id) {
                edits.users.push(user_update_edit(update));
                continue;
            }
            match update.into_record() {
                UserRecord::Whole(user) => staged.users.push(user),
                UserRecord::Part(part) => return Ok(Err(part.external_id)),
            }
        }
        Ok(Ok(if outcome.complete_snapshot {
            StagedInput::Snapshot
        } else {
            StagedInput::Delta(edits)
        }))
    }

    /// Records a failed run with a `sync.failed` event, backs the
    /// connection off (not for a dry run), applies nothing. Only when even
    /// that cannot be written is the answer an `Err`, carrying both errors.
    async fn fail(&self, attempt: &Attempt<'_>, error: String) -> Result<SyncReport, SyncError> {
        let connection_id = attempt.connection_id;
        tracing::error!(connection = connection_id, %error, "sync failed; nothing applied");
        metrics::counter!("idpsync_sync_runs_total", "connection" => connection_id.to_string(), "outcome" => "failed").increment(1);
        metrics::histogram!("idpsync_sync_duration_seconds", "connection" => connection_id.to_string()).record(attempt.clock.elapsed().as_secs_f64());
        let recorded = async {
            let run_id = self.record_failed_run(attempt, &error).await?;
            if !attempt.dry_run {
                self.record_health(connection_id, false).await?;
            }
            Ok::<_, SyncError>(run_id)
        }
        .await;
        match recorded {
            Ok(run_id) => Ok(attempt.report(Some(run_id), SyncStatus::Failed, Some(error), None)),
            Err(unrecorded) => {
                tracing::error!(connection = connection_id, error = %unrecorded, "the failed run could not be recorded");
                Err(SyncError::Unrecorded {
                    error,
                    unrecorded: unrecorded.to_string(),
                })
            }
        }
    }

    /// The run row and its `sync.failed` event, in one transaction.
    async fn record_failed_run(
        &self,
        attempt: &Attempt<'_>,
        error: &str,
    ) -> Result<i64, SyncError> {
        let connection_id = attempt.connection_id;
        let write = self.store().begin_write().await?;
        let now = Utc::now();
        let run = sync_run::ActiveModel {
            connection_id: Set(connection_id.into()),
            trigger: Set(attempt.trigger.as_str().into()),
            mode: Set(attempt.mode.into()),
            dry_run: Set(attempt.dry_run),
            status: Set(RunStatus::Failed),
            started_at: Set(attempt.started),
            finished_at: Set(Some(now)),
            counts: Set(json!({"received": attempt.received}).to_string()),
            error: Set(Some(error.to_string())),
            change_set: Set(None),
            base_state_version: Set(None),
            ..Default::default()
        }
        .insert(&write.tx)
        .await?;
        let event = NewEvent::new(
            EventKind::SyncFailed,
            Some(connection_id),
            "sync_run",
            run.id.to_string(),
            json!({
                "run_id": run.id,
                "trigger": attempt.trigger.as_str(),
                "mode": attempt.mode,
                "dry_run": attempt.dry_run,
                "error": error,
            }),
        );
        events::append(&write.tx, std::slice::from_ref(&event), now).await?;
        write.commit().await?;
        self.reconciler.bus().notify();
        Ok(run.id)
    }

    /// Success resets the connection; failure backs it off and, after
    /// [`QUARANTINE_AFTER`] in a row, quarantines it.
    async fn record_health(&self, connection_id: &str, success: bool) -> Result<(), SyncError> {
        let write = self.store().begin_write().await?;
        let Some(row) = connection::Entity::find_by_id(connection_id)
            .one(&write.tx)
            .await?
        else {
            return Ok(());
        };
        let failures = if success {
            0
        } else {
            row.consecutive_failures + 1
        };
        let mut active: connection::ActiveModel = row.into();
        active.consecutive_failures = Set(failures);
        active.updated_at = Set(Utc::now());
        if success {
            active.health = Set(Health::Healthy);
            active.next_run_at = Set(None);
        } else {
            let backoff = FIRST_BACKOFF
                .saturating_mul(1 << (failures - 1).clamp(0, 16) as u32)
                .min(MAX_BACKOFF);
            active.next_run_at = Set(Some(
                Utc::now() + chrono::Duration::from_std(backoff).unwrap_or_default(),
            ));
            active.health = Set(if failures >= QUARANTINE_AFTER {
                Health::Quarantined
            } else {
                Health::Backoff
            });
        }
        active.update(&write.tx).await?;
        write.commit().await?;
        // The gauges are read from the store at each scrape (api::metrics).
        Ok(())
    }
}

/// A delta pull's records as a reconciler delta.
/// Turns a delta's "present" lists into removals: the stored users and
/// groups of the connection that the source no longer lists.
async fn removals_from_presence(
    store: &Store,
    connection_id: &str,
    staged: &mut CollectedRecords,
) -> Result<(), sea_orm::DbErr> {
    if let Some(present) = staged.present_users.take() {
        let present: HashSet<String> = present.into_iter().collect();
        let stored: Vec<String> = source_user::Entity::find()
            .select_only()
            .column(source_user::Column::ExternalId)
            .filter(source_user::Column::ConnectionId.eq(connection_id))
            .into_tuple()
            .all(store.db())
            .await?;
        staged
            .removed_users
            .extend(stored.into_iter().filter(|id| !present.contains(id)));
    }
    if let Some(present) = staged.present_groups.take() {
        let present: HashSet<String> = present.into_iter().collect();
        let stored: Vec<String> = source_group::Entity::find()
            .select_only()
            .column(source_group::Column::ExternalId)
            .filter(source_group::Column::ConnectionId.eq(connection_id))
            .into_tuple()
            .all(store.db())
            .await?;
        staged
            .removed_groups
            .extend(stored.into_iter().filter(|id| !present.contains(id)));
    }
    Ok(())
}

fn delta_from(staged: CollectedRecords) -> Delta {
    let replaced: HashSet<&str> = staged.replaced_members.iter().map(String::as_str).collect();
    let mut replace_members: BTreeMap<String, Vec<idpsync_driver::MemberRef>> = staged
        .replaced_members
        .iter()
        .map(|group| (group.clone(), Vec::new()))
        .collect();
    let mut add_memberships: Vec<MembershipEdge> = Vec::new();
    for edge in staged.memberships.iter() {
        if replaced.contains(edge.group_external_id.as_ref()) {
            replace_members
                .entry(edge.group_external_id.to_string())
                .or_default()
                .push(edge.member);
        } else {
            add_memberships.push(edge);
        }
    }
    Delta {
        upsert_users: staged.users,
        remove_users: staged.removed_users,
        upsert_groups: staged.groups,
        remove_groups: staged.removed_groups,
        add_memberships,
        remove_memberships: staged.removed_memberships,
        replace_members,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::InputError;

    #[test]
    fn a_failed_run_blames_the_idp_only_for_what_the_idp_sent() {
        let sent = ReconcileError::Input(InputError::DuplicateUser("u1".into()));
        assert_eq!(
            reconcile_message(&sent),
            "the IdP sent inconsistent records: user external id \"u1\" appears more than once"
        );
        let moved = ReconcileError::StoredUserMoved("u1".into());
        let message = reconcile_message(&moved);
        assert!(
            message.starts_with("user \"u1\" changed in the store"),
            "{message}"
        );
    }
}
