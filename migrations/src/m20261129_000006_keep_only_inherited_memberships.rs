//! Stores only the memberships that nesting adds: `inherited_memberships`
//! holds a user's membership of a group through a nested group when the user
//! is not also a direct member, and `effective_memberships` becomes a view,
//! the direct edges (`user_memberships`) and the inherited ones side by side
//! (`UNION ALL`: the two are disjoint by construction, so both databases
//! push a reader's filter into each part and use its indexes).
//!
//! Before, every direct edge was stored twice, once as an edge and once as
//! an effective membership: on a first sync of a million edges the second
//! copy was a million more rows in two B-trees, the larger part of the
//! apply's effective-membership step.

use crate::script::run;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261129_000006_keep_only_inherited_memberships"
    }
}

/// The view readers use; the same text is the reconciler's definition of
/// effective membership.
const VIEW: &str = "CREATE VIEW effective_memberships (group_id, user_id) AS \
     SELECT group_id, user_id FROM user_memberships \
     UNION ALL SELECT group_id, user_id FROM inherited_memberships";

/// A table keyed by the pair, as steps 4 and 5 key theirs.
fn keyed_table(backend: DatabaseBackend, name: &str) -> String {
    let without_rowid = match backend {
        DatabaseBackend::Sqlite => " WITHOUT ROWID",
        _ => "",
    };
    format!(
        "CREATE TABLE {name} (group_id BIGINT NOT NULL, user_id BIGINT NOT NULL, \
         PRIMARY KEY (group_id, user_id)){without_rowid}"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let create = keyed_table(manager.get_database_backend(), "inherited_memberships");
        run(
            manager,
            &[
                &create,
                "CREATE INDEX ix_inherited_memberships_user ON inherited_memberships (user_id)",
                "INSERT INTO inherited_memberships (group_id, user_id) \
                 SELECT e.group_id, e.user_id FROM effective_memberships e \
                 WHERE NOT EXISTS (SELECT 1 FROM user_memberships d \
                                   WHERE d.group_id = e.group_id AND d.user_id = e.user_id)",
                "DROP TABLE effective_memberships",
                VIEW,
            ],
        )
        .await
    }

    /// Back to step 4's table, holding every effective membership.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let create = keyed_table(
            manager.get_database_backend(),
            "effective_memberships_keyed",
        );
        run(
            manager,
            &[
                &create,
                "INSERT INTO effective_memberships_keyed (group_id, user_id) \
                 SELECT group_id, user_id FROM effective_memberships",
                "DROP VIEW effective_memberships",
                "DROP TABLE inherited_memberships",
                "ALTER TABLE effective_memberships_keyed RENAME TO effective_memberships",
                "CREATE INDEX ix_effective_memberships_user ON effective_memberships (user_id)",
            ],
        )
        .await
    }
}
