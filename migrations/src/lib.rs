//! Schema migrations of the idpsync store, one module per step, run in order by
//! [`Migrator`]. The same migrations serve SQLite and PostgreSQL: only portable
//! column types and indexes are used (one exception: the tables keyed by a
//! pair, `effective_memberships` in steps 4 and 5, the two membership tables
//! since step 5 and `inherited_memberships` since step 6, are `WITHOUT ROWID`
//! tables on SQLite). Since step 6 `effective_memberships` is a view. Step 9
//! is SQLite's alone: scratch tables that are temporary on PostgreSQL.
//!
//! Add a step as `mYYYYMMDD_NNNNNN_verb_noun.rs` and list it in
//! [`Migrator::migrations`]; never edit a step that has shipped.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_store;
mod m20261124_000002_create_webhook_deliveries;
mod m20261124_000003_drop_membership_connection_indexes;
mod m20261124_000004_key_effective_memberships_by_pair;
mod m20261124_000005_split_memberships_by_member_kind;
mod m20261129_000006_keep_only_inherited_memberships;
mod m20261204_000007_add_source_user_suspended;
mod m20261205_000008_create_hook_tables;
mod m20261206_000009_keep_sqlite_scratch_in_main;
mod script;

/// Runs every migration of the store in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_store::Migration),
            Box::new(m20261124_000002_create_webhook_deliveries::Migration),
            Box::new(m20261124_000003_drop_membership_connection_indexes::Migration),
            Box::new(m20261124_000004_key_effective_memberships_by_pair::Migration),
            Box::new(m20261124_000005_split_memberships_by_member_kind::Migration),
            Box::new(m20261129_000006_keep_only_inherited_memberships::Migration),
            Box::new(m20261204_000007_add_source_user_suspended::Migration),
            Box::new(m20261205_000008_create_hook_tables::Migration),
            Box::new(m20261206_000009_keep_sqlite_scratch_in_main::Migration),
        ]
    }
}
