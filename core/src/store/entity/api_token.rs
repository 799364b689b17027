//! An API or SCIM bearer token. Only its SHA-256 hash is stored.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub name: String,
    /// The first characters of the token (`idps_ab12cd34`), to recognise it.
    pub prefix: String,
    /// Hex SHA-256 of the whole token.
    #[sea_orm(unique)]
    pub hash: String,
    /// Comma-separated scopes: `scim`, `admin`, `read`, `devices`.
    pub scopes: String,
    /// The connection a `scim` token is bound to.
    pub connection_id: Option<String>,
    pub expires_at: Option<DateTimeUtc>,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
