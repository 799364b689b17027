//! `/api/v1`: the admin REST API. Reads need a token with `admin` or `read`;
//! changes need `admin` (device changes also accept `devices`).

pub(crate) mod connections;
pub(crate) mod devices;
mod directory;
pub(crate) mod events;
pub mod openapi;
pub(crate) mod reload;
pub(crate) mod runs;

use super::AppState;
use super::error::{ApiError, rejection};
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::handler::Handler;
use axum::http::Method;
use axum::http::request::Parts;
use axum::routing::{MethodRouter, get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    endpoints()
        .into_router()
        .fallback(|| async { ApiError::not_found("no such endpoint") })
}

/// Every endpoint of `/api/v1`, as (method, path) and handler. The router is
/// built from this list and the OpenAPI test compares the document with
/// it, so an endpoint cannot be served without being documented.
pub fn endpoints() -> Endpoints {
    Endpoints::default()
        .get("/openapi.json", openapi::document)
        .get("/connections", connections::list)
        .get("/connections/{id}", connections::one)
        .post("/connections/{id}/import", connections::import)
        .post("/connections/{id}/sync", connections::sync)
        .post("/connections/{id}/check", connections::check)
        .get("/runs", runs::list)
        .get("/runs/{id}", runs::one)
        .post("/runs/{id}/approve", runs::approve)
        .post("/runs/{id}/reject", runs::reject)
        .get("/users", directory::users)
        .get("/users/{id}", directory::user)
        .get("/groups", directory::groups)
        .get("/groups/{id}/members", directory::group_members)
        .get("/acl-groups", directory::acl_groups)
        .get("/acl-groups/{name}/members", directory::acl_group_members)
        .get("/devices", devices::list)
        .post("/devices", devices::register)
        .get("/devices/{id}", devices::one)
        .post("/devices/{id}/{action}", devices::change_status)
        .get("/events", events::feed)
        .post("/reload", reload::reload)
}

/// The endpoints of an API, each a method and a path with its handler.
#[derive(Default)]
pub struct Endpoints {
    routes: std::collections::BTreeMap<&'static str, MethodRouter<AppState>>,
    listed: Vec<(Method, &'static str)>,
}

impl Endpoints {
    fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::GET, path, get(handler))
    }

    fn post<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.add(Method::POST, path, post(handler))
    }

    fn add(mut self, method: Method, path: &'static str, route: MethodRouter<AppState>) -> Self {
        let merged = match self.routes.remove(path) {
            Some(existing) => existing.merge(route),
            None => route,
        };
        self.routes.insert(path, merged);
        self.listed.push((method, path));
        self
    }

    /// (method, path) of every endpoint, in the order listed.
    pub fn listed(&self) -> &[(Method, &'static str)] {
        &self.listed
    }

    fn into_router(self) -> Router<AppState> {
        self.routes
            .into_iter()
            .fold(Router::new(), |router, (path, route)| {
                router.route(path, route)
            })
    }
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
