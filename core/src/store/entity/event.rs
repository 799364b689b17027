//! An append-only event; `id` is the feed's cursor.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `noun.past_verb`: `user.created`, `device.revoked`, ...
    pub kind: String,
    pub connection_id: Option<String>,
    pub subject_type: String,
    pub subject_id: String,
    /// JSON body of the event.
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
