//! Rebuilds `effective_memberships` keyed by `(group_id, user_id)`: no
//! surrogate id, no connection column, no foreign keys (on SQLite a
//! `WITHOUT ROWID` table, the key being the row). The table is derived: the
//! reconciler recomputes it from the direct edges and deletes the rows of a
//! removed user or group itself. On a first sync of a large tenant each of
//! its 1.3M rows had cost a rowid B-tree insert, a second unique index and
//! two foreign-key probes (a trigger per row on PostgreSQL).

use crate::script::run;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000004_key_effective_memberships_by_pair"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let create = match manager.get_database_backend() {
            DatabaseBackend::Sqlite => {
                "CREATE TABLE effective_memberships_keyed (group_id BIGINT NOT NULL, \
                 user_id BIGINT NOT NULL, PRIMARY KEY (group_id, user_id)) WITHOUT ROWID"
            }
            _ => {
                "CREATE TABLE effective_memberships_keyed (group_id BIGINT NOT NULL, \
                 user_id BIGINT NOT NULL, PRIMARY KEY (group_id, user_id))"
            }
        };
        run(
            manager,
            &[
                create,
                "INSERT INTO effective_memberships_keyed (group_id, user_id) \
                 SELECT DISTINCT group_id, user_id FROM effective_memberships",
                "DROP TABLE effective_memberships",
                "ALTER TABLE effective_memberships_keyed RENAME TO effective_memberships",
                "CREATE INDEX ix_effective_memberships_user ON effective_memberships (user_id)",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let create = match manager.get_database_backend() {
            DatabaseBackend::Sqlite => {
                "CREATE TABLE effective_memberships_old (id INTEGER PRIMARY KEY AUTOINCREMENT, \
                 connection_id VARCHAR NOT NULL, \
                 group_id BIGINT NOT NULL REFERENCES source_groups (id) ON DELETE CASCADE, \
                 user_id BIGINT NOT NULL REFERENCES source_users (id) ON DELETE CASCADE)"
            }
            _ => {
                "CREATE TABLE effective_memberships_old (id BIGSERIAL PRIMARY KEY, \
                 connection_id VARCHAR NOT NULL, \
                 group_id BIGINT NOT NULL REFERENCES source_groups (id) ON DELETE CASCADE, \
                 user_id BIGINT NOT NULL REFERENCES source_users (id) ON DELETE CASCADE)"
            }
        };
        run(
            manager,
            &[
                create,
                "INSERT INTO effective_memberships_old (connection_id, group_id, user_id) \
                 SELECT g.connection_id, e.group_id, e.user_id FROM effective_memberships e \
                 JOIN source_groups g ON g.id = e.group_id",
                "DROP TABLE effective_memberships",
                "ALTER TABLE effective_memberships_old RENAME TO effective_memberships",
                "CREATE UNIQUE INDEX ux_effective_memberships ON effective_memberships (group_id, user_id)",
                "CREATE INDEX ix_effective_memberships_user ON effective_memberships (user_id)",
            ],
        )
        .await
    }
}
