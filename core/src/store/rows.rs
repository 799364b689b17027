//! Whole rows of a connection's users and groups by external id, read in
//! chunks: what the reconciler hands a SCIM write back and what a user edit
//! starts from.

use crate::store::entity::{source_group, source_user};
use idpsync_driver::SourceUser;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

/// External ids per query.
const CHUNK: usize = 500;

/// The connection's users with these external ids (missing ones are absent).
pub async fn users_by_external_id<'a>(
    db: &impl ConnectionTrait,
    connection: &str,
    external_ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<source_user::Model>, DbErr> {
    by_external_id::<source_user::Entity>(
        db,
        source_user::Column::ConnectionId.eq(connection),
        source_user::Column::ExternalId,
        external_ids,
    )
    .await
}

/// A stored user as the record it was written from (the same content
/// hash, when nothing changed).
pub fn source_user(row: &source_user::Model) -> SourceUser {
    SourceUser {
        external_id: row.external_id.clone(),
        user_name: row.user_name.clone(),
        display_name: row.display_name.clone(),
        given_name: row.given_name.clone(),
        family_name: row.family_name.clone(),
        emails: serde_json::from_str(&row.emails).unwrap_or_default(),
        active: row.active,
        suspended: row.suspended,
        raw_status: row.raw_status.clone(),
        attributes: serde_json::from_str(&row.attributes).unwrap_or_default(),
    }
}

/// The connection's groups with these external ids (missing ones are absent).
pub async fn groups_by_external_id<'a>(
    db: &impl ConnectionTrait,
    connection: &str,
    external_ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<source_group::Model>, DbErr> {
    by_external_id::<source_group::Entity>(
        db,
        source_group::Column::ConnectionId.eq(connection),
        source_group::Column::ExternalId,
        external_ids,
    )
    .await
}

async fn by_external_id<'a, E>(
    db: &impl ConnectionTrait,
    of_connection: sea_orm::sea_query::SimpleExpr,
    external_id: E::Column,
    external_ids: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<E::Model>, DbErr>
where
    E: EntityTrait,
    E::Model: Send + Sync,
{
    let ids: Vec<&str> = external_ids.into_iter().collect();
    let mut rows = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        rows.extend(
            E::find()
                .filter(of_connection.clone())
                .filter(external_id.is_in(chunk.iter().copied()))
                .all(db)
                .await?,
        );
    }
    Ok(rows)
}
