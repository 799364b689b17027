//! A fake Auth0 Management API v2 (feature `fake`) that behaves as Auth0
//! documents it, in what the driver relies on:
//!
//! * `POST /oauth/token`: client credentials in the body (form or JSON),
//!   refused without the Management API `audience`
//!   (`access_denied`, "Service not enabled within domain").
//! * `GET /api/v2/users`: `page`/`per_page` (at most 100, default 50),
//!   `include_totals`; a page that reaches past the first 1,000 results is a
//!   400, and the reported `total` is at most 1,000. `sort=user_id:1` orders
//!   by id. `blocked` appears only on blocked users.
//! * `POST /api/v2/jobs/users-exports`, `GET /api/v2/jobs/{id}`: a job that
//!   is `pending`, then `processing`, then `completed` with a `location`
//!   (or `failed`, on demand); the file there is gzipped JSON lines of the
//!   asked fields, served like pre-signed storage: a request that carries an
//!   `Authorization` header is refused.
//! * `GET /api/v2/roles` (offset paging with totals), `/roles/{id}/users`,
//!   `/organizations`, `/organizations/{id}/members` (checkpoint paging:
//!   `take`, an opaque `from`, `next` absent on the last page).
//! * `X-RateLimit-Limit/-Remaining/-Reset` on every answer; 429 with them
//!   when throttled; Auth0's error body `{statusCode, error, message,
//!   errorCode}`.
//!
//! Roles are the dataset's groups (Auth0 roles do not nest, so nesting is
//! dropped); organizations are added with [`FakeAuth0::add_organization`].
//! Faults come from the SDK's kit; pages are named `users`, `roles`,
//! `role_users`, `organizations` and `organization_members`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use idpsync_driver::fake::{
    Dataset, FakeServer, FakeTokens, FakeUser, FaultInjector, json_response, serve,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// An organization: an id, a name and its members (user indexes).
#[derive(Debug, Clone)]
pub struct FakeOrganization {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub members: Vec<String>,
}

#[derive(Debug, Clone)]
struct ExportJob {
    fields: Vec<String>,
    /// Polls left before the job completes.
    polls_left: u32,
    file: Option<Vec<u8>>,
}

/// The fake's state; change it while it runs.
#[derive(Clone)]
pub struct FakeAuth0 {
    pub client_id: String,
    pub client_secret: String,
    pub dataset: Arc<Mutex<Dataset>>,
    pub organizations: Arc<Mutex<Vec<FakeOrganization>>>,
    pub tokens: FakeTokens,
    pub faults: FaultInjector,
    /// The application lacks the scopes: every Management API call is 403.
    pub forbidden: Arc<Mutex<bool>>,
    /// Export jobs end `failed` instead of `completed`.
    pub exports_fail: Arc<Mutex<bool>>,
    /// Requests the tenant may make per one-second window before 429
    /// (`None`: unlimited); `X-RateLimit-Remaining` counts down and
    /// `X-RateLimit-Reset` is the window's end.
    pub rate_limit: Arc<Mutex<Option<u32>>>,
    /// 429s answered because the rate limit was spent.
    pub rate_limited: Arc<Mutex<u32>>,
    /// The most requests any one rate-limit window saw.
    pub peak_window_requests: Arc<Mutex<u32>>,
    jobs: Arc<Mutex<HashMap<String, ExportJob>>>,
    /// The current window's end (epoch seconds) and requests spent in it.
    window: Arc<Mutex<(u64, u32)>>,
    base_url: Arc<Mutex<String>>,
}

impl FakeAuth0 {
    pub fn new(dataset: Dataset) -> Self {
        FakeAuth0 {
            client_id: "fakeM2Mclient".into(),
            client_secret: "fake-auth0-secret".into(),
            dataset: Arc::new(Mutex::new(dataset)),
            organizations: Arc::default(),
            tokens: FakeTokens::default(),
            faults: FaultInjector::default(),
            forbidden: Arc::default(),
            exports_fail: Arc::default(),
            rate_limit: Arc::default(),
            rate_limited: Arc::default(),
            peak_window_requests: Arc::default(),
            jobs: Arc::default(),
            window: Arc::default(),
            base_url: Arc::default(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth/token", post(token))
            .route("/api/v2/users", get(users))
            .route("/api/v2/jobs/users-exports", post(create_export))
            .route("/api/v2/jobs/{id}", get(job))
            .route("/exports/{file}", get(download))
            .route("/api/v2/roles", get(roles))
            .route("/api/v2/roles/{id}/users", get(role_users))
            .route("/api/v2/organizations", get(organizations))
            .route(
                "/api/v2/organizations/{id}/members",
                get(organization_members),
            )
            .fallback(|| async { auth0_error(StatusCode::NOT_FOUND, "Not Found", None) })
            .with_state(self.clone())
    }

    pub async fn start(&self) -> std::io::Result<FakeServer> {
        let server = serve(self.router()).await?;
        *lock(&self.base_url) = server.base_url.clone();
        Ok(server)
    }

    /// The `[connections.auth0]` table pointing at this fake.
    pub fn settings(&self, base_url: &str, page_size: u32) -> Value {
        json!({
            "tenant_url": base_url, "client_id": self.client_id,
            "client_secret": self.client_secret, "page_size": page_size,
            "export_poll_secs": 0.01
        })
    }

    /// Adds an organization whose members are the given user indexes.
    pub fn add_organization(&self, name: &str, members: &[usize]) -> String {
        let dataset = lock(&self.dataset);
        let mut organizations = lock(&self.organizations);
        let id = format!("org_{:016x}", organizations.len() as u64 + 0xa11ce);
        organizations.push(FakeOrganization {
            id: id.clone(),
            name: name.to_lowercase().replace(' ', "-"),
            display_name: name.into(),
            members: members
                .iter()
                .map(|&user| dataset.users[user].id.clone())
                .collect(),
        });
        id
    }

    /// Export jobs created so far.
    pub fn export_jobs(&self) -> usize {
        lock(&self.jobs).len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn auth0_error(status: StatusCode, message: &str, code: Option<&str>) -> Response {
    let mut body = json!({
        "statusCode": status.as_u16(),
        "error": status.canonical_reason().unwrap_or_default(),
        "message": message,
    });
    if let Some(code) = code {
        body["errorCode"] = code.into();
    }
    (status, axum::Json(body)).into_response()
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn rate_headers(response: &mut Response, limit: u32, remaining: u32, reset_epoch: u64) {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset_epoch));
}

/// Token endpoint: `client_secret_post` (form or JSON body).
async fn token(State(fake): State<FakeAuth0>, headers: HeaderMap, body: Bytes) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let form: HashMap<String, String> = if json_body {
        serde_json::from_slice::<HashMap<String, Value>>(&body)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
            .collect()
    } else {
        url::form_urlencoded::parse(&body).into_owned().collect()
    };
    let refuse = |status: StatusCode, error: &str, description: String| {
        (
            status,
            axum::Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return refuse(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            "Grant type not allowed for the client.".into(),
        );
    }
    if form.get("client_id") != Some(&fake.client_id)
        || form.get("client_secret") != Some(&fake.client_secret)
    {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "access_denied",
            "Unauthorized".into(),
        );
    }
    let audience = format!("{}/api/v2/", lock(&fake.base_url));
    if form.get("audience") != Some(&audience) {
        return refuse(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "Service not enabled within domain: {}",
                form.get("audience").map(String::as_str).unwrap_or("(none)")
            ),
        );
    }
    axum::Json(json!({
        "access_token": fake.tokens.issue(), "token_type": "Bearer", "expires_in": 86400,
        "scope": "read:users read:roles read:role_members read:organizations read:organization_members"
    }))
    .into_response()
}

/// Faults, the bearer token, scopes and the rate limit, in Auth0's order.
async fn gate(
    fake: &FakeAuth0,
    headers: &HeaderMap,
    resource: &str,
    page: usize,
) -> Option<Response> {
    let throttled = |secs: Option<u64>| {
        let mut response = auth0_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Global limit has been reached",
            Some("too_many_requests"),
        );
        if let Some(secs) = secs {
            rate_headers(&mut response, 50, 0, epoch_now() + secs);
        }
        response
    };
    if let Some(answer) = fake.faults.before(resource, page, throttled).await {
        return Some(answer);
    }
    if !fake.tokens.check(headers) {
        let mut response = auth0_error(StatusCode::UNAUTHORIZED, "Invalid token", None);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        return Some(response);
    }
    if *lock(&fake.forbidden) {
        return Some(auth0_error(
            StatusCode::FORBIDDEN,
            "Insufficient scope, expected any of: read:users",
            Some("insufficient_scope"),
        ));
    }
    if let Some(limit) = *lock(&fake.rate_limit) {
        let mut window = lock(&fake.window);
        let now = epoch_now();
        if now >= window.0 {
            *window = (now + 1, 0);
        }
        if window.1 >= limit {
            *lock(&fake.rate_limited) += 1;
            let mut response = auth0_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Global limit has been reached",
                Some("too_many_requests"),
            );
            rate_headers(&mut response, limit, 0, window.0);
            return Some(response);
        }
        window.1 += 1;
        let mut peak = lock(&fake.peak_window_requests);
        *peak = (*peak).max(window.1);
    }
    None
}

/// Adds the rate-limit headers an answer carries.
fn metered(fake: &FakeAuth0, mut response: Response) -> Response {
    let (limit, remaining, reset) = match *lock(&fake.rate_limit) {
        Some(limit) => {
            let window = lock(&fake.window);
            (limit, limit.saturating_sub(window.1), window.0)
        }
        None => (50, 49, epoch_now() + 1),
    };
    rate_headers(&mut response, limit, remaining, reset);
    response
}

fn number(
    query: &HashMap<String, String>,
    name: &str,
    default: usize,
) -> Result<usize, Box<Response>> {
    match query.get(name) {
        None => Ok(default),
        Some(value) => value.parse().map_err(|_| {
            Box::new(auth0_error(
                StatusCode::BAD_REQUEST,
                &format!("Query validation error: '{name}' must be an integer"),
                Some("invalid_query_string"),
            ))
        }),
    }
}

/// `page`/`per_page`: the range asked for, or Auth0's 400.
fn offset_paging(query: &HashMap<String, String>) -> Result<(usize, usize), Box<Response>> {
    let page = number(query, "page", 0)?;
    let per_page = number(query, "per_page", 50)?;
    if per_page > 100 {
        return Err(Box::new(auth0_error(
            StatusCode::BAD_REQUEST,
            "Query validation error: 'Too big: must be at most 100' on property per_page",
            Some("invalid_query_string"),
        )));
    }
    if page * per_page >= 1000 && page > 0 {
        return Err(Box::new(auth0_error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Requesting page {page} exceeds the allowed maximum of 1000 records. See https://auth0.com/docs/users/search/v3/view-search-results-by-page#limitation"
            ),
            Some("invalid_paging"),
        )));
    }
    Ok((page, per_page))
}

fn user_json(user: &FakeUser, index: usize) -> Value {
    let mut json = json!({
        "user_id": user.id, "email": user.email, "email_verified": true,
        "name": format!("{} {}", user.given_name, user.family_name),
        "given_name": user.given_name, "family_name": user.family_name,
        "nickname": user.given_name.to_lowercase(),
        "created_at": format!("2025-01-01T00:00:{:02}.000Z", index % 60),
        "identities": [{"connection": "Username-Password-Authentication", "provider": "auth0",
                        "user_id": user.id.trim_start_matches("auth0|"), "isSocial": false}]
    });
    if !user.active {
        json["blocked"] = true.into();
    }
    json
}

async fn users(
    State(fake): State<FakeAuth0>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (page, per_page) = match offset_paging(&query) {
        Ok(paging) => paging,
        Err(answer) => return *answer,
    };
    if let Some(answer) = gate(&fake, &headers, "users", page).await {
        return answer;
    }
    let body = {
        let dataset = lock(&fake.dataset);
        let mut order: Vec<usize> = (0..dataset.users.len()).collect();
        if query.get("sort").map(String::as_str) == Some("user_id:1") {
            order.sort_by(|&a, &b| dataset.users[a].id.cmp(&dataset.users[b].id));
        }
        let items: Vec<Value> = order
            .iter()
            .skip(page * per_page)
            .take(per_page)
            .map(|&index| user_json(&dataset.users[index], index))
            .collect();
        if query.get("include_totals").map(String::as_str) == Some("true") {
            json!({
                "start": page * per_page, "limit": per_page, "length": items.len(),
                "total": dataset.users.len().min(1000), "users": items
            })
        } else {
            Value::Array(items)
        }
    };
    metered(
        &fake,
        json_response(
            StatusCode::OK,
            fake.faults.mangle("users", page, body.to_string()),
        ),
    )
}

async fn create_export(State(fake): State<FakeAuth0>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(answer) = gate(&fake, &headers, "export", 0).await {
        return answer;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let fields: Vec<String> = request["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| f["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_else(|| vec!["user_id".into(), "email".into(), "name".into()]);
    if request["format"]
        .as_str()
        .is_some_and(|f| f != "json" && f != "csv")
    {
        return auth0_error(
            StatusCode::BAD_REQUEST,
            "Payload validation error: 'format' must be one of json, csv",
            Some("invalid_body"),
        );
    }
    let mut jobs = lock(&fake.jobs);
    let id = format!("job_{:016x}", jobs.len() as u64 + 0xe4);
    jobs.insert(
        id.clone(),
        ExportJob {
            fields: fields.clone(),
            polls_left: 2,
            file: None,
        },
    );
    let answer = json!({
        "type": "users_export", "status": "pending", "id": id, "format": "json",
        "created_at": "2026-12-05T00:00:00.000Z",
        "fields": fields.iter().map(|name| json!({"name": name})).collect::<Vec<_>>()
    });
    metered(
        &fake,
        (StatusCode::CREATED, axum::Json(answer)).into_response(),
    )
}

async fn job(
    State(fake): State<FakeAuth0>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "job", 0).await {
        return answer;
    }
    let failed = *lock(&fake.exports_fail);
    let mut jobs = lock(&fake.jobs);
    let Some(job) = jobs.get_mut(&id) else {
        return auth0_error(
            StatusCode::NOT_FOUND,
            "The job does not exist.",
            Some("inexistent_job"),
        );
    };
    let status = if job.polls_left > 0 {
        job.polls_left -= 1;
        if job.polls_left == 1 {
            "pending"
        } else {
            "processing"
        }
    } else if failed {
        "failed"
    } else {
        if job.file.is_none() {
            job.file = Some(export_file(&lock(&fake.dataset), &job.fields));
        }
        "completed"
    };
    let mut answer = json!({"type": "users_export", "status": status, "id": id, "format": "json"});
    if status == "completed" {
        answer["location"] = format!("{}/exports/{id}.json.gz", lock(&fake.base_url)).into();
        answer["percentage_done"] = 100.into();
    }
    metered(&fake, axum::Json(answer).into_response())
}

/// The dataset as gzipped JSON lines of `fields` (absent values left out,
/// as Auth0 leaves them out).
fn export_file(dataset: &Dataset, fields: &[String]) -> Vec<u8> {
    let mut lines = String::new();
    for (index, user) in dataset.users.iter().enumerate() {
        let full = user_json(user, index);
        let line: serde_json::Map<String, Value> = fields
            .iter()
            .filter_map(|field| full.get(field).map(|value| (field.clone(), value.clone())))
            .collect();
        lines.push_str(&Value::Object(line).to_string());
        lines.push('\n');
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(lines.as_bytes())
        .expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// Pre-signed storage: the URL is the credential, and a request that also
/// sends an Authorization header is refused, as S3 refuses it.
async fn download(
    State(fake): State<FakeAuth0>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        return (
            StatusCode::BAD_REQUEST,
            "<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>",
        )
            .into_response();
    }
    let id = file.trim_end_matches(".json.gz");
    let file = lock(&fake.jobs).get(id).and_then(|job| job.file.clone());
    match file {
        Some(bytes) => {
            let mut response = (StatusCode::OK, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/gzip"),
            );
            response
        }
        None => (
            StatusCode::NOT_FOUND,
            "<Error><Code>NoSuchKey</Code></Error>",
        )
            .into_response(),
    }
}

async fn roles(
    State(fake): State<FakeAuth0>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (page, per_page) = match offset_paging(&query) {
        Ok(paging) => paging,
        Err(answer) => return *answer,
    };
    if let Some(answer) = gate(&fake, &headers, "roles", page).await {
        return answer;
    }
    let body = {
        let dataset = lock(&fake.dataset);
        let items: Vec<Value> = dataset
            .groups
            .iter()
            .skip(page * per_page)
            .take(per_page)
            .map(|g| json!({"id": g.id, "name": g.name, "description": format!("{} role", g.name)}))
            .collect();
        json!({
            "start": page * per_page, "limit": per_page, "length": items.len(),
            "total": dataset.groups.len(), "roles": items
        })
    };
    metered(
        &fake,
        json_response(
            StatusCode::OK,
            fake.faults.mangle("roles", page, body.to_string()),
        ),
    )
}

/// Checkpoint cursors are opaque to clients; this one hides an offset.
fn encode_from(offset: usize) -> String {
    format!("{:x}", (offset as u64).wrapping_mul(0x9e37_79b9) ^ 0x5eed)
}

fn decode_from(from: &str) -> Option<usize> {
    let value = u64::from_str_radix(from, 16).ok()? ^ 0x5eed;
    (value % 0x9e37_79b9 == 0).then_some((value / 0x9e37_79b9) as usize)
}

/// A checkpoint page of `items` under `key`.
fn checkpoint(
    fake: &FakeAuth0,
    resource: &str,
    key: &str,
    query: &HashMap<String, String>,
    items: Vec<Value>,
) -> Response {
    let take = match number(query, "take", 50) {
        Ok(take) if (1..=100).contains(&take) => take,
        Ok(_) => {
            return auth0_error(
                StatusCode::BAD_REQUEST,
                "Query validation error: 'take' must be between 1 and 100",
                Some("invalid_query_string"),
            );
        }
        Err(answer) => return *answer,
    };
    let offset = match query.get("from") {
        None => 0,
        Some(from) => match decode_from(from) {
            Some(offset) => offset,
            None => {
                return auth0_error(
                    StatusCode::BAD_REQUEST,
                    "Query validation error: invalid 'from'",
                    Some("invalid_query_string"),
                );
            }
        },
    };
    let page: Vec<Value> = items.iter().skip(offset).take(take).cloned().collect();
    let mut body = json!({ key: page });
    if offset + take < items.len() {
        body["next"] = encode_from(offset + take).into();
    }
    metered(
        fake,
        json_response(
            StatusCode::OK,
            fake.faults
                .mangle(resource, offset / take, body.to_string()),
        ),
    )
}

fn checkpoint_page(query: &HashMap<String, String>) -> usize {
    let take = query
        .get("take")
        .and_then(|t| t.parse().ok())
        .unwrap_or(50usize);
    query
        .get("from")
        .and_then(|from| decode_from(from))
        .map_or(0, |offset| offset / take.max(1))
}

async fn role_users(
    State(fake): State<FakeAuth0>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "role_users", checkpoint_page(&query)).await {
        return answer;
    }
    let items: Option<Vec<Value>> = {
        let dataset = lock(&fake.dataset);
        dataset.groups.iter().position(|g| g.id == id).map(|group| {
            dataset
                .members_of(group)
                .into_iter()
                .map(|user| {
                    let user = &dataset.users[user];
                    json!({"user_id": user.id, "email": user.email, "name": user.given_name})
                })
                .collect()
        })
    };
    match items {
        Some(items) => checkpoint(&fake, "role_users", "users", &query, items),
        None => auth0_error(
            StatusCode::NOT_FOUND,
            "The role does not exist.",
            Some("inexistent_role"),
        ),
    }
}

async fn organizations(
    State(fake): State<FakeAuth0>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "organizations", checkpoint_page(&query)).await {
        return answer;
    }
    let items = lock(&fake.organizations)
        .iter()
        .map(|org| json!({"id": org.id, "name": org.name, "display_name": org.display_name}))
        .collect();
    checkpoint(&fake, "organizations", "organizations", &query, items)
}

async fn organization_members(
    State(fake): State<FakeAuth0>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let page = checkpoint_page(&query);
    if let Some(answer) = gate(&fake, &headers, "organization_members", page).await {
        return answer;
    }
    let members = lock(&fake.organizations)
        .iter()
        .find(|org| org.id == id)
        .map(|org| org.members.clone());
    match members {
        Some(members) => {
            let items = members
                .into_iter()
                .map(|user_id| json!({"user_id": user_id, "roles": []}))
                .collect();
            checkpoint(&fake, "organization_members", "members", &query, items)
        }
        None => auth0_error(
            StatusCode::NOT_FOUND,
            "No organization found by that id or name",
            Some("inexistent_organization"),
        ),
    }
}

impl idpsync_driver::compliance::CompliantFake for FakeAuth0 {
    type Kind = crate::Auth0Factory;
    /// `per_page`'s documented maximum.
    const MAX_PAGE_SIZE: u32 = 100;
    /// Roles do not nest.
    const NESTED_GROUPS: bool = false;

    /// Below 1,000 users the listing at 100 a call; from 1,000 an export
    /// job (create, one poll at the least, download). Roles at 100, each
    /// role's members at 100 (`take`'s maximum).
    fn minimum_calls(dataset: &Dataset) -> u64 {
        use idpsync_driver::compliance::{member_listings, pages};
        let users = if dataset.users.len() >= 1000 {
            3
        } else {
            pages(dataset.users.len(), 100)
        };
        users + pages(dataset.groups.len(), 100) + member_listings(dataset, 100)
    }

    /// Auth0 holds at most 1,000 roles a tenant (its entity limits): the
    /// first 1,000 groups, with their memberships.
    fn within_api_limits(dataset: &Dataset) -> (Dataset, Option<&'static str>) {
        const ROLES_PER_TENANT: usize = 1000;
        if dataset.groups.len() <= ROLES_PER_TENANT {
            return (dataset.clone(), None);
        }
        let mut fitted = dataset.clone();
        fitted.groups.truncate(ROLES_PER_TENANT);
        for group in &mut fitted.groups {
            group.parent = group.parent.filter(|&p| p < ROLES_PER_TENANT);
        }
        fitted
            .members
            .retain(|&(group, _)| group < ROLES_PER_TENANT);
        (
            fitted,
            Some("groups cut to Auth0's limit of 1,000 roles a tenant"),
        )
    }

    fn kind() -> Self::Kind {
        crate::Auth0Factory
    }

    fn new(dataset: Dataset) -> Self {
        FakeAuth0::new(dataset)
    }

    async fn start(&self) -> std::io::Result<FakeServer> {
        FakeAuth0::start(self).await
    }

    fn settings(&self, base_url: &str, page_size: u32) -> Value {
        FakeAuth0::settings(self, base_url, page_size)
    }

    fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    fn tokens(&self) -> Option<&FakeTokens> {
        Some(&self.tokens)
    }

    fn delete_user(&self, id: &str) {
        lock(&self.dataset).remove_user_by_id(id);
    }

    fn create_user(&self, user: FakeUser) {
        lock(&self.dataset).add_user(user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_cursors_round_trip_and_refuse_what_they_did_not_issue() {
        for offset in [0, 1, 50, 12_345] {
            assert_eq!(decode_from(&encode_from(offset)), Some(offset));
        }
        assert_eq!(decode_from("12"), None);
        assert_eq!(decode_from("not-hex"), None);
    }
}
