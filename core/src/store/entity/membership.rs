//! A direct membership edge: group -> user, or group -> nested group.
//! Exactly one of `member_user_id` and `member_group_id` is set.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "memberships")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub connection_id: String,
    pub group_id: i64,
    pub member_user_id: Option<i64>,
    pub member_group_id: Option<i64>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
