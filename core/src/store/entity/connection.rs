//! A configured source of people, mirrored from `[[connections]]`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: String,
    /// The IdP's delta cursor from the last successful pull, opaque to core.
    #[sea_orm(column_type = "Text", nullable)]
    pub delta_cursor: Option<String>,
    /// Bumped by every applied change set; a held run applies only if it has
    /// not moved since the run was computed.
    pub state_version: i64,
    pub health: super::status::Health,
    pub consecutive_failures: i32,
    pub next_run_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
