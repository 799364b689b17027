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

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use idpsync_driver::fake::{Dataset, FakeServer, FakeTokens, FaultInjector, json_response, serve};
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
    }

    /// Gives a user a new userPrincipalName (and mail, as Entra does when
    /// the domain part is shared).
    pub fn rename_user(&self, user: usize, user_name: &str) {
        self.change(|t, v| {
            t.dataset.users[user].user_name = user_name.into();
            t.dataset.users[user].email = user_name.into();
            t.user_changed(user, v, &["userPrincipalName", "mail"]);
        });
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
    }

    pub fn add_member(&self, group: usize, user: usize) {
        self.change(|t, v| {
            t.dataset.members.push((group, user));
            t.dataset.members.sort();
            let id = t.dataset.users[user].id.clone();
            t.member_changes.push((v, group, id, false, true));
        });
    }

    pub fn remove_member(&self, group: usize, user: usize) {
        self.change(|t, v| {
            t.dataset.members.retain(|m| *m != (group, user));
            let id = t.dataset.users[user].id.clone();
            t.member_changes.push((v, group, id, false, false));
        });
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
    if tenant.members_json_version != tenant.version {
        tenant.members_json.clear();
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
    members.extend(dataset.children_of(index).into_iter().map(|g| {
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
