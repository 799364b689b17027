//! Secondary indexes set aside while a bulk insert runs (SQLite).
//!
//! The edge tables are keyed by `(group_id, member)` and filled in that
//! order, so their keys are appended; their by-user index is not: a
//! million edges inserted group by group put each index entry at a random
//! place, one B-tree descent per row. That descent was the largest single
//! cost of a first sync (`sqlite3BtreeIndexMoveto`, 10% of the pull's CPU).
//! Building the index after the rows sorts them once instead. In the
//! apply of a first sync of a million edges, the edges phase went from
//! 5.8–6.8 s to 3.8–4.9 s, the build included (runs alternating on one
//! slow host; a Python experiment on SQLite agreed: 6.9 s against 3.9 s).
//!
//! So when an insert brings at least as many rows as the table holds (a
//! first sync, a new tenant larger than what is stored), the index is
//! dropped before it and created again after it, in the same transaction.
//! Readers keep the committed index (WAL gives them the snapshot from
//! before the transaction), and a transaction that fails rolls the drop
//! back with everything else. Below that, rebuilding over the rows already
//! there costs about what it saves (the two were level at one new row per
//! three stored), and small inserts never pay for the check.
//!
//! PostgreSQL is left alone: its `DROP INDEX` locks the table against
//! readers until the transaction commits.
//!
//! The effective memberships' by-user index gains nothing this way: their
//! insert (from the recursive query) took 3.0 s without the index and 3.6 s
//! with it, and building the index afterwards took 1.5 s.

use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, Statement};

/// A secondary index of a table, as the migrations create it.
#[derive(Debug)]
pub struct SecondaryIndex {
    pub name: &'static str,
    pub table: &'static str,
    pub columns: &'static str,
}

/// The user edges by user (migration 5).
pub const USER_MEMBERSHIPS_BY_USER: SecondaryIndex = SecondaryIndex {
    name: "ix_user_memberships_user",
    table: "user_memberships",
    columns: "user_id",
};

/// Inserts smaller than this keep the index (and skip the count).
pub const BULK_ROWS: u64 = 10_000;

/// Whether an index set aside for an insert must be built again.
#[must_use = "an index set aside must be restored before the transaction commits"]
#[derive(Debug)]
pub struct SetAside {
    index: Option<&'static SecondaryIndex>,
}

impl SecondaryIndex {
    /// Drops this index if inserting `incoming` rows into its table is
    /// cheaper with the index built afterwards: SQLite only, at least
    /// [`BULK_ROWS`] rows, and no fewer than the table holds. Call
    /// [`SetAside::restore`] after the insert, in the same transaction.
    pub async fn set_aside_for(
        &'static self,
        db: &impl ConnectionTrait,
        incoming: u64,
    ) -> Result<SetAside, DbErr> {
        let keep = SetAside { index: None };
        if db.get_database_backend() != DatabaseBackend::Sqlite || incoming < BULK_ROWS {
            return Ok(keep);
        }
        // Counts no further than `incoming` rows: the answer is only
        // whether the table holds fewer.
        let stored = db
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                format!(
                    "SELECT COUNT(*) AS n FROM (SELECT 1 FROM {} LIMIT {incoming})",
                    self.table
                ),
            ))
            .await?
            .map(|row| row.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if stored as u64 >= incoming {
            return Ok(keep);
        }
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {}", self.name))
            .await?;
        Ok(SetAside { index: Some(self) })
    }

    /// The statement that creates this index, as migrated.
    fn create_sql(&self) -> String {
        format!(
            "CREATE INDEX {} ON {} ({})",
            self.name, self.table, self.columns
        )
    }
}

impl SetAside {
    /// Whether the index was dropped (and is to be built again).
    pub fn is_set_aside(&self) -> bool {
        self.index.is_some()
    }

    /// Builds the index again if it was dropped.
    pub async fn restore(self, db: &impl ConnectionTrait) -> Result<(), DbErr> {
        if let Some(index) = self.index {
            db.execute_unprepared(&index.create_sql()).await?;
        }
        Ok(())
    }
}
