//! `/api/v1`: the admin REST API. Reads need a token with `admin` or `read`;
//! changes need `admin` (device changes also accept `devices`).

mod connections;
mod devices;
mod directory;
mod events;
pub mod openapi;
mod runs;

use super::AppState;
use super::error::{ApiError, rejection};
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/connections", get(connections::list))
        .route("/connections/{id}", get(connections::one))
        .route("/connections/{id}/import", post(connections::import))
        .route("/connections/{id}/sync", post(connections::sync))
        .route("/connections/{id}/check", post(connections::check))
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::one))
        .route("/runs/{id}/approve", post(runs::approve))
        .route("/users", get(directory::users))
        .route("/users/{id}", get(directory::user))
        .route("/groups", get(directory::groups))
        .route("/groups/{id}/members", get(directory::group_members))
        .route("/acl-groups", get(directory::acl_groups))
        .route(
            "/acl-groups/{name}/members",
            get(directory::acl_group_members),
        )
        .route("/devices", get(devices::list).post(devices::register))
        .route("/devices/{id}", get(devices::one))
        .route("/devices/{id}/{action}", post(devices::change_status))
        .route("/events", get(events::feed))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
}

/// Keyset paging: `limit` (1..=1000, default 100) items with id > `after`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PageQuery {
    pub limit: Option<u64>,
    pub after: Option<i64>,
}

impl PageQuery {
    pub fn limit(&self) -> u64 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }

    pub fn after(&self) -> i64 {
        self.after.unwrap_or(0)
    }
}

/// A page of items and the cursor of the next page, if there may be one.
#[derive(Debug, Serialize)]
pub struct PageOf<T> {
    pub items: Vec<T>,
    pub next_after: Option<i64>,
}

impl<T> PageOf<T> {
    pub fn new(items: Vec<T>, limit: u64, id_of: impl Fn(&T) -> i64) -> Self {
        let next_after = if items.len() as u64 == limit {
            items.last().map(id_of)
        } else {
            None
        };
        PageOf { items, next_after }
    }
}

/// `Query<T>` whose rejection is the API's error envelope.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(rejection)
    }
}

/// `Json<T>` whose rejection is the API's error envelope.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|axum::Json(value)| Json(value))
            .map_err(rejection)
    }
}

/// `Path<T>` whose rejection is the API's error envelope.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(rejection)
    }
}
