//! The state of IdP change notifications.
//!
//! * `hook_subscriptions`: what makes an IdP deliver to this deployment (a
//!   Graph subscription, a Google channel, an Okta event hook), one row per
//!   connection and watched resource, with its expiry, so that whichever
//!   daemon runs next renews it before it lapses.
//! * `hook_deliveries`: the keys of notices already acted on (Okta's event
//!   uuid, Google's channel and message number), so that a notice the IdP
//!   delivers twice, to one daemon or to two, leads to one run.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000008_create_hook_tables"
    }
}

#[derive(DeriveIden)]
enum HookSubscriptions {
    Table,
    ConnectionId,
    Resource,
    SubscriptionId,
    Handle,
    Callback,
    ExpiresAt,
    StopOnShutdown,
    RenewedAt,
    LastError,
}

#[derive(DeriveIden)]
enum HookDeliveries {
    Table,
    ConnectionId,
    DeliveryKey,
    ReceivedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(HookSubscriptions::Table)
                    .if_not_exists()
                    .col(string(HookSubscriptions::ConnectionId))
                    .col(string(HookSubscriptions::Resource))
                    .col(string(HookSubscriptions::SubscriptionId))
                    .col(string_null(HookSubscriptions::Handle))
                    .col(text(HookSubscriptions::Callback))
                    .col(timestamp_with_time_zone_null(HookSubscriptions::ExpiresAt))
                    .col(boolean(HookSubscriptions::StopOnShutdown))
                    .col(timestamp_with_time_zone(HookSubscriptions::RenewedAt))
                    .col(text_null(HookSubscriptions::LastError))
                    .primary_key(
                        Index::create()
                            .col(HookSubscriptions::ConnectionId)
                            .col(HookSubscriptions::Resource),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HookDeliveries::Table)
                    .if_not_exists()
                    .col(string(HookDeliveries::ConnectionId))
                    .col(string(HookDeliveries::DeliveryKey))
                    .col(timestamp_with_time_zone(HookDeliveries::ReceivedAt))
                    .primary_key(
                        Index::create()
                            .col(HookDeliveries::ConnectionId)
                            .col(HookDeliveries::DeliveryKey),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(HookDeliveries::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(HookSubscriptions::Table).to_owned())
            .await
    }
}
