//! Reads the part of a connection's stored state that an input needs for
//! diffing: everything for a snapshot, only what a delta names otherwise.

use super::diff::{StoredGroup, StoredState, StoredUser};
use super::edge_set::EdgeSet;
use super::input::SourceInput;
use crate::store::edges::{group_pairs, user_pairs};
use crate::store::entity::{group_membership, source_group, source_user, user_membership};
use crate::store::raw_sql::statement;
use idpsync_driver::MemberRef;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter,
    QuerySelect,
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

/// Users as diffing needs them, filtered by `condition`.
async fn users_where(
    db: &impl ConnectionTrait,
    condition: Condition,
) -> Result<Vec<UserTuple>, DbErr> {
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
        .all(db)
        .await
}

async fn groups_where(
    db: &impl ConnectionTrait,
    condition: Condition,
) -> Result<Vec<GroupTuple>, DbErr> {
    source_group::Entity::find()
        .select_only()
        .columns([
            source_group::Column::Id,
            source_group::Column::ExternalId,
            source_group::Column::ContentHash,
        ])
        .filter(condition)
        .into_tuple()
        .all(db)
        .await
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
/// caller read in this transaction already; they are not read again.
pub async fn load(
    db: &impl ConnectionTrait,
    connection: &str,
    input: &SourceInput,
    known_users: &[source_user::Model],
) -> Result<StoredState, DbErr> {
    match input {
        SourceInput::Snapshot(_) => load_all(db, connection).await,
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

async fn load_all(db: &impl ConnectionTrait, connection: &str) -> Result<StoredState, DbErr> {
    let users: Vec<UserTuple> = users_where(
        db,
        Condition::all().add(source_user::Column::ConnectionId.eq(connection)),
    )
    .await?;
    let groups: Vec<GroupTuple> = groups_where(
        db,
        Condition::all().add(source_group::Column::ConnectionId.eq(connection)),
    )
    .await?;
    let edges = all_edges(db, connection, &ExternalIds::new(&users, &groups)).await?;
    Ok(assemble(users, groups, edges))
}

/// Every direct edge of a connection, between the given users and groups.
/// The database joins each group's members into one text column, so a
/// million edges arrive as one row per group: decoding rows one by one
/// cost more than diffing them. Each row's members go straight into the
/// set (ten million edges are not held as pairs of row ids first).
async fn all_edges(
    db: &impl ConnectionTrait,
    connection: &str,
    read: &ExternalIds<'_>,
) -> Result<EdgeSet, DbErr> {
    let mut set = EdgeSet::default();
    for (group, members) in joined_members(db, connection, "user_memberships", "user_id").await? {
        for member in ids(&members)? {
            read.add_user_edge(&mut set, group, member);
        }
    }
    for (group, members) in
        joined_members(db, connection, "group_memberships", "member_group_id").await?
    {
        for member in ids(&members)? {
            read.add_group_edge(&mut set, group, member);
        }
    }
    Ok(set)
}

/// `(group_id, comma-joined member ids)` of a connection's groups in one
/// edge table.
async fn joined_members(
    db: &impl ConnectionTrait,
    connection: &str,
    table: &str,
    member_column: &str,
) -> Result<Vec<(i64, String)>, DbErr> {
    let backend = db.get_database_backend();
    let joined = match backend {
        DatabaseBackend::Postgres => format!("string_agg({member_column}::text, ',')"),
        _ => format!("group_concat({member_column})"),
    };
    let sql = format!(
        "SELECT group_id, {joined} AS members FROM {table} \
         WHERE group_id IN (SELECT id FROM source_groups WHERE connection_id = ?) \
         GROUP BY group_id"
    );
    let rows = db
        .query_all_raw(statement(backend, &sql, vec![connection.into()]))
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("", "group_id")?, row.try_get("", "members")?)))
        .collect()
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
    db: &impl ConnectionTrait,
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
    let edges = {
        let read = ExternalIds::new(&users, &groups);
        let mut set = EdgeSet::default();
        for (group, user) in edges.users {
            read.add_user_edge(&mut set, group, user);
        }
        for (group, nested) in edges.groups {
            read.add_group_edge(&mut set, group, nested);
        }
        set
    };
    Ok(assemble(users, groups, edges))
}

/// The external ids of the user and group rows read, by row id: what turns
/// stored edges (pairs of row ids) into edges between external ids.
struct ExternalIds<'a> {
    users: foldhash::HashMap<i64, &'a str>,
    groups: foldhash::HashMap<i64, &'a str>,
}

impl<'a> ExternalIds<'a> {
    fn new(users: &'a [UserTuple], groups: &'a [GroupTuple]) -> Self {
        ExternalIds {
            users: users
                .iter()
                .map(|(id, ext, ..)| (*id, ext.as_str()))
                .collect(),
            groups: groups
                .iter()
                .map(|(id, ext, _)| (*id, ext.as_str()))
                .collect(),
        }
    }

    /// Adds the edge group -> user when both rows were read.
    fn add_user_edge(&self, set: &mut EdgeSet, group: i64, user: i64) {
        if let (Some(group), Some(user)) = (self.groups.get(&group), self.users.get(&user)) {
            set.insert_user(group, user);
        }
    }

    /// Adds the edge group -> nested group when both rows were read.
    fn add_group_edge(&self, set: &mut EdgeSet, group: i64, nested: i64) {
        if let (Some(group), Some(nested)) = (self.groups.get(&group), self.groups.get(&nested)) {
            set.insert_group(group, nested);
        }
    }
}

fn assemble(users: Vec<UserTuple>, groups: Vec<GroupTuple>, edges: EdgeSet) -> StoredState {
    let mut state = StoredState {
        edges,
        ..StoredState::default()
    };
    for (_, external_id, content_hash, active, suspended, user_name_key) in users {
        state.users.insert(
            external_id,
            StoredUser {
                content_hash,
                active,
                suspended,
                user_name_key,
            },
        );
    }
    for (_, external_id, content_hash) in groups {
        state
            .groups
            .insert(external_id, StoredGroup { content_hash });
    }
    state
}
