//! A fake Google Workspace (feature `fake`) that behaves like the Admin SDK
//! Directory API in what the driver relies on: the OAuth token endpoint for
//! the JWT bearer grant (signature checked against the service account's
//! public key; `iss`, `sub`, `aud` and the Directory scopes checked;
//! `unauthorized_client` when delegation is missing), `users`, `groups` and
//! `groups/{key}/members` with `pageToken`/`nextPageToken` and `maxResults`
//! maxima (500, 200, 200), `customer=my_customer` or `domain`, members of
//! type USER, GROUP and CUSTOMER, the users `query` clauses `isSuspended=`
//! and `isArchived=` (400 `invalid` for others), Google's error bodies (404
//! `notFound` for unknown routes), and quota errors as
//! 403 `quotaExceeded` (the throttle fault; Google documents "retry using
//! exponential back-off") or 429.
//!
//! Push notifications as the Directory API sends them: `users/watch` (one
//! event per channel, `web_hook` channels with an address, a token and a
//! `ttl`, capped at 6 hours) answered with the channel's `resourceId` and
//! `expiration`, then a `sync` message; a message per matching change to
//! every live channel afterwards (`X-Goog-*` headers, the user as the body,
//! message numbers counting up, retried on a non-2xx;
//! [`FakeGoogle::push_deliveries`]); `channels/stop` (404 for a channel it
//! does not know). Change the tenant with [`FakeGoogle::suspend_user`] and
//! [`FakeGoogle::remove_user`] for the messages to go out.

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use idpsync_driver::fake::{
    Dataset, Delivery, DeliveryLog, FakeServer, FakeTokens, FaultInjector, deliver, json_response,
    serve,
};
use idpsync_driver::jwt::verify_rs256;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct FakeGoogle {
    pub client_email: String,
    pub admin_email: String,
    /// PKCS#1 DER public key of the service account.
    pub public_key: Arc<Vec<u8>>,
    pub dataset: Arc<Mutex<Dataset>>,
    /// Users archived (in addition to suspended ones from the dataset).
    pub archived: Arc<Mutex<Vec<usize>>>,
    /// Groups with a CUSTOMER member (everyone).
    pub everyone_groups: Arc<Mutex<Vec<usize>>>,
    /// Delegation withdrawn: the admin API answers 403 for everything.
    pub forbidden: Arc<Mutex<bool>>,
    pub tokens: FakeTokens,
    pub faults: FaultInjector,
    base_url: Arc<Mutex<String>>,
    channels: Arc<Mutex<Vec<WatchChannel>>>,
    /// The answers every push message got.
    pub push_deliveries: DeliveryLog,
}

/// The longest time to live the fake grants a channel.
pub const MAX_CHANNEL_TTL_SECS: i64 = 6 * 3600;

/// A notification channel on the users resource.
#[derive(Debug, Clone)]
struct WatchChannel {
    id: String,
    resource_id: String,
    address: String,
    token: Option<String>,
    event: String,
    expires: DateTime<Utc>,
    /// The last message number sent.
    messages: u64,
}

pub const CUSTOMER_ID: &str = "C0fake123";

impl FakeGoogle {
    pub fn new(dataset: Dataset, public_key_pkcs1_der: Vec<u8>) -> Self {
        FakeGoogle {
            client_email: "idpsync@acme-project.iam.gserviceaccount.com".into(),
            admin_email: "admin@acme.test".into(),
            public_key: Arc::new(public_key_pkcs1_der),
            dataset: Arc::new(Mutex::new(dataset)),
            archived: Arc::default(),
            everyone_groups: Arc::default(),
            forbidden: Arc::default(),
            tokens: FakeTokens::default(),
            faults: FaultInjector::default(),
            base_url: Arc::new(Mutex::new(String::new())),
            channels: Arc::default(),
            push_deliveries: DeliveryLog::default(),
        }
    }

    /// Suspends a user (an `update` message to `update` channels).
    pub fn suspend_user(&self, user: usize) {
        let id = {
            let mut dataset = self.dataset.lock().unwrap_or_else(|e| e.into_inner());
            dataset.users[user].active = false;
            dataset.users[user].id.clone()
        };
        self.push("update", &id);
    }

    /// Deletes a user (a `delete` message to `delete` channels).
    pub fn remove_user(&self, user: usize) {
        let id = self.dataset.lock().unwrap_or_else(|e| e.into_inner()).users[user]
            .id
            .clone();
        self.delete_user_by_id(&id);
    }

    fn delete_user_by_id(&self, id: &str) {
        self.dataset
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove_user_by_id(id);
        self.push("delete", id);
    }

    /// Live channels as (id, event, expiry); expired ones are gone.
    pub fn channels(&self) -> Vec<(String, String, DateTime<Utc>)> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.retain(|c| c.expires > Utc::now());
        channels
            .iter()
            .map(|c| (c.id.clone(), c.event.clone(), c.expires))
            .collect()
    }

    /// A message about user `id` to every live channel watching `event`.
    fn push(&self, event: &str, id: &str) {
        let due: Vec<WatchChannel> = {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            channels.retain(|c| c.expires > Utc::now());
            channels
                .iter_mut()
                .filter(|c| c.event == event)
                .map(|c| {
                    c.messages += 1;
                    c.clone()
                })
                .collect()
        };
        let body = json!({"kind": "admin#directory#user", "id": id, "etag": "\"fake\"", "primaryEmail": format!("{id}@acme.test")});
        for channel in due {
            self.send(&channel, event, body.to_string().into_bytes());
        }
    }

    fn send(&self, channel: &WatchChannel, state: &str, body: Vec<u8>) {
        let mut headers = vec![
            ("x-goog-channel-id".to_string(), channel.id.clone()),
            (
                "x-goog-channel-expiration".into(),
                channel.expires.to_rfc2822(),
            ),
            ("x-goog-resource-id".into(), channel.resource_id.clone()),
            (
                "x-goog-resource-uri".into(),
                format!(
                    "https://admin.googleapis.com/admin/directory/v1/users?customer=my_customer&event={}",
                    channel.event
                ),
            ),
            ("x-goog-resource-state".into(), state.to_string()),
            ("x-goog-message-number".into(), channel.messages.to_string()),
            (
                "content-type".into(),
                "application/json; charset=UTF-8".into(),
            ),
        ];
        if let Some(token) = &channel.token {
            headers.push(("x-goog-channel-token".into(), token.clone()));
        }
        deliver(
            Delivery {
                url: channel.address.clone(),
                headers,
                body,
                deadline: std::time::Duration::from_secs(10),
                retries: 2,
            },
            self.push_deliveries.clone(),
        );
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/token", post(token))
            .route("/admin/directory/v1/users", get(users))
            .route("/admin/directory/v1/groups", get(groups))
            .route("/admin/directory/v1/groups/{key}/members", get(members))
            .route("/admin/directory/v1/users/watch", post(watch))
            .route("/admin/directory_v1/channels/stop", post(stop_channel))
            .fallback(|| async { google_error(StatusCode::NOT_FOUND, "notFound", "Not Found") })
            .with_state(self.clone())
    }

    pub async fn start(&self) -> std::io::Result<FakeServer> {
        let server = serve(self.router()).await?;
        *self.base_url.lock().unwrap_or_else(|e| e.into_inner()) = server.base_url.clone();
        Ok(server)
    }

    /// `[connections.google_workspace]` for this fake, with `private_key_pem`.
    pub fn settings(&self, base_url: &str, private_key_pem: &str, page_size: u32) -> Value {
        let key = json!({
            "type": "service_account", "project_id": "acme-project", "private_key_id": "fake",
            "private_key": private_key_pem, "client_email": self.client_email, "client_id": "1234567890",
            "token_uri": format!("{base_url}/token")
        });
        json!({"service_account_key": key.to_string(), "admin_email": self.admin_email, "api_url": base_url, "page_size": page_size})
    }
}

fn google_error(status: StatusCode, reason: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": status.as_u16(), "message": message, "errors": [{"message": message, "domain": "global", "reason": reason}]}}))).into_response()
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    assertion: String,
}

async fn token(State(fake): State<FakeGoogle>, Form(form): Form<TokenForm>) -> Response {
    let refuse = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    if form.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return refuse("unsupported_grant_type", "Invalid grant_type");
    }
    let Ok(claims) = verify_rs256(&form.assertion, &fake.public_key) else {
        return refuse("invalid_grant", "Invalid JWT Signature.");
    };
    let audience = format!(
        "{}/token",
        fake.base_url.lock().unwrap_or_else(|e| e.into_inner())
    );
    if claims["iss"] != fake.client_email.as_str() || claims["aud"] != audience.as_str() {
        return refuse(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.",
        );
    }
    let scopes = claims["scope"].as_str().unwrap_or_default();
    if claims["sub"] != fake.admin_email.as_str()
        || !crate::SCOPES
            .iter()
            .all(|s| scopes.split(' ').any(|x| x == *s))
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "unauthorized_client", "error_description": "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."})),
        )
            .into_response();
    }
    axum::Json(
        json!({"access_token": fake.tokens.issue(), "expires_in": 3599, "token_type": "Bearer"}),
    )
    .into_response()
}

async fn gate(
    fake: &FakeGoogle,
    headers: &HeaderMap,
    resource: &str,
    page: usize,
) -> Option<Response> {
    if let Some(answer) = fake
        .faults
        .before(resource, page, |_| google_error(StatusCode::FORBIDDEN, "quotaExceeded", "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'."))
        .await
    {
        return Some(answer);
    }
    if !fake.tokens.check(headers) {
        return Some(google_error(
            StatusCode::UNAUTHORIZED,
            "authError",
            "Invalid Credentials",
        ));
    }
    if *fake.forbidden.lock().unwrap_or_else(|e| e.into_inner()) {
        return Some(google_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Not Authorized to access this resource/api",
        ));
    }
    None
}

/// `(offset, max)` from `pageToken` and `maxResults`, capped at `cap`.
fn paging(query: &HashMap<String, String>, cap: usize) -> Result<(usize, usize), Box<Response>> {
    let max = query
        .get("maxResults")
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    if max == 0 || max > cap {
        return Err(Box::new(google_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("Invalid value '{max}'. Values must be within the range: [1, {cap}]"),
        )));
    }
    let offset = match query.get("pageToken") {
        Some(token) => token
            .strip_prefix("pt")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                Box::new(google_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "Invalid page token",
                ))
            })?,
        None => 0,
    };
    Ok((offset, max))
}

fn list(
    fake: &FakeGoogle,
    resource: &str,
    kind: &str,
    key: &str,
    items: Vec<Value>,
    offset: usize,
    max: usize,
) -> Response {
    let total = items.len();
    let mut body = json!({"kind": kind, "etag": "\"fake\"", key: items.into_iter().skip(offset).take(max).collect::<Vec<_>>()});
    if offset + max < total {
        body["nextPageToken"] = format!("pt{}", offset + max).into();
    }
    json_response(
        StatusCode::OK,
        fake.faults.mangle(resource, offset / max, body.to_string()),
    )
}

fn scoped(query: &HashMap<String, String>) -> Result<(), Box<Response>> {
    let customer = query.get("customer").map(String::as_str);
    let domain = query.get("domain").map(String::as_str);
    match (customer, domain) {
        (Some("my_customer") | Some(CUSTOMER_ID), _) | (_, Some("acme.test")) => Ok(()),
        (None, None) => Err(Box::new(google_error(
            StatusCode::BAD_REQUEST,
            "badRequest",
            "Bad Request",
        ))),
        _ => Err(Box::new(google_error(
            StatusCode::NOT_FOUND,
            "notFound",
            "Domain not found.",
        ))),
    }
}

#[derive(Deserialize)]
struct WatchRequest {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    address: String,
    token: Option<String>,
    #[serde(default)]
    params: HashMap<String, String>,
}

async fn watch(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "watch", 0).await {
        return answer;
    }
    if let Err(answer) = scoped(&query) {
        return *answer;
    }
    let event = query.get("event").cloned().unwrap_or_default();
    if !crate::config::WATCH_EVENTS.contains(&event.as_str()) {
        return google_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid value for: event",
        );
    }
    let Ok(request) = serde_json::from_slice::<WatchRequest>(&body) else {
        return google_error(StatusCode::BAD_REQUEST, "parseError", "Parse Error");
    };
    let address_ok = url::Url::parse(&request.address).is_ok_and(|u| {
        u.scheme() == "https" || matches!(u.host_str(), Some("127.0.0.1" | "localhost"))
    });
    if request.kind != "web_hook" || !address_ok {
        return google_error(
            StatusCode::BAD_REQUEST,
            "push.webhookUrlNotHttps",
            "WebHook callback must be HTTPS: ",
        );
    }
    if request.token.as_ref().is_some_and(|t| t.len() > 256)
        || request.id.is_empty()
        || request.id.len() > 64
    {
        return google_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid channel id or token",
        );
    }
    let ttl = request
        .params
        .get("ttl")
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or(MAX_CHANNEL_TTL_SECS)
        .clamp(1, MAX_CHANNEL_TTL_SECS);
    let channel = {
        let mut channels = fake.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.retain(|c| c.expires > Utc::now());
        if channels.iter().any(|c| c.id == request.id) {
            return google_error(
                StatusCode::BAD_REQUEST,
                "channelIdNotUnique",
                "Channel id not unique",
            );
        }
        let channel = WatchChannel {
            id: request.id,
            resource_id: format!("res{:016x}", rand::random::<u64>()),
            address: request.address,
            token: request.token,
            event,
            expires: Utc::now() + chrono::Duration::seconds(ttl),
            messages: 1,
        };
        channels.push(channel.clone());
        channel
    };
    // The channel's first message says it exists.
    fake.send(&channel, "sync", Vec::new());
    axum::Json(json!({
        "kind": "api#channel",
        "id": channel.id,
        "resourceId": channel.resource_id,
        "resourceUri": format!("https://admin.googleapis.com/admin/directory/v1/users?customer=my_customer&event={}&alt=json", channel.event),
        "token": channel.token,
        "expiration": channel.expires.timestamp_millis().to_string(),
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopRequest {
    id: String,
    resource_id: String,
}

async fn stop_channel(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "watch", 0).await {
        return answer;
    }
    let Ok(request) = serde_json::from_slice::<StopRequest>(&body) else {
        return google_error(StatusCode::BAD_REQUEST, "parseError", "Parse Error");
    };
    let mut channels = fake.channels.lock().unwrap_or_else(|e| e.into_inner());
    channels.retain(|c| c.expires > Utc::now());
    match channels
        .iter()
        .position(|c| c.id == request.id && c.resource_id == request.resource_id)
    {
        Some(index) => {
            channels.remove(index);
            StatusCode::NO_CONTENT.into_response()
        }
        None => google_error(
            StatusCode::NOT_FOUND,
            "notFound",
            &format!("Channel '{}' not found for project", request.id),
        ),
    }
}

async fn users(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (offset, max) = match paging(&query, 500) {
        Ok(p) => p,
        Err(e) => return *e,
    };
    if let Some(answer) = gate(&fake, &headers, "users", offset / max).await {
        return answer;
    }
    if let Err(e) = scoped(&query) {
        return *e;
    }
    // `query`: the clauses this fake evaluates (`isSuspended=`,
    // `isArchived=`); Google answers others it cannot parse with 400.
    let mut wanted: Vec<(&str, bool)> = Vec::new();
    for clause in query
        .get("query")
        .map(String::as_str)
        .unwrap_or("")
        .split_whitespace()
    {
        match clause.split_once('=') {
            Some((field @ ("isSuspended" | "isArchived"), value @ ("true" | "false"))) => {
                wanted.push((field, value == "true"))
            }
            _ => return google_error(StatusCode::BAD_REQUEST, "invalid", "Invalid Input"),
        }
    }
    let items: Vec<Value> = {
        let dataset = fake.dataset.lock().unwrap_or_else(|e| e.into_inner());
        let archived = fake.archived.lock().unwrap_or_else(|e| e.into_inner());
        dataset
            .users
            .iter()
            .enumerate()
            .filter(|(i, u)| {
                wanted.iter().all(|(field, value)| match *field {
                    "isSuspended" => u.active != *value,
                    _ => archived.contains(i) == *value,
                })
            })
            .map(|(i, u)| {
                json!({
                    "kind": "admin#directory#user", "id": u.id, "primaryEmail": u.email,
                    "name": {"givenName": u.given_name, "familyName": u.family_name, "fullName": format!("{} {}", u.given_name, u.family_name)},
                    "isAdmin": false, "suspended": !u.active, "archived": archived.contains(&i), "orgUnitPath": "/",
                    "emails": [{"address": u.email, "primary": true}], "customerId": CUSTOMER_ID
                })
            })
            .collect()
    };
    list(
        &fake,
        "users",
        "admin#directory#users",
        "users",
        items,
        offset,
        max,
    )
}

async fn groups(
    State(fake): State<FakeGoogle>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (offset, max) = match paging(&query, 200) {
        Ok(p) => p,
        Err(e) => return *e,
    };
    if let Some(answer) = gate(&fake, &headers, "groups", offset / max).await {
        return answer;
    }
    if let Err(e) = scoped(&query) {
        return *e;
    }
    let items: Vec<Value> = {
        let dataset = fake.dataset.lock().unwrap_or_else(|e| e.into_inner());
        dataset
            .groups
            .iter()
            .map(|g| json!({"kind": "admin#directory#group", "id": g.id, "email": format!("{}@acme.test", g.id), "name": g.name, "directMembersCount": "0"}))
            .collect()
    };
    list(
        &fake,
        "groups",
        "admin#directory#groups",
        "groups",
        items,
        offset,
        max,
    )
}

async fn members(
    State(fake): State<FakeGoogle>,
    Path(key): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (offset, max) = match paging(&query, 200) {
        Ok(p) => p,
        Err(e) => return *e,
    };
    if let Some(answer) = gate(&fake, &headers, "members", offset / max).await {
        return answer;
    }
    let items: Option<Vec<Value>> = {
        let dataset = fake.dataset.lock().unwrap_or_else(|e| e.into_inner());
        let everyone = fake
            .everyone_groups
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        dataset.groups.iter().position(|g| g.id == key || format!("{}@acme.test", g.id) == key).map(|group| {
            let mut items: Vec<Value> = dataset
                .members_of(group)
                .into_iter()
                .map(|u| json!({"kind": "admin#directory#member", "id": dataset.users[u].id, "email": dataset.users[u].email, "role": "MEMBER", "type": "USER", "status": "ACTIVE"}))
                .collect();
            items.extend(dataset.children_of(group).into_iter().map(|g| json!({"kind": "admin#directory#member", "id": dataset.groups[g].id, "email": format!("{}@acme.test", dataset.groups[g].id), "role": "MEMBER", "type": "GROUP"})));
            if everyone.contains(&group) {
                items.push(json!({"kind": "admin#directory#member", "id": CUSTOMER_ID, "role": "MEMBER", "type": "CUSTOMER"}));
            }
            items
        })
    };
    match items {
        Some(items) => list(
            &fake,
            "members",
            "admin#directory#members",
            "members",
            items,
            offset,
            max,
        ),
        None => google_error(
            StatusCode::NOT_FOUND,
            "notFound",
            "Resource Not Found: groupKey",
        ),
    }
}

impl idpsync_driver::compliance::CompliantFake for FakeGoogle {
    type Kind = crate::GoogleFactory;
    /// users.list's documented maximum `maxResults`.
    const MAX_PAGE_SIZE: u32 = 500;
    /// A group can be a member of a group (`type: GROUP`).
    const NESTED_GROUPS: bool = true;

    /// Users at 500 a call, groups and each group's members at 200.
    fn minimum_calls(dataset: &Dataset) -> u64 {
        use idpsync_driver::compliance::{member_listings, pages};
        pages(dataset.users.len(), 500)
            + pages(dataset.groups.len(), 200)
            + member_listings(dataset, 200)
    }

    fn kind() -> Self::Kind {
        crate::GoogleFactory
    }

    fn new(dataset: Dataset) -> Self {
        FakeGoogle::new(dataset, idpsync_driver::fake::TEST_PUBLIC_KEY_DER.to_vec())
    }

    async fn start(&self) -> std::io::Result<FakeServer> {
        FakeGoogle::start(self).await
    }

    fn settings(&self, base_url: &str, page_size: u32) -> Value {
        FakeGoogle::settings(
            self,
            base_url,
            idpsync_driver::fake::TEST_PRIVATE_KEY_PEM,
            page_size,
        )
    }

    fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    fn tokens(&self) -> Option<&FakeTokens> {
        Some(&self.tokens)
    }

    fn delete_user(&self, id: &str) {
        self.delete_user_by_id(id);
    }

    fn create_user(&self, user: idpsync_driver::fake::FakeUser) {
        self.dataset
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_user(user);
    }
}
