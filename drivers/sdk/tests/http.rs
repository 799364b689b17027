//! The HTTP kit against scripted servers on loopback: what it waits for,
//! what it retries, and what an answer that outlasts the retries means.
//! Each server answers from a list, one answer per request, then 200.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use idpsync_driver::http::{ClientCredentials, HttpKit, HttpOptions, RetryPolicy, TokenSource};
use idpsync_driver::jwt::{Grant, RsaSigner, SignedGrant};
use idpsync_driver::{DriverError, Secret};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A kit that retries quickly and waits at most a second for any one
/// answer: a wait the server asks for beyond that fails the request at once.
fn kit() -> HttpKit {
    HttpKit::new(HttpOptions {
        retry: RetryPolicy {
            max_attempts: 4,
            first_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            max_wait: Duration::from_secs(1),
        },
        ..HttpOptions::default()
    })
    .unwrap()
}

/// An answer to script: status, headers, JSON body.
type Scripted = (StatusCode, Vec<(&'static str, String)>, serde_json::Value);

/// Serves the scripted answers in order, then `last` forever; returns the
/// base URL and the number of requests seen.
async fn server(answers: Vec<Scripted>, last: Scripted) -> (String, Arc<Mutex<usize>>) {
    let answers = Arc::new(Mutex::new(answers.into_iter()));
    let seen = Arc::new(Mutex::new(0));
    let counter = seen.clone();
    let router = Router::new().fallback(any(move || {
        let answers = answers.clone();
        let last = last.clone();
        let counter = counter.clone();
        async move {
            *counter.lock().unwrap() += 1;
            let (status, headers, body) = answers.lock().unwrap().next().unwrap_or(last);
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.insert(name, HeaderValue::from_str(&value).unwrap());
            }
            let response: Response = (status, map, axum::Json(body)).into_response();
            response
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, seen)
}

fn ok() -> Scripted {
    (StatusCode::OK, vec![], json!({"ok": true}))
}

fn okta_budget(remaining: u32) -> Vec<(&'static str, String)> {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    vec![
        ("x-rate-limit-limit", "600".into()),
        ("x-rate-limit-remaining", remaining.to_string()),
        ("x-rate-limit-reset", reset.to_string()),
    ]
}

async fn get(base: &str) -> Result<serde_json::Value, DriverError> {
    let url = format!("{base}/api");
    kit().get_json(&move |client| client.get(&url), None).await
}

#[tokio::test]
async fn a_5xx_with_budget_left_is_retried_after_a_backoff_not_the_rate_limit_reset() {
    let error = (
        StatusCode::INTERNAL_SERVER_ERROR,
        okta_budget(599),
        json!({"errorCode": "E0000009", "errorSummary": "Internal Server Error"}),
    );
    let (base, seen) = server(vec![error], ok()).await;
    assert_eq!(get(&base).await.unwrap(), json!({"ok": true}));
    assert_eq!(*seen.lock().unwrap(), 2);
}

#[tokio::test]
async fn a_spent_budget_waits_for_the_reset_in_either_spelling() {
    // Okta: X-Rate-Limit-*; Auth0 and JumpCloud: X-RateLimit-*.
    let auth0_budget: Vec<(&'static str, String)> = okta_budget(0)
        .into_iter()
        .map(|(name, value)| {
            (
                name.replacen("x-rate-limit", "x-ratelimit", 1).leak() as &str,
                value,
            )
        })
        .collect();
    for headers in [okta_budget(0), auth0_budget] {
        let throttled = (StatusCode::TOO_MANY_REQUESTS, headers.clone(), json!({}));
        let (base, _) = server(vec![throttled], ok()).await;
        // The reset is a minute away, longer than this kit waits for anything.
        match get(&base).await {
            Err(DriverError::RateLimited { retry_after }) => {
                assert!(retry_after > Duration::from_secs(50), "{retry_after:?}")
            }
            other => panic!("{headers:?}: expected RateLimited, got {other:?}"),
        }
    }
}

fn google_error(reason: &str) -> Scripted {
    (
        StatusCode::FORBIDDEN,
        vec![],
        json!({"error": {"code": 403, "message": reason, "errors": [{"reason": reason, "domain": "usageLimits"}], "status": "PERMISSION_DENIED"}}),
    )
}

#[tokio::test]
async fn googles_quota_reasons_are_retried_and_only_real_denials_are_permission_errors() {
    for reason in [
        "quotaExceeded",
        "rateLimitExceeded",
        "userRateLimitExceeded",
    ] {
        let (base, seen) = server(vec![google_error(reason)], ok()).await;
        assert!(get(&base).await.is_ok(), "{reason} is retried");
        assert_eq!(*seen.lock().unwrap(), 2);
    }
    let (base, _) = server(vec![], google_error("dailyLimitExceeded")).await;
    assert!(
        matches!(get(&base).await, Err(DriverError::RateLimited { .. })),
        "a daily quota is a quota, not a permission"
    );
    let (base, seen) = server(vec![], google_error("forbidden")).await;
    assert!(matches!(get(&base).await, Err(DriverError::Forbidden(_))));
    assert_eq!(*seen.lock().unwrap(), 1, "a denial is not retried");
}

fn token_ok() -> Scripted {
    (
        StatusCode::OK,
        vec![],
        json!({"access_token": "t0k3n", "token_type": "Bearer", "expires_in": 3600}),
    )
}

fn unavailable() -> Scripted {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        vec![],
        json!({"error": "temporarily_unavailable"}),
    )
}

fn client_credentials(base: &str) -> ClientCredentials {
    ClientCredentials::new(
        &format!("{base}/token"),
        "client",
        &Secret::new("s3cret"),
        vec!["api/.default".into()],
        kit(),
    )
    .unwrap()
}

fn signed_grant(base: &str) -> SignedGrant {
    let pem = Secret::new(include_str!("data/test-rsa-key.pem"));
    SignedGrant::new(
        &format!("{base}/token"),
        Grant::ClientAssertion {
            client_id: "app".into(),
            key_id: None,
            scopes: vec!["read".into()],
        },
        RsaSigner::from_pem(&pem, "private_key").unwrap(),
        kit(),
    )
    .unwrap()
}

#[tokio::test]
async fn token_requests_ride_out_a_failing_token_endpoint() {
    let (base, seen) = server(vec![unavailable(), unavailable()], token_ok()).await;
    assert_eq!(
        client_credentials(&base).token().await.unwrap().expose(),
        "t0k3n"
    );
    assert_eq!(*seen.lock().unwrap(), 3);

    let (base, _) = server(vec![unavailable()], token_ok()).await;
    assert_eq!(signed_grant(&base).token().await.unwrap().expose(), "t0k3n");
}

#[tokio::test]
async fn a_token_endpoint_that_stays_down_is_an_outage_not_a_refusal() {
    let (base, _) = server(vec![], unavailable()).await;
    for error in [
        client_credentials(&base).token().await.unwrap_err(),
        signed_grant(&base).token().await.unwrap_err(),
    ] {
        assert!(
            matches!(&error, DriverError::Transient(m) if m.contains("token endpoint is failing")),
            "{error:?}"
        );
        assert!(!error.to_string().contains("s3cret"));
    }

    let refused = (
        StatusCode::UNAUTHORIZED,
        vec![],
        json!({"error": "invalid_client", "error_description": "bad secret"}),
    );
    let (base, seen) = server(vec![], refused).await;
    assert!(matches!(
        client_credentials(&base).token().await,
        Err(DriverError::Unauthorized(_))
    ));
    assert!(matches!(
        signed_grant(&base).token().await,
        Err(DriverError::Unauthorized(_))
    ));
    assert_eq!(*seen.lock().unwrap(), 2, "a refusal is not retried");
}

#[tokio::test]
async fn extra_parameters_reach_the_token_endpoint_on_every_attempt() {
    // Auth0 issues Management API tokens only for an `audience`; the kit
    // sends it with the standard form, and again on a retry.
    let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = bodies.clone();
    let router = Router::new().fallback(any(move |body: String| {
        let seen = seen.clone();
        async move {
            let mut bodies = seen.lock().unwrap();
            bodies.push(body);
            let (status, _, json) = if bodies.len() == 1 {
                unavailable()
            } else {
                token_ok()
            };
            (status, axum::Json(json)).into_response()
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let credentials = ClientCredentials::new(
        &format!("{base}/oauth/token"),
        "client",
        &Secret::new("s3cret"),
        Vec::new(),
        kit(),
    )
    .unwrap()
    .with_param("audience", "https://acme.auth0.test/api/v2/");
    assert_eq!(credentials.token().await.unwrap().expose(), "t0k3n");

    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 2);
    for body in bodies.iter() {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert!(form.contains(&("grant_type".into(), "client_credentials".into())));
        assert!(
            form.contains(&("audience".into(), "https://acme.auth0.test/api/v2/".into())),
            "{form:?}"
        );
    }
}
