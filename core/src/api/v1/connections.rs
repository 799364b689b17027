//! Connections with their health and last runs; importing a snapshot.

use super::runs::RunView;
use super::{Json, Path, Query};
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::reconcile::{Outcome, Snapshot, SourceInput, SubmitOptions, Trigger};
use crate::store::entity::status::Health;
use crate::store::entity::{connection, source_user, sync_run};
use axum::extract::State;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};

/// How many recent runs a connection shows.
const RECENT_RUNS: u64 = 5;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub kind: String,
    pub configured: bool,
    pub health: Health,
    pub consecutive_failures: i32,
    /// While backing off after failures: the earliest next scheduled run.
    pub next_run_at: Option<chrono::DateTime<chrono::Utc>>,
    pub state_version: i64,
    pub has_delta_cursor: bool,
    pub users: u64,
    pub active_users: u64,
    pub last_runs: Vec<RunView>,
}

pub(crate) async fn view(
    state: &AppState,
    row: connection::Model,
) -> Result<ConnectionView, ApiError> {
    let db = state.store.db();
    let users = source_user::Entity::find()
        .filter(source_user::Column::ConnectionId.eq(&row.id))
        .count(db)
        .await?;
    let active_users = source_user::Entity::find()
        .filter(source_user::Column::ConnectionId.eq(&row.id))
        .filter(source_user::Column::Active.eq(true))
        .count(db)
        .await?;
    let last_runs = sync_run::Entity::find()
        .filter(sync_run::Column::ConnectionId.eq(&row.id))
        .order_by_desc(sync_run::Column::Id)
        .limit(RECENT_RUNS)
        .all(db)
        .await?
        .into_iter()
        .map(RunView::from)
        .collect();
    Ok(ConnectionView {
        configured: state.engine().config.connection(&row.id).is_some(),
        id: row.id,
        kind: row.kind,
        health: row.health,
        consecutive_failures: row.consecutive_failures,
        next_run_at: row.next_run_at,
        state_version: row.state_version,
        has_delta_cursor: row.delta_cursor.is_some(),
        users,
        active_users,
        last_runs,
    })
}

/// Every connection known to the store, with health and its last runs.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Vec<ConnectionView>>, ApiError> {
    caller.can_read()?;
    let rows = connection::Entity::find()
        .order_by_asc(connection::Column::Id)
        .all(state.store.db())
        .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        views.push(view(&state, row).await?);
    }
    Ok(axum::Json(views))
}

pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<ConnectionView>, ApiError> {
    caller.can_read()?;
    let row = connection::Entity::find_by_id(&id)
        .one(state.store.db())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("connection \"{id}\" not found")))?;
    Ok(axum::Json(view(&state, row).await?))
}

#[derive(Debug, Deserialize)]
pub struct ImportQuery {
    #[serde(default)]
    pub dry_run: bool,
}

/// Reconciles a posted snapshot (users, groups, memberships) into the
/// connection, through the safety gate; `?dry_run=true` returns the plan.
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ImportQuery>,
    Json(snapshot): Json<Snapshot>,
) -> Result<axum::Json<Outcome>, ApiError> {
    caller.can_admin()?;
    let mut options = SubmitOptions::new(Trigger::Api);
    options.dry_run = query.dry_run;
    let outcome = state
        .engine()
        .reconciler
        .submit(&id, SourceInput::Snapshot(snapshot), options)
        .await?;
    Ok(axum::Json(outcome))
}

#[derive(Debug, Deserialize)]
pub struct SyncQuery {
    #[serde(default)]
    pub dry_run: bool,
    /// Ignore the delta cursor and pull everything.
    #[serde(default)]
    pub full: bool,
}

/// Runs a pull sync now and answers with its report (also when it failed).
pub async fn sync(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<SyncQuery>,
) -> Result<axum::Json<crate::sync::SyncReport>, ApiError> {
    caller.can_admin()?;
    let report = state
        .engine()
        .sync
        .run(
            &id,
            Trigger::Api,
            query.dry_run,
            query.full,
            std::future::pending(),
        )
        .await
        .map_err(sync_error)?;
    Ok(axum::Json(report))
}

/// "Test connection": credentials and reachability.
pub async fn check(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    caller.can_admin()?;
    match state.engine().sync.check(&id).await.map_err(sync_error)? {
        Ok(capabilities) => Ok(axum::Json(serde_json::json!({
            "ok": true, "summary": capabilities.summary, "delta": capabilities.delta,
            "nested_groups": capabilities.nested_groups, "page_size": capabilities.page_size
        }))),
        Err(error) => Ok(axum::Json(
            serde_json::json!({"ok": false, "error": error.to_string()}),
        )),
    }
}

fn sync_error(error: crate::sync::SyncError) -> ApiError {
    use crate::sync::SyncError;
    match error {
        SyncError::UnknownConnection(_) => ApiError::not_found(error.to_string()),
        SyncError::NotPulled(_) | SyncError::NoDriver(_) | SyncError::Settings(_) => {
            ApiError::bad_request(error.to_string())
        }
        SyncError::AlreadyRunning(_) => ApiError::conflict(error.to_string()),
        SyncError::Store(store) => store.into(),
        SyncError::Reconcile(reconcile) => reconcile.into(),
        // A run's own failures come back as reports; these are what could
        // not be recorded.
        SyncError::Pull(_) | SyncError::Unrecorded { .. } => ApiError::internal(error),
    }
}
