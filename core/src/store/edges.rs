//! Reads of the direct-edge tables as `(group_id, member id)` pairs, in key
//! order: the reconciler, the apply and the SCIM service all read edges this
//! way.

use crate::store::entity::{group_membership, user_membership};
use sea_orm::sea_query::IntoCondition;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// `(group_id, user_id)` of the user edges matching `filter`.
pub async fn user_pairs(
    db: &impl ConnectionTrait,
    filter: impl IntoCondition,
) -> Result<Vec<(i64, i64)>, DbErr> {
    user_membership::Entity::find()
        .select_only()
        .columns([
            user_membership::Column::GroupId,
            user_membership::Column::UserId,
        ])
        .filter(filter)
        .order_by_asc(user_membership::Column::GroupId)
        .order_by_asc(user_membership::Column::UserId)
        .into_tuple()
        .all(db)
        .await
}

/// `(group_id, member_group_id)` of the nested-group edges matching `filter`.
pub async fn group_pairs(
    db: &impl ConnectionTrait,
    filter: impl IntoCondition,
) -> Result<Vec<(i64, i64)>, DbErr> {
    group_membership::Entity::find()
        .select_only()
        .columns([
            group_membership::Column::GroupId,
            group_membership::Column::MemberGroupId,
        ])
        .filter(filter)
        .order_by_asc(group_membership::Column::GroupId)
        .order_by_asc(group_membership::Column::MemberGroupId)
        .into_tuple()
        .all(db)
        .await
}
