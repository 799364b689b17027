//! What makes an IdP deliver change notifications to this deployment: one
//! row per connection and watched resource (`hooks::keeper` keeps them).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "hook_subscriptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub connection_id: String,
    /// What the driver's notifier watches with it (`users`, an event name).
    #[sea_orm(primary_key, auto_increment = false)]
    pub resource: String,
    /// The IdP's id for it.
    pub subscription_id: String,
    /// A second handle the IdP needs to stop it (Google's `resourceId`).
    pub handle: Option<String>,
    /// The URL the IdP delivers to.
    #[sea_orm(column_type = "Text")]
    pub callback: String,
    pub expires_at: Option<DateTimeUtc>,
    pub stop_on_shutdown: bool,
    /// When it was made or last renewed.
    pub renewed_at: DateTimeUtc,
    /// Why the last attempt to renew it failed, if it did.
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
