//! The whole data model of DESIGN.md: connections, source users and groups,
//! membership edges, effective memberships, ACL groups and members, devices,
//! events, sync runs and API tokens.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000001_create_store"
    }
}

#[derive(DeriveIden)]
enum Connections {
    Table,
    Id,
    Kind,
    DeltaCursor,
    StateVersion,
    Health,
    ConsecutiveFailures,
    NextRunAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SourceUsers {
    Table,
    Id,
    ConnectionId,
    ExternalId,
    UserName,
    UserNameKey,
    DisplayName,
    GivenName,
    FamilyName,
    PrimaryEmail,
    Emails,
    Active,
    RawStatus,
    Attributes,
    ContentHash,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SourceGroups {
    Table,
    Id,
    ConnectionId,
    ExternalId,
    DisplayName,
    Attributes,
    ContentHash,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    Id,
    ConnectionId,
    GroupId,
    MemberUserId,
    MemberGroupId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum EffectiveMemberships {
    Table,
    Id,
    ConnectionId,
    GroupId,
    UserId,
}

#[derive(DeriveIden)]
enum AclGroups {
    Table,
    Id,
    Name,
    Description,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AclGroupMembers {
    Table,
    Id,
    AclGroupId,
    UserId,
    AddedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
    OwnerUserId,
    OwnerConnectionId,
    OwnerExternalId,
    Name,
    NodeKey,
    Status,
    RevokedReason,
    RevokedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    Kind,
    ConnectionId,
    SubjectType,
    SubjectId,
    Payload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SyncRuns {
    Table,
    Id,
    ConnectionId,
    Trigger,
    Mode,
    DryRun,
    Status,
    StartedAt,
    FinishedAt,
    Counts,
    Error,
    ChangeSet,
    BaseStateVersion,
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    Name,
    Prefix,
    Hash,
    Scopes,
    ConnectionId,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
    CreatedAt,
}

fn fk(
    name: &str,
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from.0, from.1)
        .to(to.0, to.1)
        .on_delete(on_delete)
        .to_owned()
}

fn index(
    name: &str,
    table: impl IntoIden,
    cols: &[&'static str],
    unique: bool,
) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(table).if_not_exists();
    for col in cols {
        stmt.col(Alias::new(*col));
    }
    if unique {
        stmt.unique();
    }
    stmt.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Connections::Table)
                    .if_not_exists()
                    .col(string(Connections::Id).primary_key())
                    .col(string(Connections::Kind))
                    .col(text_null(Connections::DeltaCursor))
                    .col(big_integer(Connections::StateVersion).default(0))
                    .col(string(Connections::Health).default("healthy"))
                    .col(integer(Connections::ConsecutiveFailures).default(0))
                    .col(timestamp_with_time_zone_null(Connections::NextRunAt))
                    .col(timestamp_with_time_zone(Connections::CreatedAt))
                    .col(timestamp_with_time_zone(Connections::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SourceUsers::Table)
                    .if_not_exists()
                    .col(big_pk_auto(SourceUsers::Id))
                    .col(string(SourceUsers::ConnectionId))
                    .col(string(SourceUsers::ExternalId))
                    .col(string(SourceUsers::UserName))
                    .col(string(SourceUsers::UserNameKey))
                    .col(string_null(SourceUsers::DisplayName))
                    .col(string_null(SourceUsers::GivenName))
                    .col(string_null(SourceUsers::FamilyName))
                    .col(string_null(SourceUsers::PrimaryEmail))
                    .col(text(SourceUsers::Emails))
                    .col(boolean(SourceUsers::Active))
                    .col(string_null(SourceUsers::RawStatus))
                    .col(text(SourceUsers::Attributes))
                    .col(string(SourceUsers::ContentHash))
                    .col(big_integer(SourceUsers::Version).default(1))
                    .col(timestamp_with_time_zone(SourceUsers::CreatedAt))
                    .col(timestamp_with_time_zone(SourceUsers::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_source_users_connection",
                        (SourceUsers::Table, SourceUsers::ConnectionId),
                        (Connections::Table, Connections::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_source_users_external_id",
                SourceUsers::Table,
                &["connection_id", "external_id"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ux_source_users_user_name_key",
                SourceUsers::Table,
                &["connection_id", "user_name_key"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_source_users_active",
                SourceUsers::Table,
                &["connection_id", "active"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SourceGroups::Table)
                    .if_not_exists()
                    .col(big_pk_auto(SourceGroups::Id))
                    .col(string(SourceGroups::ConnectionId))
                    .col(string(SourceGroups::ExternalId))
                    .col(string(SourceGroups::DisplayName))
                    .col(text(SourceGroups::Attributes))
                    .col(string(SourceGroups::ContentHash))
                    .col(big_integer(SourceGroups::Version).default(1))
                    .col(timestamp_with_time_zone(SourceGroups::CreatedAt))
                    .col(timestamp_with_time_zone(SourceGroups::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_source_groups_connection",
                        (SourceGroups::Table, SourceGroups::ConnectionId),
                        (Connections::Table, Connections::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_source_groups_external_id",
                SourceGroups::Table,
                &["connection_id", "external_id"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_source_groups_display_name",
                SourceGroups::Table,
                &["connection_id", "display_name"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Memberships::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Memberships::Id))
                    .col(string(Memberships::ConnectionId))
                    .col(big_integer(Memberships::GroupId))
                    .col(big_integer_null(Memberships::MemberUserId))
                    .col(big_integer_null(Memberships::MemberGroupId))
                    .col(timestamp_with_time_zone(Memberships::CreatedAt))
                    .check(
                        Expr::col(Memberships::MemberUserId)
                            .is_null()
                            .ne(Expr::col(Memberships::MemberGroupId).is_null()),
                    )
                    .foreign_key(&mut fk(
                        "fk_memberships_group",
                        (Memberships::Table, Memberships::GroupId),
                        (SourceGroups::Table, SourceGroups::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_memberships_member_user",
                        (Memberships::Table, Memberships::MemberUserId),
                        (SourceUsers::Table, SourceUsers::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_memberships_member_group",
                        (Memberships::Table, Memberships::MemberGroupId),
                        (SourceGroups::Table, SourceGroups::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_memberships_user",
                Memberships::Table,
                &["group_id", "member_user_id"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ux_memberships_group",
                Memberships::Table,
                &["group_id", "member_group_id"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_memberships_connection",
                Memberships::Table,
                &["connection_id"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_memberships_member_user",
                Memberships::Table,
                &["member_user_id"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_memberships_member_group",
                Memberships::Table,
                &["member_group_id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(EffectiveMemberships::Table)
                    .if_not_exists()
                    .col(big_pk_auto(EffectiveMemberships::Id))
                    .col(string(EffectiveMemberships::ConnectionId))
                    .col(big_integer(EffectiveMemberships::GroupId))
                    .col(big_integer(EffectiveMemberships::UserId))
                    .foreign_key(&mut fk(
                        "fk_effective_memberships_group",
                        (EffectiveMemberships::Table, EffectiveMemberships::GroupId),
                        (SourceGroups::Table, SourceGroups::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_effective_memberships_user",
                        (EffectiveMemberships::Table, EffectiveMemberships::UserId),
                        (SourceUsers::Table, SourceUsers::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_effective_memberships",
                EffectiveMemberships::Table,
                &["group_id", "user_id"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_effective_memberships_user",
                EffectiveMemberships::Table,
                &["user_id"],
                false,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_effective_memberships_connection",
                EffectiveMemberships::Table,
                &["connection_id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AclGroups::Table)
                    .if_not_exists()
                    .col(big_pk_auto(AclGroups::Id))
                    .col(string_uniq(AclGroups::Name))
                    .col(text_null(AclGroups::Description))
                    .col(timestamp_with_time_zone(AclGroups::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AclGroupMembers::Table)
                    .if_not_exists()
                    .col(big_pk_auto(AclGroupMembers::Id))
                    .col(big_integer(AclGroupMembers::AclGroupId))
                    .col(big_integer(AclGroupMembers::UserId))
                    .col(timestamp_with_time_zone(AclGroupMembers::AddedAt))
                    .foreign_key(&mut fk(
                        "fk_acl_group_members_group",
                        (AclGroupMembers::Table, AclGroupMembers::AclGroupId),
                        (AclGroups::Table, AclGroups::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .foreign_key(&mut fk(
                        "fk_acl_group_members_user",
                        (AclGroupMembers::Table, AclGroupMembers::UserId),
                        (SourceUsers::Table, SourceUsers::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_acl_group_members",
                AclGroupMembers::Table,
                &["acl_group_id", "user_id"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_acl_group_members_user",
                AclGroupMembers::Table,
                &["user_id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Devices::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Devices::Id))
                    .col(big_integer_null(Devices::OwnerUserId))
                    .col(string(Devices::OwnerConnectionId))
                    .col(string(Devices::OwnerExternalId))
                    .col(string(Devices::Name))
                    .col(string_uniq(Devices::NodeKey))
                    .col(string(Devices::Status))
                    .col(text_null(Devices::RevokedReason))
                    .col(timestamp_with_time_zone_null(Devices::RevokedAt))
                    .col(timestamp_with_time_zone(Devices::CreatedAt))
                    .col(timestamp_with_time_zone(Devices::UpdatedAt))
                    .foreign_key(&mut fk(
                        "fk_devices_owner",
                        (Devices::Table, Devices::OwnerUserId),
                        (SourceUsers::Table, SourceUsers::Id),
                        ForeignKeyAction::SetNull,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_devices_owner",
                Devices::Table,
                &["owner_user_id", "status"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(big_pk_auto(Events::Id))
                    .col(string(Events::Kind))
                    .col(string_null(Events::ConnectionId))
                    .col(string(Events::SubjectType))
                    .col(string(Events::SubjectId))
                    .col(text(Events::Payload))
                    .col(timestamp_with_time_zone(Events::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_events_kind",
                Events::Table,
                &["kind", "id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SyncRuns::Table)
                    .if_not_exists()
                    .col(big_pk_auto(SyncRuns::Id))
                    .col(string(SyncRuns::ConnectionId))
                    .col(string(SyncRuns::Trigger))
                    .col(string(SyncRuns::Mode))
                    .col(boolean(SyncRuns::DryRun))
                    .col(string(SyncRuns::Status))
                    .col(timestamp_with_time_zone(SyncRuns::StartedAt))
                    .col(timestamp_with_time_zone_null(SyncRuns::FinishedAt))
                    .col(text(SyncRuns::Counts))
                    .col(text_null(SyncRuns::Error))
                    .col(text_null(SyncRuns::ChangeSet))
                    .col(big_integer_null(SyncRuns::BaseStateVersion))
                    .foreign_key(&mut fk(
                        "fk_sync_runs_connection",
                        (SyncRuns::Table, SyncRuns::ConnectionId),
                        (Connections::Table, Connections::Id),
                        ForeignKeyAction::Cascade,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_sync_runs_connection",
                SyncRuns::Table,
                &["connection_id", "id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .if_not_exists()
                    .col(big_pk_auto(ApiTokens::Id))
                    .col(string_uniq(ApiTokens::Name))
                    .col(string(ApiTokens::Prefix))
                    .col(string_uniq(ApiTokens::Hash))
                    .col(string(ApiTokens::Scopes))
                    .col(string_null(ApiTokens::ConnectionId))
                    .col(timestamp_with_time_zone_null(ApiTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::LastUsedAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::RevokedAt))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ApiTokens::Table.into_iden(),
            SyncRuns::Table.into_iden(),
            Events::Table.into_iden(),
            Devices::Table.into_iden(),
            AclGroupMembers::Table.into_iden(),
            AclGroups::Table.into_iden(),
            EffectiveMemberships::Table.into_iden(),
            Memberships::Table.into_iden(),
            SourceGroups::Table.into_iden(),
            SourceUsers::Table.into_iden(),
            Connections::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
