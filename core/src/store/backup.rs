//! Backups of a SQLite store, and restoring one. A backup is taken with
//! `VACUUM INTO`: one read transaction, so it is the database as of one
//! commit, consistent while the daemon keeps writing, and compact. A
//! PostgreSQL store is backed up with PostgreSQL's own tools (`pg_dump`).
//! Restoring checks the file (SQLite's integrity check, a schema this
//! binary knows) before it replaces the database.

use super::{Result, Store, StoreError, connect_alone, sqlite_path};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use std::path::Path;

impl Store {
    /// Writes a consistent copy of the database to `file` (which must not
    /// exist yet). SQLite only.
    pub async fn backup_to(&self, file: &Path) -> Result<()> {
        if self.backend() != DatabaseBackend::Sqlite {
            return Err(StoreError::Open(
                "a PostgreSQL store is backed up with pg_dump (and restored with pg_restore or psql); idpsync backup is for SQLite".into(),
            ));
        }
        if file.exists() {
            return Err(StoreError::Open(format!(
                "{} exists already; a backup never overwrites a file",
                file.display()
            )));
        }
        let target = file
            .to_str()
            .ok_or_else(|| StoreError::Open(format!("{} is not UTF-8", file.display())))?;
        let vacuum = Statement::from_sql_and_values(
            DatabaseBackend::Sqlite,
            "VACUUM INTO ?",
            [target.into()],
        );
        // On a connection of its own: `VACUUM INTO` writes a file, which the
        // `query_only` pool behind `db` refuses, and on the writer's one
        // connection it would hold back every write for as long as it runs.
        let Some(options) = self.sqlite_file() else {
            self.db.execute_raw(vacuum).await?;
            return Ok(());
        };
        let own = connect_alone(options).await?;
        let copied = own.execute_raw(vacuum).await;
        own.close().await.ok();
        copied?;
        Ok(())
    }

    /// SQLite's `integrity_check`: `ok`, or what is wrong.
    async fn integrity(&self) -> Result<String> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "PRAGMA integrity_check",
            ))
            .await?;
        Ok(row
            .map(|row| row.try_get_by_index::<String>(0))
            .transpose()?
            .unwrap_or_default())
    }
}

/// Replaces the SQLite database at `database_url` with the backup `file`,
/// after checking it. The daemon must be stopped (its open connections
/// would keep the old file). Returns the migrations the backup lacks,
/// which the next start applies.
pub async fn restore(file: &Path, database_url: &str) -> Result<Vec<String>> {
    let Some(target) = sqlite_path(database_url) else {
        return Err(StoreError::Open(
            "a PostgreSQL store is restored with pg_restore or psql from a pg_dump; idpsync restore is for SQLite".into(),
        ));
    };
    if !file.is_file() {
        return Err(StoreError::Open(format!(
            "{} is not a file",
            file.display()
        )));
    }
    let target = Path::new(target);
    if let Some(parent) = target.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|error| {
            StoreError::Open(format!("cannot create {}: {error}", parent.display()))
        })?;
    }
    // Checked as a copy beside the database: restoring never changes the
    // backup, and a bad one replaces nothing.
    let staged = target.with_extension("restoring");
    std::fs::copy(file, &staged).map_err(|error| {
        StoreError::Open(format!(
            "cannot copy {} to {}: {error}",
            file.display(),
            staged.display()
        ))
    })?;
    let checked = check(file, &staged).await;
    let pending = match checked {
        Ok(pending) => pending,
        Err(error) => {
            remove_with_sidecars(&staged);
            return Err(error);
        }
    };
    // The old database's write-ahead log belongs to it, not to the backup.
    for suffix in ["-wal", "-shm"] {
        let mut side = target.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(side);
    }
    std::fs::rename(&staged, target)
        .map_err(|error| StoreError::Open(format!("cannot move the backup into place: {error}")))?;
    Ok(pending)
}

/// Whether the copy at `staged` of `file` is an idpsync store this binary
/// can run: the migrations it lacks.
async fn check(file: &Path, staged: &Path) -> Result<Vec<String>> {
    let not_a_backup = |error: StoreError| {
        StoreError::Open(format!(
            "{} is not an idpsync SQLite backup: {error}",
            file.display()
        ))
    };
    let url = format!("sqlite://{}", staged.display());
    let backup = Store::connect(&url, 1, None).await.map_err(not_a_backup)?;
    let integrity = backup.integrity().await.map_err(not_a_backup)?;
    if integrity != "ok" {
        return Err(StoreError::Open(format!(
            "{} fails SQLite's integrity check: {integrity}",
            file.display()
        )));
    }
    if !backup.unknown_migrations().await?.is_empty() {
        return Err(StoreError::Open(format!(
            "{} was written by a newer idpsync; restore it with that version",
            file.display()
        )));
    }
    let pending = backup.pending_migrations().await?;
    backup.db.clone().close().await?;
    Ok(pending)
}

fn remove_with_sidecars(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(side);
    }
}
