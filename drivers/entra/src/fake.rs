//! A fake Microsoft Graph (feature `fake`) that behaves like Graph in what
//! the driver relies on: the identity platform's token endpoint (client
//! credentials with the secret in the body, `invalid_client` with an AADSTS
//! message), `/v1.0/users/delta` and `/v1.0/groups/delta` rounds with opaque
//! `$skiptoken` paging (`Prefer: odata.maxpagesize`), absolute
//! `@odata.nextLink`s and a final `@odata.deltaLink`, `@removed` users,
//! `members@delta` with `@odata.type` (only when `members` is in
//! `$select`), `$select`, 410 `resyncRequired` for expired delta tokens, 429
//! with `Retry-After`, and OData error bodies, for unknown routes too.
//!
//! What Graph documents and a driver must survive:
//! * a group with many members comes as several objects, on one page or
//!   several, each with more of its `members@delta`
//!   ([`Tenant::members_per_object`]);
//! * the same object may appear more than once in a round
//!   ([`Tenant::repeat_objects`]: each page starts with the previous
//!   page's last object);
//! * an updated user comes as its id and only the properties that changed
//!   (a new user in full);
//! * a deleted user's name may be given to a new account.
//!
//! Change the tenant with [`FakeGraph::disable_user`], [`FakeGraph::rename_user`],
//! [`FakeGraph::create_user`], [`FakeGraph::delete_user`],
//! [`FakeGraph::add_member`], [`FakeGraph::remove_member`] and
//! [`FakeGraph::expire_delta_tokens`].
//!
//! Change notifications as Graph sends them: `/v1.0/subscriptions` (create,
//! renew with PATCH, delete, reauthorize) for `users` and `groups`, with the
//! validation handshake before a subscription is made (the token POSTed as
//! `?validationToken=` to each URL must come back as text/plain, 200,
//! within 10 seconds), expiry at most 41,760 minutes ahead (an expired
//! subscription is gone), a notification per change to each live
//! subscription of its resource after the change (retried when not
//! answered 2xx within 3 seconds; [`FakeGraph::notification_deliveries`]),
//! and lifecycle notifications on request ([`FakeGraph::send_lifecycle`]).

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
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Members per group object in a round: a bigger group comes as several
/// objects.
pub const MEMBERS_PER_OBJECT: usize = 100;

/// The tenant and its change log.
#[derive(Debug)]
pub struct Tenant {
    pub dataset: Dataset,
    /// At most this many `members@delta` entries per group object.
    pub members_per_object: usize,
    /// Each page after a round's first starts with the previous page's
    /// last object again.
    pub repeat_objects: bool,
    /// Bumped by every change; delta tokens are versions.
    version: u64,
    /// When a user last changed, and the properties that changed since it
    /// was created (what a delta record of it carries).
    user_changed: HashMap<usize, (u64, Vec<&'static str>)>,
    user_created: HashMap<usize, u64>,
    user_deleted: HashMap<usize, u64>,
    /// (version, group index, member id, member is a group, added)
    member_changes: Vec<(u64, usize, String, bool, bool)>,
    /// Delta tokens older than this are expired.
    oldest_valid: u64,
    /// Requests answered, per listing, for tests of delta efficiency.
    pub items_served: u64,
    /// Each group's `members@delta` array as served in a full round, valid
    /// for `members_json_version`: a benchmark tenant's full round lists a
    /// million members, and building each anew made the fake, not the
    /// driver, most of a pull's reading time.
    members_json: HashMap<usize, Arc<Vec<String>>>,
    /// Each group's nested groups, valid for `members_json_version` too.
    nested_groups: Vec<Vec<usize>>,
    members_json_version: u64,
}

impl Tenant {
    fn new(dataset: Dataset) -> Self {
        Tenant {
            dataset,
            members_per_object: MEMBERS_PER_OBJECT,
            repeat_objects: false,
            version: 0,
            user_changed: HashMap::new(),
            user_created: HashMap::new(),
            user_deleted: HashMap::new(),
            member_changes: Vec::new(),
            oldest_valid: 0,
            items_served: 0,
            members_json: HashMap::new(),
            nested_groups: Vec::new(),
            members_json_version: 0,
        }
    }

    /// Records that these properties of a user changed.
    fn user_changed(&mut self, user: usize, version: u64, properties: &[&'static str]) {
        let entry = self
            .user_changed
            .entry(user)
            .or_insert((version, Vec::new()));
        entry.0 = version;
        for property in properties {
            if !entry.1.contains(property) {
                entry.1.push(property);
            }
        }
    }
}

#[derive(Clone)]
pub struct FakeGraph {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub tenant: Arc<Mutex<Tenant>>,
    pub tokens: FakeTokens,
    pub faults: FaultInjector,
    base_url: Arc<Mutex<String>>,
    subscriptions: Arc<Mutex<Vec<GraphSubscription>>>,
    /// The answers every change and lifecycle notification got.
    pub notification_deliveries: DeliveryLog,
}

/// Graph's longest subscription to users or groups.
const MAX_SUBSCRIPTION_MINUTES: i64 = 41_760;

/// A subscription of the tenant.
#[derive(Debug, Clone)]
struct GraphSubscription {
    id: String,
    resource: String,
    change_types: Vec<String>,
    notification_url: String,
    lifecycle_url: Option<String>,
    client_state: Option<String>,
    expires: DateTime<Utc>,
}

impl GraphSubscription {
    fn json(&self) -> Value {
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "changeType": self.change_types.join(","),
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "clientState": self.client_state,
            "expirationDateTime": graph_time(self.expires),
        })
    }
}

fn graph_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl FakeGraph {
    pub fn new(dataset: Dataset) -> Self {
        FakeGraph {
            tenant_id: "00000000-aaaa-bbbb-cccc-000000000001".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: "fake~graph~secret".into(),
            tenant: Arc::new(Mutex::new(Tenant::new(dataset))),
            tokens: FakeTokens::default(),
            faults: FaultInjector::default(),
            base_url: Arc::new(Mutex::new(String::new())),
            subscriptions: Arc::default(),
            notification_deliveries: DeliveryLog::default(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/v1.0/users/delta", get(users_delta))
            .route("/v1.0/groups/delta", get(groups_delta))
            .route("/v1.0/users", get(list_users))
            .route("/v1.0/groups", get(list_groups))
            .route("/v1.0/users/{id}", get(one_user))
            .route("/v1.0/subscriptions", post(create_subscription))
            .route(
                "/v1.0/subscriptions/{id}",
                axum::routing::patch(renew_subscription).delete(delete_subscription),
            )
            .route("/v1.0/subscriptions/{id}/reauthorize", post(reauthorize))
            .fallback(unknown_route)
            .with_state(self.clone())
    }

    pub async fn start(&self) -> std::io::Result<FakeServer> {
        let server = serve(self.router()).await?;
        *self.base_url.lock().unwrap_or_else(|e| e.into_inner()) = server.base_url.clone();
        Ok(server)
    }

    /// `[connections.entra]` pointing at this fake (authority and Graph).
    pub fn settings(&self, base_url: &str, page_size: u32) -> Value {
        json!({
            "tenant_id": self.tenant_id, "client_id": self.client_id, "client_secret": self.client_secret,
            "authority_url": base_url, "graph_url": base_url, "page_size": page_size
        })
    }

    fn change(&self, apply: impl FnOnce(&mut Tenant, u64)) {
        let mut tenant = self.tenant.lock().unwrap_or_else(|e| e.into_inner());
        tenant.version += 1;
        let version = tenant.version;
        apply(&mut tenant, version);
    }

    /// The index of the user with this id, unless deleted.
    pub fn user_index(&self, id: &str) -> Option<usize> {
        let tenant = self.tenant.lock().unwrap_or_else(|e| e.into_inner());
        tenant
            .dataset
            .users
            .iter()
            .position(|user| user.id == id)
            .filter(|index| !tenant.user_deleted.contains_key(index))
    }

    pub fn disable_user(&self, user: usize) {
        self.change(|t, v| {
            t.dataset.users[user].active = false;
            t.user_changed(user, v, &["accountEnabled"]);
        });
        self.notify_user(user, "updated");
    }

    fn user_id(&self, user: usize) -> String {
        self.tenant
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dataset
            .users[user]
            .id
            .clone()
    }

    fn group_id(&self, group: usize) -> String {
        self.tenant
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dataset
            .groups[group]
            .id
            .clone()
    }

    fn notify_user(&self, user: usize, change: &str) {
        let id = self.user_id(user);
        self.notify("users", "Users", "#Microsoft.Graph.User", &id, change);
    }

    fn notify_group(&self, group: usize) {
        let id = self.group_id(group);
        self.notify("groups", "Groups", "#Microsoft.Graph.Group", &id, "updated");
    }

    /// Live subscriptions as (id, resource, expiry); expired ones are gone.
    pub fn subscriptions(&self) -> Vec<(String, String, DateTime<Utc>)> {
        let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
        subscriptions.retain(|s| s.expires > Utc::now());
        subscriptions
            .iter()
            .map(|s| (s.id.clone(), s.resource.clone(), s.expires))
            .collect()
    }

    /// A change notification to every live subscription of `resource` that
    /// asked for `change`, after the change, as Graph sends it.
    fn notify(&self, resource: &str, path: &str, odata_type: &str, id: &str, change: &str) {
        let live: Vec<GraphSubscription> = self
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|s| s.expires > Utc::now() && s.resource.eq_ignore_ascii_case(resource))
            .filter(|s| s.change_types.iter().any(|c| c == change))
            .cloned()
            .collect();
        for subscription in live {
            let body = json!({"value": [{
                "subscriptionId": subscription.id,
                "subscriptionExpirationDateTime": graph_time(subscription.expires),
                "changeType": change,
                "resource": format!("{path}/{id}"),
                "resourceData": {"@odata.type": odata_type, "@odata.id": format!("{path}/{id}"), "id": id, "organizationId": self.tenant_id},
                "clientState": subscription.client_state,
                "tenantId": self.tenant_id,
            }]});
            self.post_notification(&subscription.notification_url, body);
        }
    }

    fn post_notification(&self, url: &str, body: Value) {
        deliver(
            Delivery {
                url: url.to_string(),
                headers: vec![("content-type".into(), "application/json".into())],
                body: body.to_string().into_bytes(),
                deadline: std::time::Duration::from_secs(3),
                retries: 2,
            },
            self.notification_deliveries.clone(),
        );
    }

    /// Sends a lifecycle notification (`reauthorizationRequired`,
    /// `subscriptionRemoved`, `missed`) for every live subscription; a
    /// removed subscription is gone first, as Graph removes it.
    pub fn send_lifecycle(&self, event: &str) {
        let live: Vec<GraphSubscription> = {
            let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
            subscriptions.retain(|s| s.expires > Utc::now());
            let live = subscriptions.clone();
            if event == "subscriptionRemoved" {
                subscriptions.clear();
            }
            live
        };
        for subscription in live {
            let Some(url) = subscription.lifecycle_url.clone() else {
                continue;
            };
            let body = json!({"value": [{
                "subscriptionId": subscription.id,
                "subscriptionExpirationDateTime": graph_time(subscription.expires),
                "tenantId": self.tenant_id,
                "clientState": subscription.client_state,
                "lifecycleEvent": event,
            }]});
            self.post_notification(&url, body);
        }
    }

    /// Gives a user a new userPrincipalName (and mail, as Entra does when
    /// the domain part is shared).
    pub fn rename_user(&self, user: usize, user_name: &str) {
        self.change(|t, v| {
            t.dataset.users[user].user_name = user_name.into();
            t.dataset.users[user].email = user_name.into();
            t.user_changed(user, v, &["userPrincipalName", "mail"]);
        });
        self.notify_user(user, "updated");
    }

    /// A new account (with a new id); its name may be one a deleted or
    /// renamed account had. Returns its index.
    pub fn create_user(&self, user: idpsync_driver::fake::FakeUser) -> usize {
        let mut index = 0;
        self.change(|t, v| {
            t.dataset.users.push(user);
            index = t.dataset.users.len() - 1;
            t.user_created.insert(index, v);
            t.user_changed(index, v, &[]);
        });
        self.notify_user(index, "updated");
        index
    }

    pub fn delete_user(&self, user: usize) {
        self.change(|t, v| {
            t.user_deleted.insert(user, v);
            let id = t.dataset.users[user].id.clone();
            let groups: Vec<usize> = t
                .dataset
                .members
                .iter()
                .filter(|(_, u)| *u == user)
                .map(|(g, _)| *g)
                .collect();
            t.dataset.members.retain(|(_, u)| *u != user);
            for group in groups {
                t.member_changes.push((v, group, id.clone(), false, false));
            }
        });
        self.notify_user(user, "deleted");
    }

    pub fn add_member(&self, group: usize, user: usize) {
        self.change(|t, v| {
            t.dataset.members.push((group, user));
            t.dataset.members.sort();
            let id = t.dataset.users[user].id.clone();
            t.member_changes.push((v, group, id, false, true));
        });
        self.notify_group(group);
    }

    pub fn remove_member(&self, group: usize, user: usize) {
        self.change(|t, v| {
            t.dataset.members.retain(|m| *m != (group, user));
            let id = t.dataset.users[user].id.clone();
            t.member_changes.push((v, group, id, false, false));
        });
        self.notify_group(group);
    }

    /// Every delta token issued so far stops working (410 on use).
    pub fn expire_delta_tokens(&self) {
        self.change(|t, v| t.oldest_valid = v);
    }
}

fn odata_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message, "innerError": {"date": "2026-11-24T00:00:00", "request-id": "fake"}}})))
        .into_response()
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

async fn token(
    State(fake): State<FakeGraph>,
    Path(tenant): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    let refuse = |code: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": code, "error_description": description, "error_codes": [7000215]}),
            ),
        )
            .into_response()
    };
    if tenant != fake.tenant_id {
        return refuse("invalid_request", "AADSTS90002: Tenant not found.");
    }
    if form.grant_type != "client_credentials"
        || !form
            .scope
            .as_deref()
            .is_some_and(|s| s.ends_with("/.default"))
    {
        return refuse(
            "invalid_scope",
            "AADSTS1002012: The provided value for scope is not valid; client credentials need <resource>/.default.",
        );
    }
    if form.client_id.as_deref() != Some(fake.client_id.as_str())
        || form.client_secret.as_deref() != Some(fake.client_secret.as_str())
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})),
        )
            .into_response();
    }
    axum::Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": fake.tokens.issue()})).into_response()
}

/// Auth and faults.
async fn gate(
    fake: &FakeGraph,
    headers: &HeaderMap,
    resource: &str,
    page: usize,
) -> Option<Response> {
    if let Some(answer) = fake
        .faults
        .before(resource, page, |secs| {
            let mut response = odata_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests.",
            );
            if let Some(secs) = secs {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        })
        .await
    {
        return Some(answer);
    }
    if !fake.tokens.check(headers) {
        return Some(odata_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        ));
    }
    None
}

fn page_size(headers: &HeaderMap) -> usize {
    headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| p.trim().strip_prefix("odata.maxpagesize="))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(100)
        .clamp(1, 999)
}

/// An opaque token: "kind:since:round:offset", hex-encoded.
fn encode(parts: &[u64], kind: &str) -> String {
    let text = format!(
        "{kind}:{}",
        parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(":")
    );
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode(token: &str, kind: &str) -> Option<Vec<u64>> {
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect();
    let text = String::from_utf8(bytes?).ok()?;
    let rest = text.strip_prefix(&format!("{kind}:"))?;
    rest.split(':').map(|n| n.parse().ok()).collect()
}

fn select(item: Value, query: &HashMap<String, String>) -> Value {
    let Some(fields) = query.get("$select") else {
        return item;
    };
    let wanted: Vec<&str> = fields.split(',').map(str::trim).collect();
    match item {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| {
                    k == "id"
                        || k.starts_with('@')
                        || k.strip_suffix("@delta")
                            .is_some_and(|p| wanted.contains(&p))
                        || wanted.contains(&k.as_str())
                })
                .collect(),
        ),
        other => other,
    }
}

/// A group's `members@delta` entries as a full round lists them, each
/// serialized (cached until the tenant changes).
fn members_json(tenant: &mut Tenant, index: usize) -> Arc<Vec<String>> {
    if tenant.members_json_version != tenant.version || tenant.nested_groups.is_empty() {
        tenant.members_json.clear();
        tenant.nested_groups = tenant.dataset.children_by_group();
        tenant.members_json_version = tenant.version;
    }
    if let Some(json) = tenant.members_json.get(&index) {
        return json.clone();
    }
    let dataset = &tenant.dataset;
    let mut members: Vec<String> = dataset
        .members_of(index)
        .into_iter()
        .map(|u| {
            json!({"@odata.type": "#microsoft.graph.user", "id": dataset.users[u].id}).to_string()
        })
        .collect();
    members.extend(tenant.nested_groups[index].iter().map(|&g| {
        json!({"@odata.type": "#microsoft.graph.group", "id": dataset.groups[g].id}).to_string()
    }));
    let json = Arc::new(members);
    tenant.members_json.insert(index, json.clone());
    json
}

/// The objects of a full groups round: each group with one chunk of its
/// members (at least one object per group).
fn group_objects(tenant: &mut Tenant) -> Vec<(usize, usize)> {
    let per_object = tenant.members_per_object.max(1);
    (0..tenant.dataset.groups.len())
        .flat_map(|index| {
            let n = members_json(tenant, index).len();
            (0..n.div_ceil(per_object).max(1)).map(move |chunk| (index, chunk))
        })
        .collect()
}

/// Where a page's objects start: one early when objects repeat.
fn page_start(tenant: &Tenant, offset: usize) -> usize {
    if tenant.repeat_objects {
        offset.saturating_sub(1)
    } else {
        offset
    }
}

fn user_json(tenant: &Tenant, index: usize) -> Value {
    let user = &tenant.dataset.users[index];
    json!({
        "@odata.type": "#microsoft.graph.user", "id": user.id, "userPrincipalName": user.user_name, "mail": user.email,
        "displayName": format!("{} {}", user.given_name, user.family_name), "givenName": user.given_name,
        "surname": user.family_name, "accountEnabled": user.active, "jobTitle": null
    })
}

/// Where a request is in a delta round.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// Changes after this version; `None` for a full round.
    since: Option<u64>,
    /// The tenant version the round's delta link will carry.
    version: u64,
    offset: usize,
}

/// Which round a request continues, or the error answer.
fn round(
    fake: &FakeGraph,
    tenant: &Tenant,
    query: &HashMap<String, String>,
    kind: &str,
) -> Result<Round, Box<Response>> {
    let _ = fake;
    if let Some(skip) = query.get("$skiptoken") {
        let parts = decode(skip, kind).filter(|p| p.len() == 4).ok_or_else(|| {
            Box::new(odata_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Invalid skip token.",
            ))
        })?;
        return Ok(Round {
            since: (parts[0] != u64::MAX).then_some(parts[0]),
            version: parts[1],
            offset: parts[2] as usize,
        });
    }
    if let Some(delta) = query.get("$deltatoken") {
        let since = decode(delta, kind)
            .and_then(|p| p.first().copied())
            .ok_or_else(|| {
                Box::new(odata_error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Invalid delta token.",
                ))
            })?;
        if since < tenant.oldest_valid {
            return Err(Box::new(odata_error(
                StatusCode::GONE,
                "resyncRequired",
                "Resync required. Replace any local cached data with the full results of a new delta query.",
            )));
        }
        return Ok(Round {
            since: Some(since),
            version: tenant.version,
            offset: 0,
        });
    }
    Ok(Round {
        since: None,
        version: tenant.version,
        offset: 0,
    })
}

/// One page of a round: `items` are all the round's objects.
fn page_response(
    fake: &FakeGraph,
    path: &str,
    kind: &str,
    (total, items): (usize, Vec<String>),
    round: Round,
    size: usize,
    query: &HashMap<String, String>,
) -> Response {
    let base = fake
        .base_url
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let offset = round.offset;
    let select_param = query
        .get("$select")
        .map(|s| format!("$select={s}&"))
        .unwrap_or_default();
    let (link_key, link) = if offset + size < total {
        let token = encode(
            &[
                round.since.unwrap_or(u64::MAX),
                round.version,
                (offset + size) as u64,
                0,
            ],
            kind,
        );
        (
            "@odata.nextLink",
            format!("{base}/v1.0/{path}?{select_param}$skiptoken={token}"),
        )
    } else {
        (
            "@odata.deltaLink",
            format!(
                "{base}/v1.0/{path}?{select_param}$deltatoken={}",
                encode(&[round.version], kind)
            ),
        )
    };
    // The items arrive serialized (some from a cache): the body is joined
    // as text.
    let body = format!(
        "{{\"@odata.context\":{},\"value\":[{}],\"{link_key}\":{}}}",
        Value::from(format!("{base}/v1.0/$metadata#{kind}")),
        items.join(","),
        Value::from(link),
    );
    json_response(
        StatusCode::OK,
        fake.faults.mangle(kind, offset / size.max(1), body),
    )
}

async fn users_delta(
    State(fake): State<FakeGraph>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let size = page_size(&headers);
    let (current, offset, items) = {
        let mut tenant = fake.tenant.lock().unwrap_or_else(|e| e.into_inner());
        let current = match round(&fake, &tenant, &query, "users") {
            Ok(r) => r,
            Err(response) => return *response,
        };
        let (since, round_version, offset) = (current.since, current.version, current.offset);
        // (user index, removed): only this page's entries become JSON.
        let mut entries: Vec<(usize, bool)> = Vec::new();
        for index in 0..tenant.dataset.users.len() {
            if let Some(deleted) = tenant.user_deleted.get(&index) {
                if since.is_some_and(|s| *deleted > s && *deleted <= round_version) {
                    entries.push((index, true));
                }
                continue;
            }
            let changed = tenant.user_changed.get(&index).map_or(0, |(v, _)| *v);
            if tenant
                .user_created
                .get(&index)
                .is_some_and(|v| *v > round_version)
            {
                continue;
            }
            if since.is_none_or(|s| changed > s && changed <= round_version) {
                entries.push((index, false));
            }
        }
        let start = page_start(&tenant, offset);
        let items: Vec<String> = entries
            .iter()
            .skip(start)
            .take(offset + size - start)
            .map(|(index, removed)| {
                let user = &tenant.dataset.users[*index];
                let item = if *removed {
                    json!({"id": user.id, "@removed": {"reason": "deleted"}})
                } else if let Some(since) = since
                    && tenant.user_created.get(index).is_none_or(|v| *v <= since)
                {
                    // Updated since the last round: the id and what changed.
                    let whole = user_json(&tenant, *index);
                    let mut item = json!({"@odata.type": "#microsoft.graph.user", "id": user.id});
                    for property in tenant
                        .user_changed
                        .get(index)
                        .map(|(_, p)| p.as_slice())
                        .unwrap_or_default()
                    {
                        item[*property] = whole[*property].clone();
                    }
                    item
                } else {
                    user_json(&tenant, *index)
                };
                select(item, &query).to_string()
            })
            .collect();
        tenant.items_served += items.len() as u64;
        (current, offset, (entries.len(), items))
    };
    if let Some(answer) = gate(&fake, &headers, "users", offset / size).await {
        return answer;
    }
    page_response(&fake, "users/delta", "users", items, current, size, &query)
}

async fn groups_delta(
    State(fake): State<FakeGraph>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let size = page_size(&headers);
    let (current, offset, items) = {
        let mut tenant = fake.tenant.lock().unwrap_or_else(|e| e.into_inner());
        let current = match round(&fake, &tenant, &query, "groups") {
            Ok(r) => r,
            Err(response) => return *response,
        };
        let (since, round_version, offset) = (current.since, current.version, current.offset);
        let fields = |name: &str| {
            query
                .get("$select")
                .is_none_or(|fields| fields.split(',').any(|f| f.trim() == name))
        };
        // Graph sends members only when they are selected.
        let with_members = query
            .get("$select")
            .is_some_and(|fields| fields.split(',').any(|f| f.trim() == "members"));
        let with_name = fields("displayName");
        let per_object = tenant.members_per_object.max(1);
        let start = page_start(&tenant, offset);
        if since.is_none() {
            // A full round: every group, a chunk of its members per
            // object, only this page's objects built.
            let objects = group_objects(&mut tenant);
            let mut items: Vec<String> = Vec::new();
            for &(index, chunk) in objects.iter().skip(start).take(offset + size - start) {
                let members = members_json(&mut tenant, index);
                let group = &tenant.dataset.groups[index];
                // What `select` would leave of the whole object.
                let name = if with_name {
                    format!(",\"displayName\":{}", Value::from(group.name.as_str()))
                } else {
                    String::new()
                };
                let members = if with_members {
                    let part = members.iter().skip(chunk * per_object).take(per_object);
                    let part: Vec<&str> = part.map(String::as_str).collect();
                    format!(",\"members@delta\":[{}]", part.join(","))
                } else {
                    String::new()
                };
                items.push(format!(
                    "{{\"@odata.type\":\"#microsoft.graph.group\",\"id\":{}{name}{members}}}",
                    Value::from(group.id.as_str())
                ));
            }
            tenant.items_served += items.len() as u64;
            (current, offset, (objects.len(), items))
        } else {
            // A delta round: the groups whose members changed, and how, a
            // chunk of the changes per object.
            let since = since.unwrap_or_default();
            let mut changed: Vec<Value> = Vec::new();
            for (index, group) in tenant.dataset.groups.iter().enumerate() {
                let changes: Vec<Value> = tenant
                    .member_changes
                    .iter()
                    .filter(|(v, g, ..)| *g == index && *v > since && *v <= round_version)
                    .map(|(_, _, id, is_group, added)| {
                        let kind = if *is_group { "#microsoft.graph.group" } else { "#microsoft.graph.user" };
                        if *added {
                            json!({"@odata.type": kind, "id": id})
                        } else {
                            json!({"@odata.type": kind, "id": id, "@removed": {"reason": "deleted"}})
                        }
                    })
                    .collect();
                for part in changes.chunks(per_object) {
                    let mut item = json!({"@odata.type": "#microsoft.graph.group", "id": group.id});
                    if with_members {
                        item["members@delta"] = Value::from(part.to_vec());
                    }
                    changed.push(item);
                }
            }
            let total = changed.len();
            let items: Vec<String> = changed
                .into_iter()
                .skip(start)
                .take(offset + size - start)
                .map(|item| select(item, &query).to_string())
                .collect();
            tenant.items_served += items.len() as u64;
            (current, offset, (total, items))
        }
    };
    if let Some(answer) = gate(&fake, &headers, "groups", offset / size).await {
        return answer;
    }
    page_response(
        &fake,
        "groups/delta",
        "groups",
        items,
        current,
        size,
        &query,
    )
}

/// `$top` of a plain list: Graph's default 100, at most 999.
fn top(query: &HashMap<String, String>) -> usize {
    query
        .get("$top")
        .and_then(|t| t.parse().ok())
        .unwrap_or(100)
        .min(999)
}

async fn list_users(
    State(fake): State<FakeGraph>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "list", 0).await {
        return answer;
    }
    let top = top(&query);
    let items: Vec<Value> = {
        let tenant = fake.tenant.lock().unwrap_or_else(|e| e.into_inner());
        (0..tenant.dataset.users.len())
            .filter(|i| !tenant.user_deleted.contains_key(i))
            .take(top)
            .map(|i| select(user_json(&tenant, i), &query))
            .collect()
    };
    axum::Json(json!({"value": items})).into_response()
}

async fn list_groups(
    State(fake): State<FakeGraph>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "list", 0).await {
        return answer;
    }
    let top = top(&query);
    let items: Vec<Value> = {
        let tenant = fake.tenant.lock().unwrap_or_else(|e| e.into_inner());
        tenant
            .dataset
            .groups
            .iter()
            .take(top)
            .map(|g| select(json!({"id": g.id, "displayName": g.name}), &query))
            .collect()
    };
    axum::Json(json!({"value": items})).into_response()
}

async fn one_user(
    State(fake): State<FakeGraph>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "user", 0).await {
        return answer;
    }
    let found = {
        let tenant = fake.tenant.lock().unwrap_or_else(|e| e.into_inner());
        tenant
            .dataset
            .users
            .iter()
            .position(|u| u.id == id)
            .filter(|i| !tenant.user_deleted.contains_key(i))
            .map(|i| user_json(&tenant, i))
    };
    match found {
        Some(user) => axum::Json(select(user, &query)).into_response(),
        None => odata_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        ),
    }
}

/// Graph's answer to a path it does not have.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewSubscription {
    change_type: String,
    notification_url: String,
    lifecycle_notification_url: Option<String>,
    resource: String,
    expiration_date_time: DateTime<Utc>,
    client_state: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Renewal {
    expiration_date_time: DateTime<Utc>,
}

fn validation_error(message: &str) -> Response {
    odata_error(StatusCode::BAD_REQUEST, "ValidationError", message)
}

/// Graph's checks of an expiry: in the future, at most 41,760 minutes ahead.
fn check_expiry(at: DateTime<Utc>) -> Result<(), Box<Response>> {
    let now = Utc::now();
    if at <= now {
        return Err(Box::new(validation_error(
            "Subscription expiration must be in the future.",
        )));
    }
    if at > now + chrono::Duration::minutes(MAX_SUBSCRIPTION_MINUTES) {
        return Err(Box::new(validation_error(&format!(
            "Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} minutes in the future."
        ))));
    }
    Ok(())
}

/// The validation handshake: the token must come back, as text, in time.
async fn validates(url: &str) -> bool {
    let token = format!(
        "Validation: Testing client application reachability {:016x}",
        rand::random::<u64>()
    );
    let mut target = match url::Url::parse(url) {
        Ok(target) => target,
        Err(_) => return false,
    };
    target
        .query_pairs_mut()
        .append_pair("validationToken", &token);
    matches!(
        call_back(
            reqwest::Method::POST,
            target.as_str(),
            &[("content-type", "text/plain; charset=utf-8")],
            None,
            std::time::Duration::from_secs(10),
        )
        .await,
        Ok((200, body)) if body == token
    )
}

async fn create_subscription(
    State(fake): State<FakeGraph>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "subscriptions", 0).await {
        return answer;
    }
    let Ok(new) = serde_json::from_slice::<NewSubscription>(&body) else {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Invalid request body.",
        );
    };
    if !matches!(new.resource.trim_start_matches('/'), "users" | "groups") {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Resource not supported by this fake.",
        );
    }
    let change_types: Vec<String> = new
        .change_type
        .split(',')
        .map(|c| c.trim().to_string())
        .collect();
    if change_types
        .iter()
        .any(|c| !matches!(c.as_str(), "created" | "updated" | "deleted"))
    {
        return validation_error("Invalid changeType.");
    }
    if new.client_state.as_ref().is_some_and(|c| c.len() > 128) {
        return validation_error("clientState must be at most 128 characters.");
    }
    if let Err(answer) = check_expiry(new.expiration_date_time) {
        return *answer;
    }
    for url in std::iter::once(&new.notification_url).chain(new.lifecycle_notification_url.iter()) {
        if !validates(url).await {
            return validation_error(
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
            );
        }
    }
    let subscription = GraphSubscription {
        id: format!(
            "{:08x}-0000-4000-8000-{:012x}",
            rand::random::<u32>(),
            rand::random::<u64>() & 0xffff_ffff_ffff
        ),
        resource: new.resource.trim_start_matches('/').to_string(),
        change_types,
        notification_url: new.notification_url,
        lifecycle_url: new.lifecycle_notification_url,
        client_state: new.client_state,
        expires: new.expiration_date_time,
    };
    fake.subscriptions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(subscription.clone());
    (StatusCode::CREATED, axum::Json(subscription.json())).into_response()
}

fn subscription_not_found(id: &str) -> Response {
    odata_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The object was not found: subscription {id}."),
    )
}

async fn renew_subscription(
    State(fake): State<FakeGraph>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "subscriptions", 0).await {
        return answer;
    }
    let Ok(renewal) = serde_json::from_slice::<Renewal>(&body) else {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Invalid request body.",
        );
    };
    if let Err(answer) = check_expiry(renewal.expiration_date_time) {
        return *answer;
    }
    let mut subscriptions = fake.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
    subscriptions.retain(|s| s.expires > Utc::now());
    match subscriptions.iter_mut().find(|s| s.id == id) {
        Some(subscription) => {
            subscription.expires = renewal.expiration_date_time;
            axum::Json(subscription.json()).into_response()
        }
        None => subscription_not_found(&id),
    }
}

async fn delete_subscription(
    State(fake): State<FakeGraph>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "subscriptions", 0).await {
        return answer;
    }
    let mut subscriptions = fake.subscriptions.lock().unwrap_or_else(|e| e.into_inner());
    subscriptions.retain(|s| s.expires > Utc::now());
    match subscriptions.iter().position(|s| s.id == id) {
        Some(index) => {
            subscriptions.remove(index);
            StatusCode::NO_CONTENT.into_response()
        }
        None => subscription_not_found(&id),
    }
}

async fn reauthorize(
    State(fake): State<FakeGraph>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(answer) = gate(&fake, &headers, "subscriptions", 0).await {
        return answer;
    }
    let known = fake
        .subscriptions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|s| s.id == id && s.expires > Utc::now());
    if known {
        StatusCode::NO_CONTENT.into_response()
    } else {
        subscription_not_found(&id)
    }
}

async fn unknown_route(uri: axum::http::Uri) -> Response {
    let segment = uri
        .path()
        .trim_start_matches("/v1.0")
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    odata_error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &format!("Resource not found for the segment '{segment}'."),
    )
}

impl idpsync_driver::compliance::CompliantFake for FakeGraph {
    type Kind = crate::EntraFactory;
    /// Graph's largest `odata.maxpagesize` for users and groups.
    const MAX_PAGE_SIZE: u32 = 999;
    /// A group can be a member of a group.
    const NESTED_GROUPS: bool = true;

    /// Users and groups at 999 a call, every group's members inline in
    /// its delta object (Graph may split a big group over several).
    fn minimum_calls(dataset: &Dataset) -> u64 {
        use idpsync_driver::compliance::pages;
        pages(dataset.users.len(), 999) + pages(dataset.groups.len(), 999)
    }

    fn kind() -> Self::Kind {
        crate::EntraFactory
    }

    fn new(dataset: Dataset) -> Self {
        FakeGraph::new(dataset)
    }

    async fn start(&self) -> std::io::Result<FakeServer> {
        FakeGraph::start(self).await
    }

    fn settings(&self, base_url: &str, page_size: u32) -> Value {
        FakeGraph::settings(self, base_url, page_size)
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
            FakeGraph::delete_user(self, index);
        }
    }

    fn create_user(&self, user: idpsync_driver::fake::FakeUser) {
        FakeGraph::create_user(self, user);
    }
}
