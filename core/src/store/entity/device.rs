//! A device of a user. Once `revoked`, it stays revoked.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `None` once the owner was removed at the source (the device is revoked
    /// before that happens); the owner's connection and external id remain.
    pub owner_user_id: Option<i64>,
    pub owner_connection_id: String,
    pub owner_external_id: String,
    pub name: String,
    #[sea_orm(unique)]
    pub node_key: String,
    /// `pending`, `approved`, `quarantined`, `locked` or `revoked`.
    pub status: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub revoked_reason: Option<String>,
    pub revoked_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
