//! sea-orm entities, one module per table of the store. Column meanings are
//! documented in the migrations and in ARCHITECTURE.md ("Data model").

pub mod acl_group;
pub mod acl_group_member;
pub mod api_token;
pub mod connection;
pub mod device;
pub mod effective_membership;
pub mod event;
pub mod group_membership;
pub mod hook_delivery;
pub mod hook_subscription;
pub mod inherited_membership;
pub mod source_group;
pub mod source_user;
pub mod status;
pub mod sync_run;
pub mod user_membership;
pub mod webhook_delivery;
