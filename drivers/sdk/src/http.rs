//! The HTTP kit every driver shares: one reqwest client (rustls, timeouts, no
//! redirects), bounded concurrency, retries with exponential backoff and
//! jitter on 429, 5xx and connection errors, `Retry-After` and rate-limit
//! headers honoured (and a pause when the IdP says none are left), bearer
//! tokens from a [`TokenSource`] refreshed once on 401. Errors come back as
//! [`DriverError`]s with the IdP's message and never a credential.

use crate::error::DriverError;
use crate::secret::Secret;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest a single `Retry-After` is waited for; longer is a failure.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_wait: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1` (1-based), with up to 25% jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        let base = self
            .first_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        base.mul_f64(1.0 - rand::random::<f64>() * 0.25)
    }
}

/// Options of the kit.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_concurrency: usize,
    pub retry: RetryPolicy,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_concurrency: 4,
            retry: RetryPolicy::default(),
        }
    }
}

/// Supplies bearer tokens; [`ClientCredentials`] is the usual one.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self) -> Result<Secret, DriverError>;
    /// Forgets the cached token (after a 401).
    async fn invalidate(&self);
}

/// A bearer token that does not change, such as an API token: nothing to
/// refresh, so a 401 is final.
pub struct StaticToken(pub Secret);

#[async_trait::async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<Secret, DriverError> {
        Ok(self.0.clone())
    }

    async fn invalidate(&self) {}
}

/// The share of an IdP's rate limit one connection may use. Okta's and
/// Auth0's limits are per organization, shared with every other
/// integration: with a share of 0.5 a connection pauses until the window
/// resets once the rate-limit headers say half the window's limit is
/// left, keeping that half for everyone else.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateShare(f64);

impl RateShare {
    /// The whole limit: pause only when it is spent.
    pub const WHOLE: RateShare = RateShare(1.0);

    /// A share above 0 and at most 1.
    pub fn new(fraction: f64) -> Option<RateShare> {
        (fraction > 0.0 && fraction <= 1.0).then_some(RateShare(fraction))
    }

    /// Requests of a window of `limit` kept for others.
    fn reserve(self, limit: u64) -> u64 {
        (limit as f64 * (1.0 - self.0)).ceil() as u64
    }
}

/// The shared HTTP client; cheap to clone. A connection's driver gets its
/// own with [`HttpKit::for_connection`], so one IdP's spent budget never
/// pauses another's requests.
#[derive(Clone)]
pub struct HttpKit {
    client: reqwest::Client,
    retry: RetryPolicy,
    permits: Arc<Semaphore>,
    /// Requests wait until this instant (an IdP said its budget is spent).
    paused_until: Arc<Mutex<Option<Instant>>>,
    share: RateShare,
}

impl std::fmt::Debug for HttpKit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpKit")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl HttpKit {
    pub fn new(options: HttpOptions) -> Result<Self, DriverError> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("idpsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                DriverError::Transient(format!("cannot build the HTTP client: {error}"))
            })?;
        Ok(HttpKit {
            client,
            retry: options.retry,
            permits: Arc::new(Semaphore::new(options.max_concurrency.max(1))),
            paused_until: Arc::new(Mutex::new(None)),
            share: RateShare::WHOLE,
        })
    }

    /// A kit for one connection: the same client, connection pool and
    /// concurrency bound, its own rate-limit pause, and `share` of the
    /// IdP's limit.
    pub fn for_connection(&self, share: RateShare) -> HttpKit {
        HttpKit {
            paused_until: Arc::new(Mutex::new(None)),
            share,
            ..self.clone()
        }
    }

    /// The underlying client, to build requests with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Sends the request `build` makes (once per attempt), with a bearer token
    /// from `auth` if given. Returns the 2xx response, or the error the final
    /// answer means.
    pub async fn send(
        &self,
        build: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Send + Sync),
        auth: Option<&dyn TokenSource>,
    ) -> Result<Response, DriverError> {
        match self.exchange(build, auth).await? {
            Answer::Success(response) => Ok(response),
            Answer::Refused(refusal) => Err(refusal.into_error(self.retry.max_backoff)),
        }
    }

    /// A token request (client credentials, a signed grant) through the
    /// same retries as every call: a network failure, a 429 or a 5xx is
    /// retried, and one that outlasts the retries is an outage
    /// ([`DriverError::Transient`], [`DriverError::RateLimited`]), never
    /// "authentication failed". Any other answer is returned as it is, for
    /// the caller to read the token or the refusal from.
    pub async fn send_token_request(
        &self,
        build: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Send + Sync),
    ) -> Result<TokenAnswer, DriverError> {
        match self.exchange(build, None).await? {
            Answer::Success(response) => Ok(TokenAnswer {
                status: response.status(),
                body: response
                    .bytes()
                    .await
                    .map_err(|error| {
                        DriverError::Transient(format!(
                            "token request failed: {}",
                            error.without_url()
                        ))
                    })?
                    .to_vec(),
            }),
            Answer::Refused(refusal) if refusal.is_outage() => {
                Err(match refusal.into_error(self.retry.max_backoff) {
                    DriverError::Transient(message) => {
                        DriverError::Transient(format!("the token endpoint is failing: {message}"))
                    }
                    other => other,
                })
            }
            Answer::Refused(refusal) => Ok(TokenAnswer {
                status: refusal.status,
                body: refusal.body.into_bytes(),
            }),
        }
    }

    /// The retry loop: network failures, 429, 5xx and quota answers are
    /// retried (after `Retry-After`, the rate-limit reset when the budget
    /// is spent, or a backoff); a 401 refreshes the token once. Returns a
    /// success, or the final refusal.
    async fn exchange(
        &self,
        build: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Send + Sync),
        auth: Option<&dyn TokenSource>,
    ) -> Result<Answer, DriverError> {
        let mut refreshed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.wait_if_paused().await;
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| DriverError::Cancelled)?;
            let mut request = build(&self.client);
            if let Some(auth) = auth {
                request = request.bearer_auth(auth.token().await?.expose());
            }
            let outcome = request.send().await;
            drop(_permit);
            let response = match outcome {
                Ok(response) => response,
                Err(error) => {
                    let message = error.without_url().to_string();
                    if attempt < self.retry.max_attempts {
                        tracing::debug!(attempt, %message, "request failed; retrying");
                        tokio::time::sleep(self.retry.backoff(attempt)).await;
                        continue;
                    }
                    return Err(DriverError::Transient(message));
                }
            };
            self.note_rate_limit(response.headers()).await;
            let status = response.status();
            if status.is_success() {
                return Ok(Answer::Success(response));
            }
            if status == StatusCode::UNAUTHORIZED
                && let Some(auth) = auth
                && !refreshed
            {
                // A token that expired mid-pull: fetch a new one, once.
                refreshed = true;
                auth.invalidate().await;
                attempt -= 1;
                continue;
            }
            // The rate-limit reset is the wait only when the budget is
            // spent: a 5xx with budget left is retried after a backoff.
            let budget_spent = status == StatusCode::TOO_MANY_REQUESTS
                || rate_limit_remaining(response.headers()) == Some(0);
            let wait = retry_after(response.headers()).or_else(|| {
                budget_spent
                    .then(|| rate_limit_reset(response.headers()))
                    .flatten()
            });
            let body = read_error_body(response).await;
            let quota = quota_answer(status, &body);
            let retryable = status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
                || quota == Some(Quota::RetryLater);
            if retryable && attempt < self.retry.max_attempts {
                let wait = wait.unwrap_or_else(|| self.retry.backoff(attempt));
                if wait > self.retry.max_wait {
                    return Err(DriverError::RateLimited { retry_after: wait });
                }
                tracing::debug!(
                    attempt,
                    status = status.as_u16(),
                    wait_ms = wait.as_millis() as u64,
                    "throttled or failed; retrying"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            return Ok(Answer::Refused(Refusal {
                status,
                body,
                wait,
                quota,
            }));
        }
    }

    /// Sends and parses a JSON body.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        build: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Send + Sync),
        auth: Option<&dyn TokenSource>,
    ) -> Result<T, DriverError> {
        let response = self.send(build, auth).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|error| DriverError::Transient(error.without_url().to_string()))?;
        serde_json::from_slice(&bytes)
            .map_err(|error| DriverError::protocol(format!("unreadable JSON: {error}")))
    }

    /// Sends the request and reads its JSON answer, `null` when the body is
    /// empty (a 204): the calls that create, renew and delete things.
    pub async fn send_json(
        &self,
        build: &(dyn Fn(&reqwest::Client) -> RequestBuilder + Send + Sync),
        auth: Option<&dyn TokenSource>,
    ) -> Result<serde_json::Value, DriverError> {
        json_or_null(self.send(build, auth).await?).await
    }

    /// `GET url?query` with a bearer token from `auth`, its JSON body
    /// parsed: the call most listings are.
    pub async fn get_query<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        query: Vec<(String, String)>,
        auth: Option<&dyn TokenSource>,
    ) -> Result<T, DriverError> {
        self.get_json(&move |client| client.get(&url).query(&query), auth)
            .await
    }

    async fn wait_if_paused(&self) {
        let until = *self.paused_until.lock().await;
        if let Some(until) = until
            && until > Instant::now()
        {
            tokio::time::sleep_until(until).await;
        }
    }

    /// `X-Rate-Limit-Remaining: 0` (or `X-RateLimit-`) with its reset in
    /// epoch seconds, or `RateLimit-Remaining` / `RateLimit-Reset` (seconds
    /// from now): pause before the next request instead of hitting a 429.
    /// With a [`RateShare`] below 1 the pause comes once the remaining
    /// budget reaches what is kept for others.
    async fn note_rate_limit(&self, headers: &HeaderMap) {
        // What this connection must leave of the window for others.
        let reserve = |limit: Option<u64>| limit.map_or(0, |limit| self.share.reserve(limit));
        let spent = |remaining: Option<u64>, limit: Option<u64>| {
            remaining.is_some_and(|remaining| remaining <= reserve(limit))
        };
        let wait = if spent(rate_limit_remaining(headers), rate_limit_limit(headers)) {
            rate_limit_reset(headers)
        } else if spent(
            header_number(headers, "ratelimit-remaining"),
            header_number(headers, "ratelimit-limit"),
        ) {
            header_number(headers, "ratelimit-reset").map(Duration::from_secs)
        } else {
            None
        };
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            let wait = wait.min(self.retry.max_wait);
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "rate limit budget spent; pausing"
            );
            *self.paused_until.lock().await = Some(Instant::now() + wait);
        }
    }
}

/// The `rel="next"` URL of an RFC 8288 `Link` header (Okta, GitHub-style
/// paging), if there is one.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(value) = value.to_str() else { continue };
        for link in value.split(',') {
            let mut parts = link.split(';');
            let target = parts.next()?.trim();
            let is_next = parts.any(|param| {
                let param = param.trim().replace(' ', "");
                param.eq_ignore_ascii_case("rel=\"next\"") || param.eq_ignore_ascii_case("rel=next")
            });
            if is_next && target.starts_with('<') && target.ends_with('>') {
                return Some(target[1..target.len() - 1].to_string());
            }
        }
    }
    None
}

/// Walks an offset-paged listing (`first`/`max`, `skip`/`limit`) for APIs
/// that give no totals: a page shorter than the page size is the last.
///
/// ```text
/// let mut pager = OffsetPager::new(100);
/// while let Some(offset) = pager.next_offset() {
///     let page = fetch(offset).await?;
///     pager.record(page.len());
///     sink.users(map(page)).await?;
/// }
/// ```
#[derive(Debug, Clone)]
pub struct OffsetPager {
    page_size: u32,
    offset: u64,
    done: bool,
}

impl OffsetPager {
    pub fn new(page_size: u32) -> Self {
        OffsetPager {
            page_size: page_size.max(1),
            offset: 0,
            done: false,
        }
    }

    /// The offset of the next page to fetch, or `None` after the last page.
    pub fn next_offset(&self) -> Option<u64> {
        (!self.done).then_some(self.offset)
    }

    /// Records how many items the page just fetched held.
    pub fn record(&mut self, n_items: usize) {
        self.offset += n_items as u64;
        self.done = (n_items as u64) < self.page_size as u64;
    }

    /// Items seen so far.
    pub fn seen(&self) -> u64 {
        self.offset
    }
}

/// How an exchange ended.
enum Answer {
    Success(Response),
    Refused(Refusal),
}

/// A final non-2xx answer.
struct Refusal {
    status: StatusCode,
    body: String,
    /// What the answer said to wait, if anything.
    wait: Option<Duration>,
    quota: Option<Quota>,
}

impl Refusal {
    /// Whether the answer says the service is throttled or failing, not
    /// that the request was wrong.
    fn is_outage(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS
            || self.status.is_server_error()
            || self.quota.is_some()
    }

    fn into_error(self, max_backoff: Duration) -> DriverError {
        let Refusal {
            status,
            body,
            wait,
            quota,
        } = self;
        if quota.is_some() || status == StatusCode::TOO_MANY_REQUESTS {
            return DriverError::RateLimited {
                retry_after: wait.unwrap_or(max_backoff),
            };
        }
        match status {
            StatusCode::UNAUTHORIZED => DriverError::Unauthorized(body),
            StatusCode::FORBIDDEN => DriverError::Forbidden(body),
            StatusCode::NOT_FOUND => DriverError::NotFound(body),
            status if status.is_server_error() => {
                DriverError::Transient(format!("{status}: {body}"))
            }
            status => DriverError::Protocol(format!("{status}: {body}")),
        }
    }
}

/// A token endpoint's answer that is not an outage: the token, or why not.
#[derive(Debug)]
pub struct TokenAnswer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// A quota answer in Google's error format (`error.errors[].reason`,
/// `error.status`), which comes as a 403 as often as a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quota {
    /// Per-minute quotas: Google's documented answer is "retry using
    /// exponential back-off".
    RetryLater,
    /// A daily quota: retrying within the run does not help, but it is no
    /// permission problem either.
    Exhausted,
}

/// Google's documented quota reasons.
const RETRY_LATER_REASONS: [&str; 3] = [
    "rateLimitExceeded",
    "userRateLimitExceeded",
    "quotaExceeded",
];
const EXHAUSTED_REASONS: [&str; 1] = ["dailyLimitExceeded"];

fn quota_answer(status: StatusCode, body: &str) -> Option<Quota> {
    if !matches!(
        status,
        StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    ) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = value.get("error")?;
    let reasons: Vec<&str> = error
        .get("errors")
        .and_then(serde_json::Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e.get("reason").and_then(serde_json::Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    if reasons.iter().any(|r| EXHAUSTED_REASONS.contains(r)) {
        Some(Quota::Exhausted)
    } else if reasons.iter().any(|r| RETRY_LATER_REASONS.contains(r))
        || error.get("status").and_then(serde_json::Value::as_str) == Some("RESOURCE_EXHAUSTED")
    {
        Some(Quota::RetryLater)
    } else {
        None
    }
}

/// The epoch-seconds rate-limit headers: Okta spells them
/// `X-Rate-Limit-*`, Auth0 and JumpCloud `X-RateLimit-*`.
const RATE_LIMIT_HEADERS: [(&str, &str, &str); 2] = [
    (
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ),
    (
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ),
];

fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Requests left in the rate-limit window, if the answer says.
fn rate_limit_remaining(headers: &HeaderMap) -> Option<u64> {
    RATE_LIMIT_HEADERS
        .iter()
        .find_map(|(_, remaining, _)| header_number(headers, remaining))
}

/// The rate-limit window's size in requests, if the answer says.
fn rate_limit_limit(headers: &HeaderMap) -> Option<u64> {
    RATE_LIMIT_HEADERS
        .iter()
        .find_map(|(limit, _, _)| header_number(headers, limit))
}

/// The rate-limit window's reset (epoch seconds) as a wait from now.
pub fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let reset = RATE_LIMIT_HEADERS
        .iter()
        .find_map(|(_, _, reset)| header_number(headers, reset))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let now = chrono::Utc::now();
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// The first 500 characters of an error body, for messages.
async fn read_error_body(response: Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let text: String = text.chars().take(500).collect();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        text
    }
}

/// OAuth 2.0 client credentials (the `oauth2` crate), with the token cached
/// until shortly before it expires.
pub struct ClientCredentials {
    client: oauth2::basic::BasicClient<
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    >,
    scopes: Vec<String>,
    /// Parameters some token endpoints need besides the standard ones
    /// (Auth0's `audience`, Entra v1's `resource`).
    extra_params: Vec<(String, String)>,
    http: HttpKit,
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("scopes", &self.scopes)
            .field("extra_params", &self.extra_params)
            .finish_non_exhaustive()
    }
}

impl ClientCredentials {
    /// Token requests go through `http`, with its retries.
    pub fn new(
        token_url: &str,
        client_id: &str,
        client_secret: &Secret,
        scopes: Vec<String>,
        http: HttpKit,
    ) -> Result<Self, DriverError> {
        let token_url = oauth2::TokenUrl::new(token_url.to_string())
            .map_err(|error| DriverError::config("token_url", error.to_string()))?;
        let client = oauth2::basic::BasicClient::new(oauth2::ClientId::new(client_id.to_string()))
            .set_client_secret(oauth2::ClientSecret::new(
                client_secret.expose().to_string(),
            ))
            .set_token_uri(token_url);
        Ok(ClientCredentials {
            client,
            scopes,
            extra_params: Vec::new(),
            http,
            cached: Mutex::new(None),
        })
    }

    /// Adds a parameter to every token request, such as Auth0's
    /// `audience=https://{tenant}/api/v2/`. Not for secrets: parameters
    /// show in Debug output.
    pub fn with_param(mut self, name: &str, value: &str) -> Self {
        self.extra_params.push((name.into(), value.into()));
        self
    }

    /// Sends the client id and secret in the form body (`client_secret_post`)
    /// instead of HTTP Basic, as the Microsoft identity platform expects.
    pub fn credentials_in_body(mut self) -> Self {
        self.client = self.client.set_auth_type(oauth2::AuthType::RequestBody);
        self
    }
}

#[async_trait::async_trait]
impl TokenSource for ClientCredentials {
    async fn token(&self) -> Result<Secret, DriverError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && *until > Instant::now()
        {
            return Ok(token.clone());
        }
        use oauth2::TokenResponse;
        let mut request = self.client.exchange_client_credentials();
        for scope in &self.scopes {
            request = request.add_scope(oauth2::Scope::new(scope.clone()));
        }
        for (name, value) in &self.extra_params {
            request = request.add_extra_param(name.clone(), value.clone());
        }
        // The oauth2 crate builds the request and reads the answer; the kit
        // sends it, with its retries. An outage comes back as the kit's own
        // error, carried through oauth2's request error.
        let kit = self.http.clone();
        let send = move |request: oauth2::HttpRequest| {
            let kit = kit.clone();
            async move { send_through(&kit, request).await }
        };
        let response = request
            .request_async(&send)
            .await
            .map_err(|error| match error {
                oauth2::RequestTokenError::ServerResponse(response) => {
                    DriverError::Unauthorized(format!(
                        "the token endpoint refused the client credentials: {}",
                        response.error()
                    ))
                }
                oauth2::RequestTokenError::Request(OutageError(error)) => error,
                oauth2::RequestTokenError::Parse(error, _) => {
                    DriverError::protocol(format!("unreadable token response: {error}"))
                }
                other => DriverError::Transient(format!("token request failed: {other}")),
            })?;
        let lifetime = response.expires_in().unwrap_or(Duration::from_secs(300));
        // Renew a little early so a long pull never sends an expired token.
        let until =
            Instant::now() + lifetime.saturating_sub(Duration::from_secs(30).min(lifetime / 2));
        let token = Secret::new(response.access_token().secret().clone());
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }
}

/// Sends an oauth2 token request through the kit.
async fn send_through(
    kit: &HttpKit,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, OutageError> {
    let (parts, body) = request.into_parts();
    let uri = parts.uri.to_string();
    let build = move |client: &reqwest::Client| {
        client
            .request(parts.method.clone(), &uri)
            .headers(parts.headers.clone())
            .body(body.clone())
    };
    let answer = kit.send_token_request(&build).await.map_err(OutageError)?;
    let mut response = oauth2::HttpResponse::new(answer.body);
    *response.status_mut() = answer.status;
    response.headers_mut().insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// The kit's error for a token request, as the oauth2 crate's HTTP error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct OutageError(DriverError);

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, LINK};

    #[test]
    fn the_next_link_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            LINK,
            HeaderValue::from_static(
                "<https://acme.okta.com/api/v1/users?limit=200>; rel=\"self\"",
            ),
        );
        headers.append(
            LINK,
            HeaderValue::from_static(
                "<https://acme.okta.com/api/v1/users?after=00u2&limit=200>; rel=\"next\"",
            ),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://acme.okta.com/api/v1/users?after=00u2&limit=200")
        );
        let mut last = HeaderMap::new();
        last.append(
            LINK,
            HeaderValue::from_static("<https://x/users?limit=2>; rel=\"self\""),
        );
        assert_eq!(next_link(&last), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
    }

    #[test]
    fn the_offset_pager_stops_on_a_short_page() {
        let items: Vec<u32> = (0..7).collect();
        let mut pager = OffsetPager::new(3);
        let mut seen = Vec::new();
        while let Some(offset) = pager.next_offset() {
            let page: Vec<u32> = items
                .iter()
                .skip(offset as usize)
                .take(3)
                .copied()
                .collect();
            pager.record(page.len());
            seen.push(page);
        }
        assert_eq!(seen, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
        assert_eq!(pager.seen(), 7);
        let mut exact = OffsetPager::new(3);
        exact.record(3);
        exact.record(0);
        assert_eq!(
            exact.next_offset(),
            None,
            "an empty page after a full one ends it"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 5,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(1),
        };
        assert!(
            policy.backoff(1) <= Duration::from_millis(100)
                && policy.backoff(1) >= Duration::from_millis(75)
        );
        assert!(
            policy.backoff(3) <= Duration::from_millis(400)
                && policy.backoff(3) >= Duration::from_millis(300)
        );
        assert!(policy.backoff(10) <= Duration::from_millis(500));
    }
}

#[cfg(test)]
mod rate_share_tests {
    use super::*;

    #[test]
    fn a_share_keeps_the_rest_of_the_window_for_others() {
        assert_eq!(RateShare::new(0.0), None);
        assert_eq!(RateShare::new(1.5), None);
        assert_eq!(RateShare::new(f64::NAN), None);
        let half = RateShare::new(0.5).unwrap();
        assert_eq!(half.reserve(600), 300);
        assert_eq!(
            half.reserve(25),
            13,
            "rounded up: never more than the share"
        );
        assert_eq!(RateShare::WHOLE.reserve(600), 0);
    }
}

/// A response's JSON body, `null` when it is empty (a 204).
pub async fn json_or_null(response: Response) -> Result<serde_json::Value, DriverError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|error| DriverError::Transient(error.without_url().to_string()))?;
    if bytes.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|error| DriverError::protocol(format!("unreadable JSON: {error}")))
}
