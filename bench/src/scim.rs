//! `scim`: `POST /Users`, `PATCH active=false` and
//! `GET /Users?filter=userName eq` at N concurrent clients against the
//! daemon's router on loopback, and the same load against a reference SCIM
//! server when one is given: requests per second and p50/p99 latency.

use crate::harness::{Backend, Durability, millis, percentile};
use crate::results::{Benchmark, Figure, Table, Unit};
use anyhow::{Result, bail};
use idpsync_core::auth::Scope;
use idpsync_core::testing::TestApp;
use std::time::{Duration, Instant};

const SCIM_CONFIG: &str = r#"
[[connections]]
id = "bench"
kind = "scim"
[connections.safety]
max_deletions = "100%"
"#;

/// Latencies and wall time of one phase.
struct Phase {
    name: &'static str,
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    /// Its rate and latencies, each measure named `<prefix><phase>: ...`.
    fn figures(mut self, prefix: &str) -> Vec<Figure> {
        self.latencies.sort();
        let name = format!("{prefix}{}", self.name);
        vec![
            Figure::number(format!("{name}: requests/s"), self.rate(), Unit::PerSecond),
            Figure::number(
                format!("{name}: p50"),
                millis(percentile(&self.latencies, 0.5)),
                Unit::Millis,
            ),
            Figure::number(
                format!("{name}: p99"),
                millis(percentile(&self.latencies, 0.99)),
                Unit::Millis,
            ),
        ]
    }
}

/// Runs `requests` (each a request builder) over `clients` tasks.
async fn run_phase(
    name: &'static str,
    clients: usize,
    requests: Vec<reqwest::RequestBuilder>,
    expected: reqwest::StatusCode,
) -> Result<Phase> {
    let per_client = requests.len().div_ceil(clients);
    let mut chunks: Vec<Vec<reqwest::RequestBuilder>> = Vec::new();
    let mut iter = requests.into_iter();
    loop {
        let chunk: Vec<_> = iter.by_ref().take(per_client).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let started = Instant::now();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(chunk.len());
                for request in chunk {
                    let sent = Instant::now();
                    let response = request.send().await?;
                    let status = response.status();
                    let _ = response.bytes().await?;
                    latencies.push(sent.elapsed());
                    // A peer may answer PATCH with 204 where idpsync sends 200.
                    if !(status == expected || (status.is_success() && expected.is_success())) {
                        return Ok::<_, anyhow::Error>(Err(status));
                    }
                }
                Ok(Ok(latencies))
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        match task.await?? {
            Ok(found) => latencies.extend(found),
            Err(status) => bail!("{name}: a request answered {status}, expected {expected}"),
        }
    }
    Ok(Phase {
        name,
        latencies,
        wall: started.elapsed(),
    })
}

pub async fn scim(
    clients: usize,
    n_users: usize,
    backend: Backend,
    durability: Durability,
    peer: Option<Peer>,
) -> Result<Table> {
    let test_store = backend.open_with(durability).await?;
    let app = TestApp::builder(&test_store.store)
        .config(SCIM_CONFIG)
        .start()
        .await;
    let token = app.token("scim", Scope::Scim, Some("bench")).await;
    let base = app.url("/scim/v2/bench");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;

    let [post_phase, patch_phase, get_phase] =
        scim_load(&client, &base, &token, n_users, clients, "").await?;
    let mut peer_rows = Vec::new();
    if let Some(peer) = &peer {
        let run = chrono::Utc::now().timestamp();
        let [peer_post, peer_patch, peer_get] = scim_load(
            &client,
            &peer.url,
            &peer.token,
            n_users,
            clients,
            &format!("peer{run}-"),
        )
        .await?;
        for (ours, theirs) in [
            (&post_phase, &peer_post),
            (&patch_phase, &peer_patch),
            (&get_phase, &peer_get),
        ] {
            peer_rows.push(
                Figure::number(
                    format!("{}: idpsync / peer requests/s", ours.name),
                    ours.rate() / theirs.rate(),
                    Unit::Ratio,
                )
                .with_note(format!("{:.0} vs {:.0}", ours.rate(), theirs.rate())),
            );
        }
        for phase in [peer_post, peer_patch, peer_get] {
            peer_rows.extend(phase.figures("peer "));
        }
    }
    test_store.cleanup().await;
    let durability_name = durability.name();
    let durability = match (backend, durability) {
        (Backend::Postgres, _) => "",
        (Backend::Sqlite, Durability::Full) => " with durable commits",
        (Backend::Sqlite, Durability::Relaxed) => " with relaxed commits",
    };
    let title = format!(
        "SCIM at {clients} concurrent clients ({n_users} users, {}{durability}, client and server in one process on loopback)",
        backend.label()
    );
    let mut table = Table::new(Benchmark::Scim, title)
        .parameter("clients", clients)
        .parameter("users", n_users)
        .parameter("database", backend.name());
    if matches!(backend, Backend::Sqlite) {
        table = table.parameter("durability", durability_name);
    }
    table.figures = post_phase.figures("");
    table.figures.extend(patch_phase.figures(""));
    table.figures.extend(get_phase.figures(""));
    table.figures.extend(peer_rows);
    Ok(table)
}

/// A reference SCIM server to compare with (see ../shared/tools/scim-peer.sh).
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its base URL, e.g. http://127.0.0.1:18080/v2
    pub url: String,
    pub token: String,
}

/// POST /Users, PATCH active=false and GET filter userName eq against `base`.
async fn scim_load(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    n_users: usize,
    clients: usize,
    prefix: &str,
) -> Result<[Phase; 3]> {
    let user_name = |i: usize| format!("{prefix}bench.user{i}@example.test");
    let posts: Vec<_> = (0..n_users)
        .map(|i| {
            client
                .post(format!("{base}/Users"))
                .bearer_auth(token)
                .header("content-type", "application/scim+json")
                .body(
                    serde_json::json!({
                        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": user_name(i), "active": true, "externalId": format!("ext-{i}"),
                        "name": {"givenName": "Bench", "familyName": format!("User{i}")},
                        "emails": [{"value": user_name(i), "type": "work", "primary": true}]
                    })
                    .to_string(),
                )
        })
        .collect();
    let post_phase = run_phase("POST /Users", clients, posts, reqwest::StatusCode::CREATED).await?;

    // The ids, in creation order.
    let mut ids = Vec::with_capacity(n_users);
    let mut start = 1;
    while ids.len() < n_users {
        let page: serde_json::Value = client
            .get(format!(
                "{base}/Users?startIndex={start}&count=1000&attributes=id"
            ))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        let resources = page["Resources"].as_array().cloned().unwrap_or_default();
        if resources.is_empty() {
            break;
        }
        start += resources.len();
        ids.extend(
            resources
                .into_iter()
                .filter_map(|r| r["id"].as_str().map(str::to_string)),
        );
    }
    let patches: Vec<_> = ids
        .iter()
        .map(|id| {
            client
                .patch(format!("{base}/Users/{id}"))
                .bearer_auth(token)
                .header("content-type", "application/scim+json")
                .body(r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}"#)
        })
        .collect();
    let patch_phase = run_phase(
        "PATCH active=false",
        clients,
        patches,
        reqwest::StatusCode::OK,
    )
    .await?;
    let gets: Vec<_> = (0..n_users)
        .map(|i| {
            client
                .get(format!("{base}/Users"))
                .query(&[("filter", format!("userName eq \"{}\"", user_name(i)))])
                .bearer_auth(token)
        })
        .collect();
    let get_phase = run_phase(
        "GET filter userName eq",
        clients,
        gets,
        reqwest::StatusCode::OK,
    )
    .await?;
    Ok([post_phase, patch_phase, get_phase])
}
