//! A user's membership of an ACL group, derived from the rules.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "acl_group_members")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub acl_group_id: i64,
    pub user_id: i64,
    pub added_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
