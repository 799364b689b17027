//! Adds `source_users.suspended`: a user without access because of a state
//! the source treats as passing (Okta LOCKED_OUT, by default). Such a user
//! is out of ACL groups but keeps their devices; a user that is inactive and
//! not suspended is deprovisioned (devices revoked). Existing rows are not
//! suspended.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000007_add_source_user_suspended"
    }
}

#[derive(DeriveIden)]
enum SourceUsers {
    Table,
    Suspended,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SourceUsers::Table)
                    .add_column(boolean(SourceUsers::Suspended).default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SourceUsers::Table)
                    .drop_column(SourceUsers::Suspended)
                    .to_owned(),
            )
            .await
    }
}
