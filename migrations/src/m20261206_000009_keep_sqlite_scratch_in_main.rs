//! On SQLite, the scratch tables the nesting walk fills and empties within
//! one transaction (`idpsync_affected_groups`, `idpsync_fresh_groups`,
//! `idpsync_wanted_inherited`) become ordinary tables of the main schema;
//! they were `TEMPORARY` tables each connection made for itself.
//!
//! Why: SQLite changes `temp_store` inside a transaction only on a
//! connection that never opened its temporary database, and the apply
//! switches it to `file` for the one statement that needs it, the by-user
//! index build of a bulk first sync, whose sort otherwise grows in memory
//! (1M users, 10M edges: the process's peak). One writer at a time and a
//! transaction that empties the tables before it ends make them safe to
//! share. PostgreSQL keeps temporary tables (shared ones there would make
//! concurrent applies wait on each other's keys), so this step is empty
//! there.

use crate::script::run;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000009_keep_sqlite_scratch_in_main"
    }
}

const TABLES: [&str; 3] = [
    "idpsync_affected_groups",
    "idpsync_fresh_groups",
    "idpsync_wanted_inherited",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        run(
            manager,
            &[
                "CREATE TABLE idpsync_affected_groups (group_id BIGINT PRIMARY KEY)",
                "CREATE TABLE idpsync_fresh_groups (group_id BIGINT PRIMARY KEY)",
                "CREATE TABLE idpsync_wanted_inherited (group_id BIGINT NOT NULL, \
                 user_id BIGINT NOT NULL, PRIMARY KEY (group_id, user_id)) WITHOUT ROWID",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Sqlite {
            return Ok(());
        }
        let drops: Vec<String> = TABLES
            .iter()
            .map(|table| format!("DROP TABLE {table}"))
            .collect();
        let drops: Vec<&str> = drops.iter().map(String::as_str).collect();
        run(manager, &drops).await
    }
}
