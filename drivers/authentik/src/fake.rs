//! A fake authentik API v3 (feature `fake`) that behaves as authentik (a
//! Django REST framework application) documents and does, in what the
//! driver relies on:
//!
//! * `Authorization: Bearer <token>`: a wrong token is a 401
//!   `{"detail": "Token invalid/expired"}`; a user without the view
//!   permissions gets 403 `{"detail": "You do not have permission to
//!   perform this action."}`.
//! * `page` (from 1) and `page_size`, clamped silently to `max_page_size`
//!   (100 unless changed) as DRF clamps it; a page past the last is a 404
//!   `{"detail": "Invalid page."}`; every answer has the `pagination`
//!   object (`next` 0 on the last page, `previous`, `count`, `current`,
//!   `total_pages`, `start_index`, `end_index`) and `results`.
//! * `/api/v3/core/users/`: numeric `pk`, `uuid`, `username`, `name`,
//!   `email`, `is_active`, `type`; service accounts are listed with the
//!   people ([`FakeAuthentik::add_service_account`]). Keys are never reused.
//! * `/api/v3/core/groups/`: `pk` (a UUID), `num_pk`, `name`, members as
//!   numeric keys in `users`, and the parent as `parent` (before 2025.8) or
//!   `parents` (from 2025.8): [`GroupShape`].
//!
//! Faults come from the SDK's kit; pages are named `users` and `groups`,
//! counted from 0.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use idpsync_driver::fake::{
    Dataset, FakeServer, FakeTokens, FakeUser, FaultInjector, json_response, serve,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How a group names its parent, by authentik version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupShape {
    /// `parent`: one group or null (before 2025.8).
    Parent,
    /// `parents`: a list (from 2025.8).
    Parents,
}

/// A service account: listed with the users, not a person.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub user: FakeUser,
    /// Groups (dataset indexes) it is a member of.
    pub groups: Vec<usize>,
}

struct Directory {
    dataset: Dataset,
    service_accounts: Vec<ServiceAccount>,
    /// Each user's numeric key, by id: assigned once, never reused.
    keys: HashMap<String, i64>,
    next_key: i64,
}

impl Directory {
    fn key(&mut self, id: &str) -> i64 {
        if let Some(key) = self.keys.get(id) {
            return *key;
        }
        self.next_key += 1;
        self.keys.insert(id.to_string(), self.next_key);
        self.next_key
    }
}

/// The fake's state; change it while it runs.
#[derive(Clone)]
pub struct FakeAuthentik {
    pub token: String,
    directory: Arc<Mutex<Directory>>,
    pub shape: Arc<Mutex<GroupShape>>,
    pub faults: FaultInjector,
    /// The token's user lost its view permissions.
    pub forbidden: Arc<Mutex<bool>>,
    /// The server's `max_page_size`: larger asks are clamped silently.
    pub max_page_size: Arc<Mutex<usize>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeAuthentik {
    pub fn new(dataset: Dataset) -> Self {
        let mut directory = Directory {
            dataset,
            service_accounts: Vec::new(),
            keys: HashMap::new(),
            next_key: 0,
        };
        let ids: Vec<String> = directory
            .dataset
            .users
            .iter()
            .map(|u| u.id.clone())
            .collect();
        for id in ids {
            directory.key(&id);
        }
        FakeAuthentik {
            token: "fake-authentik-api-token".into(),
            directory: Arc::new(Mutex::new(directory)),
            shape: Arc::new(Mutex::new(GroupShape::Parents)),
            faults: FaultInjector::default(),
            forbidden: Arc::default(),
            max_page_size: Arc::new(Mutex::new(100)),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v3/core/users/", get(users))
            .route("/api/v3/core/groups/", get(groups))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"detail": "Not found."})),
                )
            })
            .with_state(self.clone())
    }

    pub async fn start(&self) -> std::io::Result<FakeServer> {
        serve(self.router()).await
    }

    /// The `[connections.authentik]` table pointing at this fake.
    pub fn settings(&self, base_url: &str, page_size: u32) -> Value {
        json!({"base_url": base_url, "token": self.token, "page_size": page_size})
    }

    /// Adds a service account, a member of `groups`.
    pub fn add_service_account(&self, name: &str, groups: &[usize]) {
        let mut directory = lock(&self.directory);
        let user = FakeUser {
            id: format!("sa-{name}"),
            user_name: name.into(),
            email: String::new(),
            given_name: String::new(),
            family_name: String::new(),
            active: true,
        };
        directory.key(&user.id);
        directory.service_accounts.push(ServiceAccount {
            user,
            groups: groups.to_vec(),
        });
    }

    /// Changes the dataset (users, groups, memberships) in place.
    pub fn edit(&self, change: impl FnOnce(&mut Dataset)) {
        let mut directory = lock(&self.directory);
        change(&mut directory.dataset);
        let ids: Vec<String> = directory
            .dataset
            .users
            .iter()
            .map(|u| u.id.clone())
            .collect();
        for id in ids {
            directory.key(&id);
        }
    }
}

fn detail(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"detail": message}))).into_response()
}

/// Faults, then the token and the permissions.
async fn gate(
    fake: &FakeAuthentik,
    headers: &HeaderMap,
    resource: &str,
    page: usize,
) -> Option<Response> {
    let throttled = |secs: Option<u64>| {
        // authentik itself does not throttle the API; a proxy in front may.
        let mut response = detail(StatusCode::TOO_MANY_REQUESTS, "Request was throttled.");
        if let Some(secs) = secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    };
    if let Some(answer) = fake.faults.before(resource, page, throttled).await {
        return Some(answer);
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token != Some(fake.token.as_str()) {
        let mut response = detail(StatusCode::UNAUTHORIZED, "Token invalid/expired");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"authentik\""),
        );
        return Some(response);
    }
    if *lock(&fake.forbidden) {
        return Some(detail(
            StatusCode::FORBIDDEN,
            "You do not have permission to perform this action.",
        ));
    }
    None
}

/// `page` and `page_size` as DRF reads them: the page from 1, the size
/// clamped silently.
fn paging(query: &HashMap<String, String>, max_page_size: usize) -> (usize, usize) {
    let page = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|&p: &usize| p >= 1)
        .unwrap_or(1);
    let size = query
        .get("page_size")
        .and_then(|p| p.parse().ok())
        .filter(|&s: &usize| s >= 1)
        .unwrap_or(20)
        .min(max_page_size);
    (page, size)
}

/// One page of a listing of `count` items with DRF's `pagination`
/// object, or its 404; `items` builds the page's items from their range.
fn paginated(
    fake: &FakeAuthentik,
    resource: &str,
    page: usize,
    size: usize,
    count: usize,
    items: impl FnOnce(std::ops::Range<usize>) -> Vec<Value>,
) -> Response {
    let total_pages = count.div_ceil(size).max(1);
    if page > total_pages {
        return detail(StatusCode::NOT_FOUND, "Invalid page.");
    }
    let start = ((page - 1) * size).min(count);
    let results = items(start..(start + size).min(count));
    let body = json!({
        "pagination": {
            "next": if page < total_pages { page + 1 } else { 0 },
            "previous": page - 1,
            "count": count,
            "current": page,
            "total_pages": total_pages,
            "start_index": if count == 0 { 0 } else { start + 1 },
            "end_index": start + results.len(),
        },
        "results": results,
    });
    json_response(
        StatusCode::OK,
        fake.faults.mangle(resource, page - 1, body.to_string()),
    )
}

fn user_json(user: &FakeUser, key: i64, kind: &str) -> Value {
    json!({
        "pk": key, "uuid": user.id, "username": user.user_name,
        "name": format!("{} {}", user.given_name, user.family_name).trim().to_string(),
        "is_active": user.active, "last_login": null,
        "date_joined": "2025-03-01T09:00:00.000000Z", "is_superuser": false,
        "email": user.email, "avatar": "data:image/svg+xml;base64,", "attributes": {},
        "uid": format!("{:x}", key * 7919), "path": "users", "type": kind,
        "password_change_date": "2025-03-01T09:00:00.000000Z"
    })
}

async fn users(
    State(fake): State<FakeAuthentik>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (page, size) = paging(&query, *lock(&fake.max_page_size));
    if let Some(answer) = gate(&fake, &headers, "users", page - 1).await {
        return answer;
    }
    let directory = lock(&fake.directory);
    // Ordered by key; only the page's users are written out.
    let mut order: Vec<(i64, Option<usize>, usize)> = directory
        .dataset
        .users
        .iter()
        .enumerate()
        .map(|(index, u)| (directory.keys[&u.id], None, index))
        .chain(
            directory
                .service_accounts
                .iter()
                .enumerate()
                .map(|(index, sa)| (directory.keys[&sa.user.id], Some(index), 0)),
        )
        .collect();
    order.sort_unstable_by_key(|(key, _, _)| *key);
    paginated(&fake, "users", page, size, order.len(), |range| {
        order[range]
            .iter()
            .map(|&(key, service_account, index)| match service_account {
                Some(sa) => user_json(&directory.service_accounts[sa].user, key, "service_account"),
                None => user_json(&directory.dataset.users[index], key, "internal"),
            })
            .collect()
    })
}

async fn groups(
    State(fake): State<FakeAuthentik>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (page, size) = paging(&query, *lock(&fake.max_page_size));
    if let Some(answer) = gate(&fake, &headers, "groups", page - 1).await {
        return answer;
    }
    let shape = *lock(&fake.shape);
    let directory = lock(&fake.directory);
    let dataset = &directory.dataset;
    let page_of = |range: std::ops::Range<usize>| -> Vec<Value> {
        range
            .map(|index| {
                let group = &dataset.groups[index];
                let mut members: Vec<i64> = dataset
                    .members_of(index)
                    .into_iter()
                    .map(|user| directory.keys[&dataset.users[user].id])
                    .collect();
                members.extend(
                    directory
                        .service_accounts
                        .iter()
                        .filter(|sa| sa.groups.contains(&index))
                        .map(|sa| directory.keys[&sa.user.id]),
                );
                let parent = group.parent.map(|p| dataset.groups[p].id.clone());
                let mut json = json!({
                    "pk": group.id, "num_pk": index + 1, "name": group.name,
                    "is_superuser": false, "users": members, "attributes": {},
                    "roles": [], "roles_obj": []
                });
                match shape {
                    GroupShape::Parent => json["parent"] = json!(parent),
                    GroupShape::Parents => {
                        json["parents"] = json!(parent.into_iter().collect::<Vec<_>>())
                    }
                }
                json
            })
            .collect()
    };
    paginated(&fake, "groups", page, size, dataset.groups.len(), page_of)
}

impl idpsync_driver::compliance::CompliantFake for FakeAuthentik {
    type Kind = crate::AuthentikFactory;
    /// The driver's own ceiling (the server may clamp lower, silently).
    const MAX_PAGE_SIZE: u32 = 100;
    /// Groups have parents.
    const NESTED_GROUPS: bool = true;

    /// Users and groups at 100 a call; members come inline with groups.
    fn minimum_calls(dataset: &Dataset) -> u64 {
        use idpsync_driver::compliance::pages;
        pages(dataset.users.len(), 100) + pages(dataset.groups.len(), 100)
    }

    fn kind() -> Self::Kind {
        crate::AuthentikFactory
    }

    fn new(dataset: Dataset) -> Self {
        FakeAuthentik::new(dataset)
    }

    async fn start(&self) -> std::io::Result<FakeServer> {
        FakeAuthentik::start(self).await
    }

    fn settings(&self, base_url: &str, page_size: u32) -> Value {
        FakeAuthentik::settings(self, base_url, page_size)
    }

    fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    /// An API token: it does not expire mid-pull.
    fn tokens(&self) -> Option<&FakeTokens> {
        None
    }

    fn delete_user(&self, id: &str) {
        self.edit(|dataset| {
            dataset.remove_user_by_id(id);
        });
    }

    fn create_user(&self, user: FakeUser) {
        self.edit(|dataset| {
            dataset.add_user(user);
        });
    }
}
