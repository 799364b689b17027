//! SCIM operations on one connection, free of HTTP: read through the store,
//! write through the reconciler (so a deactivation or delete revokes devices
//! in the same transaction, and the events are committed before the answer).
//! Used by the routes and by `/Bulk`.

use crate::reconcile::{
    Delta, Edit, EditRejected, Edits, Outcome, ReconcileError, Reconciler, StoredRow, Trigger,
    UpsertedRows,
};
use crate::scim::filter::{self, Filter};
use crate::scim::patch::{self, MemberOp};
use crate::scim::resource::{self, DOCUMENT_KEY, MemberView, Meta};
use crate::scim::{ScimError, ScimResult, schema};
use crate::store::Store;
use crate::store::edges;
use crate::store::entity::{group_membership, source_group, source_user, user_membership};
use crate::store::scim_query::{self, ResourceTable};
use idpsync_driver::{MemberRef, MembershipEdge, SourceUser};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, Order, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// User or Group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }

    fn table(self) -> ResourceTable {
        match self {
            ResourceKind::User => ResourceTable::Users,
            ResourceKind::Group => ResourceTable::Groups,
        }
    }
}

/// A list query (from query parameters or a SearchRequest).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub sort_by: Option<String>,
    pub descending: bool,
    pub start_index: u64,
    pub count: Option<u64>,
    pub attributes: Vec<String>,
    pub excluded_attributes: Vec<String>,
}

/// `attributes` / `excludedAttributes` of a request.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    pub attributes: Vec<String>,
    pub excluded: Vec<String>,
}

/// A page of resources.
pub struct ListPage {
    pub total: u64,
    pub start_index: u64,
    pub resources: Vec<Value>,
}

/// One connection's SCIM service.
pub struct ScimService<'a> {
    pub store: &'a Store,
    pub reconciler: Reconciler,
    pub connection_id: &'a str,
    /// Absolute base URL, `.../scim/v2/<connection>`.
    pub base: String,
    /// Filters matching more than this many resources are refused (`tooMany`).
    pub max_filter_matches: u64,
}

/// A failure inside idpsync: logged, answered with a generic 500.
pub fn internal_error(error: &dyn std::fmt::Display) -> ScimError {
    internal(error)
}

fn internal(error: impl std::fmt::Display) -> ScimError {
    tracing::error!(%error, "SCIM request failed inside idpsync");
    ScimError::new(500, None, "internal error; see the daemon's log")
}

fn from_reconcile(error: ReconcileError) -> ScimError {
    match error {
        ReconcileError::Input(input) => match input {
            crate::reconcile::InputError::DuplicateUserName { .. } => {
                ScimError::uniqueness(input.to_string())
            }
            other => ScimError::invalid_value(other.to_string()),
        },
        ReconcileError::EditedUserNotFound(id) => {
            ScimError::not_found(format!("User {id} not found"))
        }
        ReconcileError::EditedGroupNotFound(id) => {
            ScimError::not_found(format!("Group {id} not found"))
        }
        ReconcileError::EditRejected(rejected) => match rejected.downcast_ref::<ScimError>() {
            Some(scim) => scim.clone(),
            None => internal(rejected),
        },
        ReconcileError::Store(crate::store::StoreError::Db(db))
            if is_unique_violation(&db.to_string()) =>
        {
            ScimError::uniqueness("a resource with this userName already exists")
        }
        other => internal(other),
    }
}

fn is_unique_violation(message: &str) -> bool {
    message.contains("UNIQUE constraint failed") || message.contains("duplicate key value")
}

/// A new resource id.
pub fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

impl ScimService<'_> {
    /// Reconciles `delta`, merged with concurrent SCIM writes of the
    /// connection into one transaction (group commit); returns the rows it
    /// upserted, as committed.
    async fn submit(&self, delta: Delta) -> ScimResult<UpsertedRows> {
        self.submit_with_edits(delta, Edits::default()).await
    }

    /// [`ScimService::submit`], with users and groups changed from their
    /// stored rows inside the transaction.
    async fn submit_with_edits(&self, delta: Delta, edits: Edits) -> ScimResult<UpsertedRows> {
        let written = self
            .reconciler
            .submit_coalesced(self.connection_id, delta, edits, Trigger::Scim)
            .await
            .map_err(from_reconcile)?;
        match written.outcome {
            Outcome::Held(report) => Err(ScimError::new(
                503,
                None,
                format!(
                    "the change exceeds the connection's deletion limit and is held for approval as sync run {}",
                    report.run_id
                ),
            )),
            _ => Ok(written.rows),
        }
    }

    async fn user_row(&self, id: &str) -> ScimResult<source_user::Model> {
        source_user::Entity::find()
            .filter(source_user::Column::ConnectionId.eq(self.connection_id))
            .filter(source_user::Column::ExternalId.eq(id))
            .one(self.store.db())
            .await
            .map_err(internal)?
            .ok_or_else(|| ScimError::not_found(format!("User {id} not found")))
    }

    async fn group_row(&self, id: &str) -> ScimResult<source_group::Model> {
        source_group::Entity::find()
            .filter(source_group::Column::ConnectionId.eq(self.connection_id))
            .filter(source_group::Column::ExternalId.eq(id))
            .one(self.store.db())
            .await
            .map_err(internal)?
            .ok_or_else(|| ScimError::not_found(format!("Group {id} not found")))
    }

    fn render_user(&self, row: &source_user::Model) -> Value {
        render_user_at(&self.base, row)
    }

    fn render_group(&self, row: &source_group::Model, members: Option<&[MemberView]>) -> Value {
        render_group_at(&self.base, row, members)
    }

    /// Direct members of groups, by group row id.
    async fn members_of(&self, group_ids: &[i64]) -> ScimResult<HashMap<i64, Vec<MemberView>>> {
        let mut by_group: HashMap<i64, Vec<MemberView>> = HashMap::new();
        for chunk in group_ids.chunks(500) {
            let user_edges = edges::user_pairs(
                self.store.db(),
                user_membership::Column::GroupId.is_in(chunk.iter().copied()),
            )
            .await
            .map_err(internal)?;
            let nested_edges = edges::group_pairs(
                self.store.db(),
                group_membership::Column::GroupId.is_in(chunk.iter().copied()),
            )
            .await
            .map_err(internal)?;
            let user_ids: Vec<i64> = user_edges.iter().map(|(_, user)| *user).collect();
            let nested_ids: Vec<i64> = nested_edges.iter().map(|(_, nested)| *nested).collect();
            let mut users: HashMap<i64, (String, String)> = HashMap::new();
            for ids in user_ids.chunks(500) {
                let rows: Vec<(i64, String, String)> = source_user::Entity::find()
                    .select_only()
                    .columns([
                        source_user::Column::Id,
                        source_user::Column::ExternalId,
                        source_user::Column::UserName,
                    ])
                    .filter(source_user::Column::Id.is_in(ids.iter().copied()))
                    .into_tuple()
                    .all(self.store.db())
                    .await
                    .map_err(internal)?;
                users.extend(rows.into_iter().map(|(id, ext, name)| (id, (ext, name))));
            }
            let mut groups: HashMap<i64, (String, String)> = HashMap::new();
            for ids in nested_ids.chunks(500) {
                let rows: Vec<(i64, String, String)> = source_group::Entity::find()
                    .select_only()
                    .columns([
                        source_group::Column::Id,
                        source_group::Column::ExternalId,
                        source_group::Column::DisplayName,
                    ])
                    .filter(source_group::Column::Id.is_in(ids.iter().copied()))
                    .into_tuple()
                    .all(self.store.db())
                    .await
                    .map_err(internal)?;
                groups.extend(rows.into_iter().map(|(id, ext, name)| (id, (ext, name))));
            }
            let user_views = user_edges.iter().filter_map(|(group, user)| {
                let (id, name) = users.get(user)?;
                Some((*group, id, name, false))
            });
            let group_views = nested_edges.iter().filter_map(|(group, nested)| {
                let (id, name) = groups.get(nested)?;
                Some((*group, id, name, true))
            });
            for (group, id, name, is_group) in user_views.chain(group_views) {
                by_group.entry(group).or_default().push(MemberView {
                    id: id.clone(),
                    display: name.clone(),
                    is_group,
                });
            }
        }
        Ok(by_group)
    }

    /// Whether a response with these projections includes `members`.
    fn wants_members(attributes: &[String], excluded: &[String]) -> bool {
        let names = |list: &[String]| {
            list.iter()
                .any(|a| a.trim().to_ascii_lowercase().starts_with("members"))
        };
        if !attributes.is_empty() {
            return names(attributes);
        }
        !names(excluded)
    }

    pub async fn get(
        &self,
        kind: ResourceKind,
        id: &str,
        projection: &Projection,
    ) -> ScimResult<(Value, i64)> {
        match kind {
            ResourceKind::User => Ok(self.user_response(&self.user_row(id).await?, projection)),
            ResourceKind::Group => {
                self.group_response(&self.group_row(id).await?, projection)
                    .await
            }
        }
    }

    /// A user as a response shows it, with its version (the ETag).
    fn user_response(&self, row: &source_user::Model, projection: &Projection) -> (Value, i64) {
        let resource = self.render_user(row);
        (
            resource::project(resource, &projection.attributes, &projection.excluded),
            row.version,
        )
    }

    /// A group as a response shows it (with its members unless projected
    /// away), with its version (the ETag).
    async fn group_response(
        &self,
        row: &source_group::Model,
        projection: &Projection,
    ) -> ScimResult<(Value, i64)> {
        let members = if Self::wants_members(&projection.attributes, &projection.excluded) {
            Some(
                self.members_of(&[row.id])
                    .await?
                    .remove(&row.id)
                    .unwrap_or_default(),
            )
        } else {
            None
        };
        let resource = self.render_group(row, members.as_deref());
        Ok((
            resource::project(resource, &projection.attributes, &projection.excluded),
            row.version,
        ))
    }

    /// The response to a write: the row the write left.
    async fn written_response(
        &self,
        kind: ResourceKind,
        id: &str,
        mut rows: UpsertedRows,
        projection: &Projection,
    ) -> ScimResult<(Value, i64)> {
        let missing = || internal(format!("the write of {} {id} left no row", kind.endpoint()));
        match kind {
            ResourceKind::User => {
                let row = rows.users.remove(id).ok_or_else(missing)?;
                Ok(self.user_response(&row, projection))
            }
            ResourceKind::Group => {
                let row = rows.groups.remove(id).ok_or_else(missing)?;
                self.group_response(&row, projection).await
            }
        }
    }

    pub async fn list(&self, kind: ResourceKind, query: &ListQuery) -> ScimResult<ListPage> {
        let backend = self.store.backend();
        let filter = query
            .filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(filter::parse)
            .transpose()?;
        let count = query.count.unwrap_or(100).min(schema::MAX_RESULTS);
        let start_index = query.start_index.max(1);
        let condition = |filter: &Option<Filter>| -> ScimResult<Condition> {
            let mut condition = Condition::all();
            if let Some(filter) = filter {
                condition = condition.add(scim_query::condition(backend, kind.table(), filter)?);
            }
            Ok(condition)
        };
        let sort = query
            .sort_by
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                filter::parse_attr_path(s.trim())
                    .map_err(|e| ScimError::invalid_value(format!("invalid sortBy: {}", e.detail)))
            })
            .transpose()?;
        let order = if query.descending {
            Order::Desc
        } else {
            Order::Asc
        };
        let resources;
        let total;
        match kind {
            ResourceKind::User => {
                let select = source_user::Entity::find()
                    .filter(source_user::Column::ConnectionId.eq(self.connection_id))
                    .filter(condition(&filter)?);
                let sort = sort
                    .as_ref()
                    .map(|sort| scim_query::sort_expression(backend, kind.table(), sort));
                let rows;
                (total, rows) = self
                    .window(
                        select,
                        source_user::Column::Id,
                        filter.is_some(),
                        sort,
                        order.clone(),
                        start_index,
                        count,
                    )
                    .await?;
                resources = rows
                    .iter()
                    .map(|row| {
                        resource::project(
                            self.render_user(row),
                            &query.attributes,
                            &query.excluded_attributes,
                        )
                    })
                    .collect();
            }
            ResourceKind::Group => {
                let select = source_group::Entity::find()
                    .filter(source_group::Column::ConnectionId.eq(self.connection_id))
                    .filter(condition(&filter)?);
                let sort = sort
                    .as_ref()
                    .map(|sort| scim_query::sort_expression(backend, kind.table(), sort));
                let rows;
                (total, rows) = self
                    .window(
                        select,
                        source_group::Column::Id,
                        filter.is_some(),
                        sort,
                        order.clone(),
                        start_index,
                        count,
                    )
                    .await?;
                let mut members =
                    if Self::wants_members(&query.attributes, &query.excluded_attributes) {
                        Some(
                            self.members_of(&rows.iter().map(|r| r.id).collect::<Vec<_>>())
                                .await?,
                        )
                    } else {
                        None
                    };
                resources = rows
                    .iter()
                    .map(|row| {
                        let group_members = members
                            .as_mut()
                            .map(|m| m.remove(&row.id).unwrap_or_default());
                        resource::project(
                            self.render_group(row, group_members.as_deref()),
                            &query.attributes,
                            &query.excluded_attributes,
                        )
                    })
                    .collect();
            }
        }
        Ok(ListPage {
            total,
            start_index,
            resources,
        })
    }

    /// The total of `select` and the rows of one page, in a stable order
    /// (`sort`, then id). A first page that is not full holds every match,
    /// so its total is its length and nothing is counted (a lookup such as
    /// `userName eq` is one statement); otherwise the matches are counted.
    #[expect(
        clippy::too_many_arguments,
        reason = "the parts of a SCIM list request"
    )]
    async fn window<E>(
        &self,
        select: sea_orm::Select<E>,
        id: E::Column,
        filtered: bool,
        sort: Option<sea_orm::sea_query::Expr>,
        order: Order,
        start_index: u64,
        count: u64,
    ) -> ScimResult<(u64, Vec<E::Model>)>
    where
        E: EntityTrait,
        E::Model: Send + Sync,
    {
        let count_all = || async {
            select
                .clone()
                .count(self.store.db())
                .await
                .map_err(internal)
        };
        if count == 0 {
            let total = count_all().await?;
            self.check_not_too_many(filtered, total)?;
            return Ok((total, Vec::new()));
        }
        let mut page = select.clone();
        if let Some(sort) = sort {
            page = page.order_by(sort, order);
        }
        let rows = page
            .order_by_asc(id)
            .offset(start_index - 1)
            .limit(count)
            .all(self.store.db())
            .await
            .map_err(internal)?;
        let total = if start_index == 1 && (rows.len() as u64) < count {
            rows.len() as u64
        } else {
            count_all().await?
        };
        self.check_not_too_many(filtered, total)?;
        Ok((total, rows))
    }

    fn check_not_too_many(&self, filtered: bool, total: u64) -> ScimResult<()> {
        if filtered && total > self.max_filter_matches {
            return Err(ScimError::bad_request(
                crate::scim::ScimType::TooMany,
                format!(
                    "the filter matches {total} resources, more than the {} this server evaluates; narrow it",
                    self.max_filter_matches
                ),
            ));
        }
        Ok(())
    }

    /// Creates or replaces a user. The store's unique index on the folded
    /// userName decides whether the name is free (no read before the
    /// write); a taken name answers 409 `uniqueness`, naming it.
    async fn submit_user(&self, user: SourceUser) -> ScimResult<UpsertedRows> {
        let user_name = user.user_name.clone();
        self.submit(Delta {
            upsert_users: vec![user],
            ..Default::default()
        })
        .await
        .map_err(|error| name_taken(error, &user_name))
    }

    pub async fn create(
        &self,
        kind: ResourceKind,
        document: &Value,
        projection: &Projection,
    ) -> ScimResult<(Value, i64)> {
        let id = new_id();
        let rows = match kind {
            ResourceKind::User => {
                let user = resource::user_from_document(&id, document)?;
                self.submit_user(user).await?
            }
            ResourceKind::Group => {
                let (group, members) = self.group_with_members(&id, document).await?;
                let mut delta = Delta {
                    upsert_groups: vec![group],
                    ..Default::default()
                };
                delta.replace_members.insert(id.clone(), members);
                self.submit(delta).await?
            }
        };
        self.written_response(kind, &id, rows, projection).await
    }

    /// Replaces a resource (PUT). The resource must exist, and match
    /// `if_match`, in the writing transaction.
    pub async fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        document: &Value,
        projection: &Projection,
        if_match: Option<&IfMatch>,
    ) -> ScimResult<(Value, i64)> {
        resource::check_own_id(document, id)?;
        let rows = match kind {
            ResourceKind::User => {
                let user = resource::user_from_document(id, document)?;
                let user_name = user.user_name.clone();
                let edit =
                    if_matching(id, if_match, move |_: &source_user::Model| Ok(user.clone()));
                self.submit_with_edits(Delta::default(), Edits::user(edit))
                    .await
                    .map_err(|error| name_taken(error, &user_name))?
            }
            ResourceKind::Group => {
                let (group, members) = self.group_with_members(id, document).await?;
                let edit = if_matching(id, if_match, move |_: &source_group::Model| {
                    Ok(group.clone())
                });
                let mut delta = Delta::default();
                delta.replace_members.insert(id.to_string(), members);
                self.submit_with_edits(delta, Edits::group(edit)).await?
            }
        };
        self.written_response(kind, id, rows, projection).await
    }

    /// A group as `document` describes it, with its members that name a
    /// stored user or group; the others are kept on its document.
    async fn group_with_members(
        &self,
        id: &str,
        document: &Value,
    ) -> ScimResult<(idpsync_driver::SourceGroup, Vec<MemberRef>)> {
        let (mut group, members) = resource::group_from_document(id, document)?;
        let members = members.unwrap_or_default();
        let ids: Vec<String> = members
            .iter()
            .filter_map(|m| resource::member_id(m).map(str::to_string))
            .collect();
        let (refs, missing) = self.resolve_members(&ids).await?;
        let unresolved: Vec<Value> = members
            .into_iter()
            .filter(|m| resource::member_id(m).is_some_and(|id| missing.iter().any(|x| x == id)))
            .collect();
        resource::set_unresolved_members(&mut group, &unresolved);
        Ok((group, refs))
    }

    /// Patches a resource (RFC 7644 §3.5.2) as it is in the writing
    /// transaction, if it matches `if_match` there.
    pub async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        body: &Value,
        projection: &Projection,
        if_match: Option<&IfMatch>,
    ) -> ScimResult<(Value, i64)> {
        let rows = match kind {
            ResourceKind::User => {
                // Read, patched and written in the writing transaction:
                // concurrent PATCHes of one user do not undo each other.
                let base = self.base.clone();
                let body = body.clone();
                let edit = if_matching(id, if_match, move |row: &source_user::Model| {
                    let current = render_user_at(&base, row);
                    let patched =
                        patch::apply(&current, &body, patch::Kind::User).map_err(rejected)?;
                    resource::user_from_document(&row.external_id, &patched.resource)
                        .map_err(rejected)
                });
                // A taken userName answers 409 `uniqueness` (`from_reconcile`).
                self.submit_with_edits(Delta::default(), Edits::user(edit))
                    .await?
            }
            ResourceKind::Group => {
                // The member operations become edges (they do not depend on
                // the stored document); the rest of the document is patched
                // from the row read in the writing transaction, so a
                // concurrent PATCH's name or unresolved members stand.
                let row = self.group_row(id).await?;
                let patched =
                    patch::apply(&self.render_group(&row, None), body, patch::Kind::Group)?;
                let mut delta = Delta::default();
                let unresolved = self.fold_member_ops(id, &patched, &mut delta).await?;
                let base = self.base.clone();
                let body = body.clone();
                let edit = if_matching(id, if_match, move |row: &source_group::Model| {
                    let stored: Value = serde_json::from_str(&row.attributes).unwrap_or_default();
                    let stored = resource::unresolved_members(stored.get(DOCUMENT_KEY));
                    let current = render_group_at(&base, row, None);
                    let patched =
                        patch::apply(&current, &body, patch::Kind::Group).map_err(rejected)?;
                    let (mut group, _) =
                        resource::group_from_document(&row.external_id, &patched.resource)
                            .map_err(rejected)?;
                    resource::set_unresolved_members(&mut group, &unresolved.applied_to(stored));
                    Ok(group)
                });
                self.submit_with_edits(delta, Edits::group(edit)).await?
            }
        };
        self.written_response(kind, id, rows, projection).await
    }

    /// Deletes a resource. It must exist, and match `if_match`, in the
    /// writing transaction (of two DELETEs, the second answers 404).
    pub async fn delete(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<&IfMatch>,
    ) -> ScimResult<()> {
        // Nothing to change: the check is that the row is there (and matches).
        fn exists<Row>(_: &Row) -> Result<(), EditRejected> {
            Ok(())
        }
        let mut delta = Delta::default();
        let mut edits = Edits::default();
        match kind {
            ResourceKind::User => {
                delta.remove_users.push(id.to_string());
                edits.user_checks.push(if_matching(id, if_match, exists));
            }
            ResourceKind::Group => {
                delta.remove_groups.push(id.to_string());
                edits.group_checks.push(if_matching(id, if_match, exists));
            }
        }
        self.submit_with_edits(delta, edits).await.map(drop)
    }

    /// Turns PATCH member operations, in order, into the delta's edges, and
    /// says what they do to the members that name no stored resource.
    async fn fold_member_ops(
        &self,
        group_id: &str,
        patched: &patch::Patched,
        delta: &mut Delta,
    ) -> ScimResult<UnresolvedChange> {
        let operations = &patched.members;
        let object_of = |id: &String| {
            patched
                .member_objects
                .get(id)
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"value": id}))
        };
        if operations.is_empty() {
            return Ok(UnresolvedChange::default());
        }
        let mut adds: BTreeSet<String> = BTreeSet::new();
        let mut removes: BTreeSet<String> = BTreeSet::new();
        let mut replaced: Option<BTreeSet<String>> = None;
        for operation in operations {
            match operation {
                MemberOp::Add(ids) => {
                    for id in ids {
                        removes.remove(id);
                        match &mut replaced {
                            Some(set) => {
                                set.insert(id.clone());
                            }
                            None => {
                                adds.insert(id.clone());
                            }
                        }
                    }
                }
                MemberOp::Remove(ids) => {
                    for id in ids {
                        adds.remove(id);
                        match &mut replaced {
                            Some(set) => {
                                set.remove(id);
                            }
                            None => {
                                removes.insert(id.clone());
                            }
                        }
                    }
                }
                MemberOp::RemoveAll => {
                    replaced = Some(BTreeSet::new());
                    adds.clear();
                    removes.clear();
                }
                MemberOp::Replace(ids) => {
                    replaced = Some(ids.iter().cloned().collect());
                    adds.clear();
                    removes.clear();
                }
            }
        }
        if let Some(set) = replaced {
            let ids: Vec<String> = set.into_iter().collect();
            let (refs, missing) = self.resolve_members(&ids).await?;
            delta.replace_members.insert(group_id.to_string(), refs);
            return Ok(UnresolvedChange {
                replaced: true,
                added: missing
                    .iter()
                    .map(|id| (id.clone(), object_of(id)))
                    .collect(),
                removed: Vec::new(),
            });
        }
        let add_ids: Vec<String> = adds.into_iter().collect();
        let remove_ids: Vec<String> = removes.into_iter().collect();
        let (to_add, missing) = self.resolve_members(&add_ids).await?;
        for member in to_add {
            delta.add_memberships.push(MembershipEdge {
                group_external_id: group_id.into(),
                member,
            });
        }
        let added = missing
            .iter()
            .map(|id| (id.clone(), object_of(id)))
            .collect();
        let (to_remove, _) = self.resolve_members(&remove_ids).await?;
        for member in to_remove {
            delta.remove_memberships.push(MembershipEdge {
                group_external_id: group_id.into(),
                member,
            });
        }
        Ok(UnresolvedChange {
            replaced: false,
            added,
            removed: remove_ids,
        })
    }

    /// Member ids as user or group references, and the ids that name
    /// neither (kept on the group's document, see
    /// [`resource::unresolved_members`]).
    async fn resolve_members(&self, ids: &[String]) -> ScimResult<(Vec<MemberRef>, Vec<String>)> {
        let mut users = BTreeSet::new();
        let mut groups = BTreeSet::new();
        for chunk in ids.chunks(500) {
            let found: Vec<String> = source_user::Entity::find()
                .select_only()
                .column(source_user::Column::ExternalId)
                .filter(source_user::Column::ConnectionId.eq(self.connection_id))
                .filter(source_user::Column::ExternalId.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(self.store.db())
                .await
                .map_err(internal)?;
            users.extend(found);
            let found: Vec<String> = source_group::Entity::find()
                .select_only()
                .column(source_group::Column::ExternalId)
                .filter(source_group::Column::ConnectionId.eq(self.connection_id))
                .filter(source_group::Column::ExternalId.is_in(chunk.iter().cloned()))
                .into_tuple()
                .all(self.store.db())
                .await
                .map_err(internal)?;
            groups.extend(found);
        }
        let mut refs = Vec::with_capacity(ids.len());
        let mut unresolved = Vec::new();
        for id in ids {
            if users.contains(id) {
                refs.push(MemberRef::User(id.as_str().into()));
            } else if groups.contains(id) {
                refs.push(MemberRef::Group(id.as_str().into()));
            } else {
                unresolved.push(id.clone());
            }
        }
        Ok((refs, unresolved))
    }
}

/// What a group PATCH does to the members that name no stored resource
/// (kept on the group's document, see [`resource::unresolved_members`]).
#[derive(Debug, Default)]
struct UnresolvedChange {
    /// The operations replaced all members: the stored ones go.
    replaced: bool,
    /// By id, as sent.
    added: BTreeMap<String, Value>,
    removed: Vec<String>,
}

impl UnresolvedChange {
    /// The unresolved members after the change, from the stored ones.
    fn applied_to(&self, stored: Vec<Value>) -> Vec<Value> {
        let mut members: BTreeMap<String, Value> = if self.replaced {
            BTreeMap::new()
        } else {
            stored
                .into_iter()
                .filter_map(|m| {
                    resource::member_id(&m)
                        .map(str::to_string)
                        .map(|id| (id, m))
                })
                .collect()
        };
        members.extend(self.added.clone());
        for id in &self.removed {
            members.remove(id);
        }
        members.into_values().collect()
    }
}

/// A uniqueness error, naming the userName that is taken.
fn name_taken(error: ScimError, user_name: &str) -> ScimError {
    match error.scim_type {
        Some(crate::scim::ScimType::Uniqueness) => {
            ScimError::uniqueness(format!("userName \"{user_name}\" is already taken"))
        }
        _ => error,
    }
}

/// An `If-Match` header (RFC 7644 §3.14): the versions a write may change.
#[derive(Debug, Clone)]
pub struct IfMatch(pub String);

impl IfMatch {
    /// Whether the resource at `version` is one the header names (`*` is
    /// any; weak and strong tags compare alike).
    pub fn matches(&self, version: i64) -> bool {
        let current = resource::etag(version);
        self.0.split(',').map(str::trim).any(|tag| {
            tag == "*" || tag.trim_start_matches("W/") == current.trim_start_matches("W/")
        })
    }
}

/// 412 unless the resource at `version` matches `if_match` (if given).
fn check(if_match: Option<&IfMatch>, version: i64) -> ScimResult<()> {
    match if_match {
        Some(if_match) if !if_match.matches(version) => Err(ScimError::new(
            412,
            None,
            format!(
                "If-Match {} does not match the current version {}",
                if_match.0,
                resource::etag(version)
            ),
        )),
        _ => Ok(()),
    }
}

/// The edit of resource `id` that `edit` makes, refused with 412 when the
/// row it gets in the writing transaction does not match `if_match`.
fn if_matching<Row: StoredRow + 'static, Record: 'static>(
    id: &str,
    if_match: Option<&IfMatch>,
    edit: impl Fn(&Row) -> Result<Record, EditRejected> + Send + Sync + 'static,
) -> Edit<Row, Record> {
    let if_match = if_match.cloned();
    Edit::new(id, move |row: &Row| {
        check(if_match.as_ref(), row.version()).map_err(rejected)?;
        edit(row)
    })
}

/// An edit's refusal of a row, as the reconciler carries it back.
fn rejected(error: ScimError) -> EditRejected {
    std::sync::Arc::new(error)
}

/// A stored group as a SCIM resource (with `members` when given), located
/// under `base`.
fn render_group_at(base: &str, row: &source_group::Model, members: Option<&[MemberView]>) -> Value {
    let attributes: Value = serde_json::from_str(&row.attributes).unwrap_or_default();
    resource::render_group(
        attributes.get(DOCUMENT_KEY),
        &row.display_name,
        members,
        base,
        &Meta {
            id: &row.external_id,
            created: row.created_at,
            last_modified: row.updated_at,
            version: row.version,
            location: location_at(base, ResourceKind::Group, &row.external_id),
        },
    )
}

/// A stored user as a SCIM resource, located under `base`.
fn render_user_at(base: &str, row: &source_user::Model) -> Value {
    let attributes: Value = serde_json::from_str(&row.attributes).unwrap_or_default();
    resource::render_user(
        attributes.get(DOCUMENT_KEY),
        &row.user_name,
        row.active,
        &Meta {
            id: &row.external_id,
            created: row.created_at,
            last_modified: row.updated_at,
            version: row.version,
            location: location_at(base, ResourceKind::User, &row.external_id),
        },
    )
}

/// Where the resource `id` of `kind` lives under `base`.
fn location_at(base: &str, kind: ResourceKind, id: &str) -> String {
    format!("{base}/{}/{id}", kind.endpoint())
}

/// Parses a comma-separated `attributes` list.
pub fn attribute_list(text: Option<&str>) -> Vec<String> {
    text.map(|t| {
        t.split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::IfMatch;

    #[test]
    fn if_match_names_a_version_weak_or_strong_or_any_of_a_list() {
        let matches = |header: &str, version| IfMatch(header.into()).matches(version);
        assert!(matches("W/\"3\"", 3));
        assert!(matches("\"3\"", 3), "a strong tag compares as the weak one");
        assert!(matches("W/\"1\", W/\"3\"", 3));
        assert!(matches("*", 7));
        assert!(!matches("W/\"2\"", 3));
        assert!(!matches("W/\"33\"", 3));
        assert!(!matches("", 3));
    }
}
