//! A user as a connection's source reports it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "source_users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub connection_id: String,
    pub external_id: String,
    pub user_name: String,
    /// `user_name` folded to lowercase: unique per connection, so userName is
    /// compared case-insensitively as SCIM requires.
    pub user_name_key: String,
    pub display_name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub primary_email: Option<String>,
    /// JSON array of `{value, kind, primary}`.
    #[sea_orm(column_type = "Text")]
    pub emails: String,
    pub active: bool,
    /// Without access for now, by a state the source treats as passing:
    /// out of ACL groups, devices kept. Never set for an active user.
    pub suspended: bool,
    pub raw_status: Option<String>,
    /// JSON object of attributes core does not interpret.
    #[sea_orm(column_type = "Text")]
    pub attributes: String,
    /// Hash of the record's content; equal hash means nothing to write.
    pub content_hash: String,
    /// Incremented on every change; the SCIM ETag.
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
