//! A user's membership of a group through a nested group, when the user is
//! not also a direct member; derived by the reconciler from the edges and
//! keyed by the pair (no foreign keys: the reconciler deletes a removed
//! user's or group's rows). Read through [`super::effective_membership`].

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "inherited_memberships")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub group_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
