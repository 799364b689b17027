//! Devices of users: registration and status changes, each with its event in
//! the same transaction. Revocation is final: a revoked device never changes
//! status again, and only the reconciler revokes on deprovisioning.

use crate::events::{self, EventBus, EventKind, NewEvent};
use crate::store::entity::{device, source_user};
use crate::store::{Store, StoreError};
use chrono::Utc;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The states of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Pending,
    Approved,
    Quarantined,
    Locked,
    Revoked,
}

impl DeviceStatus {
    /// The status an admin action leads to: `approve`, `quarantine`,
    /// `lock` or `revoke`.
    pub fn from_action(action: &str) -> Option<DeviceStatus> {
        match action {
            "approve" => Some(DeviceStatus::Approved),
            "quarantine" => Some(DeviceStatus::Quarantined),
            "lock" => Some(DeviceStatus::Locked),
            "revoke" => Some(DeviceStatus::Revoked),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Quarantined => "quarantined",
            DeviceStatus::Locked => "locked",
            DeviceStatus::Revoked => "revoked",
        }
    }

    fn event_kind(self) -> EventKind {
        match self {
            DeviceStatus::Pending => EventKind::DeviceRegistered,
            DeviceStatus::Approved => EventKind::DeviceApproved,
            DeviceStatus::Quarantined => EventKind::DeviceQuarantined,
            DeviceStatus::Locked => EventKind::DeviceLocked,
            DeviceStatus::Revoked => EventKind::DeviceRevoked,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("user \"{external_id}\" of connection \"{connection_id}\" not found")]
    OwnerNotFound {
        connection_id: String,
        external_id: String,
    },
    #[error("user \"{0}\" is not active: their devices cannot be registered or approved")]
    OwnerInactive(String),
    #[error("device {0} not found")]
    NotFound(i64),
    #[error("device {0} is revoked; revocation is final")]
    Revoked(i64),
    #[error("a device with this node key is already registered")]
    DuplicateNodeKey,
    #[error("{0}")]
    Invalid(String),
}

impl From<sea_orm::DbErr> for DeviceError {
    fn from(error: sea_orm::DbErr) -> Self {
        DeviceError::Store(StoreError::Db(error))
    }
}

/// A device registration request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewDevice {
    pub owner_connection_id: String,
    pub owner_external_id: String,
    pub name: String,
    pub node_key: String,
}

/// Registers a device of an active user, in `pending` status.
pub async fn register(
    store: &Store,
    bus: &EventBus,
    new: NewDevice,
) -> Result<device::Model, DeviceError> {
    if new.name.trim().is_empty() || new.node_key.trim().is_empty() {
        return Err(DeviceError::Invalid(
            "name and node_key must not be empty".into(),
        ));
    }
    let write = store.begin_write().await?;
    let owner = source_user::Entity::find()
        .filter(source_user::Column::ConnectionId.eq(&new.owner_connection_id))
        .filter(source_user::Column::ExternalId.eq(&new.owner_external_id))
        .one(&write.tx)
        .await?
        .ok_or_else(|| DeviceError::OwnerNotFound {
            connection_id: new.owner_connection_id.clone(),
            external_id: new.owner_external_id.clone(),
        })?;
    if !owner.active {
        return Err(DeviceError::OwnerInactive(owner.user_name));
    }
    let taken = device::Entity::find()
        .filter(device::Column::NodeKey.eq(&new.node_key))
        .one(&write.tx)
        .await?;
    if taken.is_some() {
        return Err(DeviceError::DuplicateNodeKey);
    }
    let now = Utc::now();
    let model = device::ActiveModel {
        owner_user_id: Set(Some(owner.id)),
        owner_connection_id: Set(owner.connection_id.clone()),
        owner_external_id: Set(owner.external_id.clone()),
        name: Set(new.name),
        node_key: Set(new.node_key),
        status: Set(DeviceStatus::Pending.as_str().into()),
        revoked_reason: Set(None),
        revoked_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&write.tx)
    .await?;
    events::append(
        &write.tx,
        &[device_event(DeviceStatus::Pending, &model, None)],
        now,
    )
    .await?;
    write.commit().await?;
    bus.notify();
    Ok(model)
}

/// Moves a device to `status`. Approval needs an active owner; a revoked
/// device stays revoked.
pub async fn set_status(
    store: &Store,
    bus: &EventBus,
    device_id: i64,
    status: DeviceStatus,
    reason: Option<String>,
) -> Result<device::Model, DeviceError> {
    let write = store.begin_write().await?;
    let found = device::Entity::find_by_id(device_id)
        .one(&write.tx)
        .await?
        .ok_or(DeviceError::NotFound(device_id))?;
    if found.status == DeviceStatus::Revoked.as_str() {
        return Err(DeviceError::Revoked(device_id));
    }
    if status == DeviceStatus::Approved {
        let owner = match found.owner_user_id {
            Some(owner_id) => {
                source_user::Entity::find_by_id(owner_id)
                    .one(&write.tx)
                    .await?
            }
            None => None,
        };
        match owner {
            Some(owner) if owner.active => {}
            Some(owner) => return Err(DeviceError::OwnerInactive(owner.user_name)),
            None => return Err(DeviceError::OwnerInactive(found.owner_external_id.clone())),
        }
    }
    if found.status == status.as_str() {
        return Ok(found);
    }
    let now = Utc::now();
    let previous = found.status.clone();
    let mut active: device::ActiveModel = found.into();
    active.status = Set(status.as_str().into());
    active.updated_at = Set(now);
    if status == DeviceStatus::Revoked {
        active.revoked_at = Set(Some(now));
        active.revoked_reason = Set(Some(
            reason
                .clone()
                .unwrap_or_else(|| "revoked by an admin".into()),
        ));
    }
    let model = active.update(&write.tx).await?;
    events::append(
        &write.tx,
        &[device_event(status, &model, Some(&previous))],
        now,
    )
    .await?;
    write.commit().await?;
    bus.notify();
    Ok(model)
}

fn device_event(status: DeviceStatus, model: &device::Model, previous: Option<&str>) -> NewEvent {
    NewEvent::new(
        status.event_kind(),
        Some(&model.owner_connection_id),
        "device",
        model.id.to_string(),
        json!({
            "device_id": model.id,
            "name": model.name,
            "node_key": model.node_key,
            "owner_external_id": model.owner_external_id,
            "previous_status": previous,
            "reason": model.revoked_reason,
        }),
    )
}
