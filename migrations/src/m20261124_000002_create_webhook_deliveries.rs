//! Per-webhook delivery state. The event log itself is the durable outbox:
//! each webhook keeps the cursor of the last event it has delivered, and the
//! retry state of the next one, so deliveries resume after a restart.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000002_create_webhook_deliveries"
    }
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Webhook,
    LastEventId,
    Attempts,
    NextAttemptAt,
    LastError,
    LastDeliveredAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .if_not_exists()
                    .col(string(WebhookDeliveries::Webhook).primary_key())
                    .col(big_integer(WebhookDeliveries::LastEventId))
                    .col(integer(WebhookDeliveries::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::NextAttemptAt,
                    ))
                    .col(text_null(WebhookDeliveries::LastError))
                    .col(timestamp_with_time_zone_null(
                        WebhookDeliveries::LastDeliveredAt,
                    ))
                    .col(timestamp_with_time_zone(WebhookDeliveries::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(WebhookDeliveries::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
