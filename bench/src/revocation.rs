//! `revocation`: a user with an approved device is deactivated by a real
//! SCIM PATCH over loopback; a consumer long-polls the event stream. The
//! latency is from sending the PATCH to the consumer holding
//! `device.revoked`.

use crate::harness::{Backend, millis, percentile};
use crate::results::{Benchmark, Figure, Table, Unit};
use anyhow::{Result, bail};
use idpsync_core::auth::Scope;
use idpsync_core::devices::{self, DeviceStatus, NewDevice};
use idpsync_core::reconcile::{Snapshot, SourceInput, SubmitOptions, Trigger};
use idpsync_core::testing::TestApp;
use idpsync_driver::{MembershipEdge, SourceGroup, SourceUser};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[connections]]
id = "bench"
kind = "scim"
[connections.safety]
max_deletions = "100%"
[[acl_groups]]
name = "everyone"
[[acl_groups.from]]
connection = "bench"
group = "Everyone"
"#;

pub async fn revocation(n_users: usize, iterations: usize, backend: Backend) -> Result<Table> {
    if iterations > n_users {
        bail!("--iterations ({iterations}) cannot exceed --users ({n_users})");
    }
    let test_store = backend.open().await?;
    let store = test_store.store.clone();
    let app = TestApp::builder(&store).config(CONFIG).start().await;
    let reconciler = app.state.engine().reconciler.clone();
    let bus = app.state.bus.clone();
    let base = app.url("/api/v1");
    let scim_base = app.url("/scim/v2/bench");
    let token = app.token("bench", Scope::Read, None).await;
    let scim_token = app.token("bench-scim", Scope::Scim, Some("bench")).await;

    let users: Vec<SourceUser> = (0..n_users)
        .map(|i| SourceUser::new(format!("u{i}"), format!("user{i}@example.test")))
        .collect();
    let snapshot = Snapshot {
        memberships: users
            .iter()
            .map(|u| MembershipEdge::user("everyone", u.external_id.clone()))
            .collect(),
        users,
        groups: vec![SourceGroup::new("everyone", "Everyone")],
        ..Snapshot::default()
    };
    reconciler
        .submit(
            "bench",
            SourceInput::Snapshot(snapshot),
            SubmitOptions::new(Trigger::Manual),
        )
        .await?;
    for i in 0..iterations {
        let device = devices::register(
            &store,
            &bus,
            NewDevice {
                owner_connection_id: "bench".into(),
                owner_external_id: format!("u{i}"),
                name: format!("laptop-{i}"),
                node_key: format!("nodekey-{i}"),
            },
        )
        .await?;
        devices::set_status(&store, &bus, device.id, DeviceStatus::Approved, None).await?;
    }

    let client = reqwest::Client::new();
    let mut to_event = Vec::with_capacity(iterations);
    let mut to_response = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let cursor = idpsync_core::events::last_id(store.db()).await?;
        let consumer = {
            let client = client.clone();
            let url = format!("{base}/events?after={cursor}&wait=10&limit=1000");
            let token = token.clone();
            tokio::spawn(async move {
                let mut url = url;
                loop {
                    let page: serde_json::Value = client
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await?
                        .json()
                        .await?;
                    if page["events"]
                        .as_array()
                        .is_some_and(|events| events.iter().any(|e| e["kind"] == "device.revoked"))
                    {
                        return Ok::<Instant, reqwest::Error>(Instant::now());
                    }
                    let next = page["cursor"].as_i64().unwrap_or(0);
                    url = format!(
                        "{}&after={next}",
                        url.split("&after=").next().unwrap_or(&url)
                    );
                }
            })
        };
        // Let the consumer's request reach the server and park.
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The IdP deprovisions the user the way Entra and Okta do.
        let started = Instant::now();
        let response = client
            .patch(format!("{scim_base}/Users/u{i}"))
            .bearer_auth(&scim_token)
            .header("content-type", "application/scim+json")
            .json(&serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "active", "value": false}]
            }))
            .send()
            .await?;
        let answered = Instant::now();
        if !response.status().is_success() {
            bail!("iteration {i}: PATCH answered {}", response.status());
        }
        let received = consumer.await??;
        to_event.push(received.saturating_duration_since(started));
        to_response.push(answered.saturating_duration_since(started));
    }
    to_event.sort();
    to_response.sort();
    let title = format!(
        "revocation latency ({} users, {iterations} deactivations, {})",
        n_users,
        backend.label()
    );
    test_store.cleanup().await;
    let latency =
        |measure: &str, duration: Duration| Figure::number(measure, millis(duration), Unit::Millis);
    let mut table = Table::new(Benchmark::Revocation, title)
        .parameter("users", n_users)
        .parameter("iterations", iterations)
        .parameter("database", backend.name());
    table.figures = vec![
        latency(
            "SCIM PATCH active=false -> device.revoked at consumer, p50",
            percentile(&to_event, 0.5),
        ),
        latency(
            "SCIM PATCH active=false -> device.revoked at consumer, p99",
            percentile(&to_event, 0.99),
        ),
        latency(
            "SCIM PATCH active=false -> device.revoked at consumer, max",
            *to_event.last().unwrap_or(&Duration::ZERO),
        ),
        latency(
            "SCIM PATCH -> its response, p50",
            percentile(&to_response, 0.5),
        ),
        latency(
            "SCIM PATCH -> its response, p99",
            percentile(&to_response, 0.99),
        ),
    ];
    Ok(table)
}
