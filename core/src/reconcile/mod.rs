//! The reconciler: one path from source input to stored state, effects and
//! events. A pull snapshot, a pull delta and a SCIM request all become a
//! [`ChangeSet`] against a connection's stored state, pass the same safety
//! gate, and are applied with their effects and events in one transaction.
//!
//! * [`input`]: what sources hand in; [`diff`]: the pure comparison, with
//!   stored edges held compactly in an [`edge_set::EdgeSet`];
//! * [`apply`]: the transactional write of a change set and its effects;
//! * [`coalesce`]: group commit of concurrent small deltas (SCIM writes);
//! * [`graph`], [`acl`]: nested groups and ACL rules, pure;
//! * [`plan`]: dry-run results for people and machines.

pub mod acl;
pub mod apply;
mod by_row_id;
mod coalesce;
mod compared_edges;
pub mod diff;
mod edge_set;
pub mod graph;
mod hash;
mod inherited;
pub mod input;
mod name_key;
pub mod plan;
mod row_id_bits;
pub mod staged;
mod stored;
mod stored_users;
mod unchanged;
mod user_ids;

pub use acl::AclRules;
pub use apply::{EffectCounts, FailPoint};
pub use coalesce::Written;
pub use diff::{ChangeCounts, ChangeSet, DiffError, InputError};
pub use input::{
    Delta, Edit, EditFn, EditRejected, Edits, GroupCheck, GroupEdit, Snapshot, SourceInput,
    StoredRow, UserCheck, UserEdit, user_update_edit,
};
pub use plan::Plan;
pub use unchanged::UnchangedUser;

use crate::config::{Config, DeletionLimit};
use crate::events::{self, EventBus, EventKind, NewEvent};
use crate::store::entity::status::RunStatus;
use crate::store::entity::{connection, source_group, source_user, sync_run};
use crate::store::{Store, StoreError, rows};
use apply::{ApplyContext, ApplyError};
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Errors of reconciliation.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid input: {0}")]
    Input(#[from] InputError),
    /// A user a full pull set aside as unchanged was written between its
    /// comparison and the apply; nothing was applied (see
    /// [`DiffError::StoredUserMoved`]).
    #[error("{}", DiffError::StoredUserMoved(.0.clone()))]
    StoredUserMoved(String),
    /// Writing or reading back a pull's staged users failed (their
    /// temporary file).
    #[error("staging the pulled users failed: {0}")]
    Staging(std::io::Error),
    /// See [`staged::StagingError::KeyCollision`].
    #[error(
        "staging the pulled users failed: {}",
        staged::StagingError::KeyCollision
    )]
    StagingKeyCollision,
    /// See [`DiffError::StagedOverStoredUsers`].
    #[error("{}", DiffError::StagedOverStoredUsers)]
    StagedOverStoredUsers,
    #[error("unknown connection \"{0}\"")]
    UnknownConnection(String),
    #[error("sync run {0} not found")]
    RunNotFound(i64),
    #[error("sync run {run_id} is {status}, not held: only a held run can be approved")]
    RunNotHeld { run_id: i64, status: RunStatus },
    #[error(
        "sync run {run_id} was computed against a state that has changed since; it is superseded: start a new sync"
    )]
    StateMoved { run_id: i64 },
    #[error("apply failed: {0}")]
    Apply(String),
    /// A [`UserEdit`] or [`UserCheck`] named a user that is not stored.
    #[error("user \"{0}\" not found")]
    EditedUserNotFound(String),
    /// A [`GroupEdit`] or [`GroupCheck`] named a group that is not stored.
    #[error("group \"{0}\" not found")]
    EditedGroupNotFound(String),
    /// An [`Edit`] refused the stored row.
    #[error("{0}")]
    EditRejected(EditRejected),
    /// Only with [`SubmitOptions::unrecorded_hold`]: the change set is over
    /// the deletion limit, and nothing was written.
    #[error("the change set exceeds the connection's deletion limit")]
    OverDeletionLimit,
}

impl From<staged::StagingError> for ReconcileError {
    fn from(error: staged::StagingError) -> Self {
        match error {
            staged::StagingError::Io(io) => ReconcileError::Staging(io),
            staged::StagingError::Input(input) => ReconcileError::Input(input),
            staged::StagingError::KeyCollision => ReconcileError::StagingKeyCollision,
        }
    }
}

impl From<DiffError> for ReconcileError {
    fn from(error: DiffError) -> Self {
        match error {
            DiffError::Input(input) => ReconcileError::Input(input),
            DiffError::StoredUserMoved(external_id) => ReconcileError::StoredUserMoved(external_id),
            DiffError::StagedOverStoredUsers => ReconcileError::StagedOverStoredUsers,
        }
    }
}

impl From<DbErr> for ReconcileError {
    fn from(error: DbErr) -> Self {
        ReconcileError::Store(StoreError::Db(error))
    }
}

impl From<ApplyError> for ReconcileError {
    fn from(error: ApplyError) -> Self {
        match error {
            ApplyError::Db(db) => db.into(),
            injected @ ApplyError::Injected(_) => ReconcileError::Apply(injected.to_string()),
            ApplyError::Staging(io) => ReconcileError::Staging(io),
        }
    }
}

pub type Result<T, E = ReconcileError> = std::result::Result<T, E>;

/// Who asked for a reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    Api,
    Scim,
    Approval,
    /// An IdP's change notification (`hooks`).
    Notification,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Api => "api",
            Trigger::Scim => "scim",
            Trigger::Approval => "approval",
            Trigger::Notification => "notification",
        }
    }
}

/// How to reconcile one input.
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    pub trigger: Trigger,
    /// Compute everything, write nothing, return the plan.
    pub dry_run: bool,
    /// Cursor to keep for the next delta pull, stored with the change set.
    pub delta_cursor: Option<String>,
    /// When the run began (a pull starts before its apply); now if unset.
    pub started_at: Option<chrono::DateTime<Utc>>,
    /// Over the deletion limit, write nothing (no held run, no event) and
    /// answer [`ReconcileError::OverDeletionLimit`]: for a merged batch of
    /// writes, whose parts are then judged one by one.
    pub unrecorded_hold: bool,
}

impl SubmitOptions {
    pub fn new(trigger: Trigger) -> Self {
        SubmitOptions {
            trigger,
            dry_run: false,
            delta_cursor: None,
            started_at: None,
            unrecorded_hold: false,
        }
    }

    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }
}

/// What a reconciliation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Changes were written with their effects and events.
    Applied(RunReport),
    /// The input matched the stored state: nothing written but the run record.
    Unchanged(RunReport),
    /// Over the safety limit: nothing applied until approved.
    Held(RunReport),
    /// Dry run: what would happen.
    Planned(Plan),
}

/// The record of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub run_id: i64,
    pub changes: ChangeCounts,
    pub effects: EffectCounts,
    pub n_events: usize,
}

/// The users and groups a delta upserted, read inside its transaction, so
/// exactly as it left them: a SCIM write answers with these instead of
/// reading them again after the commit (see
/// [`Reconciler::submit_coalesced`]).
#[derive(Debug, Default)]
pub struct UpsertedRows {
    /// By external id.
    pub users: HashMap<String, source_user::Model>,
    /// By external id.
    pub groups: HashMap<String, source_group::Model>,
}

impl UpsertedRows {
    /// Reads the rows of what `delta` upserts (nothing for a snapshot),
    /// but for the users in `written`, which the apply read already.
    async fn read(
        db: &impl ConnectionTrait,
        connection_id: &str,
        upserted: &Upserted,
        written: Vec<source_user::Model>,
    ) -> Result<UpsertedRows, DbErr> {
        let mut users: HashMap<String, source_user::Model> = written
            .into_iter()
            .map(|row| (row.external_id.clone(), row))
            .collect();
        let unread: Vec<&str> = upserted
            .users
            .iter()
            .map(String::as_str)
            .filter(|id| !users.contains_key(*id))
            .collect();
        let unread = rows::users_by_external_id(db, connection_id, unread).await?;
        users.extend(unread.into_iter().map(|row| (row.external_id.clone(), row)));
        let groups = rows::groups_by_external_id(
            db,
            connection_id,
            upserted.groups.iter().map(String::as_str),
        )
        .await?;
        Ok(UpsertedRows {
            users,
            groups: groups
                .into_iter()
                .map(|row| (row.external_id.clone(), row))
                .collect(),
        })
    }

    /// Moves out the rows of what `delta` upserts and `edits` edit.
    pub(crate) fn take_for(&mut self, delta: &Delta, edits: &Edits) -> UpsertedRows {
        UpsertedRows {
            users: delta
                .upsert_users
                .iter()
                .map(|user| &user.external_id)
                .chain(edits.users.iter().map(|edit| &edit.external_id))
                .filter_map(|id| self.users.remove_entry(id))
                .collect(),
            groups: delta
                .upsert_groups
                .iter()
                .map(|group| &group.external_id)
                .chain(edits.groups.iter().map(|edit| &edit.external_id))
                .filter_map(|id| self.groups.remove_entry(id))
                .collect(),
        }
    }
}

/// The external ids a delta upserts, taken before the delta moves into its
/// change set.
#[derive(Debug, Default)]
struct Upserted {
    users: Vec<String>,
    groups: Vec<String>,
}

impl Upserted {
    fn of(input: &SourceInput) -> Self {
        match input {
            SourceInput::Snapshot(_) => Upserted::default(),
            SourceInput::Delta(delta) => Upserted {
                users: delta
                    .upsert_users
                    .iter()
                    .map(|user| user.external_id.clone())
                    .collect(),
                groups: delta
                    .upsert_groups
                    .iter()
                    .map(|group| group.external_id.clone())
                    .collect(),
            },
        }
    }
}

/// The safety gate's verdict for a change set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GateVerdict {
    /// Users deleted or deactivated by the change set.
    pub removals: u64,
    /// The most allowed for this connection now (exact in dry runs and
    /// held runs; when an apply passes without counting the users, the
    /// removals themselves).
    pub allowed: u64,
    pub held: bool,
}

/// A change set as stored with a held run.
#[derive(Debug, Serialize, Deserialize)]
struct HeldChangeSet {
    changes: ChangeSet,
    delta_cursor: Option<String>,
}

/// Run `run_id`, which must be held.
async fn held_run(tx: &impl ConnectionTrait, run_id: i64) -> Result<sync_run::Model> {
    let run = sync_run::Entity::find_by_id(run_id)
        .one(tx)
        .await?
        .ok_or(ReconcileError::RunNotFound(run_id))?;
    if run.status != RunStatus::Held {
        return Err(ReconcileError::RunNotHeld {
            run_id,
            status: run.status,
        });
    }
    Ok(run)
}

/// What a held run would take from people ([`Reconciler::held_plan`]).
#[derive(Debug, Clone)]
pub struct HeldPlan {
    pub counts: ChangeCounts,
    /// External ids of users it would deprovision (devices revoked).
    pub deactivated: Vec<String>,
    /// External ids of users whose access it would suspend.
    pub suspended: Vec<String>,
    /// External ids of users it would delete.
    pub deleted: Vec<String>,
}

/// Turns inputs into applied change sets. Cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    store: Store,
    acl: Arc<AclRules>,
    limits: Arc<HashMap<String, DeletionLimit>>,
    bus: EventBus,
    fail_at: Option<FailPoint>,
    coalescer: Arc<coalesce::Coalescer>,
}

impl Reconciler {
    pub fn new(store: Store, config: &Config, bus: EventBus) -> Self {
        Reconciler {
            store,
            acl: Arc::new(AclRules::compile(&config.acl_groups)),
            limits: Arc::new(
                config
                    .connections
                    .iter()
                    .map(|connection| (connection.id.clone(), connection.safety.limit()))
                    .collect(),
            ),
            bus,
            fail_at: None,
            coalescer: Arc::default(),
        }
    }

    /// The reconciler `config` makes (its ACL rules and deletion limits),
    /// sharing this one's store, event bus and SCIM write coalescer: a
    /// reload must not let two coalescers write one connection at once.
    pub fn reconfigured(&self, config: &Config) -> Self {
        Reconciler {
            fail_at: self.fail_at,
            coalescer: self.coalescer.clone(),
            ..Reconciler::new(self.store.clone(), config, self.bus.clone())
        }
    }

    /// For tests: fail every apply at `point`, after its writes so far.
    pub fn with_fail_point(mut self, point: FailPoint) -> Self {
        self.fail_at = Some(point);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// Reconciles `input` into `connection_id`.
    pub async fn submit(
        &self,
        connection_id: &str,
        input: SourceInput,
        options: SubmitOptions,
    ) -> Result<Outcome> {
        let (outcome, _) = self
            .reconcile(connection_id, input, &Edits::default(), options, false)
            .await?;
        Ok(outcome)
    }

    /// Sets aside the users of `snapshot` that `connection_id` stores
    /// exactly as the snapshot has them, and returns how many: a full
    /// pull's apply then does not hold a million unchanged records beside
    /// the stored state. Read outside the apply's transaction; each is
    /// checked again inside it, as its row is read (see [`UnchangedUser`]). The read runs
    /// on one connection, whose page cache, full of the connection's users,
    /// is given back before the apply fills its own.
    pub async fn set_aside_unchanged(
        &self,
        connection_id: &str,
        snapshot: &mut Snapshot,
    ) -> Result<usize> {
        let read = sea_orm::TransactionTrait::begin(self.store.db()).await?;
        let set_aside = unchanged::set_aside(&read, connection_id, snapshot)
            .await
            .map_err(|error| match error {
                unchanged::SetAsideError::Db(db) => db.into(),
                unchanged::SetAsideError::Staging(io) => ReconcileError::Staging(io),
            })?;
        // Only memory is at stake: a connection that cannot give its cache
        // back keeps it, and the run goes on.
        if let Err(error) = crate::store::release_cache(&read).await {
            tracing::warn!(%error, "the set-aside read's page cache was not given back");
        }
        read.commit().await?;
        Ok(set_aside)
    }

    /// [`Reconciler::submit`] of a delta with `edits` of stored users and
    /// groups, made from their rows inside the writing transaction (a
    /// pull's partial records). An edit of a user that is not stored fails
    /// the reconciliation.
    pub async fn submit_with_edits(
        &self,
        connection_id: &str,
        delta: Delta,
        edits: &Edits,
        options: SubmitOptions,
    ) -> Result<Outcome> {
        let (outcome, _) = self
            .reconcile(
                connection_id,
                SourceInput::Delta(delta),
                edits,
                options,
                false,
            )
            .await?;
        Ok(outcome)
    }

    /// [`Reconciler::submit`] of `input` with the users and groups `edits`
    /// make of (or check on) their stored rows inside the transaction, and
    /// with `read_upserted` the rows of the users and groups upserted, read
    /// before the commit when it applies (or changes nothing).
    async fn reconcile(
        &self,
        connection_id: &str,
        input: SourceInput,
        edits: &Edits,
        options: SubmitOptions,
        read_upserted: bool,
    ) -> Result<(Outcome, UpsertedRows)> {
        let mut phases = Phases::start();
        let write = match input {
            SourceInput::Snapshot(_) => self.store.begin_bulk_write().await?,
            SourceInput::Delta(_) => self.store.begin_write().await?,
        };
        let tx = &write.tx;
        phases.mark("lock");
        // The connection's row is read only where its fields are needed (a
        // hold, an unchanged run); an apply learns that the connection
        // exists from bumping its state version.
        // The rows edits and checks name, read once: for them, and (users)
        // as the stored state the delta is diffed against.
        let mut edited_rows = Vec::new();
        let mut input = match input {
            SourceInput::Delta(mut delta) if !edits.is_empty() => {
                let users = rows::users_by_external_id(tx, connection_id, edits.user_ids()).await?;
                let groups =
                    rows::groups_by_external_id(tx, connection_id, edits.group_ids()).await?;
                let user_missing = ReconcileError::EditedUserNotFound;
                let group_missing = ReconcileError::EditedGroupNotFound;
                apply_edits(&users, &edits.user_checks, user_missing)?;
                apply_edits(&groups, &edits.group_checks, group_missing)?;
                delta
                    .upsert_users
                    .extend(apply_edits(&users, &edits.users, user_missing)?);
                delta
                    .upsert_groups
                    .extend(apply_edits(&groups, &edits.groups, group_missing)?);
                edited_rows = users;
                SourceInput::Delta(delta)
            }
            SourceInput::Snapshot(_) if !edits.is_empty() => {
                return Err(ReconcileError::Apply(
                    "edits come with a delta, not a snapshot".into(),
                ));
            }
            input => input,
        };
        let upserted = if read_upserted {
            Upserted::of(&input)
        } else {
            Upserted::default()
        };
        let stored = stored::load(tx, connection_id, &mut input, &edited_rows).await?;
        drop(edited_rows);
        phases.mark("load_stored");
        let mode = match input {
            SourceInput::Snapshot(_) => "full",
            SourceInput::Delta(_) => "delta",
        };
        // The input moves into the change set: a big pull's records are not
        // held twice.
        let changes = diff::diff(stored, input)?;
        phases.mark("diff");
        let verdict = self
            .gate(tx, connection_id, &changes, options.dry_run)
            .await?;
        let now = Utc::now();
        let context = ApplyContext {
            connection_id,
            acl: &self.acl,
            now,
            fail_at: self.fail_at,
            persist_events: !options.dry_run,
            keep_written_users: read_upserted && !options.dry_run,
        };

        if options.dry_run {
            connection_row(tx, connection_id).await?;
            let counts = changes.counts();
            let applied = apply::apply(tx, &context, changes).await?;
            let (events, effects) = (applied.events, applied.effects);
            // Dropping the transaction rolls every write back.
            drop(write);
            let plan = Plan::new(connection_id, counts, effects, verdict, events);
            return Ok((Outcome::Planned(plan), UpsertedRows::default()));
        }

        if verdict.held && options.unrecorded_hold {
            connection_row(tx, connection_id).await?;
            return Err(ReconcileError::OverDeletionLimit);
        }
        if verdict.held {
            // Staged users are not serialised with a held change set; they
            // come only in a first sync, which removes no one.
            if changes.users_created_staged.is_some() {
                return Err(ReconcileError::Apply(
                    "a first sync's staged users cannot be held for approval".into(),
                ));
            }
            let connection_row = connection_row(tx, connection_id).await?;
            let held = HeldChangeSet {
                changes,
                delta_cursor: options.delta_cursor,
            };
            let run = insert_run(
                tx,
                options.started_at,
                connection_id,
                options.trigger,
                mode,
                RunStatus::Held,
                json!({"changes": held.changes.counts()}),
                Some(serde_json::to_string(&held).unwrap_or_default()),
                Some(connection_row.state_version),
            )
            .await?;
            let event = NewEvent::new(
                EventKind::SyncHeld,
                Some(connection_id),
                "sync_run",
                run.id.to_string(),
                json!({
                    "run_id": run.id,
                    "removals": verdict.removals,
                    "allowed": verdict.allowed,
                    "changes": held.changes.counts(),
                }),
            );
            events::append(tx, std::slice::from_ref(&event), now).await?;
            write.commit().await?;
            self.bus.notify();
            record_metrics(connection_id, "held", 1, &EffectCounts::default());
            tracing::warn!(
                connection = connection_id,
                run_id = run.id,
                removals = verdict.removals,
                allowed = verdict.allowed,
                "change set held by the safety gate"
            );
            let report = RunReport {
                run_id: run.id,
                changes: held.changes.counts(),
                effects: EffectCounts::default(),
                n_events: 1,
            };
            return Ok((Outcome::Held(report), UpsertedRows::default()));
        }

        if changes.is_empty() {
            let connection_row = connection_row(tx, connection_id).await?;
            if options.delta_cursor.is_some() && options.delta_cursor != connection_row.delta_cursor
            {
                connection::Entity::update_many()
                    .col_expr(
                        connection::Column::DeltaCursor,
                        Expr::value(options.delta_cursor.clone()),
                    )
                    .filter(connection::Column::Id.eq(connection_id))
                    .exec(tx)
                    .await?;
            }
            let run = insert_run(
                tx,
                options.started_at,
                connection_id,
                options.trigger,
                mode,
                RunStatus::Succeeded,
                json!({"changes": changes.counts()}),
                None,
                None,
            )
            .await?;
            let rows = UpsertedRows::read(tx, connection_id, &upserted, Vec::new()).await?;
            write.commit().await?;
            phases.mark("commit");
            phases.log(connection_id);
            record_metrics(connection_id, "unchanged", 0, &EffectCounts::default());
            let report = RunReport {
                run_id: run.id,
                changes: changes.counts(),
                effects: EffectCounts::default(),
                n_events: 0,
            };
            return Ok((Outcome::Unchanged(report), rows));
        }

        if !bump_state(tx, connection_id, options.delta_cursor.as_deref()).await? {
            return Err(ReconcileError::UnknownConnection(connection_id.to_string()));
        }
        let counts = changes.counts();
        let applied = apply::apply(tx, &context, changes).await?;
        phases.absorb(applied.phases);
        let effects = applied.effects;
        let n_events = applied.n_events;
        let run = insert_run(
            tx,
            options.started_at,
            connection_id,
            options.trigger,
            mode,
            RunStatus::Succeeded,
            json!({"changes": counts, "effects": effects}),
            None,
            None,
        )
        .await?;
        let rows = UpsertedRows::read(tx, connection_id, &upserted, applied.written_users).await?;
        write.commit().await?;
        phases.mark("commit");
        phases.log(connection_id);
        self.bus.notify();
        record_metrics(connection_id, "applied", n_events, &effects);
        let report = RunReport {
            run_id: run.id,
            changes: counts,
            effects,
            n_events,
        };
        Ok((Outcome::Applied(report), rows))
    }

    /// Applies the change set of a held run exactly as it was computed, if
    /// the connection's stored state has not moved since; otherwise marks the
    /// run superseded and asks for a new run.
    /// The compiled ACL group rules this reconciler applies.
    pub fn acl_rules(&self) -> &AclRules {
        &self.acl
    }

    /// What a held run would do to people, for an admin deciding on it:
    /// the external ids it would deactivate, suspend and delete, and its
    /// counts. `None` when the run is not held.
    pub async fn held_plan(&self, run_id: i64) -> Result<Option<HeldPlan>> {
        let Some(run) = sync_run::Entity::find_by_id(run_id)
            .one(self.store.db())
            .await?
        else {
            return Err(ReconcileError::RunNotFound(run_id));
        };
        if run.status != RunStatus::Held {
            return Ok(None);
        }
        let held: HeldChangeSet = serde_json::from_str(run.change_set.as_deref().unwrap_or("{}"))
            .map_err(|error| {
            ReconcileError::Apply(format!(
                "stored change set of run {run_id} is unreadable: {error}"
            ))
        })?;
        Ok(Some(HeldPlan {
            counts: held.changes.counts(),
            deactivated: held.changes.users_deactivated,
            suspended: held.changes.users_suspended,
            deleted: held.changes.users_deleted,
        }))
    }

    /// Rejects a held run: nothing of it is applied, it is marked rejected
    /// with who rejected it, and `sync.rejected` is recorded. The next run
    /// of its connection computes afresh (and is held again if the source
    /// still says the same).
    pub async fn reject(&self, run_id: i64, by: &str) -> Result<()> {
        let write = self.store.begin_write().await?;
        let tx = &write.tx;
        let run = held_run(tx, run_id).await?;
        let now = Utc::now();
        let connection_id = run.connection_id.clone();
        let mut rejected: sync_run::ActiveModel = run.into();
        rejected.status = Set(RunStatus::Rejected);
        rejected.finished_at = Set(Some(now));
        rejected.error = Set(Some(format!("rejected by {by}")));
        rejected.update(tx).await?;
        events::append(
            tx,
            &[NewEvent::new(
                EventKind::SyncRejected,
                Some(&connection_id),
                "sync_run",
                run_id.to_string(),
                json!({"run_id": run_id, "by": by}),
            )],
            now,
        )
        .await?;
        write.commit().await?;
        self.bus.notify();
        Ok(())
    }

    pub async fn approve(&self, run_id: i64) -> Result<Outcome> {
        let write = self.store.begin_write().await?;
        let tx = &write.tx;
        let run = held_run(tx, run_id).await?;
        let connection_row = connection::Entity::find_by_id(&run.connection_id)
            .one(tx)
            .await?
            .ok_or_else(|| ReconcileError::UnknownConnection(run.connection_id.clone()))?;
        let now = Utc::now();
        let connection_id = run.connection_id.clone();
        if Some(connection_row.state_version) != run.base_state_version {
            let mut superseded: sync_run::ActiveModel = run.into();
            superseded.status = Set(RunStatus::Superseded);
            superseded.finished_at = Set(Some(now));
            superseded.error = Set(Some(
                "the stored state changed after this run was held".into(),
            ));
            superseded.update(tx).await?;
            events::append(
                tx,
                &[NewEvent::new(
                    EventKind::SyncSuperseded,
                    Some(&connection_id),
                    "sync_run",
                    run_id.to_string(),
                    json!({"run_id": run_id}),
                )],
                now,
            )
            .await?;
            write.commit().await?;
            self.bus.notify();
            return Err(ReconcileError::StateMoved { run_id });
        }
        let held: HeldChangeSet = serde_json::from_str(run.change_set.as_deref().unwrap_or("{}"))
            .map_err(|error| {
            ReconcileError::Apply(format!(
                "stored change set of run {run_id} is unreadable: {error}"
            ))
        })?;
        let context = ApplyContext {
            connection_id: &connection_id,
            acl: &self.acl,
            now,
            fail_at: self.fail_at,
            persist_events: true,
            keep_written_users: false,
        };
        let counts = held.changes.counts();
        let approved_event = NewEvent::new(
            EventKind::SyncApproved,
            Some(&connection_id),
            "sync_run",
            run_id.to_string(),
            json!({"run_id": run_id, "changes": counts}),
        );
        events::append(tx, std::slice::from_ref(&approved_event), now).await?;
        let applied = apply::apply(tx, &context, held.changes).await?;
        let effects = applied.effects;
        let n_events = applied.n_events + 1;
        bump_state(tx, &connection_id, held.delta_cursor.as_deref()).await?;
        let mut approved: sync_run::ActiveModel = run.into();
        approved.status = Set(RunStatus::Approved);
        approved.finished_at = Set(Some(now));
        approved.counts = Set(json!({"changes": counts, "effects": effects}).to_string());
        approved.update(tx).await?;
        write.commit().await?;
        self.bus.notify();
        Ok(Outcome::Applied(RunReport {
            run_id,
            changes: counts,
            effects,
            n_events,
        }))
    }

    /// Judges a change set against the connection's deletion limit. A
    /// dry run reports the exact allowance; otherwise the users are only
    /// counted when the verdict depends on their number (a percentage limit
    /// and more than one removal: a SCIM deactivation does not count 100k
    /// rows).
    async fn gate(
        &self,
        db: &impl ConnectionTrait,
        connection_id: &str,
        changes: &ChangeSet,
        dry_run: bool,
    ) -> Result<GateVerdict> {
        let removals = changes.n_user_removals() as u64;
        if removals == 0 {
            return Ok(GateVerdict {
                removals,
                allowed: 0,
                held: false,
            });
        }
        let limit = self
            .limits
            .get(connection_id)
            .copied()
            .unwrap_or(DeletionLimit::Percent(10));
        let allowed = match limit {
            DeletionLimit::Count(count) => count,
            // Removals are of stored users, so at least as many are stored,
            // and any non-zero percentage of one or more users allows one.
            DeletionLimit::Percent(percent)
                if !dry_run && (percent >= 100 || (percent > 0 && removals == 1)) =>
            {
                removals
            }
            DeletionLimit::Percent(_) => {
                let n_users = source_user::Entity::find()
                    .filter(source_user::Column::ConnectionId.eq(connection_id))
                    .count(db)
                    .await?;
                limit.allowed(n_users)
            }
        };
        Ok(GateVerdict {
            removals,
            allowed,
            held: removals > allowed,
        })
    }
}

/// What `edits` make of `rows`, in the edits' order; an edit of a row not
/// there is `not_found`.
fn apply_edits<Row: StoredRow, Record>(
    rows: &[Row],
    edits: &[Edit<Row, Record>],
    not_found: impl Fn(String) -> ReconcileError,
) -> Result<Vec<Record>> {
    let by_id: HashMap<&str, &Row> = rows.iter().map(|row| (row.external_id(), row)).collect();
    edits
        .iter()
        .map(|edit| {
            let row = by_id
                .get(edit.external_id.as_str())
                .ok_or_else(|| not_found(edit.external_id.clone()))?;
            (edit.edit)(row).map_err(ReconcileError::EditRejected)
        })
        .collect()
}

fn record_metrics(
    connection_id: &str,
    outcome: &'static str,
    n_events: usize,
    effects: &EffectCounts,
) {
    metrics::counter!("idpsync_reconcile_runs_total", "connection" => connection_id.to_string(), "outcome" => outcome).increment(1);
    metrics::counter!("idpsync_events_total", "connection" => connection_id.to_string())
        .increment(n_events as u64);
    metrics::counter!("idpsync_devices_revoked_total", "connection" => connection_id.to_string())
        .increment(effects.devices_revoked as u64);
}

/// The stored row of `connection_id`.
async fn connection_row(
    db: &impl ConnectionTrait,
    connection_id: &str,
) -> Result<connection::Model> {
    connection::Entity::find_by_id(connection_id)
        .one(db)
        .await?
        .ok_or_else(|| ReconcileError::UnknownConnection(connection_id.to_string()))
}

/// Marks the connection's stored state changed (and records the cursor the
/// change came with); false when there is no such connection.
async fn bump_state(
    db: &impl ConnectionTrait,
    connection_id: &str,
    delta_cursor: Option<&str>,
) -> Result<bool, DbErr> {
    let mut update = connection::Entity::update_many()
        .col_expr(
            connection::Column::StateVersion,
            Expr::col(connection::Column::StateVersion).add(1),
        )
        .col_expr(connection::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(cursor) = delta_cursor {
        update = update.col_expr(connection::Column::DeltaCursor, Expr::value(cursor));
    }
    let updated = update
        .filter(connection::Column::Id.eq(connection_id))
        .exec(db)
        .await?;
    Ok(updated.rows_affected > 0)
}

#[expect(
    clippy::too_many_arguments,
    reason = "a run record has this many fields"
)]
async fn insert_run(
    db: &impl ConnectionTrait,
    started_at: Option<chrono::DateTime<Utc>>,
    connection_id: &str,
    trigger: Trigger,
    mode: &str,
    status: RunStatus,
    counts: serde_json::Value,
    change_set: Option<String>,
    base_state_version: Option<i64>,
) -> Result<sync_run::Model, DbErr> {
    let now = Utc::now();
    sync_run::ActiveModel {
        connection_id: Set(connection_id.to_string()),
        trigger: Set(trigger.as_str().to_string()),
        mode: Set(mode.to_string()),
        dry_run: Set(false),
        status: Set(status),
        started_at: Set(started_at.unwrap_or(now)),
        finished_at: Set(status.is_finished().then_some(now)),
        counts: Set(counts.to_string()),
        error: Set(None),
        change_set: Set(change_set),
        base_state_version: Set(base_state_version),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// Wall time per phase of one reconciliation, logged at debug level, with
/// the process's resident memory at each phase's end when the log is on:
/// where a slow or large sync spends its time and holds its memory,
/// without a profiler ("edges=20739.19ms/304MiB").
pub(crate) struct Phases {
    last: std::time::Instant,
    /// Each phase, its time, and the resident memory as it ended (read
    /// only when the debug log is on; `None` where it cannot be read).
    spans: Vec<(&'static str, std::time::Duration, Option<u64>)>,
}

impl Phases {
    pub(crate) fn start() -> Self {
        Phases {
            last: std::time::Instant::now(),
            spans: Vec::new(),
        }
    }

    /// Takes over the phases of a step that timed its own parts.
    pub(crate) fn absorb(&mut self, other: Phases) {
        self.spans.extend(other.spans);
        self.last = other.last.max(self.last);
    }

    /// Ends the phase `name` (started at the previous mark).
    pub(crate) fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        let resident = if tracing::enabled!(tracing::Level::DEBUG) {
            crate::process::Memory::now().and_then(|memory| memory.resident)
        } else {
            None
        };
        self.spans.push((name, now - self.last, resident));
        self.last = now;
    }

    /// The phases as the log shows them: `name=12.34ms`, with
    /// `/123MiB` where the resident memory was read.
    fn describe(&self) -> String {
        let phases: Vec<String> = self
            .spans
            .iter()
            // Fractions: a SCIM batch's phases take microseconds.
            .map(|(name, took, resident)| {
                let took = format!("{name}={:.2}ms", took.as_secs_f64() * 1e3);
                match resident {
                    Some(bytes) => format!("{took}/{}MiB", bytes >> 20),
                    None => took,
                }
            })
            .collect();
        phases.join(" ")
    }

    pub(crate) fn log(&self, connection_id: &str) {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let phases = self.describe();
            tracing::debug!(connection = connection_id, phases = %phases, "reconcile phases");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Phases;
    use std::time::{Duration, Instant};

    #[test]
    fn the_phase_log_gives_each_phase_its_time_and_where_read_its_memory() {
        let phases = Phases {
            last: Instant::now(),
            spans: vec![
                ("edges", Duration::from_micros(20_739_190), Some(304 << 20)),
                ("commit", Duration::from_micros(1_500), None),
            ],
        };
        assert_eq!(phases.describe(), "edges=20739.19ms/304MiB commit=1.50ms");
    }

    #[test]
    fn memory_is_read_at_a_mark_only_while_the_debug_log_is_on() {
        let mut phases = Phases::start();
        phases.mark("quiet");
        let debug = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_test_writer()
            .finish();
        tracing::subscriber::with_default(debug, || phases.mark("logged"));
        assert_eq!(phases.spans[0].2, None);
        let logged = phases.spans[1].2;
        if crate::process::Memory::now().is_some() {
            assert!(logged.is_some_and(|bytes| bytes > 0), "{logged:?}");
        }
    }
}
