//! A fake JumpCloud (feature `fake`) that behaves like the real API in what
//! the driver relies on: `x-api-key` (401 `{"message":"Unauthorized"}`),
//! `x-org-id` for multi-tenant keys (403 without it), `skip`/`limit` paging
//! with `limit` at most 100 (400 above), v1 `{"totalCount", "results"}` with
//! `_id`, v2 bare arrays with `x-total-count`, graph edges
//! `{"to": {"id", "type": "user"}}`, and 429 with `Retry-After` and
//! `X-RateLimit-*`, `account_locked` for users in [`FakeJumpCloud::locked`],
//! and `{"message": "Not Found"}` for unknown routes. Faults come from the
//! SDK's fake kit; pages are named `users`, `groups` and `members`. A new
//! user may take a removed user's username: edit `dataset`.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use idpsync_driver::fake::{Dataset, FakeServer, FakeUser, FaultInjector, json_response, serve};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct FakeJumpCloud {
    pub api_key: String,
    /// When set, requests must carry this `x-org-id`.
    pub org_id: Option<String>,
    pub dataset: Arc<Mutex<Dataset>>,
    pub faults: FaultInjector,
    /// Users (by index) locked out by failed logins.
    pub locked: Arc<Mutex<std::collections::HashSet<usize>>>,
}

impl FakeJumpCloud {
    pub fn new(dataset: Dataset) -> Self {
        FakeJumpCloud {
            api_key: "fake-jumpcloud-key".into(),
            org_id: None,
            dataset: Arc::new(Mutex::new(dataset)),
            faults: FaultInjector::default(),
            locked: Arc::default(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/systemusers", get(users))
            .route("/api/v2/usergroups", get(groups))
            .route("/api/v2/usergroups/{id}/members", get(members))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"message": "Not Found"})),
                )
            })
            .with_state(self.clone())
    }

    pub async fn start(&self) -> std::io::Result<FakeServer> {
        serve(self.router()).await
    }

    /// The `[connections.jumpcloud]` table pointing at this fake.
    pub fn settings(&self, base_url: &str, page_size: u32) -> Value {
        let mut settings =
            json!({"api_key": self.api_key, "base_url": base_url, "page_size": page_size});
        if let Some(org) = &self.org_id {
            settings["org_id"] = org.clone().into();
        }
        settings
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

/// Auth, limits and faults shared by every call; returns (skip, limit).
async fn gate(
    fake: &FakeJumpCloud,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    resource: &str,
) -> Result<(usize, usize), Response> {
    let limit: usize = query
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let skip: usize = query.get("skip").and_then(|v| v.parse().ok()).unwrap_or(0);
    if let Some(answer) = fake
        .faults
        .before(resource, skip / limit.max(1), |secs| {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            let headers = response.headers_mut();
            if let Some(secs) = secs {
                headers.insert("retry-after", HeaderValue::from(secs));
            }
            headers.insert("x-ratelimit-limit", HeaderValue::from_static("100"));
            headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            response
        })
        .await
    {
        return Err(answer);
    }
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(fake.api_key.as_str()) {
        return Err(error(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    if let Some(org) = &fake.org_id
        && headers.get("x-org-id").and_then(|v| v.to_str().ok()) != Some(org.as_str())
    {
        return Err(error(
            StatusCode::FORBIDDEN,
            "Forbidden: organization not specified",
        ));
    }
    if limit > 100 {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "limit must be less than or equal to 100",
        ));
    }
    Ok((skip, limit))
}

async fn users(
    State(fake): State<FakeJumpCloud>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (skip, limit) = match gate(&fake, &headers, &query, "users").await {
        Ok(paging) => paging,
        Err(answer) => return answer,
    };
    let (total, results): (usize, Vec<Value>) = {
        let dataset = fake.dataset.lock().unwrap_or_else(|e| e.into_inner());
        let locked = fake
            .locked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let results = dataset
            .users
            .iter()
            .enumerate()
            .skip(skip)
            .take(limit)
            .map(|(index, user)| {
                json!({
                    "_id": user.id, "id": user.id, "username": user.user_name.split('@').next().unwrap_or_default(),
                    "email": user.email, "firstname": user.given_name, "lastname": user.family_name,
                    "activated": true, "suspended": !user.active,
                    "state": if user.active { "ACTIVATED" } else { "SUSPENDED" },
                    "account_locked": locked.contains(&index), "mfa": {"configured": false}
                })
            })
            .collect();
        (dataset.users.len(), results)
    };
    let body = json!({"totalCount": total, "results": results}).to_string();
    json_response(
        StatusCode::OK,
        fake.faults.mangle("users", skip / limit.max(1), body),
    )
}

async fn groups(
    State(fake): State<FakeJumpCloud>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (skip, limit) = match gate(&fake, &headers, &query, "groups").await {
        Ok(paging) => paging,
        Err(answer) => return answer,
    };
    let (total, items): (usize, Vec<Value>) = {
        let dataset = fake.dataset.lock().unwrap_or_else(|e| e.into_inner());
        let items = dataset
            .groups
            .iter()
            .skip(skip)
            .take(limit)
            .map(|g| json!({"id": g.id, "name": g.name, "type": "user_group"}))
            .collect();
        (dataset.groups.len(), items)
    };
    let mut response = json_response(
        StatusCode::OK,
        fake.faults.mangle(
            "groups",
            skip / limit.max(1),
            Value::Array(items).to_string(),
        ),
    );
    response
        .headers_mut()
        .insert("x-total-count", HeaderValue::from(total));
    response
}

async fn members(
    State(fake): State<FakeJumpCloud>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (skip, limit) = match gate(&fake, &headers, &query, "members").await {
        Ok(paging) => paging,
        Err(answer) => return answer,
    };
    let items: Option<Vec<Value>> = {
        let dataset = fake.dataset.lock().unwrap_or_else(|e| e.into_inner());
        dataset.groups.iter().position(|g| g.id == id).map(|group| {
            dataset
                .members_of(group)
                .into_iter()
                .skip(skip)
                .take(limit)
                .map(|user| json!({"to": {"id": dataset.users[user].id, "type": "user", "attributes": null}, "attributes": null}))
                .collect()
        })
    };
    match items {
        Some(items) => json_response(
            StatusCode::OK,
            fake.faults.mangle(
                "members",
                skip / limit.max(1),
                Value::Array(items).to_string(),
            ),
        ),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

impl idpsync_driver::compliance::CompliantFake for FakeJumpCloud {
    type Kind = crate::JumpCloudFactory;
    /// The documented maximum `limit` of both listings.
    const MAX_PAGE_SIZE: u32 = 100;
    /// User groups hold users (and systems), not groups.
    const NESTED_GROUPS: bool = false;

    /// Users, user groups and each group's members, 100 a call.
    fn minimum_calls(dataset: &Dataset) -> u64 {
        use idpsync_driver::compliance::{member_listings, pages};
        pages(dataset.users.len(), 100)
            + pages(dataset.groups.len(), 100)
            + member_listings(dataset, 100)
    }

    fn kind() -> Self::Kind {
        crate::JumpCloudFactory
    }

    fn new(dataset: Dataset) -> Self {
        FakeJumpCloud::new(dataset)
    }

    async fn start(&self) -> std::io::Result<FakeServer> {
        FakeJumpCloud::start(self).await
    }

    fn settings(&self, base_url: &str, page_size: u32) -> Value {
        FakeJumpCloud::settings(self, base_url, page_size)
    }

    fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    /// An API key: it does not expire.
    fn tokens(&self) -> Option<&idpsync_driver::fake::FakeTokens> {
        None
    }

    fn delete_user(&self, id: &str) {
        self.dataset
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove_user_by_id(id);
    }

    fn create_user(&self, user: FakeUser) {
        self.dataset
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_user(user);
    }

    /// JumpCloud's `username` is a login name, not an address.
    fn expected_user_name(user: &FakeUser) -> String {
        user.user_name.split('@').next().unwrap_or_default().into()
    }
}
