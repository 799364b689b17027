//! Transitive membership (user in group through any chain of nested groups),
//! derived by the reconciler from the direct edges.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "effective_memberships")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub connection_id: String,
    pub group_id: i64,
    pub user_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
