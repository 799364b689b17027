//! Devices: register, list, read, and change status (approve, quarantine,
//! lock, revoke). Changes need `admin` or `devices`.

use super::{Json, PageOf, PageQuery, Path, Query};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::auth::Scope;
use crate::devices::{self, DeviceStatus, NewDevice};
use crate::store::entity::device;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: i64,
    pub owner_user_id: Option<i64>,
    pub owner_connection_id: String,
    pub owner_external_id: String,
    pub name: String,
    pub node_key: String,
    pub status: String,
    pub revoked_reason: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<device::Model> for DeviceView {
    fn from(row: device::Model) -> Self {
        DeviceView {
            id: row.id,
            owner_user_id: row.owner_user_id,
            owner_connection_id: row.owner_connection_id,
            owner_external_id: row.owner_external_id,
            name: row.name,
            node_key: row.node_key,
            status: row.status,
            revoked_reason: row.revoked_reason,
            revoked_at: row.revoked_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

fn can_manage(caller: &Caller) -> Result<(), ApiError> {
    caller.require(&[Scope::Admin, Scope::Devices])
}

fn can_view(caller: &Caller) -> Result<(), ApiError> {
    caller.require(&[Scope::Admin, Scope::Read, Scope::Devices])
}

/// Registers a device of an active user; it starts `pending`.
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    Json(new): Json<NewDevice>,
) -> Result<(StatusCode, axum::Json<DeviceView>), ApiError> {
    can_manage(&caller)?;
    let model = devices::register(&state.store, &state.bus, new).await?;
    Ok((StatusCode::CREATED, axum::Json(model.into())))
}

#[derive(Debug, Deserialize)]
pub struct DeviceFilter {
    pub status: Option<String>,
    pub owner_user_id: Option<i64>,
    pub limit: Option<u64>,
    pub after: Option<i64>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<DeviceFilter>,
) -> Result<axum::Json<PageOf<DeviceView>>, ApiError> {
    can_view(&caller)?;
    let page = PageQuery {
        limit: filter.limit,
        after: filter.after,
    };
    let mut query = device::Entity::find()
        .filter(device::Column::Id.gt(page.after()))
        .order_by_asc(device::Column::Id);
    if let Some(status) = &filter.status {
        query = query.filter(device::Column::Status.eq(status));
    }
    if let Some(owner) = filter.owner_user_id {
        query = query.filter(device::Column::OwnerUserId.eq(owner));
    }
    let limit = page.limit();
    let items: Vec<DeviceView> = query
        .limit(limit)
        .all(state.store.db())
        .await?
        .into_iter()
        .map(DeviceView::from)
        .collect();
    Ok(axum::Json(PageOf::new(items, limit, |device| device.id)))
}

pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<DeviceView>, ApiError> {
    can_view(&caller)?;
    let row = device::Entity::find_by_id(id)
        .one(state.store.db())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} not found")))?;
    Ok(axum::Json(row.into()))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct StatusChange {
    pub reason: Option<String>,
}

/// `POST /devices/{id}/approve|quarantine|lock|revoke`, optional body `{"reason": "..."}`.
pub async fn change_status(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(i64, String)>,
    body: axum::body::Bytes,
) -> Result<axum::Json<DeviceView>, ApiError> {
    can_manage(&caller)?;
    let status = DeviceStatus::from_action(&action).ok_or_else(|| {
        ApiError::not_found(format!(
            "no device action \"{action}\"; use approve, quarantine, lock or revoke"
        ))
    })?;

    let change: StatusChange = if body.iter().all(u8::is_ascii_whitespace) {
        StatusChange::default()
    } else {
        serde_json::from_slice::<Option<StatusChange>>(&body)
            .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))?
            .unwrap_or_default()
    };
    let reason = change.reason;
    let model = devices::set_status(&state.store, &state.bus, id, status, reason).await?;
    Ok(axum::Json(model.into()))
}
