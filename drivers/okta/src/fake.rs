//! A fake Okta org (feature `fake`) that behaves like the Management API in
//! what the driver relies on: `SSWS` API tokens and OAuth service apps
//! (`private_key_jwt` assertions checked against the registered public key),
//! bare-array pages with `Link: <...after=...>; rel="next"`, `limit` capped at
//! 200, DEPROVISIONED users only through `search`, `search=lastUpdated gt`,
//! group `filter=lastUpdated gt ... or lastMembershipUpdated gt ...`,
//! `X-Rate-Limit-*` headers on every answer, 429 when the budget is spent,
//! and Okta's error bodies (`errorCode`, `errorSummary`, ...), for unknown
//! routes and search expressions too. Pages are named `users`, `groups`,
//! `members` and `logs` for faults.
//!
//! Deleting a user ([`FakeOkta::delete_user`]) is what Okta does: an active
//! user is deactivated first, then the user vanishes from every listing,
//! search and group, and the System Log (`/api/v1/logs`, with `since`,
//! `until` and `eventType eq` filters) records both events. A new account
//! may take a deleted or renamed account's login ([`FakeOkta::create_user`],
//! [`FakeOkta::rename_user`]).
//!
//! Event hooks as Okta runs them: the Event Hooks API (create, read,
//! verify, deactivate, delete; a hook must be deactivated before it is
//! deleted), the one-time verification GET with
//! `X-Okta-Verification-Challenge`, and deliveries of the events each hook
//! subscribed to, after the change, with the hook's header, retried once
//! when no 2xx comes within 3 seconds ([`FakeOkta::hook_deliveries`]).
//! [`FakeOkta::register_hook_by_hand`] is an admin creating one in the
//! Admin Console; [`FakeOkta::duplicate_deliveries`] sends each twice, as
//! at-least-once delivery may.

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use idpsync_driver::fake::{
    Dataset, Delivery, DeliveryLog, FakeServer, FakeTokens, FaultInjector, call_back, deliver,
    json_response, serve,
};
use idpsync_driver::jwt::verify_rs256;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The org's people and their change times.
#[derive(Debug)]
pub struct Org {
    pub dataset: Dataset,
    pub status: HashMap<usize, String>,
    pub user_updated: HashMap<usize, DateTime<Utc>>,
    pub group_updated: HashMap<usize, DateTime<Utc>>,
    /// Each user's JSON as last served (cleared when the user changes): a
    /// benchmark tenant's member lists serve a million user objects, and
    /// building each anew made the fake, not the driver, the bottleneck.
    user_json: HashMap<usize, Arc<str>>,
    /// Users deleted: gone from every listing.
    pub deleted: std::collections::HashSet<usize>,
    /// The System Log: (published, eventType, target id, target type).
    pub log: Vec<(DateTime<Utc>, String, String, String)>,
    /// Each group's index by id, as last seen: checked at every use and
    /// rebuilt when the groups changed (a benchmark tenant's 100k member
    /// listings each looked their group up by scanning).
    group_index: HashMap<String, usize>,
}

impl Org {
    /// The index of the group `id`, if there is one.
    fn group_position(&mut self, id: &str) -> Option<usize> {
        let groups = &self.dataset.groups;
        let fresh = |i: &usize| groups.get(*i).is_some_and(|g| g.id == id);
        if let Some(i) = self.group_index.get(id).copied().filter(fresh) {
            return Some(i);
        }
        self.group_index = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id.clone(), i))
            .collect();
        self.group_index.get(id).copied()
    }

    fn record(&mut self, event_type: &str, target: &str, target_type: &str) {
        self.log.push((
            Utc::now(),
            event_type.into(),
            target.into(),
            target_type.into(),
        ));
    }
}

#[derive(Clone)]
pub struct FakeOkta {
    pub api_token: String,
    pub client_id: String,
    /// PKCS#1 DER public key of the service app's registered key.
    pub public_key: Arc<Vec<u8>>,
    pub org: Arc<Mutex<Org>>,
    pub tokens: FakeTokens,
    pub faults: FaultInjector,
    /// When set, the credentials lack read permissions: 403 E0000006.
    pub forbidden: Arc<Mutex<bool>>,
    base_url: Arc<Mutex<String>>,
    hooks: Arc<Mutex<Vec<EventHook>>>,
    /// The answers every event hook delivery got.
    pub hook_deliveries: DeliveryLog,
    /// Send every delivery twice.
    pub duplicate_deliveries: Arc<std::sync::atomic::AtomicBool>,
    /// Events gathered for one delivery, from [`FakeOkta::batch`] to
    /// [`FakeOkta::send_batch`].
    batch: Arc<Mutex<Option<Vec<TypedEvent>>>>,
}

/// A System Log event as a hook delivers it, with its `eventType`.
type TypedEvent = (String, Value);

/// An event hook of the org.
#[derive(Debug, Clone)]
struct EventHook {
    id: String,
    uri: String,
    /// The header (name, value) sent with every request.
    auth: (String, String),
    events: Vec<String>,
    active: bool,
    verified: bool,
}

impl EventHook {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "name": format!("hook {}", self.id),
            "status": if self.active { "ACTIVE" } else { "INACTIVE" },
            "verificationStatus": if self.verified { "VERIFIED" } else { "UNVERIFIED" },
            "events": {"type": "EVENT_TYPE", "items": self.events},
            "channel": {"type": "HTTP", "version": "1.0.0", "config": {
                "uri": self.uri,
                "headers": [],
                "authScheme": {"type": "HEADER", "key": self.auth.0},
            }},
        })
    }
}

fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("a date")
        .with_timezone(&Utc)
}

fn okta_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl FakeOkta {
    pub fn new(dataset: Dataset, public_key_pkcs1_der: Vec<u8>) -> Self {
        let status = dataset
            .users
            .iter()
            .enumerate()
            .filter(|(_, u)| !u.active)
            .map(|(i, _)| (i, "SUSPENDED".to_string()))
            .collect();
        FakeOkta {
            api_token: "00fake-okta-api-token".into(),
            client_id: "0oafakeserviceapp".into(),
            public_key: Arc::new(public_key_pkcs1_der),
            org: Arc::new(Mutex::new(Org {
                dataset,
                status,
                user_updated: HashMap::new(),
                group_updated: HashMap::new(),
                user_json: HashMap::new(),
                group_index: HashMap::new(),
                deleted: Default::default(),
                log: Vec::new(),
            })),
            tokens: FakeTokens::default(),
            faults: FaultInjector::default(),
            forbidden: Arc::new(Mutex::new(false)),
            base_url: Arc::new(Mutex::new(String::new())),
            hooks: Arc::default(),
            hook_deliveries: DeliveryLog::default(),
            duplicate_deliveries: Arc::default(),
            batch: Arc::default(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth2/v1/token", post(token))
            .route("/api/v1/users", get(users))
            .route("/api/v1/groups", get(groups))
            .route("/api/v1/groups/{id}/users", get(group_users))
            .route("/api/v1/logs", get(logs))
            .route("/api/v1/eventHooks", post(create_hook))
            .route(
                "/api/v1/eventHooks/{id}",
                get(read_hook).delete(delete_hook),
            )
            .route(
                "/api/v1/eventHooks/{id}/lifecycle/{action}",
                post(hook_lifecycle),
            )
            .fallback(unknown_route)
            .with_state(self.clone())
    }

    pub async fn start(&self) -> std::io::Result<FakeServer> {
        let server = serve(self.router()).await?;
        *self.base_url.lock().unwrap_or_else(|e| e.into_inner()) = server.base_url.clone();
        Ok(server)
    }

    /// Settings with the API token.
    pub fn settings(&self, base_url: &str, page_size: u32) -> Value {
        json!({"org_url": base_url, "api_token": self.api_token, "page_size": page_size})
    }

    /// Changes a user's status (`SUSPENDED`, `DEPROVISIONED`, `ACTIVE`, ...).
    pub fn set_status(&self, user: usize, status: &str) {
        let id = {
            let mut org = self.org.lock().unwrap_or_else(|e| e.into_inner());
            org.status.insert(user, status.into());
            org.user_updated.insert(user, Utc::now());
            org.user_json.remove(&user);
            org.dataset.users[user].id.clone()
        };
        let event = match status {
            "SUSPENDED" => "user.lifecycle.suspend",
            "DEPROVISIONED" => "user.lifecycle.deactivate",
            "LOCKED_OUT" => "user.account.lock",
            _ => "user.lifecycle.activate",
        };
        self.notify(event, &[(&id, "User")]);
    }

    /// Deletes a user as Okta does: deactivated first if it is not already
    /// (DEPROVISIONED, logged), then gone from every listing and group,
    /// with `user.lifecycle.delete.initiated` in the System Log.
    /// The index of the user with this id, unless deleted.
    pub fn user_index(&self, id: &str) -> Option<usize> {
        let org = self.org.lock().unwrap_or_else(|e| e.into_inner());
        org.dataset
            .users
            .iter()
            .position(|user| user.id == id)
            .filter(|index| !org.deleted.contains(index))
    }

    pub fn delete_user(&self, user: usize) {
        let mut org = self.org.lock().unwrap_or_else(|e| e.into_inner());
        let id = org.dataset.users[user].id.clone();
        if org.status.get(&user).map(String::as_str) != Some("DEPROVISIONED") {
            org.status.insert(user, "DEPROVISIONED".into());
            org.record("user.lifecycle.deactivate", &id, "User");
        }
        org.user_updated.insert(user, Utc::now());
        org.user_json.remove(&user);
        org.deleted.insert(user);
        let groups: Vec<usize> = org
            .dataset
            .members
            .iter()
            .filter(|(_, u)| *u == user)
            .map(|(g, _)| *g)
            .collect();
        org.dataset.members.retain(|(_, u)| *u != user);
        for group in groups {
            org.group_updated.insert(group, Utc::now());
        }
        org.record("user.lifecycle.delete.initiated", &id, "User");
        drop(org);
        self.notify("user.lifecycle.delete.initiated", &[(&id, "User")]);
    }

    /// A new account (a new id), possibly with a login another account had.
    /// Returns its index.
    pub fn create_user(&self, user: idpsync_driver::fake::FakeUser) -> usize {
        let mut org = self.org.lock().unwrap_or_else(|e| e.into_inner());
        org.dataset.users.push(user);
        let index = org.dataset.users.len() - 1;
        org.user_updated.insert(index, Utc::now());
        index
    }

    /// Gives a user a new login.
    pub fn rename_user(&self, user: usize, login: &str) {
        let mut org = self.org.lock().unwrap_or_else(|e| e.into_inner());
        org.dataset.users[user].user_name = login.into();
        org.user_updated.insert(user, Utc::now());
        org.user_json.remove(&user);
    }

    pub fn remove_member(&self, group: usize, user: usize) {
        let (user_id, group_id) = {
            let mut org = self.org.lock().unwrap_or_else(|e| e.into_inner());
            org.dataset.members.retain(|m| *m != (group, user));
            org.group_updated.insert(group, Utc::now());
            (
                org.dataset.users[user].id.clone(),
                org.dataset.groups[group].id.clone(),
            )
        };
        self.notify(
            "group.user_membership.remove",
            &[(&user_id, "User"), (&group_id, "UserGroup")],
        );
    }

    /// An event hook an admin created and verified in the Admin Console,
    /// subscribed to every event idpsync asks for; its id.
    pub fn register_hook_by_hand(&self, uri: &str, secret: &str) -> String {
        let mut hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!("who{:05}", hooks.len() + 1);
        hooks.push(EventHook {
            id: id.clone(),
            uri: uri.into(),
            auth: ("Authorization".into(), secret.into()),
            events: crate::hooks::HOOK_EVENTS.map(String::from).to_vec(),
            active: true,
            verified: true,
        });
        id
    }

    /// The org's event hooks as (id, uri, active, verified).
    pub fn event_hooks(&self) -> Vec<(String, String, bool, bool)> {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|h| (h.id.clone(), h.uri.clone(), h.active, h.verified))
            .collect()
    }

    /// From now until [`FakeOkta::send_batch`], events are gathered and
    /// delivered together, as Okta batches events that happen close
    /// together (at most 50 in one delivery).
    pub fn batch(&self) {
        *self.batch.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    }

    /// Delivers the events gathered since [`FakeOkta::batch`]: to each hook
    /// the ones it is subscribed to, 50 to a delivery.
    pub fn send_batch(&self) {
        let gathered = self.batch.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.deliver_events(gathered.unwrap_or_default());
    }

    /// Delivers one event to every active, verified hook subscribed to it,
    /// as Okta does: after the change, retried once; gathered instead while
    /// a batch is open.
    fn notify(&self, event_type: &str, targets: &[(&str, &str)]) {
        let now = okta_time(Utc::now());
        let event = json!({
            "uuid": format!("{:032x}", rand::random::<u128>()),
            "published": now,
            "eventType": event_type,
            "version": "0",
            "severity": "INFO",
            "displayMessage": event_type,
            "target": targets.iter().map(|(id, kind)| json!({"id": id, "type": kind})).collect::<Vec<_>>(),
        });
        if let Some(batch) = self
            .batch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            batch.push((event_type.to_string(), event));
            return;
        }
        self.deliver_events(vec![(event_type.to_string(), event)]);
    }

    fn deliver_events(&self, events: Vec<TypedEvent>) {
        let hooks = self.hooks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let now = okta_time(Utc::now());
        for hook in hooks.iter().filter(|h| h.active && h.verified) {
            let subscribed: Vec<&Value> = events
                .iter()
                .filter(|(event_type, _)| hook.events.contains(event_type))
                .map(|(_, event)| event)
                .collect();
            for events in subscribed.chunks(50) {
                let body = json!({
                    "eventType": "com.okta.event_hook",
                    "eventTypeVersion": "1.0",
                    "cloudEventsVersion": "0.1",
                    "source": format!("https://fake.okta/api/v1/eventHooks/{}", hook.id),
                    "eventId": format!("evt{:032x}", rand::random::<u128>()),
                    "eventTime": now,
                    "contentType": "application/json",
                    "data": {"events": events},
                });
                let delivery = Delivery {
                    url: hook.uri.clone(),
                    headers: vec![
                        (hook.auth.0.clone(), hook.auth.1.clone()),
                        ("content-type".into(), "application/json".into()),
                    ],
                    body: body.to_string().into_bytes(),
                    deadline: std::time::Duration::from_secs(3),
                    retries: 1,
                };
                if self
                    .duplicate_deliveries
                    .load(std::sync::atomic::Ordering::Relaxed)
                {
                    deliver(delivery.clone(), self.hook_deliveries.clone());
                }
                deliver(delivery, self.hook_deliveries.clone());
            }
        }
    }
}

/// Okta's answer to a `search` or `filter` expression it cannot evaluate.
fn invalid_search() -> Response {
    okta_error(
        StatusCode::BAD_REQUEST,
        "E0000031",
        "Invalid search criteria.",
    )
}

fn okta_error(status: StatusCode, code: &str, summary: &str) -> Response {
    (status, axum::Json(json!({"errorCode": code, "errorSummary": summary, "errorLink": code, "errorId": "oaeFake", "errorCauses": []}))).into_response()
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    scope: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

async fn token(State(fake): State<FakeOkta>, Form(form): Form<TokenForm>) -> Response {
    let refuse = |description: &str| {
        (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": description})),
        )
            .into_response()
    };
    if form.grant_type != "client_credentials"
        || form.client_assertion_type.as_deref()
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    {
        return refuse("The client_assertion_type is invalid.");
    }
    let Some(assertion) = form.client_assertion else {
        return refuse("client_assertion is missing");
    };
    let claims = match verify_rs256(&assertion, &fake.public_key) {
        Ok(claims) => claims,
        Err(_) => return refuse("The client_assertion signature is invalid."),
    };
    let audience = format!(
        "{}/oauth2/v1/token",
        fake.base_url.lock().unwrap_or_else(|e| e.into_inner())
    );
    if claims["iss"] != fake.client_id.as_str()
        || claims["sub"] != fake.client_id.as_str()
        || claims["aud"] != audience.as_str()
    {
        return refuse("The client_assertion token has invalid claims.");
    }
    let scopes = form.scope.unwrap_or_default();
    if !(scopes.contains("okta.users.read") && scopes.contains("okta.groups.read")) {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_scope", "error_description": "The requested scope is invalid."}))).into_response();
    }
    axum::Json(json!({"token_type": "Bearer", "expires_in": 3600, "access_token": fake.tokens.issue(), "scope": scopes})).into_response()
}

fn rate_headers(response: &mut Response, remaining: u32, reset_in_secs: u64) {
    let reset = (Utc::now().timestamp() as u64) + reset_in_secs;
    let headers = response.headers_mut();
    headers.insert("x-rate-limit-limit", HeaderValue::from(600));
    headers.insert("x-rate-limit-remaining", HeaderValue::from(remaining));
    headers.insert("x-rate-limit-reset", HeaderValue::from(reset));
}

async fn gate(
    fake: &FakeOkta,
    headers: &HeaderMap,
    resource: &str,
    page: usize,
) -> Option<Response> {
    if let Some(answer) = fake
        .faults
        .before(resource, page, |secs| {
            let mut response = okta_error(
                StatusCode::TOO_MANY_REQUESTS,
                "E0000047",
                "API call exceeded rate limit due to too many requests.",
            );
            if let Some(secs) = secs {
                rate_headers(&mut response, 0, secs);
            }
            response
        })
        .await
    {
        return Some(answer);
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let ok = match authorization.strip_prefix("SSWS ") {
        Some(token) => token == fake.api_token,
        None => fake.tokens.check(headers),
    };
    if !ok {
        return Some(okta_error(
            StatusCode::UNAUTHORIZED,
            "E0000011",
            "Invalid token provided",
        ));
    }
    if *fake.forbidden.lock().unwrap_or_else(|e| e.into_inner()) {
        return Some(okta_error(
            StatusCode::FORBIDDEN,
            "E0000006",
            "You do not have permission to perform the requested action",
        ));
    }
    None
}

/// The cursor after a page of a list of `total` items read from `after`.
fn next_after(after: usize, limit: usize, total: usize) -> Option<usize> {
    (after + limit < total).then_some(after + limit)
}

fn paging(query: &HashMap<String, String>) -> (usize, usize) {
    let limit = query
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
        .clamp(1, 200);
    let after = query
        .get("after")
        .and_then(|v| usize::from_str_radix(v.trim_start_matches("00u"), 16).ok())
        .unwrap_or(0);
    (after, limit)
}

/// A page of `items` with Okta's Link headers; a `next` link resumes at
/// cursor `next`, if any.
fn page(
    fake: &FakeOkta,
    resource: &str,
    path: &str,
    query: &HashMap<String, String>,
    next: Option<usize>,
    items: Vec<Arc<str>>,
) -> Response {
    let (after, limit) = paging(query);
    let base = fake
        .base_url
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let body = format!("[{}]", items.join(","));
    let mut response = json_response(
        StatusCode::OK,
        fake.faults.mangle(resource, after / limit, body),
    );
    let mut params: Vec<(String, String)> = query
        .iter()
        .filter(|(k, _)| k.as_str() != "after")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    params.sort();
    let link = |extra: Option<String>| {
        let mut url = url::Url::parse(&format!("{base}{path}")).expect("a URL");
        for (key, value) in &params {
            url.query_pairs_mut().append_pair(key, value);
        }
        if let Some(after) = extra {
            url.query_pairs_mut().append_pair("after", &after);
        }
        url.to_string()
    };
    response.headers_mut().append(
        header::LINK,
        HeaderValue::from_str(&format!("<{}>; rel=\"self\"", link(None))).expect("a header"),
    );
    if let Some(next) = next {
        response.headers_mut().append(
            header::LINK,
            HeaderValue::from_str(&format!(
                "<{}>; rel=\"next\"",
                link(Some(format!("00u{next:x}")))
            ))
            .expect("a header"),
        );
    }
    rate_headers(&mut response, 599, 60);
    response
}

/// A user as Okta lists it, serialized (cached until the user changes).
fn user_json(org: &mut Org, index: usize) -> Arc<str> {
    if let Some(json) = org.user_json.get(&index) {
        return json.clone();
    }
    let json: Arc<str> = build_user_json(org, index).to_string().into();
    org.user_json.insert(index, json.clone());
    json
}

fn build_user_json(org: &Org, index: usize) -> Value {
    let user = &org.dataset.users[index];
    let status = org
        .status
        .get(&index)
        .cloned()
        .unwrap_or_else(|| "ACTIVE".into());
    let updated = org.user_updated.get(&index).copied().unwrap_or_else(epoch);
    json!({
        "id": user.id, "status": status, "created": okta_time(epoch()), "activated": okta_time(epoch()),
        "statusChanged": okta_time(updated), "lastLogin": null, "lastUpdated": okta_time(updated), "passwordChanged": null,
        "type": {"id": "otyfake"},
        "profile": {"firstName": user.given_name, "lastName": user.family_name, "mobilePhone": null, "secondEmail": null, "login": user.user_name, "email": user.email},
        "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": {"self": {"href": format!("/api/v1/users/{}", user.id)}}
    })
}

/// `lastUpdated gt "<t>"` style filters: the timestamp, if any.
fn since(expression: &str) -> Option<DateTime<Utc>> {
    let start = expression.find("gt \"")? + 4;
    let end = expression[start..].find('"')? + start;
    DateTime::parse_from_rfc3339(&expression[start..end])
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

async fn users(
    State(fake): State<FakeOkta>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (after, limit) = paging(&query);
    if let Some(answer) = gate(&fake, &headers, "users", after / limit).await {
        return answer;
    }
    let (next, items): (Option<usize>, Vec<Arc<str>>) = {
        let mut org = fake.org.lock().unwrap_or_else(|e| e.into_inner());
        let search = query.get("search").cloned().unwrap_or_default();
        // The search, read once per page rather than once per user.
        let wanted_status = search
            .strip_prefix("status eq \"")
            .and_then(|s| s.strip_suffix('"'));
        let updated_after = search
            .starts_with("lastUpdated gt")
            .then(|| since(&search))
            .flatten();
        if !search.is_empty() && wanted_status.is_none() && updated_after.is_none() {
            return invalid_search();
        }
        // The cursor is the index of the first user not yet listed, as an
        // Okta cursor names where the listing resumes: a page costs its own
        // users, not the users before it.
        let mut matching = (after..org.dataset.users.len())
            .filter(|i| !org.deleted.contains(i))
            .filter(|i| {
                let status = org.status.get(i).map(String::as_str).unwrap_or("ACTIVE");
                match (wanted_status, updated_after) {
                    (Some(wanted), _) => status == wanted,
                    (None, Some(t)) => org.user_updated.get(i).is_some_and(|u| *u > t),
                    (None, None) => status != "DEPROVISIONED",
                }
            });
        let listed: Vec<usize> = matching.by_ref().take(limit).collect();
        let next = matching.next();
        (
            next,
            listed.into_iter().map(|i| user_json(&mut org, i)).collect(),
        )
    };
    page(&fake, "users", "/api/v1/users", &query, next, items)
}

async fn groups(
    State(fake): State<FakeOkta>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (after, limit) = paging(&query);
    if let Some(answer) = gate(&fake, &headers, "groups", after / limit).await {
        return answer;
    }
    let (next, items): (Option<usize>, Vec<Arc<str>>) = {
        let org = fake.org.lock().unwrap_or_else(|e| e.into_inner());
        let changed_since = match query.get("filter").map(|filter| since(filter)) {
            Some(None) => return invalid_search(),
            parsed => parsed.flatten(),
        };
        let matching: Vec<usize> = (0..org.dataset.groups.len())
            .filter(|i| {
                changed_since.is_none_or(|t| org.group_updated.get(i).is_some_and(|u| *u > t))
            })
            .collect();
        let items = matching
            .iter()
            .skip(after)
            .take(limit)
            .map(|&i| {
                let group = &org.dataset.groups[i];
                let updated = org.group_updated.get(&i).copied().unwrap_or_else(epoch);
                json!({
                    "id": group.id, "created": okta_time(epoch()), "lastUpdated": okta_time(epoch()),
                    "lastMembershipUpdated": okta_time(updated), "objectClass": ["okta:user_group"],
                    "type": if i % 5 == 4 { "APP_GROUP" } else { "OKTA_GROUP" },
                    "profile": {"name": group.name, "description": null}
                })
                .to_string()
                .into()
            })
            .collect();
        (next_after(after, limit, matching.len()), items)
    };
    page(&fake, "groups", "/api/v1/groups", &query, next, items)
}

async fn group_users(
    State(fake): State<FakeOkta>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (after, limit) = paging(&query);
    if let Some(answer) = gate(&fake, &headers, "members", after / limit).await {
        return answer;
    }
    let items: Option<(Option<usize>, Vec<Arc<str>>)> = {
        let mut org = fake.org.lock().unwrap_or_else(|e| e.into_inner());
        org.group_position(&id).map(|g| {
            let members = org.dataset.members_of(g);
            (
                next_after(after, limit, members.len()),
                members
                    .into_iter()
                    .skip(after)
                    .take(limit)
                    .map(|u| user_json(&mut org, u))
                    .collect(),
            )
        })
    };
    match items {
        Some((next, items)) => page(
            &fake,
            "members",
            &format!("/api/v1/groups/{id}/users"),
            &query,
            next,
            items,
        ),
        None => okta_error(
            StatusCode::NOT_FOUND,
            "E0000007",
            &format!("Not found: Resource not found: {id} (UserGroup)"),
        ),
    }
}

/// `eventType eq "a" or eventType eq "b"`: the event types, or `None` for
/// an expression the fake does not evaluate.
fn event_types(filter: &str) -> Option<Vec<String>> {
    filter
        .split(" or ")
        .map(|part| {
            part.trim()
                .strip_prefix("eventType eq \"")?
                .strip_suffix('"')
                .map(str::to_string)
        })
        .collect()
}

/// The System Log: events published in `[since, until)` of the filtered
/// types, oldest first. Without `until` the query polls: Okta links a next
/// page even after the last event.
async fn logs(
    State(fake): State<FakeOkta>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (after, limit) = paging(&query);
    if let Some(answer) = gate(&fake, &headers, "logs", after / limit).await {
        return answer;
    }
    let time = |key: &str| {
        query
            .get(key)
            .map(|t| DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc)))
            .transpose()
    };
    let (Ok(since), Ok(until)) = (time("since"), time("until")) else {
        return okta_error(
            StatusCode::BAD_REQUEST,
            "E0000030",
            "Bad request. Invalid date. Dates must be of the form yyyy-MM-dd'T'HH:mm:ss.SSSZZ",
        );
    };
    let types = match query.get("filter").map(|filter| event_types(filter)) {
        Some(None) => return invalid_search(),
        parsed => parsed.flatten(),
    };
    let events: Vec<Arc<str>> = {
        let org = fake.org.lock().unwrap_or_else(|e| e.into_inner());
        org.log
            .iter()
            .filter(|(at, ..)| since.is_none_or(|s| *at >= s) && until.is_none_or(|u| *at < u))
            .filter(|(_, kind, ..)| types.as_ref().is_none_or(|t| t.contains(kind)))
            .map(|(at, kind, id, target_type)| {
                json!({
                    "uuid": format!("{}-{id}", at.timestamp_nanos_opt().unwrap_or_default()),
                    "published": okta_time(*at), "eventType": kind, "version": "0",
                    "severity": "INFO", "displayMessage": kind, "outcome": {"result": "SUCCESS"},
                    "actor": {"id": "00uadmin", "type": "User", "alternateId": "admin@example.test"},
                    "target": [{"id": id, "type": target_type, "alternateId": id}]
                })
                .to_string()
                .into()
            })
            .collect()
    };
    let total = if until.is_none() {
        // Polling: always a next link.
        usize::MAX
    } else {
        events.len()
    };
    let page_items = events.into_iter().skip(after).take(limit).collect();
    page(
        &fake,
        "logs",
        "/api/v1/logs",
        &query,
        next_after(after, limit, total),
        page_items,
    )
}

/// Okta's answer to a path it does not serve.
#[derive(Deserialize)]
struct NewHook {
    name: Option<String>,
    events: NewHookEvents,
    channel: NewHookChannel,
}

#[derive(Deserialize)]
struct NewHookEvents {
    items: Vec<String>,
}

#[derive(Deserialize)]
struct NewHookChannel {
    config: NewHookConfig,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewHookConfig {
    uri: String,
    auth_scheme: Option<AuthScheme>,
}

#[derive(Deserialize)]
struct AuthScheme {
    key: String,
    value: String,
}

fn hook_not_found(id: &str) -> Response {
    okta_error(
        StatusCode::NOT_FOUND,
        "E0000007",
        &format!("Not found: Resource not found: {id} (EventHook)"),
    )
}

async fn create_hook(
    State(fake): State<FakeOkta>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "eventHooks", 0).await {
        return answer;
    }
    let Ok(new) = serde_json::from_slice::<NewHook>(&body) else {
        return okta_error(
            StatusCode::BAD_REQUEST,
            "E0000003",
            "The request body was not well-formed.",
        );
    };
    let uri_ok = url::Url::parse(&new.channel.config.uri).is_ok_and(|u| {
        u.scheme() == "https" || matches!(u.host_str(), Some("127.0.0.1" | "localhost"))
    });
    if new.name.is_none() || !uri_ok || new.events.items.is_empty() {
        return okta_error(
            StatusCode::BAD_REQUEST,
            "E0000001",
            "Api validation failed: channel.config.uri must be an https URL; name and events are required",
        );
    }
    let mut hooks = fake.hooks.lock().unwrap_or_else(|e| e.into_inner());
    if hooks.len() >= 25 {
        return okta_error(
            StatusCode::BAD_REQUEST,
            "E0000001",
            "Api validation failed: a maximum of 25 event hooks is allowed per org",
        );
    }
    let hook = EventHook {
        id: format!("who{:05}", hooks.len() + 1),
        uri: new.channel.config.uri,
        auth: new
            .channel
            .config
            .auth_scheme
            .map(|a| (a.key, a.value))
            .unwrap_or_default(),
        events: new.events.items,
        active: true,
        verified: false,
    };
    hooks.push(hook.clone());
    (StatusCode::OK, axum::Json(hook.json())).into_response()
}

async fn read_hook(
    State(fake): State<FakeOkta>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "eventHooks", 0).await {
        return answer;
    }
    let hooks = fake.hooks.lock().unwrap_or_else(|e| e.into_inner());
    match hooks.iter().find(|h| h.id == id) {
        Some(hook) => axum::Json(hook.json()).into_response(),
        None => hook_not_found(&id),
    }
}

async fn delete_hook(
    State(fake): State<FakeOkta>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "eventHooks", 0).await {
        return answer;
    }
    let mut hooks = fake.hooks.lock().unwrap_or_else(|e| e.into_inner());
    match hooks.iter().position(|h| h.id == id) {
        Some(index) if hooks[index].active => okta_error(
            StatusCode::FORBIDDEN,
            "E0000001",
            "Api validation failed: an ACTIVE event hook cannot be deleted; deactivate it first",
        ),
        Some(index) => {
            hooks.remove(index);
            StatusCode::NO_CONTENT.into_response()
        }
        None => hook_not_found(&id),
    }
}

async fn hook_lifecycle(
    State(fake): State<FakeOkta>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "eventHooks", 0).await {
        return answer;
    }
    let Some(hook) = fake
        .hooks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|h| h.id == id)
        .cloned()
    else {
        return hook_not_found(&id);
    };
    let verified = match action.as_str() {
        "verify" => {
            // The one-time verification: the subscriber echoes the challenge.
            let challenge = format!("{:032x}", rand::random::<u128>());
            let answer = call_back(
                reqwest::Method::GET,
                &hook.uri,
                &[
                    ("x-okta-verification-challenge", challenge.as_str()),
                    (hook.auth.0.as_str(), hook.auth.1.as_str()),
                ],
                None,
                std::time::Duration::from_secs(3),
            )
            .await;
            let echoed = answer.ok().and_then(|(status, body)| {
                (status == 200).then(|| serde_json::from_str::<Value>(&body).ok())?
            });
            if echoed.as_ref().and_then(|v| v["verification"].as_str()) != Some(challenge.as_str())
            {
                return okta_error(
                    StatusCode::BAD_REQUEST,
                    "E0000001",
                    "Api validation failed: Verification failed: the endpoint did not return the verification value",
                );
            }
            Some(true)
        }
        "activate" | "deactivate" => None,
        _ => {
            return okta_error(
                StatusCode::NOT_FOUND,
                "E0000022",
                "The endpoint does not support the provided HTTP method",
            );
        }
    };
    let mut hooks = fake.hooks.lock().unwrap_or_else(|e| e.into_inner());
    let Some(stored) = hooks.iter_mut().find(|h| h.id == id) else {
        return hook_not_found(&id);
    };
    match action.as_str() {
        "activate" => stored.active = true,
        "deactivate" => stored.active = false,
        _ => stored.verified = verified.unwrap_or(stored.verified),
    }
    axum::Json(stored.json()).into_response()
}

async fn unknown_route(uri: axum::http::Uri) -> Response {
    okta_error(
        StatusCode::NOT_FOUND,
        "E0000007",
        &format!("Not found: Resource not found: {} (Page)", uri.path()),
    )
}

/// The suite runs the Okta driver as an OAuth service app: its access
/// tokens expire, an API token does not.
impl idpsync_driver::compliance::CompliantFake for FakeOkta {
    type Kind = crate::OktaFactory;
    /// The users listing's documented maximum `limit`.
    const MAX_PAGE_SIZE: u32 = 200;
    /// Okta groups hold users only.
    const NESTED_GROUPS: bool = false;

    /// Users at 200 a call, one search for DEPROVISIONED users (the
    /// listing leaves them out), groups at 10,000, members at 1,000.
    fn minimum_calls(dataset: &Dataset) -> u64 {
        use idpsync_driver::compliance::{member_listings, pages};
        pages(dataset.users.len(), 200)
            + 1
            + pages(dataset.groups.len(), 10_000)
            + member_listings(dataset, 1000)
    }

    fn kind() -> Self::Kind {
        crate::OktaFactory
    }

    fn new(dataset: Dataset) -> Self {
        FakeOkta::new(dataset, idpsync_driver::fake::TEST_PUBLIC_KEY_DER.to_vec())
    }

    async fn start(&self) -> std::io::Result<FakeServer> {
        FakeOkta::start(self).await
    }

    fn settings(&self, base_url: &str, page_size: u32) -> Value {
        json!({
            "org_url": base_url, "client_id": self.client_id,
            "private_key": idpsync_driver::fake::TEST_PRIVATE_KEY_PEM, "page_size": page_size
        })
    }

    fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    fn tokens(&self) -> Option<&FakeTokens> {
        Some(&self.tokens)
    }

    fn delete_user(&self, id: &str) {
        // Deleted users stay in the dataset (marked), so indexes are stable.
        let index = self.user_index(id);
        if let Some(index) = index {
            FakeOkta::delete_user(self, index);
        }
    }

    fn create_user(&self, user: idpsync_driver::fake::FakeUser) {
        FakeOkta::create_user(self, user);
    }
}
