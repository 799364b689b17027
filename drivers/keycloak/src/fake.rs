//! A fake Keycloak (feature `fake`) that behaves like the real Admin REST API
//! in what the driver relies on: the token endpoint (client credentials,
//! HTTP Basic or form auth, `invalid_client` on bad credentials), `first`/`max`
//! paging with bare arrays and no totals, `users/count`, top-level groups with
//! `subGroupCount` (when `subGroupsCount=true` is asked for, or the server's
//! default says so; or never, as a server that does not know the parameter:
//! [`SubGroupCounts`]),
//! `/children`, `/members`, 401 `{"error":"HTTP 401 Unauthorized"}`, 403 for
//! a service account without roles and 404 `{"error":"RESTEASY003210: Could
//! not find resource for full path: ..."}` for unknown routes. Faults come
//! from the SDK's fake kit; pages are named `users`, `groups`, `children` and
//! `members`. A new user may take a removed user's username: edit `dataset`.

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use idpsync_driver::fake::{Dataset, FakeServer, FakeTokens, FaultInjector, json_response, serve};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The fake's state; change `dataset` or `faults` while it runs.
#[derive(Clone)]
pub struct FakeKeycloak {
    pub realm: String,
    pub client_id: String,
    pub client_secret: String,
    pub dataset: Arc<Mutex<Dataset>>,
    pub tokens: FakeTokens,
    pub faults: FaultInjector,
    /// When set, the service account lacks its roles: every admin call is 403.
    pub forbidden: Arc<Mutex<bool>>,
    /// When groups carry `subGroupCount`.
    pub sub_group_counts: Arc<Mutex<SubGroupCounts>>,
}

/// When a group listing carries each group's `subGroupCount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubGroupCounts {
    /// As the `subGroupsCount` parameter asks, else this default (Keycloak's
    /// is `true`, and a version may change it).
    Parameter { default: bool },
    /// Never: a server that does not know the parameter.
    Never,
}

impl FakeKeycloak {
    pub fn new(realm: &str, dataset: Dataset) -> Self {
        FakeKeycloak {
            realm: realm.into(),
            client_id: "idpsync".into(),
            client_secret: "fake-client-secret".into(),
            dataset: Arc::new(Mutex::new(dataset)),
            tokens: FakeTokens::default(),
            faults: FaultInjector::default(),
            forbidden: Arc::new(Mutex::new(false)),
            sub_group_counts: Arc::new(Mutex::new(SubGroupCounts::Parameter { default: true })),
        }
    }

    /// Whether a group listing with `query` carries `subGroupCount`.
    fn counts_sub_groups(&self, query: &HashMap<String, String>) -> bool {
        let counts = *self
            .sub_group_counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match (counts, query.get("subGroupsCount")) {
            (SubGroupCounts::Never, _) => false,
            (SubGroupCounts::Parameter { .. }, Some(asked)) => asked == "true",
            (SubGroupCounts::Parameter { default }, None) => default,
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/realms/{realm}/protocol/openid-connect/token", post(token))
            .route("/admin/realms/{realm}/users", get(users))
            .route("/admin/realms/{realm}/users/count", get(user_count))
            .route("/admin/realms/{realm}/groups", get(groups))
            .route("/admin/realms/{realm}/groups/{id}/children", get(children))
            .route("/admin/realms/{realm}/groups/{id}/members", get(members))
            .fallback(unknown_route)
            .with_state(self.clone())
    }

    /// Serves the fake on 127.0.0.1.
    pub async fn start(&self) -> std::io::Result<FakeServer> {
        serve(self.router()).await
    }

    /// The `[connections.keycloak]` table pointing at this fake.
    pub fn settings(&self, base_url: &str, page_size: u32) -> Value {
        json!({
            "base_url": base_url, "realm": self.realm, "client_id": self.client_id,
            "client_secret": self.client_secret, "page_size": page_size
        })
    }

    fn with_dataset<T>(&self, read: impl FnOnce(&Dataset) -> T) -> T {
        read(&self.dataset.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let encoded = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = decode_base64(encoded)?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n_bits = 0;
    let mut out = Vec::new();
    for byte in text.trim_end_matches('=').bytes() {
        let value = ALPHABET.iter().position(|c| *c == byte)? as u32;
        bits = (bits << 6) | value;
        n_bits += 6;
        if n_bits >= 8 {
            n_bits -= 8;
            out.push((bits >> n_bits) as u8);
            bits &= (1 << n_bits) - 1;
        }
    }
    Some(out)
}

async fn token(
    State(fake): State<FakeKeycloak>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    if realm != fake.realm {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "Realm does not exist"})),
        )
            .into_response();
    }
    if form.grant_type != "client_credentials" {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    }
    let (id, secret) = basic_credentials(&headers)
        .or_else(|| Some((form.client_id.clone()?, form.client_secret.clone()?)))
        .unwrap_or_default();
    if id != fake.client_id || secret != fake.client_secret {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"})),
        )
            .into_response();
    }
    let token = fake.tokens.issue();
    axum::Json(json!({"access_token": token, "expires_in": 300, "refresh_expires_in": 0, "token_type": "Bearer", "not-before-policy": 0, "scope": "profile email"}))
        .into_response()
}

/// Auth and faults shared by every admin call.
async fn admin_gate(
    fake: &FakeKeycloak,
    realm: &str,
    headers: &HeaderMap,
    resource: &str,
    page: usize,
) -> Option<Response> {
    if let Some(answer) = fake
        .faults
        .before(resource, page, |secs| {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
            if let Some(secs) = secs {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.into());
            }
            response
        })
        .await
    {
        return Some(answer);
    }
    if !fake.tokens.check(headers) {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "HTTP 401 Unauthorized"})),
            )
                .into_response(),
        );
    }
    if realm != fake.realm {
        return Some(
            (
                StatusCode::NOT_FOUND,
                axum::Json(json!({"error": "Realm not found."})),
            )
                .into_response(),
        );
    }
    if *fake.forbidden.lock().unwrap_or_else(|e| e.into_inner()) {
        return Some(
            (
                StatusCode::FORBIDDEN,
                axum::Json(json!({"error": "HTTP 403 Forbidden"})),
            )
                .into_response(),
        );
    }
    None
}

fn paging(query: &HashMap<String, String>) -> (usize, usize) {
    let first = query.get("first").and_then(|v| v.parse().ok()).unwrap_or(0);
    let max = query.get("max").and_then(|v| v.parse().ok()).unwrap_or(100);
    (first, max)
}

fn page_json(
    fake: &FakeKeycloak,
    resource: &str,
    first: usize,
    max: usize,
    items: Vec<Value>,
) -> Response {
    let page = first.checked_div(max).unwrap_or(0);
    let body = Value::Array(items.into_iter().skip(first).take(max).collect()).to_string();
    json_response(StatusCode::OK, fake.faults.mangle(resource, page, body))
}

fn user_json(dataset: &Dataset, index: usize) -> Value {
    let user = &dataset.users[index];
    json!({
        "id": user.id, "username": user.user_name, "email": user.email, "emailVerified": true,
        "firstName": user.given_name, "lastName": user.family_name, "enabled": user.active,
        "createdTimestamp": 1_700_000_000_000u64 + index as u64
    })
}

fn group_json(dataset: &Dataset, index: usize, with_count: bool) -> Value {
    let group = &dataset.groups[index];
    let mut path = vec![group.name.clone()];
    let mut parent = group.parent;
    while let Some(p) = parent {
        path.push(dataset.groups[p].name.clone());
        parent = dataset.groups[p].parent;
    }
    path.reverse();
    let mut json = json!({
        "id": group.id, "name": group.name, "path": format!("/{}", path.join("/")),
        "access": {"view": true}
    });
    if with_count {
        json["subGroupCount"] = dataset.children_of(index).len().into();
    }
    json
}

async fn users(
    State(fake): State<FakeKeycloak>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (first, max) = paging(&query);
    if let Some(answer) = admin_gate(&fake, &realm, &headers, "users", first / max.max(1)).await {
        return answer;
    }
    let items = fake.with_dataset(|d| (0..d.users.len()).map(|i| user_json(d, i)).collect());
    page_json(&fake, "users", first, max, items)
}

async fn user_count(
    State(fake): State<FakeKeycloak>,
    Path(realm): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(answer) = admin_gate(&fake, &realm, &headers, "count", 0).await {
        return answer;
    }
    axum::Json(fake.with_dataset(|d| d.users.len())).into_response()
}

async fn groups(
    State(fake): State<FakeKeycloak>,
    Path(realm): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (first, max) = paging(&query);
    if let Some(answer) = admin_gate(&fake, &realm, &headers, "groups", first / max.max(1)).await {
        return answer;
    }
    let with_count = fake.counts_sub_groups(&query);
    let items = fake.with_dataset(|d| {
        (0..d.groups.len())
            .filter(|i| d.groups[*i].parent.is_none())
            .map(|i| group_json(d, i, with_count))
            .collect()
    });
    page_json(&fake, "groups", first, max, items)
}

fn group_index(dataset: &Dataset, id: &str) -> Option<usize> {
    dataset.groups.iter().position(|g| g.id == id)
}

async fn children(
    State(fake): State<FakeKeycloak>,
    Path((realm, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (first, max) = paging(&query);
    if let Some(answer) = admin_gate(&fake, &realm, &headers, "children", first / max.max(1)).await
    {
        return answer;
    }
    let with_count = fake.counts_sub_groups(&query);
    let items: Option<Vec<Value>> = fake.with_dataset(|d| {
        group_index(d, &id).map(|g| {
            d.children_of(g)
                .into_iter()
                .map(|c| group_json(d, c, with_count))
                .collect()
        })
    });
    match items {
        Some(items) => page_json(&fake, "children", first, max, items),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "Could not find group by id"})),
        )
            .into_response(),
    }
}

async fn members(
    State(fake): State<FakeKeycloak>,
    Path((realm, id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (first, max) = paging(&query);
    if let Some(answer) = admin_gate(&fake, &realm, &headers, "members", first / max.max(1)).await {
        return answer;
    }
    let items: Option<Vec<Value>> = fake.with_dataset(|d| {
        group_index(d, &id).map(|g| {
            d.members_of(g)
                .into_iter()
                .map(|u| user_json(d, u))
                .collect()
        })
    });
    match items {
        Some(items) => page_json(&fake, "members", first, max, items),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "Could not find group by id"})),
        )
            .into_response(),
    }
}

/// RESTEasy's answer to a path Keycloak does not serve.
async fn unknown_route(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": format!("RESTEASY003210: Could not find resource for full path: {uri}")})),
    )
        .into_response()
}

impl idpsync_driver::compliance::CompliantFake for FakeKeycloak {
    type Kind = crate::KeycloakFactory;
    const MAX_PAGE_SIZE: u32 = 1000;
    const NESTED_GROUPS: bool = true;

    /// Users, top-level groups, each parent's children, each group's
    /// members, at 1,000 a call (the driver's ceiling: the API sets none).
    fn minimum_calls(dataset: &Dataset) -> u64 {
        use idpsync_driver::compliance::{member_listings, pages};
        let top = dataset.groups.iter().filter(|g| g.parent.is_none()).count();
        let children: u64 = (0..dataset.groups.len())
            .map(|g| dataset.children_of(g).len())
            .filter(|&n| n > 0)
            .map(|n| pages(n, 1000))
            .sum();
        pages(dataset.users.len(), 1000)
            + pages(top, 1000)
            + children
            + member_listings(dataset, 1000)
    }

    fn kind() -> Self::Kind {
        crate::KeycloakFactory
    }

    fn new(dataset: Dataset) -> Self {
        FakeKeycloak::new("acme", dataset)
    }

    async fn start(&self) -> std::io::Result<FakeServer> {
        FakeKeycloak::start(self).await
    }

    fn settings(&self, base_url: &str, page_size: u32) -> Value {
        FakeKeycloak::settings(self, base_url, page_size)
    }

    fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    fn tokens(&self) -> Option<&FakeTokens> {
        Some(&self.tokens)
    }

    fn delete_user(&self, id: &str) {
        self.dataset
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove_user_by_id(id);
    }

    fn create_user(&self, user: idpsync_driver::fake::FakeUser) {
        self.dataset
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_user(user);
    }
}
