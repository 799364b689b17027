//! The admin console at `/console`, served by the daemon itself: HTML
//! rendered on the server, no build step, a few lines of script (form
//! confirmations, the live event feed).
//!
//! * Sign-in with an `admin` or `read` token; a session cookie
//!   ([`session`]) after that. A read session sees everything and changes
//!   nothing.
//! * Every form carries the session's CSRF token, checked in constant time,
//!   and a POST whose `Origin` is another site is refused.
//! * Pages: connections, runs, the directory ([`directory`]: users, groups,
//!   ACL groups), devices, events (live, pushed by a long poll), tokens.

mod directory;
mod html;
pub mod session;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::v1::{connections, events as feed};
use crate::auth::{Scope, hash_token};
use crate::devices::{self, DeviceStatus};
use crate::reconcile::Trigger;
use crate::store::NewToken;
use crate::store::entity::status::RunStatus;
use crate::store::entity::{connection, device, event, source_user, sync_run};
use axum::Router;
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use html::{CONFIRM_SCRIPT, button, escape, page};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;
use session::Session;
use subtle::ConstantTimeEq;

pub use session::Sessions;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/connections") }))
        .route("/sign-in", get(sign_in_form).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/connections", get(connections_page))
        .route("/connections/{id}/sync", post(sync_now))
        .route("/connections/{id}/check", post(check_connection))
        .route("/connections/{id}/dry-run", post(dry_run))
        .route("/runs", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/approve", post(approve_run))
        .route("/runs/{id}/reject", post(reject_run))
        .route("/users", get(directory::users))
        .route("/users/{id}", get(directory::user))
        .route("/groups", get(directory::groups))
        .route("/groups/{id}", get(directory::group))
        .route("/acl-groups", get(directory::acl_groups))
        .route("/acl-groups/{name}", get(directory::acl_group))
        .route("/devices", get(devices_page))
        .route("/devices/{id}/{action}", post(change_device))
        .route("/events", get(events_page))
        .route("/events/feed", get(events_feed))
        .route("/tokens", get(tokens_page).post(create_token))
        .route("/tokens/{name}/revoke", post(revoke_token))
}

/// Whether cookies must be `Secure`: the console is reached over https.
fn secure(state: &AppState) -> bool {
    state
        .engine()
        .config
        .server
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"))
}

/// A signed-in browser: its cookie value and session, the token re-checked.
pub struct Signed {
    id: String,
    session: Session,
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let to_sign_in = || Redirect::to("/console/sign-in").into_response();
        let id = parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(session::cookie_value)
            .ok_or_else(to_sign_in)?
            .to_string();
        let session = state.console.get(&id).ok_or_else(to_sign_in)?;
        match state
            .store
            .authenticate_token_hash(&session.token_hash)
            .await
        {
            Ok(Some(_)) => Ok(Signed { id, session }),
            Ok(None) => {
                // Revoked or expired since: the session ends with it.
                state.console.close(&id);
                Err(to_sign_in())
            }
            Err(error) => Err(ApiError::from(error).into_response()),
        }
    }
}

impl Signed {
    fn who(&self) -> Option<(&str, bool)> {
        Some((&self.session.token_name, self.session.admin))
    }

    /// Why a change may not be made, if it may not: the form's CSRF token
    /// must be the session's, the request must come from this site, and the
    /// session must be allowed to change things.
    fn refuses_change(&self, headers: &HeaderMap, csrf: &str) -> Option<Response> {
        let same = self.session.csrf.as_bytes().ct_eq(csrf.as_bytes());
        if !bool::from(same) || !same_origin(headers) {
            return Some(refused(
                StatusCode::FORBIDDEN,
                "This form is stale or came from another site. Reload the page and try again.",
            ));
        }
        if !self.session.admin {
            return Some(refused(
                StatusCode::FORBIDDEN,
                "You signed in with a read token: it can see everything and change nothing.",
            ));
        }
        None
    }
}

/// A POST's `Origin`, when the browser sends one, is this site.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

fn refused(status: StatusCode, message: &str) -> Response {
    (
        status,
        Html(page(
            "Not allowed",
            None,
            &format!(
                "<p role=\"alert\">{}</p><p><a href=\"/console/connections\">Back to the console</a></p>",
                escape(message)
            ),
        )),
    )
        .into_response()
}

/// Makes `change` if this session may (see [`Signed::refuses_change`]),
/// then sends the browser back to `page`; a failed change is shown with
/// `status`. `change` is a future: nothing of it runs before the checks.
async fn change<E: std::fmt::Display>(
    signed: &Signed,
    headers: &HeaderMap,
    csrf: &str,
    page: &str,
    status: StatusCode,
    change: impl std::future::Future<Output = Result<(), E>>,
) -> Response {
    if let Some(refusal) = signed.refuses_change(headers, csrf) {
        return refusal;
    }
    match change.await {
        Ok(()) => Redirect::to(page).into_response(),
        Err(error) => refused(status, &error.to_string()),
    }
}

/// A page that could not be made for a reason of the server's (the store
/// failed, say): shown as a 500 page that gives the reason. Page handlers
/// return [`Page`] and pass every such failure on with `?`.
pub(super) struct PageFailed(String);

impl<E: std::fmt::Display> From<E> for PageFailed {
    fn from(error: E) -> Self {
        PageFailed(error.to_string())
    }
}

impl IntoResponse for PageFailed {
    fn into_response(self) -> Response {
        refused(StatusCode::INTERNAL_SERVER_ERROR, &self.0)
    }
}

/// What a page handler that reads the store returns.
pub(super) type Page = Result<Response, PageFailed>;

async fn sign_in_form() -> Html<String> {
    Html(page("Sign in", None, SIGN_IN_FORM))
}

const SIGN_IN_FORM: &str = "<form method=\"post\" action=\"/console/sign-in\"><p><label for=\"token\">API token (scope admin or read)</label><br><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required size=\"60\"></p><p><button type=\"submit\">Sign in</button></p></form>";

#[derive(Deserialize)]
struct SignInForm {
    token: String,
}

async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Page {
    if !same_origin(&headers) {
        return Ok(refused(
            StatusCode::FORBIDDEN,
            "Sign in from the console's own page.",
        ));
    }
    let token = form.token.trim();
    let record = match state.store.authenticate_token(token).await? {
        Some(record) if record.has_scope(Scope::Admin) || record.has_scope(Scope::Read) => record,
        _ => {
            let body = format!(
                "<p role=\"alert\" class=\"bad\">That token is unknown, expired, revoked, or has neither the admin nor the read scope.</p>{SIGN_IN_FORM}"
            );
            return Ok(
                (StatusCode::UNAUTHORIZED, Html(page("Sign in", None, &body))).into_response(),
            );
        }
    };
    let (id, _) = state.console.open(
        hash_token(token),
        record.name.clone(),
        record.has_scope(Scope::Admin),
    );
    Ok((
        [(header::SET_COOKIE, session::set_cookie(&id, secure(&state)))],
        Redirect::to("/console/connections"),
    )
        .into_response())
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let same = signed.session.csrf.as_bytes().ct_eq(form.csrf.as_bytes());
    if !bool::from(same) || !same_origin(&headers) {
        return refused(
            StatusCode::FORBIDDEN,
            "This form is stale. Reload the page.",
        );
    }
    state.console.close(&signed.id);
    (
        [(header::SET_COOKIE, session::clear_cookie(secure(&state)))],
        Redirect::to("/console/sign-in"),
    )
        .into_response()
}

fn sign_out_button(signed: &Signed) -> String {
    button("/console/sign-out", &signed.session.csrf, "Sign out", None)
}

async fn connections_page(State(state): State<AppState>, signed: Signed) -> Page {
    let rows = connection::Entity::find()
        .order_by_asc(connection::Column::Id)
        .all(state.store.db())
        .await?;
    let mut body = String::from(
        "<table><caption class=\"muted\">Every connection, its health and its last run</caption><thead><tr><th scope=\"col\">Connection</th><th scope=\"col\">Kind</th><th scope=\"col\">Health</th><th scope=\"col\">Users (active)</th><th scope=\"col\">Last run</th><th scope=\"col\">Next run</th><th scope=\"col\"></th></tr></thead><tbody>",
    );
    for row in rows {
        let view = match connections::view(&state, row).await {
            Ok(view) => view,
            Err(error) => return Ok(error.into_response()),
        };
        let last = view.last_runs.first().map_or(
            "<span class=\"muted\">never</span>".to_string(),
            |run| {
                format!(
                    "<a href=\"/console/runs/{}\">run {}</a> {} ({}, {})<br><span class=\"muted\">{}</span>{}",
                    run.id,
                    run.id,
                    escape(run.status.as_str()),
                    escape(&run.trigger),
                    run.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    escape(&counts_summary(&run.counts)),
                    run.error
                        .as_deref()
                        .map(|e| format!("<br><span class=\"bad\">{}</span>", escape(e)))
                        .unwrap_or_default()
                )
            },
        );
        let action = if signed.session.admin && view.kind != "scim" {
            ["sync", "check", "dry-run"]
                .iter()
                .zip(["Sync now", "Test connection", "Dry run"])
                .map(|(path, label)| {
                    button(
                        &format!("/console/connections/{}/{path}", view.id),
                        &signed.session.csrf,
                        label,
                        None,
                    )
                })
                .collect::<String>()
        } else {
            String::new()
        };
        let next = next_run_text(&state, &view);
        body.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{}</td><td>{} ({})</td><td>{last}</td><td>{next}</td><td>{action}</td></tr>",
            escape(&view.id),
            escape(&view.kind),
            escape(view.health.as_str()),
            view.users,
            view.active_users
        ));
    }
    body.push_str("</tbody></table>");
    body.push_str(&sign_out_button(&signed));
    Ok(Html(page("Connections", signed.who(), &body)).into_response())
}

/// The non-zero numbers of a run's counts, e.g. `users_created 300,
/// memberships_added 600`.
fn counts_summary(counts: &serde_json::Value) -> String {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        if let Some(object) = value.as_object() {
            for (key, value) in object {
                match value.as_u64() {
                    Some(0) => {}
                    Some(n) => out.push(format!("{key} {n}")),
                    None => walk(value, out),
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(counts, &mut out);
    if out.is_empty() {
        "no changes".into()
    } else {
        out.join(", ")
    }
}

/// When a connection runs next: its schedule, later while backing off,
/// never while quarantined.
fn next_run_text(state: &AppState, view: &connections::ConnectionView) -> String {
    use crate::store::entity::status::Health;
    if view.health == Health::Quarantined {
        return "none: quarantined (a manual sync clears it)".into();
    }
    let engine = state.engine();
    let Some(connection) = engine.config.connection(&view.id) else {
        return "not configured".into();
    };
    if connection.kind == "scim" {
        return "pushed".into();
    }
    match crate::sync::schedule::next_run(connection) {
        None => "manual only".into(),
        Some(at) => {
            let at = view
                .next_run_at
                .filter(|backoff| *backoff > at)
                .unwrap_or(at);
            at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        }
    }
}

async fn sync_now(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    // Every outcome, failures too, is a recorded run the page shows.
    let run = async {
        state
            .engine()
            .sync
            .run(&id, Trigger::Api, false, false, std::future::pending())
            .await
            .map(drop)
    };
    change(
        &signed,
        &headers,
        &form.csrf,
        "/console/connections",
        StatusCode::CONFLICT,
        run,
    )
    .await
}

/// Names of `ids` (users of `connection`), at most `LIMIT` of them.
async fn user_names(state: &AppState, connection: &str, ids: &[String]) -> String {
    const LIMIT: usize = 50;
    if ids.is_empty() {
        return "nobody".into();
    }
    let shown: Vec<String> = ids.iter().take(LIMIT).cloned().collect();
    let names: Vec<String> = match source_user::Entity::find()
        .filter(source_user::Column::ConnectionId.eq(connection))
        .filter(source_user::Column::ExternalId.is_in(shown.clone()))
        .all(state.store.db())
        .await
    {
        Ok(rows) => rows.into_iter().map(|row| row.user_name).collect(),
        Err(_) => shown,
    };
    let more = ids.len().saturating_sub(LIMIT);
    format!(
        "{}{}",
        escape(&names.join(", ")),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

async fn runs_page(State(state): State<AppState>, signed: Signed) -> Page {
    let rows = sync_run::Entity::find()
        .order_by_desc(sync_run::Column::Id)
        .limit(100)
        .all(state.store.db())
        .await?;
    let mut held = String::new();
    let mut body = String::from(
        "<table><caption class=\"muted\">The newest 100 runs</caption><thead><tr><th scope=\"col\">Run</th><th scope=\"col\">Connection</th><th scope=\"col\">Trigger, mode</th><th scope=\"col\">Status</th><th scope=\"col\">Started</th><th scope=\"col\">Error</th></tr></thead><tbody>",
    );
    for row in rows {
        if row.status == RunStatus::Held {
            let Some(plan) = state.engine().reconciler.held_plan(row.id).await? else {
                continue;
            };
            let actions = if signed.session.admin {
                format!(
                    "{}{}",
                    button(
                        &format!("/console/runs/{}/approve", row.id),
                        &signed.session.csrf,
                        "Approve",
                        Some(
                            "Apply this run's changes? Devices of the people it deprovisions are revoked."
                        )
                    ),
                    button(
                        &format!("/console/runs/{}/reject", row.id),
                        &signed.session.csrf,
                        "Reject",
                        Some("Reject this run? Nothing of it is applied.")
                    )
                )
            } else {
                String::new()
            };
            held.push_str(&held_section(&state, &row, &plan, &actions).await);
        }
        body.push_str(&format!(
            "<tr><th scope=\"row\"><a href=\"/console/runs/{}\">{}</a></th><td>{}</td><td>{}, {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            row.id,
            row.id,
            escape(&row.connection_id),
            escape(&row.trigger),
            escape(&row.mode),
            escape(row.status.as_str()),
            row.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
            escape(row.error.as_deref().unwrap_or(""))
        ));
    }
    body.push_str("</tbody></table>");
    let body = format!("{held}{body}{}{CONFIRM_SCRIPT}", sign_out_button(&signed));
    Ok(Html(page("Runs", signed.who(), &body)).into_response())
}

/// A held run's plan: whom it would deprovision, suspend and delete.
async fn held_section(
    state: &AppState,
    row: &sync_run::Model,
    plan: &crate::reconcile::HeldPlan,
    actions: &str,
) -> String {
    format!(
        "<section aria-labelledby=\"held-{id}\"><h3 id=\"held-{id}\">Run {id} of {conn} is held</h3><p>It would deprovision: {deactivated}.</p><p>It would suspend: {suspended}.</p><p>It would delete: {deleted}.</p><p class=\"muted\">{added} memberships added, {removed} removed; {created} users created, {updated} updated.</p>{actions}</section>",
        id = row.id,
        conn = escape(&row.connection_id),
        deactivated = user_names(state, &row.connection_id, &plan.deactivated).await,
        suspended = user_names(state, &row.connection_id, &plan.suspended).await,
        deleted = user_names(state, &row.connection_id, &plan.deleted).await,
        added = plan.counts.memberships_added,
        removed = plan.counts.memberships_removed,
        created = plan.counts.users_created,
        updated = plan.counts.users_updated,
    )
}

/// One run: what it received and changed, its error, and a held run's plan.
async fn run_page(State(state): State<AppState>, signed: Signed, Path(id): Path<i64>) -> Page {
    let Some(row) = sync_run::Entity::find_by_id(id)
        .one(state.store.db())
        .await?
    else {
        return Ok(refused(StatusCode::NOT_FOUND, "no such run"));
    };
    let counts: serde_json::Value = serde_json::from_str(&row.counts).unwrap_or_default();
    let mut body = format!(
        "<dl><dt>Connection</dt><dd>{}</dd><dt>Trigger, mode</dt><dd>{}, {}{}</dd><dt>Status</dt><dd>{}</dd><dt>Started</dt><dd>{}</dd><dt>Finished</dt><dd>{}</dd><dt>Counts</dt><dd>{}</dd><dt>Error</dt><dd>{}</dd></dl>",
        escape(&row.connection_id),
        escape(&row.trigger),
        escape(&row.mode),
        if row.dry_run { " (dry run)" } else { "" },
        escape(row.status.as_str()),
        row.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        row.finished_at.map_or("-".to_string(), |at| at
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string()),
        escape(&counts_summary(&counts)),
        escape(row.error.as_deref().unwrap_or("none")),
    );
    if row.status == RunStatus::Held
        && let Some(plan) = state.engine().reconciler.held_plan(row.id).await?
    {
        body.push_str(&held_section(&state, &row, &plan, "").await);
    }
    body.push_str("<p><a href=\"/console/runs\">All runs</a></p>");
    Ok(Html(page(&format!("Run {id}"), signed.who(), &body)).into_response())
}

async fn approve_run(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let approve = async { state.engine().reconciler.approve(id).await.map(drop) };
    change(
        &signed,
        &headers,
        &form.csrf,
        "/console/runs",
        StatusCode::CONFLICT,
        approve,
    )
    .await
}

async fn reject_run(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let by = format!("console session of token {}", signed.session.token_name);
    let engine = state.engine();
    let reject = engine.reconciler.reject(id, &by);
    change(
        &signed,
        &headers,
        &form.csrf,
        "/console/runs",
        StatusCode::CONFLICT,
        reject,
    )
    .await
}

/// A page reporting what a connection answered, with a way back.
fn report(signed: &Signed, title: &str, body: &str) -> Response {
    let body = format!("{body}<p><a href=\"/console/connections\">Back to the connections</a></p>");
    Html(page(title, signed.who(), &body)).into_response()
}

/// "Test connection": the driver's credentials and reach, said plainly.
async fn check_connection(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refusal) = signed.refuses_change(&headers, &form.csrf) {
        return refusal;
    }
    let body = match state.engine().sync.check(&id).await {
        Ok(Ok(capabilities)) => format!(
            "<p role=\"status\">Reached: {}.</p><p class=\"muted\">Incremental pulls: {}; nested groups: {}; page size {}.</p>",
            escape(&capabilities.summary),
            if capabilities.delta { "yes" } else { "no" },
            if capabilities.nested_groups {
                "yes"
            } else {
                "no"
            },
            capabilities.page_size
        ),
        Ok(Err(error)) => format!(
            "<p role=\"alert\" class=\"bad\">{}</p>",
            escape(&error.to_string())
        ),
        Err(error) => format!(
            "<p role=\"alert\" class=\"bad\">{}</p>",
            escape(&error.to_string())
        ),
    };
    report(&signed, &format!("Test connection {id}"), &body)
}

/// A dry run: the pull and the plan, nothing applied.
async fn dry_run(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refusal) = signed.refuses_change(&headers, &form.csrf) {
        return refusal;
    }
    let body = match state
        .engine()
        .sync
        .run(&id, Trigger::Api, true, false, std::future::pending())
        .await
    {
        Ok(report) => match serde_json::to_value(&report) {
            Ok(json) => format!(
                "<p role=\"status\">Status {}; nothing was applied.</p><pre>{}</pre>",
                escape(json["status"].as_str().unwrap_or("")),
                escape(&serde_json::to_string_pretty(&json["outcome"]).unwrap_or_default())
            ),
            Err(error) => format!("<p class=\"bad\">{}</p>", escape(&error.to_string())),
        },
        Err(error) => format!(
            "<p role=\"alert\" class=\"bad\">{}</p>",
            escape(&error.to_string())
        ),
    };
    report(&signed, &format!("Dry run of {id}"), &body)
}

async fn devices_page(State(state): State<AppState>, signed: Signed) -> Page {
    let rows = device::Entity::find()
        .order_by_desc(device::Column::Id)
        .limit(500)
        .all(state.store.db())
        .await?;
    let mut body = String::from(
        "<table><caption class=\"muted\">The newest 500 devices</caption><thead><tr><th scope=\"col\">Device</th><th scope=\"col\">Owner</th><th scope=\"col\">Status</th><th scope=\"col\">Reason</th><th scope=\"col\"></th></tr></thead><tbody>",
    );
    for row in rows {
        let action = if signed.session.admin && row.status != DeviceStatus::Revoked.as_str() {
            let mut forms = String::new();
            for (action, label, status) in [
                ("approve", "Approve", DeviceStatus::Approved),
                ("quarantine", "Quarantine", DeviceStatus::Quarantined),
                ("lock", "Lock", DeviceStatus::Locked),
            ] {
                if row.status != status.as_str() {
                    forms.push_str(&button(
                        &format!("/console/devices/{}/{action}", row.id),
                        &signed.session.csrf,
                        label,
                        None,
                    ));
                }
            }
            forms.push_str(&button(
                &format!("/console/devices/{}/revoke", row.id),
                &signed.session.csrf,
                "Revoke",
                Some(&format!(
                    "Revoke {}? A revoked device cannot come back.",
                    row.name
                )),
            ));
            forms
        } else {
            String::new()
        };
        body.push_str(&format!(
            "<tr id=\"device-{}\"><th scope=\"row\">{}</th><td>{} / {}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            row.id,
            escape(&row.name),
            escape(&row.owner_connection_id),
            escape(&row.owner_external_id),
            escape(&row.status),
            escape(row.revoked_reason.as_deref().unwrap_or(""))
        ));
    }
    body.push_str("</tbody></table>");
    body.push_str(&sign_out_button(&signed));
    body.push_str(CONFIRM_SCRIPT);
    Ok(Html(page("Devices", signed.who(), &body)).into_response())
}

async fn change_device(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(status) = DeviceStatus::from_action(&action) else {
        return refused(StatusCode::NOT_FOUND, &format!("no device action {action}"));
    };
    let reason = format!(
        "{} in the console by {}",
        status.as_str(),
        signed.session.token_name
    );
    let set = async {
        devices::set_status(&state.store, &state.bus, id, status, Some(reason))
            .await
            .map(drop)
    };
    change(
        &signed,
        &headers,
        &form.csrf,
        "/console/devices",
        StatusCode::CONFLICT,
        set,
    )
    .await
}

/// The newest events first; the script long-polls `/console/events/feed`
/// and puts each new event on top as it commits.
/// `?kind=` and `?connection=` on the events page and its feed.
#[derive(Debug, Default, Deserialize)]
struct EventFilter {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    connection: Option<String>,
}

impl EventFilter {
    fn normalized(self) -> EventFilter {
        let keep = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        EventFilter {
            kind: keep(self.kind),
            connection: keep(self.connection),
        }
    }

    fn keeps(&self, kind: &str, connection: Option<&str>) -> bool {
        self.kind.as_deref().is_none_or(|wanted| wanted == kind)
            && self
                .connection
                .as_deref()
                .is_none_or(|wanted| Some(wanted) == connection)
    }
}

async fn events_page(
    State(state): State<AppState>,
    signed: Signed,
    Query(filter): Query<EventFilter>,
) -> Page {
    let filter = filter.normalized();
    let mut query = event::Entity::find();
    if let Some(kind) = &filter.kind {
        query = query.filter(event::Column::Kind.eq(kind.as_str()));
    }
    if let Some(connection) = &filter.connection {
        query = query.filter(event::Column::ConnectionId.eq(connection.as_str()));
    }
    let rows = query
        .order_by_desc(event::Column::Id)
        .limit(100)
        .all(state.store.db())
        .await?;
    // The live feed starts after the newest event of any kind.
    let cursor = event::Entity::find()
        .order_by_desc(event::Column::Id)
        .one(state.store.db())
        .await?
        .map_or(0, |row| row.id);
    let kinds: String = crate::events::EventKind::ALL
        .iter()
        .map(|kind| {
            let name = kind.as_str();
            let selected = if filter.kind.as_deref() == Some(name) {
                " selected"
            } else {
                ""
            };
            format!("<option{selected}>{name}</option>")
        })
        .collect();
    let mut body = format!(
        "<form method=\"get\" action=\"/console/events\"><label for=\"kind\">Kind</label> <select id=\"kind\" name=\"kind\"><option value=\"\">any</option>{kinds}</select> <label for=\"connection\">Connection</label> <input id=\"connection\" name=\"connection\" value=\"{}\"> <button type=\"submit\">Filter</button></form><p class=\"muted\" id=\"live\" aria-live=\"polite\">Live: new events appear on top.</p><table><thead><tr><th scope=\"col\">#</th><th scope=\"col\">Kind</th><th scope=\"col\">Connection</th><th scope=\"col\">Subject</th><th scope=\"col\">At</th></tr></thead><tbody id=\"events\" data-cursor=\"{cursor}\" data-filter=\"{}\">",
        escape(filter.connection.as_deref().unwrap_or("")),
        escape(&filter_query(&filter)),
    );
    for row in rows {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td></tr>",
            row.id,
            escape(&row.kind),
            escape(row.connection_id.as_deref().unwrap_or("")),
            escape(&row.subject_type),
            escape(&row.subject_id),
            row.created_at.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    body.push_str("</tbody></table>");
    body.push_str(&sign_out_button(&signed));
    body.push_str(LIVE_SCRIPT);
    Ok(Html(page("Events", signed.who(), &body)).into_response())
}

/// Long-polls the feed and prepends each event (as text, never markup).
const LIVE_SCRIPT: &str = r#"<script>
(async () => {
  const body = document.getElementById('events');
  let cursor = Number(body.dataset.cursor);
  for (;;) {
    try {
      const answer = await fetch('/console/events/feed?wait=25&after=' + cursor + body.dataset.filter, {credentials: 'same-origin'});
      if (!answer.ok) { await new Promise(r => setTimeout(r, 5000)); continue; }
      const page = await answer.json();
      for (const e of page.events) {
        const row = document.createElement('tr');
        const at = new Date(e.created_at).toISOString().slice(0, 19).replace('T', ' ') + ' UTC';
        for (const text of [e.id, e.kind, e.connection_id || '', e.subject_type + ' ' + e.subject_id, at]) {
          const cell = document.createElement('td');
          cell.textContent = String(text);
          row.appendChild(cell);
        }
        body.prepend(row);
      }
      cursor = page.cursor;
    } catch (_) { await new Promise(r => setTimeout(r, 5000)); }
  }
})();
</script>"#;

/// The filter as a query string for the feed (`&kind=...&connection=...`).
fn filter_query(filter: &EventFilter) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if let Some(kind) = &filter.kind {
        query.append_pair("kind", kind);
    }
    if let Some(connection) = &filter.connection {
        query.append_pair("connection", connection);
    }
    let query = query.finish();
    if query.is_empty() {
        query
    } else {
        format!("&{query}")
    }
}

/// The API feed's page, then the filter: the cursor still moves past what
/// the filter leaves out.
async fn events_feed(
    State(state): State<AppState>,
    _signed: Signed,
    Query(query): Query<feed::FeedQuery>,
    Query(filter): Query<EventFilter>,
) -> Result<axum::Json<feed::FeedPage>, ApiError> {
    let filter = filter.normalized();
    let mut page = feed::page(&state, &query).await?;
    page.events
        .retain(|event| filter.keeps(&event.kind, event.connection_id.as_deref()));
    Ok(axum::Json(page))
}

async fn tokens_page(State(state): State<AppState>, signed: Signed, headers: HeaderMap) -> Page {
    tokens_view(&state, &signed, &headers, None).await
}

/// Where the IdPs push: `[server] public_url` when set, else the address
/// this page was asked at.
fn scim_base(state: &AppState, headers: &HeaderMap) -> String {
    match state.engine().config.server.public_url.as_deref() {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!(
            "http://{}",
            headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("localhost")
        ),
    }
}

async fn tokens_view(
    state: &AppState,
    signed: &Signed,
    headers: &HeaderMap,
    created: Option<&str>,
) -> Page {
    let tokens = state.store.list_tokens().await?;
    let mut body = String::new();
    if let Some(plaintext) = created {
        body.push_str(&format!(
            "<p role=\"status\">The new token, shown this once: <code id=\"new-token\">{}</code> <button type=\"button\" onclick=\"navigator.clipboard.writeText(document.getElementById('new-token').textContent)\">Copy</button></p>",
            escape(plaintext)
        ));
    }
    body.push_str("<table><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Prefix</th><th scope=\"col\">Scopes</th><th scope=\"col\">Connection</th><th scope=\"col\">State</th><th scope=\"col\"></th></tr></thead><tbody>");
    for token in &tokens {
        let state_text = if token.revoked_at.is_some() {
            "revoked"
        } else if token.expires_at.is_some_and(|at| at <= chrono::Utc::now()) {
            "expired"
        } else {
            "active"
        };
        let action = if signed.session.admin && token.revoked_at.is_none() {
            button(
                &format!("/console/tokens/{}/revoke", token.name),
                &signed.session.csrf,
                "Revoke",
                Some(&format!("Revoke the token {}?", token.name)),
            )
        } else {
            String::new()
        };
        body.push_str(&format!(
            "<tr><th scope=\"row\">{}</th><td><code>{}</code></td><td>{}</td><td>{}</td><td>{state_text}</td><td>{action}</td></tr>",
            escape(&token.name),
            escape(&token.prefix),
            escape(&token.scopes.join(", ")),
            escape(token.connection_id.as_deref().unwrap_or(""))
        ));
    }
    body.push_str("</tbody></table>");
    let engine = state.engine();
    let scim: Vec<&str> = engine
        .config
        .connections
        .iter()
        .filter(|c| c.kind == "scim")
        .map(|c| c.id.as_str())
        .collect();
    if !scim.is_empty() {
        let base = scim_base(state, headers);
        body.push_str("<h3>SCIM endpoints</h3><p class=\"muted\">Give the IdP the URL and a token of scope scim bound to the connection.</p><ul>");
        for id in &scim {
            body.push_str(&format!(
                "<li>{}: <code>{}/scim/v2/{}</code></li>",
                escape(id),
                escape(&base),
                escape(id)
            ));
        }
        body.push_str("</ul>");
    }
    if signed.session.admin {
        let connections: String = scim
            .iter()
            .map(|id| format!("<option>{}</option>", escape(id)))
            .collect();
        body.push_str(&format!(
            "<h3>New token</h3><form method=\"post\" action=\"/console/tokens\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><p><label for=\"name\">Name</label> <input id=\"name\" name=\"name\" required></p><p><label for=\"scope\">Scope</label> <select id=\"scope\" name=\"scope\"><option>read</option><option>admin</option><option>devices</option><option>scim</option></select></p><p><label for=\"connection\">Connection (scim tokens)</label> <select id=\"connection\" name=\"connection\"><option value=\"\">-</option>{connections}</select></p><p><button type=\"submit\">Create</button></p></form>",
            escape(&signed.session.csrf)
        ));
    }
    body.push_str(&sign_out_button(signed));
    body.push_str(CONFIRM_SCRIPT);
    Ok(Html(page("Tokens", signed.who(), &body)).into_response())
}

#[derive(Deserialize)]
struct NewTokenForm {
    csrf: String,
    name: String,
    scope: String,
    /// The SCIM connection a `scim` token pushes into.
    #[serde(default)]
    connection: Option<String>,
}

async fn create_token(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Form(form): Form<NewTokenForm>,
) -> Page {
    if let Some(refusal) = signed.refuses_change(&headers, &form.csrf) {
        return Ok(refusal);
    }
    let scope = match form.scope.as_str() {
        "read" => Scope::Read,
        "admin" => Scope::Admin,
        "devices" => Scope::Devices,
        "scim" => Scope::Scim,
        other => {
            return Ok(refused(
                StatusCode::BAD_REQUEST,
                &format!("unknown scope {other}"),
            ));
        }
    };
    let connection = form.connection.filter(|c| !c.is_empty());
    let is_scim_connection = |id: &str| {
        state
            .engine()
            .config
            .connection(id)
            .is_some_and(|connection| connection.kind == "scim")
    };
    let connection = match (scope, connection) {
        (Scope::Scim, Some(id)) if is_scim_connection(&id) => Some(id),
        (Scope::Scim, _) => {
            return Ok(refused(
                StatusCode::BAD_REQUEST,
                "a scim token is bound to one SCIM connection: choose it",
            ));
        }
        (_, _) => None,
    };
    let created = state
        .store
        .create_token(NewToken {
            name: form.name.trim().to_string(),
            scopes: vec![scope],
            connection_id: connection,
            expires_at: None,
        })
        .await;
    let plaintext = match created {
        Ok((plaintext, _)) => plaintext,
        Err(error) => return Ok(refused(StatusCode::CONFLICT, &error.to_string())),
    };
    let mut response = tokens_view(&state, &signed, &headers, Some(&plaintext)).await?;
    // The one page that shows a secret is never cached.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        "no-store".parse().expect("a header value"),
    );
    Ok(response)
}

async fn revoke_token(
    State(state): State<AppState>,
    signed: Signed,
    headers: HeaderMap,
    Path(name): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let revoke = async { state.store.revoke_token(&name).await.map(drop) };
    change(
        &signed,
        &headers,
        &form.csrf,
        "/console/tokens",
        StatusCode::NOT_FOUND,
        revoke,
    )
    .await
}
