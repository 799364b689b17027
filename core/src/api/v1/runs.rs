//! Sync runs: list, one, and approving a held run.

use super::{PageOf, PageQuery, Path, Query};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::reconcile::Outcome;
use crate::store::entity::status::RunStatus;
use crate::store::entity::sync_run;
use axum::extract::State;
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RunView {
    pub id: i64,
    pub connection_id: String,
    pub trigger: String,
    pub mode: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: serde_json::Value,
    pub error: Option<String>,
}

impl From<sync_run::Model> for RunView {
    fn from(model: sync_run::Model) -> Self {
        RunView {
            id: model.id,
            connection_id: model.connection_id,
            trigger: model.trigger,
            mode: model.mode,
            status: model.status,
            started_at: model.started_at,
            finished_at: model.finished_at,
            counts: serde_json::from_str(&model.counts).unwrap_or_default(),
            error: model.error,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct RunFilter {
    pub connection: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: Option<u64>,
    pub after: Option<i64>,
}

/// Runs, newest first; `after` pages towards older runs.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<RunFilter>,
) -> Result<axum::Json<PageOf<RunView>>, ApiError> {
    caller.can_read()?;
    let mut query = sync_run::Entity::find().order_by_desc(sync_run::Column::Id);
    if let Some(connection) = &filter.connection {
        query = query.filter(sync_run::Column::ConnectionId.eq(connection));
    }
    if let Some(status) = filter.status {
        query = query.filter(sync_run::Column::Status.eq(status));
    }
    if let Some(after) = filter.after {
        query = query.filter(sync_run::Column::Id.lt(after));
    }
    let limit = PageQuery {
        limit: filter.limit,
        after: filter.after,
    }
    .limit();
    let items: Vec<RunView> = query
        .limit(limit)
        .all(state.store.db())
        .await?
        .into_iter()
        .map(RunView::from)
        .collect();
    Ok(axum::Json(PageOf::new(items, limit, |run| run.id)))
}

pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<RunView>, ApiError> {
    caller.can_read()?;
    let run = sync_run::Entity::find_by_id(id)
        .one(state.store.db())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("sync run {id} not found")))?;
    Ok(axum::Json(run.into()))
}

/// Applies a held run's change set if the state has not moved since (else 409).
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<axum::Json<Outcome>, ApiError> {
    caller.can_admin()?;
    Ok(axum::Json(state.engine().reconciler.approve(id).await?))
}

/// `POST /runs/{id}/reject`: a held run is not applied.
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<axum::http::StatusCode, ApiError> {
    caller.can_admin()?;
    let by = format!("token {}", caller.0.name);
    state.engine().reconciler.reject(id, &by).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
