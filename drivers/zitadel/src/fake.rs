//! A fake ZITADEL (feature `fake`) that behaves as ZITADEL documents it, in
//! what the driver relies on:
//!
//! * `POST /oauth/v2/token`: the JWT profile grant (`grant_type`
//!   `urn:ietf:params:oauth:grant-type:jwt-bearer`, an RS256 `assertion`
//!   whose `iss` and `sub` are the service user, `aud` the issuer, `kid`
//!   the key), the scope `urn:zitadel:iam:org:project:id:zitadel:aud`
//!   required; or a personal access token used directly.
//! * Connect unary calls with JSON (`connect-protocol-version: 1`):
//!   `zitadel.user.v2.UserService/ListUsers` (`query.offset`/`limit`,
//!   `details.totalResult` as a string, `result` left out when empty, the
//!   `organizationIdQuery` filter) and
//!   `zitadel.authorization.v2.AuthorizationService/ListAuthorizations`
//!   (`pagination`, `authorizations` with `project`, `organization`,
//!   `user`, `state`, `roles`). Zeros and empty lists are left out, as
//!   protobuf's JSON mapping leaves them out.
//! * Errors as Connect writes them: `{"code": "unauthenticated" |
//!   "permission_denied" | "invalid_argument" | "resource_exhausted",
//!   "message": ...}` with the matching HTTP status; a limit above 1,000
//!   is refused.
//!
//! The tenant: the dataset's people are human users of organization
//! [`ORG_ID`] (inactive ones `USER_STATE_INACTIVE`); each group is a role
//! key of project [`PROJECT_ID`] held through one authorization per user;
//! [`FakeZitadel::add_noise`] adds what the driver must leave out: machine
//! users, users of another organization, an inactive authorization and
//! another project's roles. Faults come from the SDK's kit; pages are named
//! `users` and `authorizations`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use idpsync_driver::fake::{
    Dataset, FakeServer, FakeTokens, FakeUser, FaultInjector, json_response, serve,
};
use idpsync_driver::jwt::verify_rs256;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const ORG_ID: &str = "281234567890123456";
pub const OTHER_ORG_ID: &str = "281234567890999999";
pub const PROJECT_ID: &str = "281234567890555555";
pub const OTHER_PROJECT_ID: &str = "281234567890666666";

/// A user of the fake beyond the dataset's people.
#[derive(Debug, Clone)]
struct ExtraUser {
    user: FakeUser,
    organization: &'static str,
    machine: bool,
}

struct Instance {
    dataset: Dataset,
    /// States set explicitly (`USER_STATE_LOCKED`, ...), by user id.
    states: HashMap<String, String>,
    extra: Vec<ExtraUser>,
    /// (user id, project, organization, active, role keys) beyond the
    /// dataset's memberships.
    extra_authorizations: Vec<(String, &'static str, &'static str, bool, Vec<String>)>,
}

/// The fake's state; change it while it runs.
#[derive(Clone)]
pub struct FakeZitadel {
    pub user_id: String,
    pub key_id: String,
    pub personal_access_token: String,
    /// PKCS#1 DER public key of the service user's key.
    pub public_key: Arc<Vec<u8>>,
    instance: Arc<Mutex<Instance>>,
    pub tokens: FakeTokens,
    pub faults: FaultInjector,
    /// The service user lost its role: every call is `permission_denied`.
    pub forbidden: Arc<Mutex<bool>>,
    base_url: Arc<Mutex<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The largest `limit` ZITADEL accepts by default.
pub const MAX_LIMIT: u64 = 1000;

impl FakeZitadel {
    pub fn new(dataset: Dataset, public_key_pkcs1_der: Vec<u8>) -> Self {
        FakeZitadel {
            user_id: "281234567890777777".into(),
            key_id: "281234567890888888".into(),
            personal_access_token: "fake-zitadel-pat".into(),
            public_key: Arc::new(public_key_pkcs1_der),
            instance: Arc::new(Mutex::new(Instance {
                dataset,
                states: HashMap::new(),
                extra: Vec::new(),
                extra_authorizations: Vec::new(),
            })),
            tokens: FakeTokens::default(),
            faults: FaultInjector::default(),
            forbidden: Arc::default(),
            base_url: Arc::default(),
        }
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth/v2/token", post(token))
            .route("/zitadel.user.v2.UserService/ListUsers", post(list_users))
            .route(
                "/zitadel.authorization.v2.AuthorizationService/ListAuthorizations",
                post(list_authorizations),
            )
            .fallback(|| async {
                connect_error(StatusCode::NOT_FOUND, "unimplemented", "Not Found")
            })
            .with_state(self.clone())
    }

    pub async fn start(&self) -> std::io::Result<FakeServer> {
        let server = serve(self.router()).await?;
        *lock(&self.base_url) = server.base_url.clone();
        Ok(server)
    }

    /// The service user's key file, as the console downloads it.
    pub fn key_file(&self, private_key_pem: &str) -> String {
        json!({"type": "serviceaccount", "keyId": self.key_id, "key": private_key_pem, "userId": self.user_id})
            .to_string()
    }

    /// `[connections.zitadel]` with the key file, the organization and the
    /// project.
    pub fn settings(&self, base_url: &str, private_key_pem: &str, page_size: u32) -> Value {
        json!({
            "issuer_url": base_url, "service_account_key": self.key_file(private_key_pem),
            "organization_id": ORG_ID, "project_id": PROJECT_ID, "page_size": page_size
        })
    }

    /// Sets a user's state (`USER_STATE_LOCKED`, ...).
    pub fn set_state(&self, user_id: &str, state: &str) {
        lock(&self.instance)
            .states
            .insert(user_id.into(), state.into());
    }

    /// Adds what a faithful driver leaves out: two machine users (one with
    /// an authorization), three users of another organization, an
    /// inactive authorization of a person, and a role of another project.
    pub fn add_noise(&self) {
        let mut instance = lock(&self.instance);
        let someone = |id: &str| FakeUser {
            id: id.into(),
            user_name: format!("{id}@elsewhere.test"),
            email: format!("{id}@elsewhere.test"),
            given_name: "Other".into(),
            family_name: "Person".into(),
            active: true,
        };
        for id in ["machine-ci", "machine-backup"] {
            instance.extra.push(ExtraUser {
                user: someone(id),
                organization: ORG_ID,
                machine: true,
            });
        }
        for id in ["other-1", "other-2", "other-3"] {
            instance.extra.push(ExtraUser {
                user: someone(id),
                organization: OTHER_ORG_ID,
                machine: false,
            });
        }
        let first_group = instance.dataset.groups.first().map(|g| g.id.clone());
        if let (Some(group), Some(person)) = (first_group, instance.dataset.users.first().cloned())
        {
            let roles = vec![group.clone()];
            instance.extra_authorizations.push((
                "machine-ci".into(),
                PROJECT_ID,
                ORG_ID,
                true,
                roles.clone(),
            ));
            instance.extra_authorizations.push((
                "other-1".into(),
                PROJECT_ID,
                OTHER_ORG_ID,
                true,
                roles,
            ));
            instance.extra_authorizations.push((
                person.id.clone(),
                PROJECT_ID,
                ORG_ID,
                false,
                vec!["deactivated-role".into()],
            ));
            instance.extra_authorizations.push((
                person.id,
                OTHER_PROJECT_ID,
                ORG_ID,
                true,
                vec!["other-project-role".into()],
            ));
        }
    }

    fn edit(&self, change: impl FnOnce(&mut Dataset)) {
        change(&mut lock(&self.instance).dataset);
    }
}

fn connect_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"code": code, "message": message})),
    )
        .into_response()
}

/// The JWT profile grant.
async fn token(State(fake): State<FakeZitadel>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let refuse = |description: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_grant", "error_description": description})),
        )
            .into_response()
    };
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type", "error_description": "grant_type not supported"})),
        )
            .into_response();
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse("assertion missing");
    };
    let Ok(claims) = verify_rs256(assertion, &fake.public_key) else {
        return refuse("assertion invalid: signature");
    };
    let kid = assertion
        .split('.')
        .next()
        .and_then(|header| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|header| header["kid"].as_str().map(String::from));
    let audience = lock(&fake.base_url).clone();
    let audience_ok = claims["aud"] == audience.as_str()
        || claims["aud"]
            .as_array()
            .is_some_and(|all| all.iter().any(|a| a == audience.as_str()));
    if claims["iss"] != fake.user_id.as_str()
        || claims["sub"] != fake.user_id.as_str()
        || !audience_ok
        || kid.as_deref() != Some(fake.key_id.as_str())
    {
        return refuse("assertion invalid: Errors.User.Key.NotFound");
    }
    let scopes = form.get("scope").map(String::as_str).unwrap_or_default();
    if !scopes
        .split(' ')
        .any(|scope| scope == crate::api::API_SCOPE)
    {
        // A token without ZITADEL's API as audience is refused by the API.
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": "invalid_scope", "error_description": "the API scope is missing"}),
            ),
        )
            .into_response();
    }
    axum::Json(
        json!({"access_token": fake.tokens.issue(), "token_type": "Bearer", "expires_in": 43199}),
    )
    .into_response()
}

/// Faults, then the credential and the permissions.
async fn gate(
    fake: &FakeZitadel,
    headers: &HeaderMap,
    resource: &str,
    page: usize,
) -> Option<Response> {
    let throttled = |secs: Option<u64>| {
        let mut response = connect_error(
            StatusCode::TOO_MANY_REQUESTS,
            "resource_exhausted",
            "Errors.Quota.RequestsExhausted",
        );
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
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let known = bearer == Some(fake.personal_access_token.as_str()) || fake.tokens.check(headers);
    if !known {
        return Some(connect_error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Errors.Token.Invalid (AUTH-7fs1e)",
        ));
    }
    if *lock(&fake.forbidden) {
        return Some(connect_error(
            StatusCode::FORBIDDEN,
            "permission_denied",
            "No matching permissions found (AUTH-5mWD2)",
        ));
    }
    None
}

/// `offset` (a string or a number) and `limit` from a list request.
fn paging(query: &Value) -> Result<(u64, u64), Box<Response>> {
    let offset = match &query["offset"] {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.as_u64(),
        Value::Null => Some(0),
        _ => None,
    };
    let limit = query["limit"].as_u64().unwrap_or(100);
    match offset {
        Some(_) if limit > MAX_LIMIT => Err(Box::new(connect_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "Errors.Query.LimitExceeded",
        ))),
        Some(offset) => Ok((offset, limit.max(1))),
        None => Err(Box::new(connect_error(
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "invalid offset",
        ))),
    }
}

fn human_json(user: &FakeUser, state: &str) -> Value {
    json!({
        "userId": user.id,
        "details": {"sequence": "12", "changeDate": "2026-01-01T00:00:00Z", "resourceOwner": ORG_ID},
        "state": state, "username": user.user_name, "loginNames": [user.user_name],
        "preferredLoginName": user.user_name,
        "human": {
            "profile": {"givenName": user.given_name, "familyName": user.family_name,
                        "displayName": format!("{} {}", user.given_name, user.family_name)},
            "email": {"email": user.email, "isVerified": true}
        }
    })
}

async fn list_users(State(fake): State<FakeZitadel>, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (offset, limit) = match paging(&request["query"]) {
        Ok(paging) => paging,
        Err(answer) => return *answer,
    };
    let page = (offset / limit) as usize;
    if let Some(answer) = gate(&fake, &headers, "users", page).await {
        return answer;
    }
    let organization = request["queries"].as_array().and_then(|queries| {
        queries.iter().find_map(|q| {
            q["organizationIdQuery"]["organizationId"]
                .as_str()
                .map(String::from)
        })
    });
    let instance = lock(&fake.instance);
    // Who is listed, cheaply; only the page is written out.
    let listed: Vec<Option<usize>> = (0..instance.dataset.users.len())
        .map(Some)
        .filter(|_| {
            organization
                .as_deref()
                .is_none_or(|wanted| wanted == ORG_ID)
        })
        .chain(
            (0..instance.extra.len())
                .filter(|&i| {
                    organization
                        .as_deref()
                        .is_none_or(|wanted| wanted == instance.extra[i].organization)
                })
                .map(|i| Some(usize::MAX - i)),
        )
        .collect();
    let total = listed.len();
    let result: Vec<Value> = listed
        .into_iter()
        .flatten()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|who| {
            if who < instance.dataset.users.len() {
                let user = &instance.dataset.users[who];
                let state = instance.states.get(&user.id).cloned().unwrap_or_else(|| {
                    if user.active { "USER_STATE_ACTIVE" } else { "USER_STATE_INACTIVE" }.into()
                });
                human_json(user, &state)
            } else {
                let extra = &instance.extra[usize::MAX - who];
                if extra.machine {
                    json!({
                        "userId": extra.user.id, "state": "USER_STATE_ACTIVE",
                        "username": extra.user.id, "preferredLoginName": extra.user.id,
                        "machine": {"name": extra.user.id, "accessTokenType": "ACCESS_TOKEN_TYPE_BEARER"}
                    })
                } else {
                    human_json(&extra.user, "USER_STATE_ACTIVE")
                }
            }
        })
        .collect();
    drop(instance);
    let mut answer = json!({"details": {"timestamp": "2026-12-05T06:00:00Z"}});
    if total > 0 {
        answer["details"]["totalResult"] = total.to_string().into();
    }
    if !result.is_empty() {
        answer["result"] = result.into();
    }
    json_response(
        StatusCode::OK,
        fake.faults.mangle("users", page, answer.to_string()),
    )
}

async fn list_authorizations(
    State(fake): State<FakeZitadel>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (offset, limit) = match paging(&request["pagination"]) {
        Ok(paging) => paging,
        Err(answer) => return *answer,
    };
    let page = (offset / limit) as usize;
    if let Some(answer) = gate(&fake, &headers, "authorizations", page).await {
        return answer;
    }
    let (total, authorizations): (usize, Vec<Value>) = {
        let instance = lock(&fake.instance);
        let dataset = &instance.dataset;
        let mut roles_of: Vec<Vec<usize>> = vec![Vec::new(); dataset.users.len()];
        for &(group, user) in &dataset.members {
            roles_of[user].push(group);
        }
        let authorization =
            |id: String, user: &str, project: &str, org: &str, active: bool, roles: Vec<Value>| {
                json!({
                    "id": id, "creationDate": "2026-01-01T00:00:00Z",
                    "project": {"id": project, "name": "Network", "organizationId": ORG_ID},
                    "organization": {"id": org, "name": "acme"},
                    "user": {"id": user, "organizationId": org},
                    "state": if active { "STATE_ACTIVE" } else { "STATE_INACTIVE" },
                    "roles": roles
                })
            };
        let role =
            |key: &str, name: &str| json!({"key": key, "displayName": name, "group": "network"});
        let holders: Vec<usize> = (0..roles_of.len())
            .filter(|&user| !roles_of[user].is_empty())
            .collect();
        let total = holders.len() + instance.extra_authorizations.len();
        let page: Vec<Value> = (offset as usize..total.min((offset + limit) as usize))
            .map(|index| {
                if let Some(&user) = holders.get(index) {
                    let roles = roles_of[user]
                        .iter()
                        .map(|&g| role(&dataset.groups[g].id, &dataset.groups[g].name))
                        .collect();
                    authorization(
                        format!("auth-{}", dataset.users[user].id),
                        &dataset.users[user].id,
                        PROJECT_ID,
                        ORG_ID,
                        true,
                        roles,
                    )
                } else {
                    let extra = index - holders.len();
                    let (user, project, org, active, keys) = &instance.extra_authorizations[extra];
                    let roles = keys.iter().map(|key| role(key, key)).collect();
                    authorization(format!("extra-{extra}"), user, project, org, *active, roles)
                }
            })
            .collect();
        (total, page)
    };
    let mut answer = json!({"pagination": {"appliedLimit": limit.to_string()}});
    if total > 0 {
        answer["pagination"]["totalResult"] = total.to_string().into();
    }
    if !authorizations.is_empty() {
        answer["authorizations"] = authorizations.into();
    }
    json_response(
        StatusCode::OK,
        fake.faults
            .mangle("authorizations", page, answer.to_string()),
    )
}

/// The suite runs the driver with the key file (its tokens expire), scoped
/// to the organization and the project.
impl idpsync_driver::compliance::CompliantFake for FakeZitadel {
    type Kind = crate::ZitadelFactory;
    const MAX_PAGE_SIZE: u32 = 1000;
    /// Roles do not nest.
    const NESTED_GROUPS: bool = false;
    /// Groups are the roles someone holds.
    const LISTS_GROUPS_WITHOUT_MEMBERS: bool = false;

    /// Users at 1,000 a call, and the authorizations (one a person with
    /// roles) at 1,000.
    fn minimum_calls(dataset: &Dataset) -> u64 {
        use idpsync_driver::compliance::pages;
        let mut holds = vec![false; dataset.users.len()];
        for &(_, user) in &dataset.members {
            holds[user] = true;
        }
        let holders = holds.iter().filter(|&&h| h).count();
        pages(dataset.users.len(), 1000) + pages(holders, 1000)
    }

    fn kind() -> Self::Kind {
        crate::ZitadelFactory
    }

    fn new(dataset: Dataset) -> Self {
        FakeZitadel::new(dataset, idpsync_driver::fake::TEST_PUBLIC_KEY_DER.to_vec())
    }

    async fn start(&self) -> std::io::Result<FakeServer> {
        FakeZitadel::start(self).await
    }

    fn settings(&self, base_url: &str, page_size: u32) -> Value {
        FakeZitadel::settings(
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
