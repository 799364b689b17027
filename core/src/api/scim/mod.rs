//! The SCIM 2.0 endpoint at `/scim/v2/<connection>/`: routes, bearer
//! authentication (a `scim` token bound to that connection), RFC 7644 error
//! bodies, `application/scim+json`, ETags, lists, `.search` and `/Bulk`.
//! Protocol logic is in `crate::scim`; reads and writes in [`service`].

mod bulk;
pub mod service;

use super::{AppState, body};
use crate::auth::Scope;
use crate::config::SCIM_KIND;
use crate::scim::{ScimError, ScimResult, schema};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde::Deserialize;
use serde_json::{Value, json};
use service::{IfMatch, ListQuery, Projection, ResourceKind, ScimService};

pub const CONTENT_TYPE: &str = "application/scim+json";

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, self.body().to_string()).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A SCIM JSON response.
fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn with_etag(mut response: Response, version: i64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&crate::scim::resource::etag(version)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/{connection}/ServiceProviderConfig",
            any(service_provider_config),
        )
        .route("/{connection}/ResourceTypes", any(resource_types))
        .route("/{connection}/ResourceTypes/{name}", any(resource_type))
        .route("/{connection}/Schemas", any(schemas))
        .route("/{connection}/Schemas/{urn}", any(one_schema))
        .route("/{connection}/Users", get(list_users).post(create_user))
        .route("/{connection}/Groups", get(list_groups).post(create_group))
        .route("/{connection}/Users/{id}", any(user))
        .route("/{connection}/Groups/{id}", any(group))
        .route("/{connection}/.search", any(search_all))
        .route("/{connection}/Bulk", any(bulk::handle))
        .route("/{connection}/Me", any(me))
        .fallback(|| async { ScimError::not_found("no such SCIM endpoint") })
        .layer(axum::middleware::map_response(as_scim_error))
        .layer(axum::middleware::from_fn(refuse_long_uris))
        .layer(axum::middleware::from_fn(refuse_oversized_bodies))
}

/// Refuses a body whose declared length is over the SCIM limit with 413
/// and the RFC 7644 error body, after reading it (see [`body::within`]).
async fn refuse_oversized_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let limit = schema::MAX_BODY.max(schema::BULK_MAX_PAYLOAD);
    match body::within(request, limit as u64).await {
        Ok(request) => next.run(request).await,
        Err(length) => ScimError::new(
            413,
            None,
            format!("the request body is {length} bytes, more than {limit}"),
        )
        .into_response(),
    }
}

/// The longest request URI answered (a filter belongs in a POST to
/// `/.search` beyond it): 414 with a SCIM error body.
pub const MAX_URI: usize = 8 * 1024;

async fn refuse_long_uris(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let length = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if length > MAX_URI {
        return ScimError::new(
            414,
            None,
            format!(
                "the request URI is {length} bytes, more than {MAX_URI}; send a filter in a POST to /.search"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Gives every error answer of the SCIM endpoint the RFC 7644 error body,
/// also those made below the handlers (a method a route does not take, a
/// body over the server's limit, a query string that does not parse).
async fn as_scim_error(response: Response) -> Response {
    let status = response.status();
    let is_scim = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes() == CONTENT_TYPE.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_scim {
        return response;
    }
    let detail = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method not allowed on this endpoint".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_string(),
        other => other
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_string(),
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut answer = ScimError::new(status.as_u16(), None, detail).into_response();
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

/// Any SCIM version but 2.0: 400 `invalidVers`.
pub async fn unsupported_version(Path((version, _)): Path<(String, String)>) -> ScimError {
    if version == "v2" {
        return ScimError::not_found("no such SCIM endpoint");
    }
    ScimError::bad_request(
        crate::scim::ScimType::InvalidVers,
        format!("SCIM version \"{version}\" is not supported; use /scim/v2"),
    )
}

/// The base URL of a connection's SCIM endpoint, for `meta.location`.
fn base_url(state: &AppState, headers: &HeaderMap, connection: &str) -> String {
    let root = match &state.engine().config.server.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    format!("{root}/scim/v2/{connection}")
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive (RFC 7235 §2.1).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Authenticates a `scim` token bound to `connection`, a configured SCIM
/// connection. Anything else is 401 and nothing is read or written: an
/// unknown connection answers exactly as a bad token does, so connection
/// ids cannot be probed without one. A disabled connection, to its own
/// token, is 403.
async fn authenticate(state: &AppState, headers: &HeaderMap, connection: &str) -> ScimResult<()> {
    let unauthorized = || {
        ScimError::new(
            401,
            None,
            "a valid SCIM bearer token for this connection is required",
        )
    };
    let token = bearer_token(headers).ok_or_else(unauthorized)?;
    let record = state
        .store
        .authenticate_token(token)
        .await
        .map_err(|error| service::internal_error(&error))?
        .ok_or_else(unauthorized)?;
    if !(record.has_scope(Scope::Scim) && record.connection_id.as_deref() == Some(connection)) {
        return Err(unauthorized());
    }
    match state.engine().config.connection(connection) {
        Some(found) if found.kind == SCIM_KIND && found.enabled => Ok(()),
        Some(found) if found.kind == SCIM_KIND => Err(ScimError::new(
            403,
            None,
            format!("connection \"{connection}\" is disabled"),
        )),
        _ => Err(unauthorized()),
    }
}

fn service<'a>(state: &'a AppState, headers: &HeaderMap, connection: &'a str) -> ScimService<'a> {
    let engine = state.engine();
    ScimService {
        store: &state.store,
        reconciler: engine.reconciler.clone(),
        connection_id: connection,
        base: base_url(state, headers, connection),
        max_filter_matches: engine.config.server.scim_max_filter_matches,
    }
}

/// Parses a request body: size-limited JSON object.
fn parse_body(body: &Bytes, limit: usize) -> ScimResult<Value> {
    if body.len() > limit {
        return Err(ScimError::new(
            413,
            None,
            format!("the request body is larger than {limit} bytes"),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|error| {
        ScimError::invalid_syntax(format!("the body is not valid UTF-8: {error}"))
    })?;
    let value: Value = serde_json::from_str(text).map_err(|error| {
        ScimError::invalid_syntax(format!("the body is not valid JSON: {error}"))
    })?;
    if !value.is_object() {
        return Err(ScimError::invalid_syntax("the body must be a JSON object"));
    }
    Ok(value)
}

fn method_not_allowed() -> ScimError {
    ScimError::new(405, None, "method not allowed on this endpoint")
}

/// Discovery needs no token (RFC 7644 §4) and is the same for every
/// connection, so it is answered whether the connection exists or not: it
/// tells nothing about which ids are configured.
async fn discovery(method: &Method) -> ScimResult<()> {
    if method != Method::GET {
        return Err(method_not_allowed());
    }
    Ok(())
}

async fn service_provider_config(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(connection): Path<String>,
) -> Result<Response, ScimError> {
    discovery(&method).await?;
    Ok(scim_json(
        StatusCode::OK,
        &schema::service_provider_config(&base_url(&state, &headers, &connection)),
    ))
}

fn list_response(resources: Vec<Value>, total: u64, start_index: u64) -> Value {
    json!({
        "schemas": [schema::LIST_URN],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

/// A discovery listing as a ListResponse.
fn all_documents(documents: Vec<Value>) -> Response {
    let total = documents.len() as u64;
    scim_json(StatusCode::OK, &list_response(documents, total, 1))
}

/// The discovery document whose `id` is `id` (case-insensitively), or 404.
fn one_document(documents: Vec<Value>, id: &str, what: &str) -> Result<Response, ScimError> {
    documents
        .into_iter()
        .find(|document| {
            document["id"]
                .as_str()
                .is_some_and(|found| found.eq_ignore_ascii_case(id))
        })
        .map(|document| scim_json(StatusCode::OK, &document))
        .ok_or_else(|| ScimError::not_found(format!("no {what} \"{id}\"")))
}

async fn resource_types(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(connection): Path<String>,
) -> Result<Response, ScimError> {
    discovery(&method).await?;
    Ok(all_documents(schema::resource_types(&base_url(
        &state,
        &headers,
        &connection,
    ))))
}

async fn resource_type(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((connection, name)): Path<(String, String)>,
) -> Result<Response, ScimError> {
    discovery(&method).await?;
    one_document(
        schema::resource_types(&base_url(&state, &headers, &connection)),
        &name,
        "resource type",
    )
}

async fn schemas(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(connection): Path<String>,
) -> Result<Response, ScimError> {
    discovery(&method).await?;
    Ok(all_documents(schema::schemas(&base_url(
        &state,
        &headers,
        &connection,
    ))))
}

async fn one_schema(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((connection, urn)): Path<(String, String)>,
) -> Result<Response, ScimError> {
    discovery(&method).await?;
    one_document(
        schema::schemas(&base_url(&state, &headers, &connection)),
        &urn,
        "schema",
    )
}

async fn me(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(connection): Path<String>,
) -> Result<Response, ScimError> {
    authenticate(&state, &headers, &connection).await?;
    Err(ScimError::new(
        501,
        None,
        "/Me is not supported: provisioning tokens have no user",
    ))
}

/// Query parameters of a list request.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListParams {
    filter: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

fn number(text: Option<&str>, name: &str) -> ScimResult<Option<i64>> {
    text.map(|t| {
        t.trim()
            .parse::<i64>()
            .map_err(|_| ScimError::invalid_value(format!("{name} must be an integer")))
    })
    .transpose()
}

fn sort_descending(order: Option<&str>) -> ScimResult<bool> {
    match order.map(str::to_ascii_lowercase).as_deref() {
        None | Some("ascending") => Ok(false),
        Some("descending") => Ok(true),
        Some(other) => Err(ScimError::invalid_value(format!(
            "sortOrder must be ascending or descending, not \"{other}\""
        ))),
    }
}

impl ListParams {
    fn into_query(self) -> ScimResult<ListQuery> {
        Ok(ListQuery {
            filter: self.filter,
            sort_by: self.sort_by,
            descending: sort_descending(self.sort_order.as_deref())?,
            start_index: number(self.start_index.as_deref(), "startIndex")?
                .unwrap_or(1)
                .max(1) as u64,
            count: number(self.count.as_deref(), "count")?.map(|c| c.max(0) as u64),
            attributes: service::attribute_list(self.attributes.as_deref()),
            excluded_attributes: service::attribute_list(self.excluded_attributes.as_deref()),
        })
    }
}

/// A SearchRequest body as a list query.
fn search_query(body: &Value) -> ScimResult<ListQuery> {
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    let list = |key: &str| -> ScimResult<Vec<String>> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()),
            Some(Value::String(text)) => Ok(service::attribute_list(Some(text))),
            Some(_) => Err(ScimError::invalid_value(format!(
                "{key} must be a list of attribute names"
            ))),
        }
    };
    let integer = |key: &str| -> ScimResult<Option<i64>> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::invalid_value(format!("{key} must be an integer"))),
        }
    };
    Ok(ListQuery {
        filter: text("filter"),
        sort_by: text("sortBy"),
        descending: sort_descending(text("sortOrder").as_deref())?,
        start_index: integer("startIndex")?.unwrap_or(1).max(1) as u64,
        count: integer("count")?.map(|c| c.max(0) as u64),
        attributes: list("attributes")?,
        excluded_attributes: list("excludedAttributes")?,
    })
}

async fn list(
    state: &AppState,
    headers: &HeaderMap,
    connection: &str,
    kind: ResourceKind,
    query: ListQuery,
) -> Result<Response, ScimError> {
    authenticate(state, headers, connection).await?;
    let page = service(state, headers, connection)
        .list(kind, &query)
        .await?;
    Ok(scim_json(
        StatusCode::OK,
        &list_response(page.resources, page.total, page.start_index),
    ))
}

async fn list_users(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(connection): Path<String>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ScimError> {
    let Query(params) = params.map_err(|e| ScimError::invalid_value(e.body_text()))?;
    list(
        &state,
        &headers,
        &connection,
        ResourceKind::User,
        params.into_query()?,
    )
    .await
}

async fn list_groups(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(connection): Path<String>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ScimError> {
    let Query(params) = params.map_err(|e| ScimError::invalid_value(e.body_text()))?;
    list(
        &state,
        &headers,
        &connection,
        ResourceKind::Group,
        params.into_query()?,
    )
    .await
}

async fn create(
    state: &AppState,
    headers: &HeaderMap,
    connection: &str,
    kind: ResourceKind,
    body: &Bytes,
) -> Result<Response, ScimError> {
    authenticate(state, headers, connection).await?;
    let document = parse_body(body, schema::MAX_BODY)?;
    let (resource, version) = service(state, headers, connection)
        .create(kind, &document, &Projection::default())
        .await?;
    let mut response = with_etag(scim_json(StatusCode::CREATED, &resource), version);
    if let Some(location) = resource["meta"]["location"]
        .as_str()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn create_user(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(connection): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    create(&state, &headers, &connection, ResourceKind::User, &body).await
}

async fn create_group(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(connection): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    create(&state, &headers, &connection, ResourceKind::Group, &body).await
}

async fn user(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((connection, id)): Path<(String, String)>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, ScimError> {
    one(
        &state,
        method,
        &headers,
        &connection,
        ResourceKind::User,
        &id,
        params,
        &body,
    )
    .await
}

async fn group(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path((connection, id)): Path<(String, String)>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, ScimError> {
    one(
        &state,
        method,
        &headers,
        &connection,
        ResourceKind::Group,
        &id,
        params,
        &body,
    )
    .await
}

/// The request's `If-Match` header, checked by the write in its transaction.
fn if_match(headers: &HeaderMap) -> Option<IfMatch> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| IfMatch(v.to_string()))
}

#[expect(
    clippy::too_many_arguments,
    reason = "an axum handler's extractors, passed on as they are"
)]
async fn one(
    state: &AppState,
    method: Method,
    headers: &HeaderMap,
    connection: &str,
    kind: ResourceKind,
    id: &str,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
    body: &Bytes,
) -> Result<Response, ScimError> {
    if id == ".search" {
        authenticate(state, headers, connection).await?;
        if method != Method::POST {
            return Err(method_not_allowed());
        }
        let query = search_query(&parse_body(body, schema::MAX_BODY)?)?;
        return list(state, headers, connection, kind, query).await;
    }
    authenticate(state, headers, connection).await?;
    let Query(params) = params.map_err(|e| ScimError::invalid_value(e.body_text()))?;
    let projection = Projection {
        attributes: service::attribute_list(params.attributes.as_deref()),
        excluded: service::attribute_list(params.excluded_attributes.as_deref()),
    };
    let scim = service(state, headers, connection);
    match method {
        Method::GET => {
            let (resource, version) = scim.get(kind, id, &projection).await?;
            let etag = crate::scim::resource::etag(version);
            if headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|tags| {
                    tags.split(',')
                        .map(str::trim)
                        .any(|tag| tag == etag || tag == "*")
                })
            {
                return Ok(with_etag(StatusCode::NOT_MODIFIED.into_response(), version));
            }
            Ok(with_etag(scim_json(StatusCode::OK, &resource), version))
        }
        Method::PUT | Method::PATCH => {
            let document = parse_body(body, schema::MAX_BODY)?;
            let if_match = if_match(headers);
            let (resource, version) = if method == Method::PUT {
                scim.replace(kind, id, &document, &projection, if_match.as_ref())
                    .await?
            } else {
                scim.patch(kind, id, &document, &projection, if_match.as_ref())
                    .await?
            };
            Ok(with_etag(scim_json(StatusCode::OK, &resource), version))
        }
        Method::DELETE => {
            scim.delete(kind, id, if_match(headers).as_ref()).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(method_not_allowed()),
    }
}

/// `POST /.search` at the root: Users then Groups, paged together.
async fn search_all(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    Path(connection): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    authenticate(&state, &headers, &connection).await?;
    if method != Method::POST {
        return Err(method_not_allowed());
    }
    let query = search_query(&parse_body(&body, schema::MAX_BODY)?)?;
    let scim = service(&state, &headers, &connection);
    let count = query.count.unwrap_or(100).min(schema::MAX_RESULTS);
    let users = scim
        .list(
            ResourceKind::User,
            &ListQuery {
                count: Some(0),
                ..query.clone()
            },
        )
        .await?;
    let groups = scim
        .list(
            ResourceKind::Group,
            &ListQuery {
                count: Some(0),
                ..query.clone()
            },
        )
        .await?;
    let total = users.total + groups.total;
    let start = query.start_index.max(1);
    let mut resources = Vec::new();
    if count > 0 && start <= users.total {
        let page = scim
            .list(
                ResourceKind::User,
                &ListQuery {
                    start_index: start,
                    count: Some(count),
                    ..query.clone()
                },
            )
            .await?;
        resources.extend(page.resources);
    }
    let remaining = count.saturating_sub(resources.len() as u64);
    if remaining > 0 {
        let group_start = start.saturating_sub(users.total).max(1);
        if group_start <= groups.total {
            let page = scim
                .list(
                    ResourceKind::Group,
                    &ListQuery {
                        start_index: group_start,
                        count: Some(remaining),
                        ..query
                    },
                )
                .await?;
            resources.extend(page.resources);
        }
    }
    Ok(scim_json(
        StatusCode::OK,
        &list_response(resources, total, start),
    ))
}
