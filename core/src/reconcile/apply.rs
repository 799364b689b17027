//! Writes a [`ChangeSet`] and derives its effects inside one transaction:
//! source rows, device revocation, direct edges, memberships inherited
//! through nested groups and ACL group members, with one event per change
//! and effect (membership changes: one event per group, listing its
//! members).
//!
//! Event order for one change set: group changes, user changes, device
//! revocations, membership changes, ACL group changes, group deletions. So a
//! removed user's `user.deleted` is followed by `device.revoked` and then by
//! `acl_group.member_removed`.
//!
//! Its maps and sets hash with foldhash: a first sync looks up both ends of
//! a million edges, and SipHash was a sixth of the edges phase.

use super::acl::AclRules;
use super::diff::ChangeSet;
use super::graph::GroupGraph;
use super::hash::{group_hash, user_hash};
use super::row_id_bits::RowIdBits;
use super::staged::StagedUsers;
use super::user_ids::{RowId, UserIds};
use crate::events::{EVENTS_PER_INSERT, EventKind, NewEvent};
use crate::store::entity::{
    acl_group, acl_group_member, device, effective_membership, group_membership,
    inherited_membership, source_group, source_user, user_membership,
};
use crate::store::pipeline::Pipelined;
use crate::store::{edges, index_build, raw_sql};
use chrono::{DateTime, Utc};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use futures_util::TryStreamExt;
use idpsync_driver::edges::{EdgeRef, IdIndex};
use idpsync_driver::{MemberRef, SourceGroup, SourceUser};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, FromQueryResult,
    Iterable, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select, Set, Statement,
    StreamTrait,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// The start of the `user_name_key` of a user whose name is being handed
/// to another user within one apply (see `Apply::free_moving_names`); the
/// user's external id follows (unique in the connection). A control
/// character: no userName folds to it (refused as input).
pub const PARKED_NAME: &str = "\u{1}parked:";

/// Members listed in one `membership.added` or `membership.removed` event.
pub const MEMBERS_PER_EVENT: usize = 1000;

/// Values per `IN (...)` list.
const CHUNK: usize = 500;

/// Users compared per page when every user's ACL groups are recomputed
/// (no id list is bound, so a page may be longer than a chunk).
const ACL_PAGE: usize = 5_000;

/// Bound parameters per multi-row INSERT: below SQLite's 32,766 and
/// PostgreSQL's 65,535, large enough that statement overhead stays small.
const INSERT_PARAMS: usize = 30_000;

/// Rows per INSERT for a table with `columns` columns.
const fn rows_per_insert(columns: usize) -> usize {
    INSERT_PARAMS / columns
}

/// A step after which a test can make the apply fail, to prove that nothing
/// of a failed apply is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailPoint {
    AfterSourceChanges,
    AfterRevocations,
    AfterAclGroups,
}

/// Counts of the effects an apply derived.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectCounts {
    pub devices_revoked: usize,
    /// Memberships gained through nested groups (a direct member is never
    /// counted here: direct edges are the change set's).
    pub inherited_added: usize,
    /// Memberships through nested groups lost, or now direct.
    pub inherited_removed: usize,
    pub acl_members_added: usize,
    pub acl_members_removed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("injected failure at {0:?}")]
    Injected(FailPoint),
    /// Reading back the staged users to write them (their temporary file).
    #[error(transparent)]
    Staging(std::io::Error),
}

pub struct ApplyContext<'a> {
    pub connection_id: &'a str,
    pub acl: &'a AclRules,
    pub now: DateTime<Utc>,
    pub fail_at: Option<FailPoint>,
    /// Write events as they accumulate (in the same transaction, in order)
    /// instead of returning them: bounds memory on large change sets. A dry
    /// run keeps them to show.
    pub persist_events: bool,
    /// Return the whole rows of the users written ([`Applied::written_users`]),
    /// read where the apply reads them anyway: for a SCIM write's answer.
    pub keep_written_users: bool,
}

/// Rows written to a table in one apply from which its planner statistics
/// are refreshed (see `Apply::refresh_statistics`).
const BULK_WRITE: usize = 10_000;

/// Edges added in one apply from which the by-user edge index may be built
/// after the insert instead of during it (see `Apply::defer_indexes`).
const BULK_EDGES: usize = 100_000;

/// What a bulk insert into a table may drop and build again after it
/// (`Apply::defer_indexes`).
#[derive(Debug, Clone, Copy)]
enum Deferred {
    /// The index of this name.
    Index(&'static str),
    /// The table's primary key (PostgreSQL only).
    PrimaryKey,
}

/// Events buffered before they are written, when persisting, counted by
/// weight: one per event, plus one per member a membership event lists.
const EVENT_FLUSH: usize = 20_000;

/// What an apply did.
pub struct Applied {
    /// The events not written by the apply (all of them unless persisting).
    pub events: Vec<NewEvent>,
    /// Events produced, written or not.
    pub n_events: usize,
    pub effects: EffectCounts,
    /// With [`ApplyContext::keep_written_users`], the created and updated
    /// users as written.
    pub written_users: Vec<source_user::Model>,
    /// How long each step took.
    pub(crate) phases: super::Phases,
}

/// Applies `changes`; returns the events to append, in order, and the effects.
/// The change set is consumed: a first sync's user records are freed as they
/// are written, before the edges (take [`ChangeSet::counts`] first).
pub async fn apply(
    db: &(impl ConnectionTrait + StreamTrait),
    ctx: &ApplyContext<'_>,
    changes: ChangeSet,
) -> Result<Applied, ApplyError> {
    let mut run = Apply {
        db: Pipelined::new(db),
        ctx,
        events: Vec::new(),
        n_written: 0,
        buffered_weight: 0,
        effects: EffectCounts::default(),
        written_users: Vec::new(),
        dropped_indexes: Vec::new(),
        phases: super::Phases::start(),
    };
    run.run(changes).await?;
    // No index dropped for a bulk insert may be committed dropped (a
    // failed step returned above; its rollback restores the index).
    run.restore_indexes().await?;
    run.flush(true).await?;
    // The caller commits next: nothing may be left in flight.
    run.db.finish().await?;
    run.phases.mark("events");
    Ok(Applied {
        n_events: run.n_written + run.events.len(),
        events: run.events,
        effects: run.effects,
        written_users: run.written_users,
        phases: run.phases,
    })
}

struct Apply<'a, C> {
    /// The transaction, reached only through the pipeline (see
    /// [`Pipelined`]): statements may be sent one ahead, and any other
    /// use waits for the one in flight.
    db: Pipelined<'a, C>,
    /// Events already written (when persisting).
    n_written: usize,
    /// The weight of the buffered events (see [`EVENT_FLUSH`]).
    buffered_weight: usize,
    ctx: &'a ApplyContext<'a>,
    events: Vec<NewEvent>,
    effects: EffectCounts,
    written_users: Vec<source_user::Model>,
    /// The statements that build again the indexes and primary keys
    /// dropped for a bulk insert (see [`Apply::defer_indexes`]), to run in
    /// order.
    dropped_indexes: Vec<String>,
    phases: super::Phases,
}

/// A stored user as the effects need it.
#[derive(Debug, Clone)]
struct UserRow {
    id: i64,
    external_id: String,
    user_name: String,
    active: bool,
}

/// A user row as a write returns it.
#[derive(Debug, FromQueryResult)]
struct WrittenUser {
    id: i64,
    external_id: String,
}

/// Files the rows a write returned (in any order) under their external ids.
/// The ids are the ones the writes returned: the user records themselves
/// are let go as soon as they are written (see [`Apply::upsert_users`]).
fn remember_written(ids: &mut UserIds, rows: Vec<WrittenUser>) -> Result<(), DbErr> {
    for row in rows {
        ids.insert(row.external_id, row.id)?;
    }
    Ok(())
}

/// `records` in owned chunks of `size`: each chunk's records can be
/// dropped once it is written, not only when the last chunk is.
fn owned_chunks<T>(
    records: impl IntoIterator<Item = T>,
    size: usize,
) -> impl Iterator<Item = Vec<T>> {
    let mut records = records.into_iter();
    std::iter::from_fn(move || {
        let chunk: Vec<T> = records.by_ref().take(size).collect();
        (!chunk.is_empty()).then_some(chunk)
    })
}

/// A user whose devices an apply revokes, and why.
struct Departure<'c> {
    user_id: i64,
    external_id: &'c str,
    reason: &'static str,
}

impl<'c> Departure<'c> {
    /// The departure of a user the apply wrote or deleted.
    fn of(ids: &UserIds, external_id: &'c str, reason: &'static str) -> Option<Self> {
        ids.get(external_id).map(|id| Departure {
            user_id: id,
            external_id,
            reason,
        })
    }
}

#[derive(Debug, Clone)]
struct GroupRow {
    external_id: String,
    display_name: String,
}

/// The ends of the direct edges an apply added or removed.
struct ChangedEdges {
    /// Groups whose direct members changed.
    groups: HashSet<i64>,
    /// Users who joined or left a group directly, when asked for.
    users: Option<HashSet<i64>>,
}

impl ChangedEdges {
    /// Gathers the users too when `users`.
    fn new(users: bool) -> Self {
        ChangedEdges {
            groups: HashSet::new(),
            users: users.then(HashSet::new),
        }
    }

    /// `user` joined or left a group directly.
    fn user(&mut self, user: i64) {
        if let Some(users) = &mut self.users {
            users.insert(user);
        }
    }
}

/// The row id of each group of `groups` at its index in `ids` (`None` at
/// the indexes of ids that are no group read).
fn rows_by_index(
    ids: &IdIndex,
    groups: &BTreeMap<i64, GroupRow>,
) -> Result<Vec<Option<RowId>>, DbErr> {
    let mut rows = vec![None; ids.len()];
    for (id, row) in groups {
        if let Some(index) = ids.get(&row.external_id) {
            rows[index as usize] = Some(RowId::new(*id)?);
        }
    }
    Ok(rows)
}

/// Whose ACL groups [`Apply::recompute_acl`] brings in line.
enum AclUsers<'s> {
    /// Every user of the connection: a group was created, renamed or
    /// deleted, so a rule may select it now or no longer. `groups` are all
    /// the connection's groups.
    All { groups: &'s BTreeMap<i64, GroupRow> },
    /// These users (by row id): their effective groups may have changed,
    /// or they were written or deleted. `groups` are all the connection's
    /// groups when loaded already; otherwise the groups of each chunk of
    /// users are read.
    These {
        users: &'s HashSet<i64>,
        groups: Option<&'s BTreeMap<i64, GroupRow>>,
    },
}

/// One chunk of users' ACL memberships: as their effective groups want
/// them and as stored, as (ACL group, user) pairs of ACL groups this
/// connection fills.
#[derive(Default)]
struct AclChunk {
    users: HashMap<i64, UserRow>,
    wanted: BTreeSet<(i64, i64)>,
    have: BTreeSet<(i64, i64)>,
}

/// The ACL groups as one [`Apply::recompute_acl`] knows them.
struct AclTargets<'a> {
    ids: &'a HashMap<String, i64>,
    names: HashMap<i64, &'a str>,
    /// The ones this connection's rules fill: the only ones it changes.
    ours: HashSet<i64>,
}

/// Which groups [`Apply::load_groups`] reads.
enum GroupsOf<'a> {
    Connection,
    /// The groups these users are effective members of.
    Users(&'a [i64]),
}

impl<'a, C: ConnectionTrait + StreamTrait> Apply<'a, C> {
    fn connection(&self) -> &str {
        self.ctx.connection_id
    }

    /// Buffers an event. A step that makes one event per user, group or
    /// device calls [`Apply::announce`] instead; the membership and ACL
    /// steps flush once per group or page.
    fn event(
        &mut self,
        kind: EventKind,
        subject_type: &'static str,
        subject: &str,
        payload: serde_json::Value,
    ) {
        self.buffered_weight += 1;
        let connection = self.ctx.connection_id;
        self.events.push(NewEvent::new(
            kind,
            Some(connection),
            subject_type,
            subject,
            payload,
        ));
    }

    /// [`Apply::event`], then [`Apply::flush`] if the buffer is full: for
    /// the steps that make one event per user, group or device, which
    /// would otherwise hold a whole tenant's events at once (a first
    /// sync's 100,000 `group.created` were ~100 MiB).
    async fn announce(
        &mut self,
        kind: EventKind,
        subject_type: &'static str,
        subject: &str,
        payload: serde_json::Value,
    ) -> Result<(), DbErr> {
        self.event(kind, subject_type, subject, payload);
        self.flush(false).await
    }

    /// Whether the buffered events are to be written now: when persisting
    /// and the buffer is full (or `force`).
    fn flush_due(&self, force: bool) -> bool {
        self.ctx.persist_events
            && !self.events.is_empty()
            && (force || self.buffered_weight >= EVENT_FLUSH)
    }

    /// Writes the buffered events if [`Apply::flush_due`], through the
    /// pipeline (the last statement may still be in flight on return).
    ///
    /// Unless forced, only whole statements of [`EVENTS_PER_INSERT`]
    /// events go (all the events, if fewer: heavy membership events). A
    /// statement of another length is another prepared statement, kept in
    /// the connection's cache: flushes of every length, as a page of ACL
    /// members leaves them, filled that cache with statements of thousands
    /// of rows (~100 MiB at a million users).
    async fn flush(&mut self, force: bool) -> Result<(), DbErr> {
        if self.flush_due(force) {
            let backend = self.db.backend();
            let len = self.events.len();
            let n = if force || len < EVENTS_PER_INSERT {
                len
            } else {
                len - len % EVENTS_PER_INSERT
            };
            for statement in
                crate::events::append_statements(backend, &self.events[..n], self.ctx.now)
            {
                self.db.send(statement).await?;
            }
            self.n_written += n;
            self.events.drain(..n);
            // Fewer than one statement's events are left; each counts
            // one, whatever members it lists.
            self.buffered_weight = self.events.len();
        }
        Ok(())
    }

    /// On PostgreSQL, re-reads the statistics of `tables` once `written`
    /// rows went into them. The planner has none for rows this transaction
    /// wrote (autovacuum sees them only after the commit), so after a first
    /// sync it took a connection's users for a few hundred and answered a
    /// lookup of 500 users by scanning them all, per lookup: quadratic in
    /// the tenant. `ANALYZE` samples at most 30,000 rows per table, so it
    /// costs about the same at any size.
    async fn refresh_statistics(&mut self, written: usize, tables: &[&str]) -> Result<(), DbErr> {
        if self.db.backend() != DatabaseBackend::Postgres || written < BULK_WRITE {
            return Ok(());
        }
        let statement = Statement::from_string(
            DatabaseBackend::Postgres,
            format!("ANALYZE {}", tables.join(", ")),
        );
        self.db.send(statement).await
    }

    fn fail_if(&self, point: FailPoint) -> Result<(), ApplyError> {
        if self.ctx.fail_at == Some(point) {
            Err(ApplyError::Injected(point))
        } else {
            Ok(())
        }
    }

    async fn run(&mut self, mut changes: ChangeSet) -> Result<(), ApplyError> {
        self.upsert_groups(&changes).await?;
        self.phases.mark("upsert_groups");
        let n_written = changes.counts().users_created + changes.users_updated.len();
        let created = std::mem::take(&mut changes.users_created);
        let staged = changes.users_created_staged.take();
        let updated = std::mem::take(&mut changes.users_updated);
        let user_ids = self
            .upsert_users(&changes, created, staged, updated)
            .await?;
        let changes = &changes;
        self.flush(false).await?;
        self.refresh_statistics(n_written, &["source_users"])
            .await?;
        self.phases.mark("upsert_users");
        self.fail_if(FailPoint::AfterSourceChanges)?;

        let departure = |external_id, reason| Departure::of(&user_ids, external_id, reason);
        let departures: Vec<Departure> = changes
            .users_deactivated
            .iter()
            .filter_map(|ext| departure(ext, "user deactivated at the source"))
            .chain(
                changes
                    .users_deleted
                    .iter()
                    .filter_map(|ext| departure(ext, "user removed at the source")),
            )
            .collect();
        let deleted_user_ids: HashSet<i64> = changes
            .users_deleted
            .iter()
            .filter_map(|ext| user_ids.get(ext.as_str()))
            .collect();
        self.revoke_devices(&departures).await?;
        self.phases.mark("revoke_devices");
        self.fail_if(FailPoint::AfterRevocations)?;

        // Every group of the connection, when the change needs them by id
        // (edges, deletions) or all users' ACL groups are recomputed; a
        // change to a few users alone reads only their groups.
        let groups_changed = !changes.groups_created.is_empty()
            || !changes.groups_updated.is_empty()
            || !changes.groups_deleted.is_empty();
        let needs_groups = groups_changed
            || !changes.users_deleted.is_empty()
            || !changes.memberships_added.is_empty()
            || !changes.memberships_removed.is_empty();
        let groups = if needs_groups {
            self.load_groups(GroupsOf::Connection).await?
        } else {
            BTreeMap::new()
        };
        let deleted_group_ids: HashSet<i64> = groups
            .iter()
            .filter(|(_, row)| changes.groups_deleted.contains(&row.external_id))
            .map(|(id, _)| *id)
            .collect();
        // Users whose effective groups may have changed matter only where
        // ACL rules place users, and are gathered only when not every
        // user's ACL groups are recomputed anyway: not a first sync's
        // million, from the edges, the nesting walk and the writes.
        let acl_applies = self.ctx.acl.any_for_connection(self.connection());
        let acl_for_all = acl_applies && groups_changed;
        let gather_users = acl_applies && !acl_for_all;
        let changed = self
            .change_edges(
                changes,
                &groups,
                &user_ids,
                &deleted_user_ids,
                &deleted_group_ids,
                gather_users,
            )
            .await?;
        self.flush(false).await?;
        self.refresh_statistics(
            changes.memberships_added.len(),
            &["user_memberships", "group_memberships"],
        )
        .await?;
        self.phases.mark("edges");
        // A first sync's inherited rows reach their by-user index in
        // random user order too. On PostgreSQL (where the index goes only
        // when the table is empty) building it after the insert paid: 300k
        // users, the insert 5.8 s with it, 2.7 s without plus 0.3 s to
        // build it. On SQLite it made no difference at 300k; it stays.
        // The rows come from the added edges, so their count stands in.
        if self.db.backend() == DatabaseBackend::Postgres {
            self.defer_indexes(
                "inherited_memberships",
                &[Deferred::Index("ix_inherited_memberships_user")],
                changes.memberships_added.len(),
            )
            .await?;
        }
        let dirty_users = self
            .recompute_inherited(&changed.groups, &deleted_group_ids, gather_users)
            .await?;
        self.restore_indexes().await?;
        // The ACL recompute reads the rows just written by group and by
        // user: without fresh statistics PostgreSQL scanned all of them
        // for every 500 groups read.
        let inherited_written = self.effects.inherited_added + self.effects.inherited_removed;
        self.refresh_statistics(inherited_written, &["inherited_memberships"])
            .await?;
        self.phases.mark("inherited");

        // Users whose effective groups may have changed: through their own
        // edges or through nesting.
        let mut users_to_check: HashSet<i64> = dirty_users;
        if gather_users {
            users_to_check.extend(changed.users.into_iter().flatten());
            // Every user written or deleted (the deleted ones are in the map).
            users_to_check.extend(user_ids.row_ids());
        }
        let acl_users = if acl_for_all {
            AclUsers::All { groups: &groups }
        } else {
            AclUsers::These {
                users: &users_to_check,
                groups: needs_groups.then_some(&groups),
            }
        };
        self.recompute_acl(acl_users, &deleted_user_ids, &deleted_group_ids)
            .await?;
        // Statistics for the next run's by-user reads, taken in this
        // transaction as for the inherited rows above.
        let acl_written = self.effects.acl_members_added + self.effects.acl_members_removed;
        self.refresh_statistics(acl_written, &["acl_group_members"])
            .await?;
        self.fail_if(FailPoint::AfterAclGroups)?;
        self.flush(false).await?;
        self.phases.mark("acl");

        self.delete_sources(changes, &groups, &deleted_group_ids, &deleted_user_ids)
            .await?;
        self.phases.mark("delete_sources");
        Ok(())
    }

    async fn upsert_groups(&mut self, changes: &ChangeSet) -> Result<(), DbErr> {
        let now = self.ctx.now;
        for chunk in changes.groups_created.chunks(rows_per_insert(9)) {
            let rows = chunk.iter().map(|group| source_group::ActiveModel {
                connection_id: Set(self.connection().to_string()),
                external_id: Set(group.external_id.clone()),
                display_name: Set(group.display_name.clone()),
                attributes: Set(attributes_json(&group.attributes)),
                content_hash: Set(group_hash(group)),
                version: Set(1),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            });
            source_group::Entity::insert_many(rows)
                .exec_without_returning(self.db.idle().await?)
                .await?;
        }
        for group in &changes.groups_created {
            self.announce(
                EventKind::GroupCreated,
                "group",
                &group.external_id,
                group_payload(group),
            )
            .await?;
        }
        for group in &changes.groups_updated {
            source_group::Entity::update_many()
                .col_expr(
                    source_group::Column::DisplayName,
                    Expr::value(group.display_name.clone()),
                )
                .col_expr(
                    source_group::Column::Attributes,
                    Expr::value(attributes_json(&group.attributes)),
                )
                .col_expr(
                    source_group::Column::ContentHash,
                    Expr::value(group_hash(group)),
                )
                .col_expr(
                    source_group::Column::Version,
                    Expr::col(source_group::Column::Version).add(1),
                )
                .col_expr(source_group::Column::UpdatedAt, Expr::value(now))
                .filter(source_group::Column::ConnectionId.eq(self.connection()))
                .filter(source_group::Column::ExternalId.eq(&group.external_id))
                .exec(self.db.idle().await?)
                .await?;
            self.announce(
                EventKind::GroupUpdated,
                "group",
                &group.external_id,
                group_payload(group),
            )
            .await?;
        }
        Ok(())
    }

    /// Writes the created and updated users (taken out of `changes`, which
    /// still has their ids in its other lists) and announces them; returns
    /// the row ids of those and of the users `changes` deletes. Each record
    /// is dropped as soon as its chunk is written: past this step a first
    /// sync holds a million ids, not a million records.
    async fn upsert_users<'c>(
        &mut self,
        changes: &'c ChangeSet,
        created: Vec<SourceUser>,
        staged: Option<StagedUsers>,
        updated: Vec<SourceUser>,
    ) -> Result<UserIds<'c>, ApplyError> {
        // Deleted users as they were (their rows go at the end of the apply).
        let deleted: HashMap<String, UserRow> = self
            .load_users_by_external_id(changes.users_deleted.iter().map(String::as_str))
            .await?;
        self.free_moving_names(changes).await?;

        // The rows written come back from the writes themselves
        // (RETURNING), not from a read after them: on PostgreSQL a read of
        // rows inserted by this transaction meets a table without
        // statistics, and its plan scanned the connection's every user.
        let mut written = UserIds::new(changes.memberships_added.ids());
        // Staged users are decoded as they are written, a chunk at a time.
        let staged = staged.into_iter().flat_map(|staged| staged.read());
        let created = created.into_iter().map(Ok).chain(staged);
        for chunk in owned_chunks(created, rows_per_insert(17)) {
            let chunk = chunk
                .into_iter()
                .collect::<Result<Vec<SourceUser>, _>>()
                .map_err(ApplyError::Staging)?;
            self.write_user_chunk(&chunk, None, &mut written, |_| EventKind::UserCreated)
                .await?;
        }
        let deactivated: HashSet<&str> = changes
            .users_deactivated
            .iter()
            .map(String::as_str)
            .collect();
        let reactivated: HashSet<&str> = changes
            .users_reactivated
            .iter()
            .map(String::as_str)
            .collect();
        let suspended: HashSet<&str> = changes.users_suspended.iter().map(String::as_str).collect();
        // Updated users are stored: each row's insert conflicts on its
        // external id and becomes the update, many users per statement.
        let kind_of = |user: &SourceUser| {
            let id = user.external_id.as_str();
            if deactivated.contains(id) {
                EventKind::UserDeactivated
            } else if suspended.contains(id) {
                EventKind::UserSuspended
            } else if reactivated.contains(id) {
                EventKind::UserReactivated
            } else {
                EventKind::UserUpdated
            }
        };
        for chunk in owned_chunks(updated, rows_per_insert(17)) {
            self.write_user_chunk(&chunk, Some(user_update()), &mut written, kind_of)
                .await?;
        }
        // The last write's ids, once it has run.
        self.db.finish().await?;
        remember_written(&mut written, self.written_users_returned()?)?;
        for external_id in &changes.users_deleted {
            let user_name = deleted
                .get(external_id)
                .map(|row| row.user_name.as_str())
                .unwrap_or_default();
            self.announce(
                EventKind::UserDeleted,
                "user",
                external_id,
                json!({"external_id": external_id, "user_name": user_name}),
            )
            .await?;
        }
        for (external_id, row) in deleted {
            written.insert(external_id, row.id)?;
        }
        Ok(written)
    }

    /// Writes `chunk` in one statement (an upsert with `on_conflict`),
    /// keeps in `written` the ids of the writes that have run (the last
    /// chunk's are taken by the caller), and announces each user as
    /// `kind_of` says, flushing as it goes: a new tenant's 100k events
    /// would otherwise be held at once.
    async fn write_user_chunk(
        &mut self,
        chunk: &[SourceUser],
        on_conflict: Option<OnConflict>,
        written: &mut UserIds<'_>,
        kind_of: impl Fn(&SourceUser) -> EventKind,
    ) -> Result<(), ApplyError> {
        let now = self.ctx.now;
        let rows = chunk
            .iter()
            .map(|user| user_row(self.connection(), user, now, 1));
        let mut insert = source_user::Entity::insert_many(rows);
        if let Some(on_conflict) = on_conflict {
            insert = insert.on_conflict(on_conflict);
        }
        remember_written(written, self.write_users(insert).await?)?;
        for user in chunk {
            self.announce(kind_of(user), "user", &user.external_id, user_payload(user))
                .await?;
        }
        Ok(())
    }

    /// Sends an insert (or upsert) of user rows one ahead; returns the ids
    /// of the users written by the writes that have run since the last
    /// call (this one's come with the next, or after
    /// [`Pipelined::finish`] from [`Apply::written_users_returned`]).
    /// With [`ApplyContext::keep_written_users`] the insert runs at once,
    /// its ids are returned, and the whole rows are kept too.
    async fn write_users(
        &mut self,
        mut insert: sea_orm::InsertMany<source_user::ActiveModel>,
    ) -> Result<Vec<WrittenUser>, DbErr> {
        if self.ctx.keep_written_users {
            let models = insert.exec_with_returning(self.db.idle().await?).await?;
            let rows = models
                .iter()
                .map(|row| WrittenUser {
                    id: row.id,
                    external_id: row.external_id.clone(),
                })
                .collect();
            self.written_users.extend(models);
            return Ok(rows);
        }
        QueryTrait::query(&mut insert).returning(
            Query::returning().columns([source_user::Column::Id, source_user::Column::ExternalId]),
        );
        let statement = insert.build(self.db.backend());
        // Sent one ahead like the events: the caller announces this
        // chunk's users while it runs, and its ids come back with the next
        // write's (or `written_users_returned`).
        self.db.send_returning(statement).await?;
        self.written_users_returned()
    }

    /// The ids of the users written by the statements that have run.
    fn written_users_returned(&mut self) -> Result<Vec<WrittenUser>, DbErr> {
        self.db
            .take_returned()
            .iter()
            .map(|row| WrittenUser::from_query_result(row, ""))
            .collect()
    }

    /// Parks the userNames this change set moves from one user to another
    /// ([`ChangeSet::names_to_free`], found by the diff), so that no write
    /// below meets a name still held by its old owner: the parked row's
    /// `user_name_key` becomes [`PARKED_NAME`] and its external id; the
    /// update writes the user's new key, and a deleted user's row goes at
    /// the end of the apply. Rare (names move only when people churn): a
    /// statement per row, none at all in the common case.
    async fn free_moving_names(&mut self, changes: &ChangeSet) -> Result<(), DbErr> {
        for external_id in &changes.names_to_free {
            source_user::Entity::update_many()
                .col_expr(
                    source_user::Column::UserNameKey,
                    Expr::value(format!("{PARKED_NAME}{external_id}")),
                )
                .filter(source_user::Column::ConnectionId.eq(self.connection()))
                .filter(source_user::Column::ExternalId.eq(external_id))
                .exec(self.db.idle().await?)
                .await?;
        }
        Ok(())
    }

    async fn revoke_devices(&mut self, departures: &[Departure<'_>]) -> Result<(), DbErr> {
        if departures.is_empty() {
            return Ok(());
        }
        let by_owner: HashMap<i64, &Departure> =
            departures.iter().map(|gone| (gone.user_id, gone)).collect();
        let owner_ids: Vec<i64> = by_owner.keys().copied().collect();
        for chunk in owner_ids.chunks(CHUNK) {
            let devices = device::Entity::find()
                .filter(device::Column::OwnerUserId.is_in(chunk.iter().copied()))
                .filter(device::Column::Status.ne("revoked"))
                .all(self.db.idle().await?)
                .await?;
            let connection = self.ctx.connection_id;
            let revoked: Vec<(&device::Model, String)> = devices
                .iter()
                .map(|found| {
                    let owner = found.owner_user_id.unwrap_or_default();
                    let why = by_owner
                        .get(&owner)
                        .map_or("user removed", |gone| gone.reason);
                    (found, format!("{why} ({connection})"))
                })
                .collect();
            // One statement per reason (a handful), not one per device.
            let mut by_reason: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
            for (found, reason) in &revoked {
                by_reason.entry(reason).or_default().push(found.id);
            }
            for (reason, ids) in by_reason {
                device::Entity::update_many()
                    .col_expr(device::Column::Status, Expr::value("revoked"))
                    .col_expr(device::Column::RevokedReason, Expr::value(reason))
                    .col_expr(device::Column::RevokedAt, Expr::value(self.ctx.now))
                    .col_expr(device::Column::UpdatedAt, Expr::value(self.ctx.now))
                    .filter(device::Column::Id.is_in(ids))
                    .exec(self.db.idle().await?)
                    .await?;
            }
            for (found, reason) in revoked {
                let owner = found.owner_user_id.unwrap_or_default();
                self.effects.devices_revoked += 1;
                self.announce(
                    EventKind::DeviceRevoked,
                    "device",
                    &found.id.to_string(),
                    json!({
                        "device_id": found.id,
                        "name": found.name,
                        "node_key": found.node_key,
                        "previous_status": found.status,
                        "owner_external_id": by_owner.get(&owner).map_or(found.owner_external_id.as_str(), |gone| gone.external_id),
                        "reason": reason,
                    }),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Removes and adds direct edges; returns the ends of the changed edges.
    async fn change_edges(
        &mut self,
        changes: &ChangeSet,
        groups: &BTreeMap<i64, GroupRow>,
        known_users: &UserIds<'_>,
        deleted_users: &HashSet<i64>,
        deleted_groups: &HashSet<i64>,
        gather_users: bool,
    ) -> Result<ChangedEdges, DbErr> {
        let group_ids: HashMap<&str, i64> = groups
            .iter()
            .map(|(id, row)| (row.external_id.as_str(), *id))
            .collect();
        // Users the change set wrote are known already (all of them on a
        // first sync); only members it did not touch are read. An added
        // edge's member is known by its index (see below).
        let added = &changes.memberships_added;
        let unknown_added = added
            .refs()
            .filter(|edge| {
                !edge.member_is_group
                    && known_users
                        .get_indexed(added.ids(), edge.member_index)
                        .is_none()
            })
            .map(|edge| edge.member.as_ref());
        let unknown_removed = changes
            .memberships_removed
            .iter()
            .filter_map(|edge| match &edge.member {
                MemberRef::User(id) => Some(id.as_ref()),
                MemberRef::Group(_) => None,
            })
            .filter(|id| !known_users.contains(id));
        let loaded = self
            .load_users_by_external_id(unknown_added.chain(unknown_removed))
            .await?;
        let user_of = |id: &str| {
            known_users
                .get(id)
                .or_else(|| loaded.get(id).map(|row| row.id))
        };
        // `user_of` for an added edge's member, found by its index.
        let member_of = |edge: &EdgeRef| {
            known_users
                .get_indexed(added.ids(), edge.member_index)
                .or_else(|| loaded.get(edge.member.as_ref()).map(|row| row.id))
        };
        let mut changed = ChangedEdges::new(gather_users);
        // Members removed per group (external ids), for the events.
        let mut removed_members: BTreeMap<String, Vec<MemberRef>> = BTreeMap::new();

        // Edges that go with deleted users and groups: recorded, then deleted
        // (the edge tables have no foreign keys to cascade along).
        let deleted_users: Vec<i64> = deleted_users.iter().copied().collect();
        let deleted_groups: Vec<i64> = deleted_groups.iter().copied().collect();
        let mut implied_users: BTreeSet<(i64, i64)> = BTreeSet::new();
        let mut implied_groups: BTreeSet<(i64, i64)> = BTreeSet::new();
        for chunk in deleted_users.chunks(CHUNK) {
            let by_user = user_membership::Column::UserId.is_in(chunk.iter().copied());
            implied_users.extend(edges::user_pairs(self.db.idle().await?, by_user.clone()).await?);
            user_membership::Entity::delete_many()
                .filter(by_user)
                .exec(self.db.idle().await?)
                .await?;
        }
        for chunk in deleted_groups.chunks(CHUNK) {
            let in_group = user_membership::Column::GroupId.is_in(chunk.iter().copied());
            implied_users.extend(edges::user_pairs(self.db.idle().await?, in_group.clone()).await?);
            user_membership::Entity::delete_many()
                .filter(in_group)
                .exec(self.db.idle().await?)
                .await?;
            let in_or_nested = group_membership::Column::GroupId
                .is_in(chunk.iter().copied())
                .or(group_membership::Column::MemberGroupId.is_in(chunk.iter().copied()));
            implied_groups
                .extend(edges::group_pairs(self.db.idle().await?, in_or_nested.clone()).await?);
            group_membership::Entity::delete_many()
                .filter(in_or_nested)
                .exec(self.db.idle().await?)
                .await?;
        }
        let user_external_ids = self
            .load_users_by_id(implied_users.iter().map(|(_, user)| *user))
            .await?;
        let external_id_of_group = |id: &i64| {
            groups
                .get(id)
                .map(|row| row.external_id.clone())
                .unwrap_or_default()
        };
        for (group, user) in &implied_users {
            changed.groups.insert(*group);
            changed.user(*user);
            let member = MemberRef::User(
                user_external_ids
                    .get(user)
                    .map_or("", |row| row.external_id.as_str())
                    .into(),
            );
            removed_members
                .entry(external_id_of_group(group))
                .or_default()
                .push(member);
        }
        for (group, nested) in &implied_groups {
            changed.groups.insert(*group);
            removed_members
                .entry(external_id_of_group(group))
                .or_default()
                .push(MemberRef::Group(external_id_of_group(nested).into()));
        }

        // Explicit removals, batched per group.
        let mut user_removals: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let mut group_removals: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for edge in &changes.memberships_removed {
            let Some(group_id) = group_ids.get(edge.group_external_id.as_ref()) else {
                continue;
            };
            match &edge.member {
                MemberRef::User(ext) => {
                    if let Some(user) = user_of(ext) {
                        user_removals.entry(*group_id).or_default().push(user);
                        changed.user(user);
                    }
                }
                MemberRef::Group(ext) => {
                    if let Some(nested) = group_ids.get(ext.as_ref()) {
                        group_removals.entry(*group_id).or_default().push(*nested);
                    }
                }
            }
            changed.groups.insert(*group_id);
            removed_members
                .entry(edge.group_external_id.to_string())
                .or_default()
                .push(edge.member.clone());
        }
        for (group_id, members) in &user_removals {
            for chunk in members.chunks(CHUNK) {
                user_membership::Entity::delete_many()
                    .filter(user_membership::Column::GroupId.eq(*group_id))
                    .filter(user_membership::Column::UserId.is_in(chunk.iter().copied()))
                    .exec(self.db.idle().await?)
                    .await?;
            }
        }
        for (group_id, members) in &group_removals {
            for chunk in members.chunks(CHUNK) {
                group_membership::Entity::delete_many()
                    .filter(group_membership::Column::GroupId.eq(*group_id))
                    .filter(group_membership::Column::MemberGroupId.is_in(chunk.iter().copied()))
                    .exec(self.db.idle().await?)
                    .await?;
            }
        }

        for (group, members) in removed_members {
            self.membership_events(
                EventKind::MembershipRemoved,
                &group,
                &members,
                groups,
                &group_ids,
            );
            self.flush(false).await?;
        }

        // Additions, in the change set's order (by group): inserted a
        // statement's worth at a time, and each group's run of new members
        // announced when it ends, so that neither the rows nor the member
        // lists of a million new edges are held at once.
        let user_edges_added = changes
            .memberships_added
            .refs()
            .filter(|edge| !edge.member_is_group)
            .count();
        self.defer_indexes(
            "user_memberships",
            &[
                Deferred::Index("ix_user_memberships_user"),
                Deferred::PrimaryKey,
            ],
            user_edges_added,
        )
        .await?;
        let backend = self.db.backend();
        let mut user_rows = PairInsert::new(backend, "user_memberships", "group_id, user_id");
        let mut group_rows =
            PairInsert::new(backend, "group_memberships", "group_id, member_group_id");
        // Each end is found by its index in the added edges' ids (the key
        // holds it), so ten million edges go in without hashing an id;
        // only members the change set did not write are looked up by id.
        let group_at = rows_by_index(added.ids(), groups)?;
        let mut user_seen = vec![false; added.ids().len()];
        let mut run: Option<(u32, &str, Vec<MemberRef>)> = None;
        // Each statement is built while the previous one runs (see
        // `Pipelined`).
        for edge in added.refs() {
            let Some(group_id) = group_at[edge.group_index as usize].map(RowId::get) else {
                continue;
            };
            let (rows, member_id) = if edge.member_is_group {
                match group_at[edge.member_index as usize] {
                    Some(nested) => (&mut group_rows, nested.get()),
                    None => continue,
                }
            } else {
                match member_of(&edge) {
                    Some(user) => {
                        if !std::mem::replace(&mut user_seen[edge.member_index as usize], true) {
                            changed.user(user);
                        }
                        (&mut user_rows, user)
                    }
                    None => continue,
                }
            };
            if let Some(statement) = rows.push(group_id, member_id) {
                self.db.send(statement).await?;
            }
            match &mut run {
                Some((current, _, members)) if *current == edge.group_index => {
                    members.push(edge.member_ref())
                }
                _ => {
                    // Once per run of a group's edges, not per edge.
                    changed.groups.insert(group_id);
                    let started = (
                        edge.group_index,
                        edge.group.as_ref(),
                        vec![edge.member_ref()],
                    );
                    if let Some((_, ended, members)) = run.replace(started) {
                        self.membership_events(
                            EventKind::MembershipAdded,
                            ended,
                            &members,
                            groups,
                            &group_ids,
                        );
                        self.flush(false).await?;
                    }
                }
            }
        }
        for rows in [&mut user_rows, &mut group_rows] {
            if let Some(statement) = rows.finish() {
                self.db.send(statement).await?;
            }
        }
        if let Some((_, ended, members)) = run {
            self.membership_events(
                EventKind::MembershipAdded,
                ended,
                &members,
                groups,
                &group_ids,
            );
            self.flush(false).await?;
        }
        // The nesting walk and the ACL rules read edges by user.
        self.restore_indexes().await?;
        Ok(changed)
    }

    /// Drops `deferred` (indexes of `table`, its primary key) for an
    /// insert of `rows` rows into a table that holds few enough rows for
    /// building them afterwards to pay: each row is otherwise filed into
    /// each index as it comes, and a first sync's edges reach the by-user
    /// index in random user order (1M users, 10M edges on SQLite: 75 s of
    /// the apply, against ~9 s for building it from one sort), and the
    /// primary key's in the IdP's user order within each group (PostgreSQL,
    /// a million edges in psql: 2.1-2.3 s with the key, 1.1-1.3 s without
    /// it plus adding it after, which checks every row unique then). The
    /// drops are part of the apply's transaction, so a failed apply's
    /// rollback brings them back; [`Apply::restore_indexes`] builds them
    /// again after the insert, and `apply` calls it once more before a
    /// successful apply returns, so no step can commit without an index it
    /// dropped.
    ///
    /// How few is few depends on what the drop costs others. On SQLite,
    /// readers keep reading their snapshot, index and all, so an index
    /// goes whenever the table holds fewer rows than the insert adds. On
    /// PostgreSQL, `DROP INDEX` locks the table against every reader until
    /// the transaction ends, so it goes only when the table is empty, when
    /// no reader can be waiting for a row of it.
    async fn defer_indexes(
        &mut self,
        table: &str,
        deferred: &[Deferred],
        rows: usize,
    ) -> Result<(), DbErr> {
        let most_held = match self.db.backend() {
            DatabaseBackend::Sqlite => rows,
            DatabaseBackend::Postgres => 1,
            _ => return Ok(()),
        };
        if rows < BULK_EDGES || !self.holds_fewer_rows(table, most_held).await? {
            return Ok(());
        }
        for what in deferred {
            let Some((drop, build)) = self.drop_and_build(table, *what).await? else {
                continue;
            };
            let backend = self.db.backend();
            self.db
                .idle()
                .await?
                .execute_raw(Statement::from_string(backend, drop))
                .await?;
            self.dropped_indexes.push(build);
        }
        Ok(())
    }

    /// The statements that drop `what` of `table` and build it again, as
    /// the database defines it now; `None` if it has no such thing (an
    /// index taken away, or a primary key on SQLite, where an edge table's
    /// key is the table itself, `WITHOUT ROWID`).
    async fn drop_and_build(
        &mut self,
        table: &str,
        what: Deferred,
    ) -> Result<Option<(String, String)>, DbErr> {
        let backend = self.db.backend();
        let db = self.db.idle().await?;
        let (query, key) = match (what, backend) {
            (Deferred::Index(index), DatabaseBackend::Sqlite) => (
                "SELECT sql AS build FROM sqlite_master WHERE type = 'index' AND name = ?",
                index,
            ),
            (Deferred::Index(index), DatabaseBackend::Postgres) => (
                "SELECT indexdef AS build FROM pg_indexes \
                 WHERE schemaname = current_schema() AND indexname = ?",
                index,
            ),
            (Deferred::PrimaryKey, DatabaseBackend::Postgres) => (
                "SELECT conname AS name, pg_get_constraintdef(oid) AS build \
                 FROM pg_constraint WHERE conrelid = to_regclass(?) AND contype = 'p'",
                table,
            ),
            _ => return Ok(None),
        };
        let Some(row) = db
            .query_one_raw(raw_sql::statement(backend, query, vec![key.into()]))
            .await?
        else {
            return Ok(None);
        };
        let build = row.try_get::<String>("", "build")?;
        Ok(Some(match what {
            Deferred::Index(index) => (format!("DROP INDEX {index}"), build),
            Deferred::PrimaryKey => {
                let name = row.try_get::<String>("", "name")?;
                (
                    format!("ALTER TABLE {table} DROP CONSTRAINT {name}"),
                    format!("ALTER TABLE {table} ADD CONSTRAINT {name} {build}"),
                )
            }
        }))
    }

    /// Whether `table` holds fewer than `most_held` rows, counted up to
    /// `most_held` only: the cost of the question does not grow with the
    /// table.
    async fn holds_fewer_rows(&mut self, table: &str, most_held: usize) -> Result<bool, DbErr> {
        let backend = self.db.backend();
        let held = self
            .db
            .idle()
            .await?
            .query_one_raw(Statement::from_string(
                backend,
                format!(
                    "SELECT count(*) AS n FROM (SELECT 1 FROM {table} LIMIT {most_held}) AS held"
                ),
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or_default();
        Ok((held as usize) < most_held)
    }

    /// Builds again the indexes and keys [`Apply::defer_indexes`] dropped, their sorts
    /// in temporary files on SQLite (see [`index_build`]).
    async fn restore_indexes(&mut self) -> Result<(), DbErr> {
        let creates = std::mem::take(&mut self.dropped_indexes);
        if creates.is_empty() {
            return Ok(());
        }
        let sort = index_build::build_indexes(self.db.idle().await?, &creates).await?;
        tracing::debug!(
            indexes = creates.len(),
            ?sort,
            "bulk insert's indexes built"
        );
        Ok(())
    }

    /// One event per group and direction (at most [`MEMBERS_PER_EVENT`]
    /// members each): a first sync of a million edges writes thousands of
    /// events, not a million, and a consumer still sees every member.
    fn membership_events(
        &mut self,
        kind: EventKind,
        group_external_id: &str,
        members: &[MemberRef],
        groups: &BTreeMap<i64, GroupRow>,
        group_ids: &HashMap<&str, i64>,
    ) {
        let group_name = group_ids
            .get(group_external_id)
            .and_then(|id| groups.get(id))
            .map(|row| row.display_name.clone());
        for chunk in members.chunks(MEMBERS_PER_EVENT) {
            self.buffered_weight += chunk.len();
            let members: Vec<serde_json::Value> = chunk
                .iter()
                .map(|member| match member {
                    MemberRef::User(id) => json!({"type": "user", "external_id": id}),
                    MemberRef::Group(id) => json!({"type": "group", "external_id": id}),
                })
                .collect();
            self.event(
                kind,
                "group",
                group_external_id,
                json!({
                    "group_external_id": group_external_id,
                    "group_name": group_name,
                    "members": members,
                }),
            );
        }
    }

    /// Recomputes the inherited memberships of every group whose members
    /// could have changed; returns the users who gained or lost one when
    /// `want_users`.
    async fn recompute_inherited(
        &mut self,
        changed_groups: &HashSet<i64>,
        deleted_groups: &HashSet<i64>,
        want_users: bool,
    ) -> Result<HashSet<i64>, DbErr> {
        if changed_groups.is_empty() {
            return Ok(HashSet::new());
        }
        let of_connection =
            super::stored::edges_of(group_membership::Column::GroupId, self.ctx.connection_id);
        let nested = edges::group_pairs(self.db.idle().await?, of_connection).await?;
        let graph = GroupGraph::new(nested);
        let affected: Vec<i64> = graph
            .ancestors(changed_groups.iter().copied())
            .into_iter()
            .filter(|group| !deleted_groups.contains(group))
            .collect();
        let change =
            super::inherited::recompute(self.db.idle().await?, &affected, want_users).await?;
        self.effects.inherited_added += change.added;
        self.effects.inherited_removed += change.removed;
        Ok(change.dirty_users)
    }

    /// Brings the ACL groups of `users` in line with their effective
    /// groups: only active users that are not being removed are members.
    ///
    /// The users are taken a page at a time, each page compared, written
    /// and its events flushed before the next is read: a first sync that
    /// places a million users in ACL groups holds one page's rows, not
    /// the tenant's. Every user's ACL groups are found from the source
    /// groups' side ([`Apply::recompute_acl_of_all`]); a few users' from
    /// their own memberships ([`Apply::acl_by_user`]).
    async fn recompute_acl(
        &mut self,
        users: AclUsers<'_>,
        deleted_users: &HashSet<i64>,
        deleted_groups: &HashSet<i64>,
    ) -> Result<(), DbErr> {
        if !self.ctx.acl.any_for_connection(self.connection())
            || matches!(users, AclUsers::These { users, .. } if users.is_empty())
        {
            return Ok(());
        }
        let acl_ids: HashMap<String, i64> = acl_group::Entity::find()
            .all(self.db.idle().await?)
            .await?
            .into_iter()
            .map(|row| (row.name, row.id))
            .collect();
        let targets = AclTargets {
            names: acl_ids
                .iter()
                .map(|(name, id)| (*id, name.as_str()))
                .collect(),
            // Only ACL groups this connection's rules fill are ours to change.
            ours: self
                .ctx
                .acl
                .groups
                .iter()
                .filter(|rules| rules.reads_connection(self.ctx.connection_id))
                .filter_map(|rules| acl_ids.get(&rules.name).copied())
                .collect(),
            ids: &acl_ids,
        };
        let mut inserts = PairInsert::new(
            self.db.backend(),
            "acl_group_members",
            "acl_group_id, user_id",
        )
        .with_constant("added_at", self.ctx.now);
        match users {
            AclUsers::All { groups } => {
                let feeds = self.feeds(groups, &targets, deleted_groups);
                self.recompute_acl_of_all(&feeds, &targets, deleted_users, &mut inserts)
                    .await?;
            }
            AclUsers::These { users, groups } => {
                let all_feeds = groups.map(|groups| self.feeds(groups, &targets, deleted_groups));
                let mut ids: Vec<i64> = users.iter().copied().collect();
                ids.sort_unstable();
                for chunk in ids.chunks(CHUNK) {
                    let page = source_user::Entity::find()
                        .filter(source_user::Column::Id.is_in(chunk.iter().copied()));
                    let rows = self.user_rows(page).await?;
                    if rows.is_empty() {
                        continue;
                    }
                    let rows: HashMap<i64, UserRow> =
                        rows.into_iter().map(|row| (row.id, row)).collect();
                    let chunk_feeds;
                    let feeds = match &all_feeds {
                        Some(feeds) => feeds,
                        None => {
                            let ids: Vec<i64> = rows.keys().copied().collect();
                            let groups = self.load_groups(GroupsOf::Users(&ids)).await?;
                            chunk_feeds = self.feeds(&groups, &targets, deleted_groups);
                            &chunk_feeds
                        }
                    };
                    let chunk = self
                        .acl_by_user(rows, feeds, &targets, deleted_users)
                        .await?;
                    self.write_acl_chunk(chunk, &targets, &mut inserts).await?;
                }
            }
        }
        match inserts.finish() {
            Some(statement) => self.db.send(statement).await,
            None => Ok(()),
        }
    }

    /// [`Apply::recompute_acl`] of every user of the connection. Each ACL
    /// group's wanted and current members are read once, from the source
    /// groups that feed it and from its own rows, into [`RowIdBits`]; then
    /// the users are paged through and compared bit by bit. Read user by
    /// user instead, a first sync's ten million memberships were fetched
    /// in the by-user order their tables are not kept in: on PostgreSQL a
    /// million users took over ten minutes.
    async fn recompute_acl_of_all(
        &mut self,
        feeds: &HashMap<i64, Vec<i64>>,
        targets: &AclTargets<'_>,
        deleted_users: &HashSet<i64>,
        inserts: &mut PairInsert,
    ) -> Result<(), DbErr> {
        let (first, last): (Option<i64>, Option<i64>) = source_user::Entity::find()
            .select_only()
            .column_as(source_user::Column::Id.min(), "first")
            .column_as(source_user::Column::Id.max(), "last")
            .filter(source_user::Column::ConnectionId.eq(self.connection()))
            .into_tuple()
            .one(self.db.idle().await?)
            .await?
            .unwrap_or_default();
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(());
        };
        let ours: Vec<i64> = targets.ours.iter().copied().collect();
        let mut wanted: HashMap<i64, RowIdBits> = HashMap::new();
        let mut have: HashMap<i64, RowIdBits> = HashMap::new();
        for acl in &ours {
            wanted.insert(*acl, RowIdBits::over(first, last));
            let mut held = RowIdBits::over(first, last);
            let members = acl_group_member::Entity::find()
                .select_only()
                .column(acl_group_member::Column::UserId)
                .filter(acl_group_member::Column::AclGroupId.eq(*acl))
                .into_tuple::<i64>()
                .stream(self.db.idle().await?)
                .await?;
            let mut members = std::pin::pin!(members);
            while let Some(user) = members.try_next().await? {
                held.insert(user);
            }
            have.insert(*acl, held);
        }
        // The feeding groups, by the ACL groups they feed (rules name few
        // ACL groups, so a handful of sets), a chunk of groups per read.
        let mut by_fed: BTreeMap<&[i64], Vec<i64>> = BTreeMap::new();
        for (group, fed) in feeds {
            by_fed.entry(fed.as_slice()).or_default().push(*group);
        }
        for (fed, mut groups) in by_fed {
            // Neighbouring ids: rows written together, read together.
            groups.sort_unstable();
            // Streamed: a group near the top of a deep nesting holds
            // most of the tenant (read whole, 500 groups' rows peaked at
            // 300 MiB at a million users).
            for chunk in groups.chunks(CHUNK) {
                let members = effective_membership::Entity::find()
                    .select_only()
                    .column(effective_membership::Column::UserId)
                    .filter(effective_membership::Column::GroupId.is_in(chunk.iter().copied()))
                    .into_tuple::<i64>()
                    .stream(self.db.idle().await?)
                    .await?;
                let mut members = std::pin::pin!(members);
                while let Some(user) = members.try_next().await? {
                    for acl in fed {
                        if let Some(set) = wanted.get_mut(acl) {
                            set.insert(user);
                        }
                    }
                }
            }
        }

        let mut after: Option<String> = None;
        loop {
            // In the order of the (connection, external id) index, so each
            // page is one range of it: by row id, SQLite took the
            // connection's rows from another index and sorted all of them
            // for every page.
            let mut page = source_user::Entity::find()
                .filter(source_user::Column::ConnectionId.eq(self.connection()))
                .order_by_asc(source_user::Column::ExternalId)
                .limit(ACL_PAGE as u64);
            if let Some(after) = &after {
                page = page.filter(source_user::Column::ExternalId.gt(after.as_str()));
            }
            let rows = self.user_rows(page).await?;
            let Some(last_row) = rows.last() else {
                return Ok(());
            };
            after = Some(last_row.external_id.clone());
            let mut chunk = AclChunk::default();
            for row in &rows {
                let eligible = row.active && !deleted_users.contains(&row.id);
                for acl in &ours {
                    if eligible && wanted[acl].contains(row.id) {
                        chunk.wanted.insert((*acl, row.id));
                    }
                    if have[acl].contains(row.id) {
                        chunk.have.insert((*acl, row.id));
                    }
                }
            }
            chunk.users = rows.into_iter().map(|row| (row.id, row)).collect();
            self.write_acl_chunk(chunk, targets, inserts).await?;
        }
    }

    /// The ACL groups each of `groups` feeds, for the groups that feed any.
    fn feeds(
        &self,
        groups: &BTreeMap<i64, GroupRow>,
        targets: &AclTargets<'_>,
        deleted_groups: &HashSet<i64>,
    ) -> HashMap<i64, Vec<i64>> {
        groups
            .iter()
            .filter(|(id, _)| !deleted_groups.contains(id))
            .map(|(id, row)| {
                let fed = self
                    .ctx
                    .acl
                    .acl_groups_for(self.connection(), &row.display_name)
                    .filter_map(|name| targets.ids.get(name).copied())
                    .collect::<Vec<_>>();
                (*id, fed)
            })
            .filter(|(_, fed)| !fed.is_empty())
            .collect()
    }

    /// The ACL memberships the users of `users` should have (by their
    /// effective groups) and have.
    async fn acl_by_user(
        &mut self,
        users: HashMap<i64, UserRow>,
        feeds: &HashMap<i64, Vec<i64>>,
        targets: &AclTargets<'_>,
        deleted_users: &HashSet<i64>,
    ) -> Result<AclChunk, DbErr> {
        let ids: Vec<i64> = users.keys().copied().collect();
        let effective: Vec<(i64, i64)> = effective_membership::Entity::find()
            .select_only()
            .column(effective_membership::Column::UserId)
            .column(effective_membership::Column::GroupId)
            .filter(effective_membership::Column::UserId.is_in(ids.iter().copied()))
            .into_tuple()
            .all(self.db.idle().await?)
            .await?;
        let mut wanted: BTreeSet<(i64, i64)> = BTreeSet::new();
        for (user, group) in effective {
            let eligible =
                users.get(&user).is_some_and(|row| row.active) && !deleted_users.contains(&user);
            if let (true, Some(fed)) = (eligible, feeds.get(&group)) {
                wanted.extend(fed.iter().map(|acl| (*acl, user)));
            }
        }
        let have: BTreeSet<(i64, i64)> = acl_group_member::Entity::find()
            .select_only()
            .column(acl_group_member::Column::AclGroupId)
            .column(acl_group_member::Column::UserId)
            .filter(acl_group_member::Column::UserId.is_in(ids.iter().copied()))
            .into_tuple::<(i64, i64)>()
            .all(self.db.idle().await?)
            .await?
            .into_iter()
            .filter(|(acl, _)| targets.ours.contains(acl))
            .collect();
        Ok(AclChunk {
            users,
            wanted,
            have,
        })
    }

    /// Writes the difference of one chunk's wanted and current ACL
    /// memberships, with its events, and flushes the events when due.
    /// Added memberships go to `inserts`, which sends a statement when a
    /// batch is full: a remainder per page made a statement of a new
    /// length each time, each kept prepared in the connection's cache.
    async fn write_acl_chunk(
        &mut self,
        chunk: AclChunk,
        targets: &AclTargets<'_>,
        inserts: &mut PairInsert,
    ) -> Result<(), DbErr> {
        let AclChunk {
            users,
            wanted,
            have,
        } = chunk;
        // Sorted by ACL group: one statement per group's removed users.
        let removed: Vec<(i64, i64)> = have.difference(&wanted).copied().collect();
        for of_one in removed.chunk_by(|a, b| a.0 == b.0) {
            acl_group_member::Entity::delete_many()
                .filter(acl_group_member::Column::AclGroupId.eq(of_one[0].0))
                .filter(
                    acl_group_member::Column::UserId.is_in(of_one.iter().map(|(_, user)| *user)),
                )
                .exec(self.db.idle().await?)
                .await?;
        }
        for (acl, user) in &removed {
            self.acl_event(
                EventKind::AclGroupMemberRemoved,
                *acl,
                *user,
                targets,
                &users,
            );
        }
        let added: Vec<(i64, i64)> = wanted.difference(&have).copied().collect();
        for (acl, user) in &added {
            if let Some(statement) = inserts.push(*acl, *user) {
                self.db.send(statement).await?;
            }
        }
        for (acl, user) in &added {
            self.acl_event(EventKind::AclGroupMemberAdded, *acl, *user, targets, &users);
        }
        self.effects.acl_members_removed += removed.len();
        self.effects.acl_members_added += added.len();
        self.flush(false).await
    }

    fn acl_event(
        &mut self,
        kind: EventKind,
        acl: i64,
        user: i64,
        targets: &AclTargets<'_>,
        users: &HashMap<i64, UserRow>,
    ) {
        let name = targets
            .names
            .get(&acl)
            .copied()
            .unwrap_or_default()
            .to_string();
        let row = users.get(&user);
        self.event(
            kind,
            "acl_group",
            &name.clone(),
            json!({
                "acl_group": name,
                "user_external_id": row.map(|r| r.external_id.clone()),
                "user_name": row.map(|r| r.user_name.clone()),
            }),
        );
    }

    async fn delete_sources(
        &mut self,
        changes: &ChangeSet,
        groups: &BTreeMap<i64, GroupRow>,
        deleted_groups: &HashSet<i64>,
        deleted_users: &HashSet<i64>,
    ) -> Result<(), DbErr> {
        let group_ids: Vec<i64> = deleted_groups.iter().copied().collect();
        let user_ids: Vec<i64> = deleted_users.iter().copied().collect();
        // Inherited memberships have no foreign keys to cascade along.
        for chunk in group_ids.chunks(CHUNK) {
            inherited_membership::Entity::delete_many()
                .filter(inherited_membership::Column::GroupId.is_in(chunk.iter().copied()))
                .exec(self.db.idle().await?)
                .await?;
        }
        for chunk in user_ids.chunks(CHUNK) {
            inherited_membership::Entity::delete_many()
                .filter(inherited_membership::Column::UserId.is_in(chunk.iter().copied()))
                .exec(self.db.idle().await?)
                .await?;
        }
        for chunk in group_ids.chunks(CHUNK) {
            source_group::Entity::delete_many()
                .filter(source_group::Column::Id.is_in(chunk.iter().copied()))
                .exec(self.db.idle().await?)
                .await?;
        }
        // Names by external id, read once: a search of the groups for each
        // deleted one was quadratic in a mass deletion.
        let names: HashMap<&str, &str> = groups
            .values()
            .map(|row| (row.external_id.as_str(), row.display_name.as_str()))
            .collect();
        for external_id in &changes.groups_deleted {
            let name = names.get(external_id.as_str());
            self.announce(
                EventKind::GroupDeleted,
                "group",
                external_id,
                json!({"external_id": external_id, "display_name": name}),
            )
            .await?;
        }
        for chunk in user_ids.chunks(CHUNK) {
            source_user::Entity::delete_many()
                .filter(source_user::Column::Id.is_in(chunk.iter().copied()))
                .exec(self.db.idle().await?)
                .await?;
        }
        Ok(())
    }

    /// The connection's groups, or only those some users belong to.
    async fn load_groups(&mut self, which: GroupsOf<'_>) -> Result<BTreeMap<i64, GroupRow>, DbErr> {
        let connection_id = self.ctx.connection_id;
        let select = || {
            source_group::Entity::find()
                .select_only()
                .columns([
                    source_group::Column::Id,
                    source_group::Column::ExternalId,
                    source_group::Column::DisplayName,
                ])
                .filter(source_group::Column::ConnectionId.eq(connection_id))
        };
        let rows: Vec<(i64, String, String)> = match which {
            GroupsOf::Connection => select().into_tuple().all(self.db.idle().await?).await?,
            GroupsOf::Users(users) => {
                let mut rows = Vec::new();
                for chunk in users.chunks(CHUNK) {
                    let their_groups = Query::select()
                        .distinct()
                        .column(effective_membership::Column::GroupId)
                        .from(effective_membership::Entity)
                        .and_where(
                            effective_membership::Column::UserId.is_in(chunk.iter().copied()),
                        )
                        .to_owned();
                    rows.extend(
                        select()
                            .filter(source_group::Column::Id.in_subquery(their_groups))
                            .into_tuple::<(i64, String, String)>()
                            .all(self.db.idle().await?)
                            .await?,
                    );
                }
                rows
            }
        };
        Ok(rows
            .into_iter()
            .map(|(id, external_id, display_name)| {
                (
                    id,
                    GroupRow {
                        external_id,
                        display_name,
                    },
                )
            })
            .collect())
    }

    /// Users matching `condition`, as the effects need them.
    /// The rows of the users `select` finds (in its order).
    async fn user_rows(
        &mut self,
        select: Select<source_user::Entity>,
    ) -> Result<Vec<UserRow>, DbErr> {
        Ok(select
            .select_only()
            .columns([
                source_user::Column::Id,
                source_user::Column::ExternalId,
                source_user::Column::UserName,
                source_user::Column::Active,
            ])
            .into_tuple::<(i64, String, String, bool)>()
            .all(self.db.idle().await?)
            .await?
            .into_iter()
            .map(|(id, external_id, user_name, active)| UserRow {
                id,
                external_id,
                user_name,
                active,
            })
            .collect())
    }

    async fn load_users_by_external_id<'s>(
        &mut self,
        external_ids: impl Iterator<Item = &'s str>,
    ) -> Result<HashMap<String, UserRow>, DbErr> {
        let ids: Vec<&str> = external_ids.collect::<BTreeSet<_>>().into_iter().collect();
        let mut found = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let condition = Condition::all()
                .add(source_user::Column::ConnectionId.eq(self.connection()))
                .add(source_user::Column::ExternalId.is_in(chunk.iter().copied()));
            found.extend(
                self.user_rows(source_user::Entity::find().filter(condition))
                    .await?
                    .into_iter()
                    .map(|row| (row.external_id.clone(), row)),
            );
        }
        Ok(found)
    }

    async fn load_users_by_id(
        &mut self,
        ids: impl Iterator<Item = i64>,
    ) -> Result<HashMap<i64, UserRow>, DbErr> {
        let ids: Vec<i64> = ids.collect::<BTreeSet<_>>().into_iter().collect();
        let mut found = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let condition =
                Condition::all().add(source_user::Column::Id.is_in(chunk.iter().copied()));
            found.extend(
                self.user_rows(source_user::Entity::find().filter(condition))
                    .await?
                    .into_iter()
                    .map(|row| (row.id, row)),
            );
        }
        Ok(found)
    }
}

fn attributes_json(attributes: &BTreeMap<String, serde_json::Value>) -> String {
    serde_json::to_string(attributes).unwrap_or_else(|_| "{}".into())
}

/// The update of a stored user from an inserted row: every content column
/// from the record; identity and creation time are left as they are, and
/// the version goes up by one.
fn user_update() -> OnConflict {
    use source_user::Column;
    let content = Column::iter().filter(|column| {
        !matches!(
            column,
            Column::Id
                | Column::ConnectionId
                | Column::ExternalId
                | Column::CreatedAt
                | Column::Version
        )
    });
    OnConflict::columns([Column::ConnectionId, Column::ExternalId])
        .update_columns(content)
        .value(
            Column::Version,
            Expr::col((source_user::Entity, Column::Version)).add(1),
        )
        .to_owned()
}

fn user_row(
    connection: &str,
    user: &SourceUser,
    now: DateTime<Utc>,
    version: i64,
) -> source_user::ActiveModel {
    source_user::ActiveModel {
        connection_id: Set(connection.to_string()),
        external_id: Set(user.external_id.clone()),
        user_name: Set(user.user_name.clone()),
        user_name_key: Set(user.user_name.to_lowercase()),
        display_name: Set(user.display_name.clone()),
        given_name: Set(user.given_name.clone()),
        family_name: Set(user.family_name.clone()),
        primary_email: Set(user.primary_email().map(str::to_string)),
        emails: Set(serde_json::to_string(&user.emails).unwrap_or_else(|_| "[]".into())),
        active: Set(user.active),
        suspended: Set(user.suspended),
        raw_status: Set(user.raw_status.clone()),
        attributes: Set(attributes_json(&user.attributes)),
        content_hash: Set(user_hash(user)),
        version: Set(version),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
}

fn user_payload(user: &SourceUser) -> serde_json::Value {
    json!({
        "external_id": user.external_id,
        "user_name": user.user_name,
        "display_name": user.display_name,
        "active": user.active,
        "suspended": user.suspended,
        "raw_status": user.raw_status,
    })
}

fn group_payload(group: &SourceGroup) -> serde_json::Value {
    json!({"external_id": group.external_id, "display_name": group.display_name})
}

/// Batches rows of two ids (an edge table's `(group_id, member id)`, an
/// ACL group's `(acl_group_id, user_id)`) into INSERTs, with one value the
/// same in every row where the table has a third column: a new tenant's
/// million edges are a few dozen statements. SQLite gets multi-row
/// `VALUES`, two bound integers per row; PostgreSQL gets the two columns
/// as two arrays (`unnest`), two bound values per statement, however many
/// rows: it parses and plans a `VALUES` list row by row, and that, not the
/// writing, was most of its edges phase. Every batch but the last is full,
/// so a connection prepares one statement per table, not one per length.
struct PairInsert {
    backend: DatabaseBackend,
    table: &'static str,
    columns: &'static str,
    /// A third column and its value in every row.
    constant: Option<(&'static str, sea_orm::Value)>,
    rows: Vec<(i64, i64)>,
    /// The SQL of a full batch, built once.
    full_batch_sql: Option<String>,
}

impl PairInsert {
    const ROWS_PER_INSERT: usize = rows_per_insert(2);
    /// Rows per PostgreSQL statement: big enough that statements are few,
    /// small enough that the next one is built while this one runs.
    const ROWS_PER_ARRAY_INSERT: usize = 50_000;

    fn new(backend: DatabaseBackend, table: &'static str, columns: &'static str) -> Self {
        PairInsert {
            backend,
            table,
            columns,
            constant: None,
            rows: Vec::new(),
            full_batch_sql: None,
        }
    }

    /// Sets `column` to `value` in every row.
    fn with_constant(mut self, column: &'static str, value: impl Into<sea_orm::Value>) -> Self {
        self.constant = Some((column, value.into()));
        self
    }

    fn batch_rows(&self) -> usize {
        match self.backend {
            DatabaseBackend::Postgres => Self::ROWS_PER_ARRAY_INSERT,
            _ => Self::ROWS_PER_INSERT,
        }
    }

    /// Adds a row; returns the statement to run when a batch is full.
    fn push(&mut self, group_id: i64, member_id: i64) -> Option<Statement> {
        self.rows.push((group_id, member_id));
        if self.rows.len() == self.batch_rows() {
            self.finish()
        } else {
            None
        }
    }

    /// The statement for the rows not yet inserted, if any.
    fn finish(&mut self) -> Option<Statement> {
        let n_rows = self.rows.len();
        if n_rows == 0 {
            return None;
        }
        if self.backend == DatabaseBackend::Postgres {
            let (groups, members): (Vec<i64>, Vec<i64>) = self.rows.drain(..).unzip();
            let mut values = vec![groups.into(), members.into()];
            let sql = match &self.constant {
                None => format!(
                    "INSERT INTO {} ({}) SELECT * FROM unnest($1::int8[], $2::int8[])",
                    self.table, self.columns
                ),
                Some((column, value)) => {
                    values.push(value.clone());
                    format!(
                        "INSERT INTO {} ({}, {column}) SELECT *, $3 FROM unnest($1::int8[], $2::int8[])",
                        self.table, self.columns
                    )
                }
            };
            return Some(Statement::from_sql_and_values(self.backend, sql, values));
        }
        let sql = match &self.full_batch_sql {
            Some(sql) if n_rows == Self::ROWS_PER_INSERT => sql.clone(),
            _ => {
                let sql = self.sql(n_rows);
                if n_rows == Self::ROWS_PER_INSERT {
                    self.full_batch_sql = Some(sql.clone());
                }
                sql
            }
        };
        // The constant's placeholder comes first in the text.
        let constant = self.constant.as_ref().map(|(_, value)| value.clone());
        let values: Vec<sea_orm::Value> = constant
            .into_iter()
            .chain(
                self.rows
                    .drain(..)
                    .flat_map(|(group, member)| [group.into(), member.into()]),
            )
            .collect();
        Some(Statement::from_sql_and_values(self.backend, sql, values))
    }

    fn sql(&self, n_rows: usize) -> String {
        let mut sql = match &self.constant {
            None => format!("INSERT INTO {} ({}) VALUES ", self.table, self.columns),
            Some((column, _)) => format!(
                "INSERT INTO {} ({}, {column}) SELECT column1, column2, ? FROM (VALUES ",
                self.table, self.columns
            ),
        };
        for index in 0..n_rows {
            if index > 0 {
                sql.push(',');
            }
            sql.push_str("(?, ?)");
        }
        if self.constant.is_some() {
            sql.push(')');
        }
        raw_sql::placeholders_for(self.backend, &sql)
    }
}
