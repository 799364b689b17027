//! `GET /api/v1/events?after=<cursor>&limit=N&wait=<seconds>`: the ordered
//! event feed. With `wait`, the request is held until an event after the
//! cursor exists (woken the moment a transaction commits) or the wait ends.

use super::Query;
use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::events::{self, Event, FALLBACK_POLL};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

/// The longest a request may wait.
pub const MAX_WAIT_SECS: u64 = 60;

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    pub after: Option<i64>,
    pub limit: Option<u64>,
    pub wait: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedPage {
    pub events: Vec<Event>,
    /// Pass as `after` next time.
    pub cursor: i64,
}

pub async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<FeedQuery>,
) -> Result<axum::Json<FeedPage>, ApiError> {
    caller.can_read()?;
    Ok(axum::Json(page(&state, &query).await?))
}

/// The page `query` asks for, held up to its `wait` until an event exists
/// (also the console's live feed).
pub(crate) async fn page(state: &AppState, query: &FeedQuery) -> Result<FeedPage, ApiError> {
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let wait = Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECS));
    let deadline = Instant::now() + wait;
    // Subscribe before reading so a commit between the read and the wait
    // still wakes us.
    let mut wake = state.bus.subscribe();
    loop {
        let found = events::read_after(state.store.db(), after, limit).await?;
        let now = Instant::now();
        if !found.is_empty() || now >= deadline || state.bus.is_closed() {
            let cursor = found.last().map_or(after, |event| event.id);
            return Ok(FeedPage {
                events: found,
                cursor,
            });
        }
        let nap = FALLBACK_POLL.min(deadline - now);
        tokio::select! {
            changed = wake.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(nap).await;
                }
            }
            _ = tokio::time::sleep(nap) => {}
            _ = state.bus.closed() => {}
        }
    }
}
