//! Read-only views of what the sources reported and what was derived: users,
//! groups with direct and effective members, ACL groups and their members.

use super::{PageOf, PageQuery, Path, Query};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::store::entity::{
    acl_group, acl_group_member, effective_membership, group_membership, source_group, source_user,
    user_membership,
};
use axum::extract::State;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: i64,
    pub connection_id: String,
    pub external_id: String,
    pub user_name: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub primary_email: Option<String>,
    pub emails: serde_json::Value,
    pub active: bool,
    pub raw_status: Option<String>,
    pub attributes: serde_json::Value,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<source_user::Model> for UserView {
    fn from(row: source_user::Model) -> Self {
        UserView {
            id: row.id,
            connection_id: row.connection_id,
            external_id: row.external_id,
            user_name: row.user_name,
            display_name: row.display_name,
            given_name: row.given_name,
            family_name: row.family_name,
            primary_email: row.primary_email,
            emails: serde_json::from_str(&row.emails).unwrap_or_default(),
            active: row.active,
            raw_status: row.raw_status,
            attributes: serde_json::from_str(&row.attributes).unwrap_or_default(),
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct UserFilter {
    pub connection: Option<String>,
    /// `active` or `inactive`.
    pub status: Option<String>,
    pub limit: Option<u64>,
    pub after: Option<i64>,
}

pub async fn users(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<UserFilter>,
) -> Result<axum::Json<PageOf<UserView>>, ApiError> {
    caller.can_read()?;
    let page = PageQuery {
        limit: filter.limit,
        after: filter.after,
    };
    let mut query = source_user::Entity::find()
        .filter(source_user::Column::Id.gt(page.after()))
        .order_by_asc(source_user::Column::Id);
    if let Some(connection) = &filter.connection {
        query = query.filter(source_user::Column::ConnectionId.eq(connection));
    }
    match filter.status.as_deref() {
        None => {}
        Some("active") => query = query.filter(source_user::Column::Active.eq(true)),
        Some("inactive") => query = query.filter(source_user::Column::Active.eq(false)),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "status must be active or inactive, not \"{other}\""
            )));
        }
    }
    let limit = page.limit();
    let items: Vec<UserView> = query
        .limit(limit)
        .all(state.store.db())
        .await?
        .into_iter()
        .map(UserView::from)
        .collect();
    Ok(axum::Json(PageOf::new(items, limit, |user| user.id)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserDetail {
    #[serde(flatten)]
    pub user: UserView,
    /// Groups the user is in, directly or through nesting.
    pub groups: Vec<GroupRef>,
    pub acl_groups: Vec<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupRef {
    pub id: i64,
    pub external_id: String,
    pub display_name: String,
}

pub async fn user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<UserDetail>, ApiError> {
    caller.can_read()?;
    let db = state.store.db();
    let row = source_user::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id} not found")))?;
    let group_ids: Vec<i64> = effective_membership::Entity::find()
        .filter(effective_membership::Column::UserId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|row| row.group_id)
        .collect();
    let groups = source_group::Entity::find()
        .filter(source_group::Column::Id.is_in(group_ids))
        .order_by_asc(source_group::Column::DisplayName)
        .all(db)
        .await?
        .into_iter()
        .map(|group| GroupRef {
            id: group.id,
            external_id: group.external_id,
            display_name: group.display_name,
        })
        .collect();
    let acl_ids: Vec<i64> = acl_group_member::Entity::find()
        .filter(acl_group_member::Column::UserId.eq(id))
        .all(db)
        .await?
        .into_iter()
        .map(|row| row.acl_group_id)
        .collect();
    let acl_groups = acl_group::Entity::find()
        .filter(acl_group::Column::Id.is_in(acl_ids))
        .order_by_asc(acl_group::Column::Name)
        .all(db)
        .await?
        .into_iter()
        .map(|acl| acl.name)
        .collect();
    Ok(axum::Json(UserDetail {
        user: row.into(),
        groups,
        acl_groups,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub id: i64,
    pub connection_id: String,
    pub external_id: String,
    pub display_name: String,
    pub attributes: serde_json::Value,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
pub struct GroupFilter {
    pub connection: Option<String>,
    pub limit: Option<u64>,
    pub after: Option<i64>,
}

pub async fn groups(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<GroupFilter>,
) -> Result<axum::Json<PageOf<GroupView>>, ApiError> {
    caller.can_read()?;
    let page = PageQuery {
        limit: filter.limit,
        after: filter.after,
    };
    let mut query = source_group::Entity::find()
        .filter(source_group::Column::Id.gt(page.after()))
        .order_by_asc(source_group::Column::Id);
    if let Some(connection) = &filter.connection {
        query = query.filter(source_group::Column::ConnectionId.eq(connection));
    }
    let limit = page.limit();
    let items: Vec<GroupView> = query
        .limit(limit)
        .all(state.store.db())
        .await?
        .into_iter()
        .map(|row| GroupView {
            id: row.id,
            connection_id: row.connection_id,
            external_id: row.external_id,
            display_name: row.display_name,
            attributes: serde_json::from_str(&row.attributes).unwrap_or_default(),
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
        .collect();
    Ok(axum::Json(PageOf::new(items, limit, |group| group.id)))
}

#[derive(Debug, Deserialize)]
pub struct MemberQuery {
    /// `true`: transitive user members; default: direct members (users and groups).
    #[serde(default)]
    pub effective: bool,
    pub limit: Option<u64>,
    pub after: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    /// The paging cursor. Direct members list nested groups first, each with
    /// minus its group id, then users with their user id; effective members
    /// are users, with their user id.
    pub id: i64,
    #[serde(rename = "type")]
    pub member_type: &'static str,
    pub member_id: i64,
    pub external_id: String,
    pub name: String,
}

pub async fn group_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(group_id): Path<i64>,
    Query(query): Query<MemberQuery>,
) -> Result<axum::Json<PageOf<MemberView>>, ApiError> {
    caller.can_read()?;
    let page = PageQuery {
        limit: query.limit,
        after: query.after,
    };
    let db = state.store.db();
    if source_group::Entity::find_by_id(group_id).count(db).await? == 0 {
        return Err(ApiError::not_found(format!("group {group_id} not found")));
    }
    let limit = page.limit();
    let mut items = Vec::new();
    if query.effective {
        let rows = effective_membership::Entity::find()
            .filter(effective_membership::Column::GroupId.eq(group_id))
            .filter(effective_membership::Column::UserId.gt(page.after()))
            .order_by_asc(effective_membership::Column::UserId)
            .limit(limit)
            .all(db)
            .await?;
        // Effective rows are keyed by (group, user): the user pages.
        items = user_members(&state, rows.iter().map(|row| row.user_id).collect()).await?;
    } else {
        // Nested groups first (cursor: minus the group id, so they sort before
        // every user), then users (cursor: the user id).
        let after = query.after.unwrap_or(i64::MIN);
        if after < 0 {
            let mut nested = group_membership::Entity::find()
                .filter(group_membership::Column::GroupId.eq(group_id))
                .order_by_desc(group_membership::Column::MemberGroupId)
                .limit(limit);
            if after > i64::MIN {
                nested = nested.filter(group_membership::Column::MemberGroupId.lt(-after));
            }
            let rows = nested.all(db).await?;
            let groups = source_group::Entity::find()
                .filter(
                    source_group::Column::Id.is_in(
                        rows.iter()
                            .map(|row| row.member_group_id)
                            .collect::<Vec<_>>(),
                    ),
                )
                .all(db)
                .await?;
            for row in rows {
                if let Some(group) = groups.iter().find(|group| group.id == row.member_group_id) {
                    items.push(MemberView {
                        id: -group.id,
                        member_type: "group",
                        member_id: group.id,
                        external_id: group.external_id.clone(),
                        name: group.display_name.clone(),
                    });
                }
            }
        }
        let room = limit - items.len() as u64;
        if room > 0 {
            let rows = user_membership::Entity::find()
                .filter(user_membership::Column::GroupId.eq(group_id))
                .filter(user_membership::Column::UserId.gt(after.max(0)))
                .order_by_asc(user_membership::Column::UserId)
                .limit(room)
                .all(db)
                .await?;
            items.extend(user_members(&state, rows.iter().map(|row| row.user_id).collect()).await?);
        }
    }
    Ok(axum::Json(PageOf::new(items, limit, |member| member.id)))
}

/// Users as members, in the order of `ids`, each paged by its user id.
async fn user_members(state: &AppState, ids: Vec<i64>) -> Result<Vec<MemberView>, ApiError> {
    let users = users_by_id(state, ids.clone()).await?;
    Ok(ids
        .iter()
        .filter_map(|id| users.iter().find(|user| user.id == *id))
        .map(|user| MemberView {
            id: user.id,
            member_type: "user",
            member_id: user.id,
            external_id: user.external_id.clone(),
            name: user.user_name.clone(),
        })
        .collect())
}

async fn users_by_id(state: &AppState, ids: Vec<i64>) -> Result<Vec<source_user::Model>, ApiError> {
    Ok(source_user::Entity::find()
        .filter(source_user::Column::Id.is_in(ids))
        .all(state.store.db())
        .await?)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AclGroupView {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub configured: bool,
    pub members: u64,
}

pub async fn acl_groups(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<AclGroupView>>, ApiError> {
    caller.can_read()?;
    let db = state.store.db();
    let rows = acl_group::Entity::find()
        .order_by_asc(acl_group::Column::Name)
        .all(db)
        .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let members = acl_group_member::Entity::find()
            .filter(acl_group_member::Column::AclGroupId.eq(row.id))
            .count(db)
            .await?;
        views.push(AclGroupView {
            configured: state
                .engine()
                .config
                .acl_groups
                .iter()
                .any(|acl| acl.name == row.name),
            id: row.id,
            name: row.name,
            description: row.description,
            members,
        });
    }
    Ok(axum::Json(views))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AclMemberView {
    /// Row id: the paging cursor.
    pub id: i64,
    pub user_id: i64,
    pub connection_id: String,
    pub external_id: String,
    pub user_name: String,
    pub added_at: DateTime<Utc>,
}

pub async fn acl_group_members(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<axum::Json<PageOf<AclMemberView>>, ApiError> {
    caller.can_read()?;
    let db = state.store.db();
    let acl = acl_group::Entity::find()
        .filter(acl_group::Column::Name.eq(&name))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("ACL group \"{name}\" not found")))?;
    let limit = page.limit();
    let rows = acl_group_member::Entity::find()
        .filter(acl_group_member::Column::AclGroupId.eq(acl.id))
        .filter(acl_group_member::Column::Id.gt(page.after()))
        .order_by_asc(acl_group_member::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    let users = users_by_id(&state, rows.iter().map(|row| row.user_id).collect()).await?;
    let items = rows
        .into_iter()
        .filter_map(|row| {
            let user = users.iter().find(|user| user.id == row.user_id)?;
            Some(AclMemberView {
                id: row.id,
                user_id: user.id,
                connection_id: user.connection_id.clone(),
                external_id: user.external_id.clone(),
                user_name: user.user_name.clone(),
                added_at: row.added_at,
            })
        })
        .collect();
    Ok(axum::Json(PageOf::new(items, limit, |member| member.id)))
}
