//! `/hooks/<kind>/<connection>`: where IdPs deliver change notifications.
//! The request is handed as it came to [`Hooks::deliver`]; this module only
//! translates HTTP. Bodies above 1 MiB are refused (413), a declared one
//! after it has been read (see [`super::body`]).

use super::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use idpsync_driver::notify::{HookMethod, HookRequest};

/// The largest delivery accepted (Okta batches at most 50 events).
const MAX_BODY: usize = 1 << 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{kind}/{connection}", any(deliver))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(refuse_oversized_deliveries))
}

async fn refuse_oversized_deliveries(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match super::body::within(request, MAX_BODY as u64).await {
        Ok(request) => next.run(request).await,
        Err(_) => StatusCode::PAYLOAD_TOO_LARGE.into_response(),
    }
}

async fn deliver(
    State(state): State<AppState>,
    Path((kind, connection)): Path<(String, String)>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = match method {
        Method::GET => HookMethod::Get,
        Method::POST => HookMethod::Post,
        _ => return StatusCode::METHOD_NOT_ALLOWED.into_response(),
    };
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let answer = state.engine().hooks.deliver(
        &kind,
        &connection,
        &HookRequest {
            method,
            query: &query,
            headers: &headers,
            body: &body,
        },
    );
    (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, answer.content_type)],
        answer.body,
    )
        .into_response()
}
