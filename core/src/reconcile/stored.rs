//! Reads the part of a connection's stored state that an input needs for
//! diffing: everything for a snapshot, only what a delta names otherwise.
//! A snapshot's stored edges are compared with its edges as they are read
//! (`compared_edges`), a delta's held as a set.

use super::by_row_id::ByRowId;
use super::compared_edges::EdgeComparison;
use super::diff::{StoredEdges, StoredGroup, StoredState, StoredUser};
use super::edge_set::{EdgeSetBuilder, GroupIndex, UserIndex};
use super::hash::ContentHash;
use super::input::SourceInput;
use super::name_key::NameKey;
use super::stored_users::{StoredUsers, UserRows};
use super::unchanged::SetAsideCheck;
use crate::store::edges::{group_pairs, user_pairs};
use crate::store::entity::{group_membership, source_group, source_user, user_membership};
use crate::store::raw_sql::statement;
use futures_util::TryStreamExt;
use idpsync_driver::edges::IdIndex;
use idpsync_driver::{EdgeId, EdgeList, MemberRef, MembershipEdge};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter,
    QuerySelect, StreamTrait,
};
use std::collections::{BTreeSet, HashMap};

const CHUNK: usize = 500;

/// Id, external id, content hash, active, suspended, userName key.
type UserTuple = (i64, String, String, bool, bool, String);
type GroupTuple = (i64, String, String);

/// Direct edges by row ids: `(group_id, user_id)` and
/// `(group_id, member_group_id)`.
#[derive(Default)]
struct EdgeRows {
    users: Vec<(i64, i64)>,
    groups: Vec<(i64, i64)>,
}

/// Users as diffing needs them, filtered by `condition`, as a stream.
async fn users_stream<'a, C: ConnectionTrait + StreamTrait>(
    db: &'a C,
    condition: Condition,
) -> Result<impl futures_util::Stream<Item = Result<UserTuple, DbErr>> + 'a, DbErr> {
    source_user::Entity::find()
        .select_only()
        .columns([
            source_user::Column::Id,
            source_user::Column::ExternalId,
            source_user::Column::ContentHash,
            source_user::Column::Active,
            source_user::Column::Suspended,
            source_user::Column::UserNameKey,
        ])
        .filter(condition)
        .into_tuple()
        .stream(db)
        .await
}

/// Users as diffing needs them, filtered by `condition`.
async fn users_where(
    db: &(impl ConnectionTrait + StreamTrait),
    condition: Condition,
) -> Result<Vec<UserTuple>, DbErr> {
    users_stream(db, condition).await?.try_collect().await
}

/// Groups as diffing needs them, filtered by `condition`, as they are read.
async fn groups_stream<'a, C: ConnectionTrait + StreamTrait>(
    db: &'a C,
    condition: Condition,
) -> Result<impl futures_util::Stream<Item = Result<GroupTuple, DbErr>> + 'a, DbErr> {
    source_group::Entity::find()
        .select_only()
        .columns([
            source_group::Column::Id,
            source_group::Column::ExternalId,
            source_group::Column::ContentHash,
        ])
        .filter(condition)
        .into_tuple()
        .stream(db)
        .await
}

/// Groups as diffing needs them, filtered by `condition`.
async fn groups_where(
    db: &(impl ConnectionTrait + StreamTrait),
    condition: Condition,
) -> Result<Vec<GroupTuple>, DbErr> {
    groups_stream(db, condition).await?.try_collect().await
}

/// The edges of a connection's groups: `group_column` (an edge table's
/// `group_id`, the first half of its key) in the connection's groups.
pub(super) fn edges_of(
    group_column: impl ColumnTrait,
    connection: &str,
) -> sea_orm::sea_query::SimpleExpr {
    use sea_orm::sea_query::Query;
    group_column.in_subquery(
        Query::select()
            .column(source_group::Column::Id)
            .from(source_group::Entity)
            .and_where(source_group::Column::ConnectionId.eq(connection))
            .to_owned(),
    )
}

/// The stored state `input` is diffed against. `known_users` are rows the
/// caller read in this transaction already; they are not read again. A
/// snapshot's edges are sorted here if the set-aside step did not sort
/// them already ([`EdgeList::sort_and_dedup`] leaves a sorted list as it
/// is; so does the diff's), and its stored edges come compared with them.
pub async fn load(
    db: &(impl ConnectionTrait + StreamTrait),
    connection: &str,
    input: &mut SourceInput,
    known_users: &[source_user::Model],
) -> Result<StoredState, DbErr> {
    match input {
        SourceInput::Snapshot(snapshot) => {
            let expected = Expected {
                users: snapshot.users.len() + snapshot.unchanged_users.len(),
                kept_users: snapshot.users.len(),
                groups: snapshot.groups.len(),
            };
            snapshot.memberships.sort_and_dedup();
            let set_aside = (!snapshot.unchanged_users.is_empty()).then(|| {
                SetAsideCheck::new(
                    &snapshot.unchanged_users,
                    &snapshot.users,
                    snapshot.memberships.ids(),
                )
            });
            load_all(db, connection, expected, &snapshot.memberships, set_aside).await
        }
        SourceInput::Delta(delta) => {
            let mut user_ids: BTreeSet<&str> = delta
                .upsert_users
                .iter()
                .map(|u| u.external_id.as_str())
                .collect();
            user_ids.extend(delta.remove_users.iter().map(String::as_str));
            let mut group_ids: BTreeSet<&str> = delta
                .upsert_groups
                .iter()
                .map(|g| g.external_id.as_str())
                .collect();
            group_ids.extend(delta.remove_groups.iter().map(String::as_str));
            group_ids.extend(delta.replace_members.keys().map(String::as_str));
            let named_edges = delta
                .add_memberships
                .iter()
                .chain(&delta.remove_memberships);
            let mut edge_groups: BTreeSet<&str> = BTreeSet::new();
            for edge in named_edges.clone() {
                edge_groups.insert(&edge.group_external_id);
                match &edge.member {
                    MemberRef::User(id) => user_ids.insert(id),
                    MemberRef::Group(id) => group_ids.insert(id),
                };
            }
            for members in delta.replace_members.values() {
                for member in members {
                    match member {
                        MemberRef::User(id) => user_ids.insert(id),
                        MemberRef::Group(id) => group_ids.insert(id),
                    };
                }
            }
            group_ids.extend(edge_groups.iter().copied());
            let mut users: Vec<UserTuple> = Vec::with_capacity(user_ids.len());
            for row in known_users {
                if user_ids.remove(row.external_id.as_str()) {
                    users.push((
                        row.id,
                        row.external_id.clone(),
                        row.content_hash.clone(),
                        row.active,
                        row.suspended,
                        row.user_name_key.clone(),
                    ));
                }
            }
            load_some(
                db,
                connection,
                users,
                &user_ids,
                &group_ids,
                &edge_groups,
                delta.replace_members.keys().map(String::as_str).collect(),
            )
            .await
        }
    }
}

/// Everything a connection stores, its edges compared with `listed` (a
/// snapshot's, sorted). Users and edges are streamed into the state as
/// they are read: a million users are not held as rows, then as tuples,
/// then in the state's map, and ten million edges are not held at all. An
/// id the snapshot's edges name is held as their copy, not a second one.
async fn load_all(
    db: &(impl ConnectionTrait + StreamTrait),
    connection: &str,
    expected: Expected,
    listed: &EdgeList,
    set_aside: Option<SetAsideCheck<'_>>,
) -> Result<StoredState, DbErr> {
    let mut state = StateBuilder::comparing(expected, listed, set_aside);
    users_stream(
        db,
        Condition::all().add(source_user::Column::ConnectionId.eq(connection)),
    )
    .await?
    .try_for_each(|user| {
        state.add_user(user);
        std::future::ready(Ok(()))
    })
    .await?;
    // Streamed as the users are: a hundred thousand groups read whole held
    // their rows and their tuples at once, ~40 MiB at the top of a 1M
    // re-run's peak.
    groups_stream(
        db,
        Condition::all().add(source_group::Column::ConnectionId.eq(connection)),
    )
    .await?
    .try_for_each(|group| {
        state.add_group(group);
        std::future::ready(Ok(()))
    })
    .await?;
    all_edges(db, connection, &mut state).await?;
    Ok(state.finish())
}

/// How much a stored state is expected to hold: the snapshot's counts (a
/// re-run's stored tenant is mostly the pulled one), so room is made once
/// instead of by doubling.
#[derive(Debug, Clone, Copy, Default)]
struct Expected {
    users: usize,
    /// Users whose stored rows are kept: not set aside.
    kept_users: usize,
    groups: usize,
}

/// Every direct edge of a connection, between the users and groups read.
/// The database joins each group's members into one text column, so a
/// million edges arrive as one row per group: decoding rows one by one
/// cost more than diffing them. The rows are streamed, and each row's
/// members go straight into the state (ten million edges are held neither
/// as rows nor as pairs of row ids first).
async fn all_edges<'a>(
    db: &(impl ConnectionTrait + StreamTrait),
    connection: &str,
    state: &mut StateBuilder<'a>,
) -> Result<(), DbErr> {
    let tables: [(&str, &str, AddEdge<'a>); 2] = [
        ("user_memberships", "user_id", StateBuilder::add_user_edge),
        (
            "group_memberships",
            "member_group_id",
            StateBuilder::add_group_edge,
        ),
    ];
    for (table, member_column, add) in tables {
        let rows = joined_members(db, connection, table, member_column).await?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = rows.try_next().await? {
            let (group, members) = group_and_members(&row)?;
            for member in ids(&members)? {
                add(state, group, member);
            }
        }
    }
    Ok(())
}

/// How an edge table's `(group_id, member id)` goes into a state.
type AddEdge<'a> = fn(&mut StateBuilder<'a>, i64, i64);

/// A row of [`joined_members`].
fn group_and_members(row: &sea_orm::QueryResult) -> Result<(i64, String), DbErr> {
    Ok((row.try_get("", "group_id")?, row.try_get("", "members")?))
}

/// The rows `(group_id, comma-joined member ids)` of a connection's groups
/// in one edge table.
async fn joined_members<'a, C: ConnectionTrait + StreamTrait>(
    db: &'a C,
    connection: &str,
    table: &str,
    member_column: &str,
) -> Result<C::Stream<'a>, DbErr> {
    let backend = ConnectionTrait::get_database_backend(db);
    let joined = match backend {
        DatabaseBackend::Postgres => format!("string_agg({member_column}::text, ',')"),
        _ => format!("group_concat({member_column})"),
    };
    let sql = format!(
        "SELECT group_id, {joined} AS members FROM {table} \
         WHERE group_id IN (SELECT id FROM source_groups WHERE connection_id = ?) \
         GROUP BY group_id"
    );
    db.stream_raw(statement(backend, &sql, vec![connection.into()]))
        .await
}

/// The ids of a joined id list.
fn ids(joined: &str) -> Result<Vec<i64>, DbErr> {
    joined
        .split(',')
        .map(|id| {
            id.trim()
                .parse::<i64>()
                .map_err(|_| DbErr::Custom(format!("membership id list holds {id:?}")))
        })
        .collect()
}

/// The stored state of the named users and groups, with `users` already
/// read.
async fn load_some(
    db: &(impl ConnectionTrait + StreamTrait),
    connection: &str,
    mut users: Vec<UserTuple>,
    user_ids: &BTreeSet<&str>,
    group_ids: &BTreeSet<&str>,
    edge_groups: &BTreeSet<&str>,
    replaced_groups: BTreeSet<&str>,
) -> Result<StoredState, DbErr> {
    let user_list: Vec<&str> = user_ids.iter().copied().collect();
    for chunk in user_list.chunks(CHUNK) {
        users.extend(
            users_where(
                db,
                Condition::all()
                    .add(source_user::Column::ConnectionId.eq(connection))
                    .add(source_user::Column::ExternalId.is_in(chunk.iter().copied())),
            )
            .await?,
        );
    }
    let mut groups: Vec<GroupTuple> = Vec::new();
    let group_list: Vec<&str> = group_ids.iter().copied().collect();
    for chunk in group_list.chunks(CHUNK) {
        groups.extend(
            groups_where(
                db,
                Condition::all()
                    .add(source_group::Column::ConnectionId.eq(connection))
                    .add(source_group::Column::ExternalId.is_in(chunk.iter().copied())),
            )
            .await?,
        );
    }
    let group_id_of: HashMap<&str, i64> = groups
        .iter()
        .map(|(id, ext, _)| (ext.as_str(), *id))
        .collect();
    let user_keys: Vec<i64> = users.iter().map(|(id, ..)| *id).collect();
    let group_keys: Vec<i64> = groups.iter().map(|(id, ..)| *id).collect();

    let mut edges = EdgeRows::default();
    // Every edge of a group whose member list is replaced.
    let replaced: Vec<i64> = replaced_groups
        .iter()
        .filter_map(|ext| group_id_of.get(ext).copied())
        .collect();
    for chunk in replaced.chunks(CHUNK) {
        edges.users.extend(
            user_pairs(
                db,
                user_membership::Column::GroupId.is_in(chunk.iter().copied()),
            )
            .await?,
        );
        edges.groups.extend(
            group_pairs(
                db,
                group_membership::Column::GroupId.is_in(chunk.iter().copied()),
            )
            .await?,
        );
    }
    // Edges between the named groups and the named members.
    let parents: Vec<i64> = edge_groups
        .iter()
        .filter_map(|ext| group_id_of.get(ext).copied())
        .collect();
    for parent_chunk in parents.chunks(CHUNK) {
        for member_chunk in user_keys.chunks(CHUNK) {
            edges.users.extend(
                user_pairs(
                    db,
                    Condition::all()
                        .add(user_membership::Column::GroupId.is_in(parent_chunk.iter().copied()))
                        .add(user_membership::Column::UserId.is_in(member_chunk.iter().copied())),
                )
                .await?,
            );
        }
        for member_chunk in group_keys.chunks(CHUNK) {
            edges.groups.extend(
                group_pairs(
                    db,
                    Condition::all()
                        .add(group_membership::Column::GroupId.is_in(parent_chunk.iter().copied()))
                        .add(
                            group_membership::Column::MemberGroupId
                                .is_in(member_chunk.iter().copied()),
                        ),
                )
                .await?,
            );
        }
    }
    // Members of replaced groups may be users or groups the delta does not
    // name; fetch their external ids too.
    let known_users: BTreeSet<i64> = user_keys.iter().copied().collect();
    let missing_users: Vec<i64> = edges
        .users
        .iter()
        .map(|(_, user)| *user)
        .filter(|id| !known_users.contains(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in missing_users.chunks(CHUNK) {
        users.extend(
            users_where(
                db,
                Condition::all().add(source_user::Column::Id.is_in(chunk.iter().copied())),
            )
            .await?,
        );
    }
    let known_groups: BTreeSet<i64> = group_keys.iter().copied().collect();
    let missing_groups: Vec<i64> = edges
        .groups
        .iter()
        .map(|(_, group)| *group)
        .filter(|id| !known_groups.contains(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in missing_groups.chunks(CHUNK) {
        groups.extend(
            groups_where(
                db,
                Condition::all().add(source_group::Column::Id.is_in(chunk.iter().copied())),
            )
            .await?,
        );
    }
    let no_ids = IdIndex::default();
    let mut state = StateBuilder::holding(&no_ids);
    for user in users {
        state.add_user(user);
    }
    for group in groups {
        state.add_group(group);
    }
    for (group, user) in edges.users {
        state.add_user_edge(group, user);
    }
    for (group, nested) in edges.groups {
        state.add_group_edge(group, nested);
    }
    Ok(state.finish())
}

/// A stored state built from rows as they are read. Each user and group
/// is interned in the edge set once, under its row id, so an edge (a pair
/// of row ids) goes in without hashing an external id. The edges are held
/// in the set, or compared with a snapshot's as they come and not held.
struct StateBuilder<'a> {
    /// Ids held already (a snapshot's): shared, not copied.
    held_ids: &'a IdIndex,
    /// By the edge set's index of each user (see `stored_users`).
    users: UserRows,
    /// The snapshot's set-aside users, checked as their rows are read.
    set_aside: Option<SetAsideCheck<'a>>,
    groups: HashMap<String, StoredGroup>,
    /// The interned ids, and the edges when they are held.
    edges: EdgeSetBuilder,
    comparison: Option<EdgeComparison<'a>>,
    /// Each user and group read, by row id.
    user_indexes: ByRowId<Read<UserIndex>>,
    group_indexes: ByRowId<Read<GroupIndex>>,
}

/// A row read: its index in the edge set, and in `held_ids` when those
/// hold its external id (`NOT_HELD` when not: held ids are below 2^31).
#[derive(Clone, Copy)]
struct Read<I> {
    index: I,
    held: u32,
}

const NOT_HELD: u32 = u32::MAX;

impl<I> Read<I> {
    fn held(&self) -> Option<u32> {
        (self.held != NOT_HELD).then_some(self.held)
    }
}

impl<'a> StateBuilder<'a> {
    /// A state that holds its edges (a delta's), sharing `held_ids`.
    fn holding(held_ids: &'a IdIndex) -> Self {
        StateBuilder {
            held_ids,
            users: UserRows::default(),
            set_aside: None,
            groups: HashMap::new(),
            edges: EdgeSetBuilder::default(),
            comparison: None,
            user_indexes: ByRowId::default(),
            group_indexes: ByRowId::default(),
        }
    }

    /// A state whose edges are compared with `listed` (sorted), sized for
    /// `expected` users and groups, its users' rows checked by `set_aside`
    /// (made with `listed`'s ids) as they are read.
    fn comparing(
        expected: Expected,
        listed: &'a EdgeList,
        set_aside: Option<SetAsideCheck<'a>>,
    ) -> Self {
        StateBuilder {
            held_ids: listed.ids(),
            users: UserRows::with_capacity(expected.users, expected.kept_users),
            set_aside,
            groups: HashMap::with_capacity(expected.groups),
            edges: EdgeSetBuilder::with_capacity(expected.users, expected.groups),
            comparison: Some(EdgeComparison::new(listed)),
            user_indexes: ByRowId::with_capacity(expected.users),
            group_indexes: ByRowId::with_capacity(expected.groups),
        }
    }

    /// `external_id` as the held ids hold it (shared) and its index there
    /// (`NOT_HELD` if they do not), by one lookup; else a new copy.
    fn held(&self, external_id: &str) -> (EdgeId, u32) {
        match self.held_ids.get(external_id) {
            Some(index) => (self.held_ids.name(index).clone(), index),
            None => (external_id.into(), NOT_HELD),
        }
    }

    fn add_user(&mut self, row: UserTuple) {
        let (id, external_id, content_hash, active, suspended, user_name_key) = row;
        let (shared, held) = self.held(&external_id);
        let index = self.edges.intern_user_id(shared);
        self.user_indexes.insert(id, Read { index, held });
        let user = StoredUser {
            content_hash: ContentHash::parse(&content_hash),
            active,
            suspended,
            user_name_key: NameKey::of_folded(&user_name_key),
        };
        let held = (held != NOT_HELD).then_some(held);
        let set_aside = self
            .set_aside
            .as_mut()
            .is_some_and(|check| check.is_set_aside(&external_id, held, &user));
        if set_aside {
            self.users.put_set_aside(index.position());
        } else {
            self.users.put(index.position(), user);
        }
    }

    fn add_group(&mut self, row: GroupTuple) {
        let (id, external_id, content_hash) = row;
        let (shared, held) = self.held(&external_id);
        let index = self.edges.intern_group_id(shared);
        self.group_indexes.insert(id, Read { index, held });
        let group = StoredGroup {
            content_hash: ContentHash::parse(&content_hash),
        };
        self.groups.insert(external_id, group);
    }

    /// Adds the edge group -> user when both rows were read.
    fn add_user_edge(&mut self, group: i64, user: i64) {
        let (Some(group), Some(user)) =
            (self.group_indexes.get(group), self.user_indexes.get(user))
        else {
            return;
        };
        let Some(comparison) = &mut self.comparison else {
            self.edges.insert_user_at(group.index, user.index);
            return;
        };
        let ids = &self.edges;
        comparison.stored(group.held(), user.held(), false, || MembershipEdge {
            group_external_id: ids.group_id(group.index).clone(),
            member: MemberRef::User(ids.user_id(user.index).clone()),
        });
    }

    /// Adds the edge group -> nested group when both rows were read.
    fn add_group_edge(&mut self, group: i64, nested: i64) {
        let (Some(group), Some(nested)) = (
            self.group_indexes.get(group),
            self.group_indexes.get(nested),
        ) else {
            return;
        };
        let Some(comparison) = &mut self.comparison else {
            self.edges.insert_group_at(group.index, nested.index);
            return;
        };
        let ids = &self.edges;
        comparison.stored(group.held(), nested.held(), true, || MembershipEdge {
            group_external_id: ids.group_id(group.index).clone(),
            member: MemberRef::Group(ids.group_id(nested.index).clone()),
        });
    }

    fn finish(self) -> StoredState {
        let set = self.edges.finish();
        StoredState {
            users: StoredUsers::indexed(set.user_ids().clone(), self.users),
            set_aside_checked: self.set_aside.map(SetAsideCheck::finish),
            groups: self.groups,
            edges: match self.comparison {
                Some(comparison) => StoredEdges::Compared(comparison.finish()),
                None => StoredEdges::Held(set),
            },
        }
    }
}
