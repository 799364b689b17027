//! One sync of a connection: a pull, a plan, or a held change set.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize)]
#[sea_orm(table_name = "sync_runs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub connection_id: String,
    /// `schedule`, `manual`, `api`, `approval`.
    pub trigger: String,
    /// `full` or `delta`.
    pub mode: String,
    pub dry_run: bool,
    pub status: super::status::RunStatus,
    pub started_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// JSON object of counts by change kind.
    #[sea_orm(column_type = "Text")]
    pub counts: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    /// JSON of the change set a held run would apply.
    #[sea_orm(column_type = "Text", nullable)]
    #[serde(skip)]
    pub change_set: Option<String>,
    /// The connection's `state_version` the change set was computed against.
    pub base_state_version: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
