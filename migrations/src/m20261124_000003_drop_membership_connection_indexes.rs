//! Drops the `connection_id` indexes of `memberships` and
//! `effective_memberships`. Every query reaches a connection's edges through
//! its groups (`group_id`, indexed), and the effective table was never read
//! by connection; meanwhile each index cost an extra B-tree insert per row,
//! a million of them on a first sync of a large tenant.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000003_drop_membership_connection_indexes"
    }
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    ConnectionId,
}

#[derive(DeriveIden)]
enum EffectiveMemberships {
    Table,
    ConnectionId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("ix_memberships_connection")
                    .table(Memberships::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("ix_effective_memberships_connection")
                    .table(EffectiveMemberships::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("ix_memberships_connection")
                    .table(Memberships::Table)
                    .col(Memberships::ConnectionId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_effective_memberships_connection")
                    .table(EffectiveMemberships::Table)
                    .col(EffectiveMemberships::ConnectionId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }
}
