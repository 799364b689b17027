//! A group as a connection's source reports it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "source_groups")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub connection_id: String,
    pub external_id: String,
    pub display_name: String,
    #[sea_orm(column_type = "Text")]
    pub attributes: String,
    pub content_hash: String,
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
