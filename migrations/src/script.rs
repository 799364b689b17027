//! Raw-SQL steps for migrations that rebuild a table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

/// Runs `statements` as one script on one connection: on SQLite the
/// statements would otherwise go to any connection of the pool, and one
/// whose schema predates a `DROP TABLE` refuses a later rename.
pub async fn run(manager: &SchemaManager<'_>, statements: &[&str]) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(&statements.join(";\n"))
        .await?;
    Ok(())
}
