//! `idpsync-bench`: measures what tests must not time. Each benchmark prints a
//! table and appends its figures, with the date, the machine and the command,
//! to BENCHMARKS.md.
//!
//! * `revocation`: from a deactivation entering the reconciler to the
//!   `device.revoked` event reaching a consumer that long-polls
//!   `GET /api/v1/events` over loopback HTTP.
//! * `scim`: SCIM `POST /Users`, `PATCH active=false` and
//!   `GET /Users?filter=userName eq` at N concurrent clients: requests per
//!   second and p50/p99 latency.

/// The daemon's allocator and its options, so that figures are the daemon's.
#[path = "../../src/allocator.rs"]
mod allocator;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use idpsync_core::api::{AppState, router};
use idpsync_core::auth::Scope;
use idpsync_core::config;
use idpsync_core::devices::{self, DeviceStatus, NewDevice};
use idpsync_core::reconcile::{Snapshot, SourceInput, SubmitOptions, Trigger};
use idpsync_core::store::NewToken;
use idpsync_core::testing::TestStore;
use idpsync_driver::{MembershipEdge, SourceGroup, SourceUser};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "idpsync benchmarks")]
struct Cli {
    /// Where to append the figures (nothing is appended with --no-record).
    #[arg(long, default_value = "BENCHMARKS.md", global = true)]
    record: PathBuf,
    #[arg(long, global = true)]
    no_record: bool,
    #[command(subcommand)]
    benchmark: Benchmark,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Idp {
    Okta,
    Entra,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

/// `[database] durability`, for the SCIM benchmark's comparison.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Durability {
    Full,
    Relaxed,
}

impl Durability {
    fn config(self) -> config::Durability {
        match self {
            Durability::Full => config::Durability::Full,
            Durability::Relaxed => config::Durability::Relaxed,
        }
    }
}

impl Backend {
    /// A fresh store: a temporary SQLite file, or a new PostgreSQL schema.
    async fn open(self) -> Result<TestStore> {
        self.open_with(Durability::Full).await
    }

    /// [`Backend::open`] with `durability` (SQLite's commits).
    async fn open_with(self, durability: Durability) -> Result<TestStore> {
        Ok(match self {
            Backend::Sqlite => TestStore::sqlite_with(durability.config()).await,
            Backend::Postgres => TestStore::postgres().await.map_err(anyhow::Error::msg)?,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// Serves the daemon's router for `state` on a free loopback port.
async fn serve(state: AppState) -> Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    Ok(address)
}

#[derive(Debug, Subcommand)]
enum Benchmark {
    /// Deactivation -> device.revoked on a long-polling consumer: p50/p99.
    Revocation {
        /// Users in the tenant.
        #[arg(long, default_value_t = 2000)]
        users: usize,
        /// Deactivations measured (each revokes one device).
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        #[arg(long, value_enum, default_value = "sqlite")]
        database: Backend,
    },
    /// Full pull, unchanged re-run and 1% delta from the Okta or Entra fake.
    Pull {
        #[arg(long, value_enum, default_value = "okta")]
        idp: Idp,
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 10_000)]
        groups: usize,
        /// Direct group memberships per user (users x this = memberships).
        #[arg(long, default_value_t = 10)]
        memberships_per_user: usize,
        #[arg(long, value_enum, default_value = "sqlite")]
        database: Backend,
    },
    /// Everything the benchmark issue lists, one table each: revocation and
    /// SCIM (side by side with the reference peer when its script is found)
    /// on SQLite and PostgreSQL, and the 100k/10k/1M pull from the Okta and
    /// Entra fakes into both. About ten minutes on two cores.
    All {
        /// The script that starts the reference SCIM peer (scim2-server).
        #[arg(long, default_value = "../shared/tools/scim-peer.sh")]
        peer_script: PathBuf,
        #[arg(long, default_value_t = 18080)]
        peer_port: u16,
    },
    /// Internal: serves the fake IdP of a `pull` run from its own process,
    /// so the pull's peak RSS is idpsync's alone. Prints the connection's
    /// TOML as one JSON line; reads `change` on stdin (1% of users changed).
    #[command(hide = true)]
    FakeIdp {
        #[arg(long, value_enum)]
        idp: Idp,
        #[arg(long)]
        users: usize,
        #[arg(long)]
        groups: usize,
        #[arg(long)]
        memberships_per_user: usize,
    },
    /// SCIM write and read throughput and latency at N concurrent clients.
    Scim {
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Users created (then deactivated, then looked up), split across clients.
        #[arg(long, default_value_t = 4000)]
        users: usize,
        #[arg(long, value_enum, default_value = "sqlite")]
        database: Backend,
        /// Also load a reference SCIM server at this base URL (e.g. the
        /// scim2-server started by ../shared/tools/scim-peer.sh:
        /// http://127.0.0.1:18080/v2) and report the ratio.
        #[arg(long)]
        peer_url: Option<String>,
        #[arg(long, default_value = "testtoken")]
        peer_token: String,
        /// SQLite's commits: `full` (the daemon's default) or `relaxed`.
        #[arg(long, value_enum, default_value = "full")]
        durability: Durability,
    },
}

fn main() -> Result<()> {
    allocator::configure();
    let cli = Cli::parse();
    // IDPSYNC_LOG=idpsync_core=debug shows the reconciler's phase timings.
    if let Ok(filter) = std::env::var("IDPSYNC_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let command_line = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let record = |title: &str, rows: &[(String, String)]| -> Result<()> {
        let table = render(rows);
        println!("{title}\n\n{table}");
        if !cli.no_record {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&cli.record)
                .with_context(|| format!("while opening {}", cli.record.display()))?;
            writeln!(
                file,
                "\n### {title}\n\n{} on {}, built from {}\n\n`cargo run --release -p idpsync-bench -- {command_line}`\n\n{table}",
                chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
                machine(),
                env!("IDPSYNC_BENCH_REVISION")
            )?;
            println!("appended to {}", cli.record.display());
        }
        Ok(())
    };
    let (title, rows) = match cli.benchmark {
        Benchmark::All {
            ref peer_script,
            peer_port,
        } => {
            let mut passthrough = vec!["--record".to_string(), cli.record.display().to_string()];
            if cli.no_record {
                passthrough.push("--no-record".into());
            }
            for (title, rows) in runtime.block_on(all(peer_script, peer_port, &passthrough))? {
                record(&title, &rows)?;
            }
            return Ok(());
        }
        Benchmark::Revocation {
            users,
            iterations,
            database,
        } => runtime.block_on(revocation(users, iterations, database))?,
        Benchmark::Scim {
            clients,
            users,
            database,
            peer_url,
            peer_token,
            durability,
        } => runtime.block_on(scim(
            clients,
            users,
            database,
            durability,
            peer_url.map(|url| Peer {
                url,
                token: peer_token,
            }),
        ))?,
        Benchmark::Pull {
            idp,
            users,
            groups,
            memberships_per_user,
            database,
        } => runtime.block_on(pull(idp, users, groups, memberships_per_user, database))?,
        Benchmark::FakeIdp {
            idp,
            users,
            groups,
            memberships_per_user,
        } => {
            runtime.block_on(fake_idp(idp, users, groups, memberships_per_user))?;
            return Ok(());
        }
    };
    record(&title, &rows)
}

type Table = (String, Vec<(String, String)>);

/// The whole suite, in the order the benchmark issue lists it. Each pull
/// runs as its own `idpsync-bench pull` process (it prints and records its
/// table itself), so its peak RSS is its own; the rest run here and their
/// tables are returned.
async fn all(
    peer_script: &std::path::Path,
    peer_port: u16,
    record_args: &[String],
) -> Result<Vec<Table>> {
    let mut tables = Vec::new();
    for database in ["sqlite", "postgres"] {
        for idp in ["okta", "entra"] {
            let status = tokio::process::Command::new(std::env::current_exe()?)
                .args(record_args)
                .args(["pull", "--idp", idp, "--database", database])
                .args(["--users", "100000", "--groups", "10000"])
                .args(["--memberships-per-user", "10"])
                .status()
                .await?;
            if !status.success() {
                bail!("the {idp} pull into {database} failed ({status})");
            }
        }
    }
    // The reference peer, if its script is here; started once, stopped at the end.
    let peer = if peer_script.is_file() {
        let child = tokio::process::Command::new("bash")
            .arg(peer_script)
            .arg(peer_port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while tokio::net::TcpStream::connect(("127.0.0.1", peer_port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("the SCIM peer did not listen on {peer_port} within 300 s");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Some(child)
    } else {
        eprintln!(
            "{} not found: SCIM runs without the side-by-side peer",
            peer_script.display()
        );
        None
    };
    for database in [Backend::Sqlite, Backend::Postgres] {
        let side_by_side = (peer.is_some() && matches!(database, Backend::Sqlite)).then(|| Peer {
            url: format!("http://127.0.0.1:{peer_port}/v2"),
            token: "testtoken".into(),
        });
        tables.push(scim(16, 2000, database, Durability::Full, side_by_side).await?);
        tables.push(revocation(2000, 200, database).await?);
    }
    drop(peer);
    Ok(tables)
}

fn render(rows: &[(String, String)]) -> String {
    let mut out = String::from("| measure | value |\n|---|---|\n");
    for (measure, value) in rows {
        out.push_str(&format!("| {measure} | {value} |\n"));
    }
    out
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

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

async fn revocation(
    n_users: usize,
    iterations: usize,
    backend: Backend,
) -> Result<(String, Vec<(String, String)>)> {
    if iterations > n_users {
        bail!("--iterations ({iterations}) cannot exceed --users ({n_users})");
    }
    let test_store = backend.open().await?;
    let store = test_store.store.clone();
    let config = config::load_str(CONFIG, "bench.toml", &["scim"], &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .register_config(&config.connections, &config.acl_groups)
        .await?;
    let state = AppState::new(config, store.clone());
    let reconciler = state.reconciler.clone();
    let bus = state.bus.clone();
    let address = serve(state).await?;
    let base = format!("http://{address}/api/v1");
    let scim_base = format!("http://{address}/scim/v2/bench");
    let (token, _) = store
        .create_token(NewToken {
            name: "bench".into(),
            scopes: vec![Scope::Read],
            connection_id: None,
            expires_at: None,
        })
        .await?;
    let (scim_token, _) = store
        .create_token(NewToken {
            name: "bench-scim".into(),
            scopes: vec![Scope::Scim],
            connection_id: Some("bench".into()),
            expires_at: None,
        })
        .await?;

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
    Ok((
        title,
        vec![
            (
                "SCIM PATCH active=false -> device.revoked at consumer, p50".into(),
                millis(percentile(&to_event, 0.5)),
            ),
            (
                "SCIM PATCH active=false -> device.revoked at consumer, p99".into(),
                millis(percentile(&to_event, 0.99)),
            ),
            (
                "SCIM PATCH active=false -> device.revoked at consumer, max".into(),
                millis(*to_event.last().unwrap_or(&Duration::ZERO)),
            ),
            (
                "SCIM PATCH -> its response, p50".into(),
                millis(percentile(&to_response, 0.5)),
            ),
            (
                "SCIM PATCH -> its response, p99".into(),
                millis(percentile(&to_response, 0.99)),
            ),
            (
                "target (p99 < 50 ms)".into(),
                if percentile(&to_event, 0.99) < Duration::from_millis(50) {
                    "met".into()
                } else {
                    "MISSED".into()
                },
            ),
        ],
    ))
}

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

    fn rows(mut self) -> Vec<(String, String)> {
        self.latencies.sort();
        let rate = self.rate();
        vec![
            (format!("{}: requests/s", self.name), format!("{rate:.0}")),
            (
                format!("{}: p50", self.name),
                millis(percentile(&self.latencies, 0.5)),
            ),
            (
                format!("{}: p99", self.name),
                millis(percentile(&self.latencies, 0.99)),
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

async fn scim(
    clients: usize,
    n_users: usize,
    backend: Backend,
    durability: Durability,
    peer: Option<Peer>,
) -> Result<(String, Vec<(String, String)>)> {
    let test_store = backend.open_with(durability).await?;
    let store = test_store.store.clone();
    let config = config::load_str(SCIM_CONFIG, "bench.toml", &["scim"], &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .register_config(&config.connections, &config.acl_groups)
        .await?;
    let (token, _) = store
        .create_token(NewToken {
            name: "scim".into(),
            scopes: vec![Scope::Scim],
            connection_id: Some("bench".into()),
            expires_at: None,
        })
        .await?;
    let state = AppState::new(config, store.clone());
    let base = format!("http://{}/scim/v2/bench", serve(state).await?);
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
            peer_rows.push((
                format!("{}: idpsync / peer requests/s", ours.name),
                format!(
                    "{:.1}x ({:.0} vs {:.0})",
                    ours.rate() / theirs.rate(),
                    ours.rate(),
                    theirs.rate()
                ),
            ));
        }
        for phase in [peer_post, peer_patch, peer_get] {
            peer_rows.extend(
                phase
                    .rows()
                    .into_iter()
                    .map(|(measure, value)| (format!("peer {measure}"), value)),
            );
        }
    }
    test_store.cleanup().await;
    let durability = match (backend, durability) {
        (Backend::Postgres, _) => "",
        (Backend::Sqlite, Durability::Full) => " with durable commits",
        (Backend::Sqlite, Durability::Relaxed) => " with relaxed commits",
    };
    let title = format!(
        "SCIM at {clients} concurrent clients ({n_users} users, {}{durability}, client and server in one process on loopback)",
        backend.label()
    );
    let mut rows = post_phase.rows();
    rows.extend(patch_phase.rows());
    rows.extend(get_phase.rows());
    rows.extend(peer_rows);
    Ok((title, rows))
}

/// A reference SCIM server to compare with (see ../shared/tools/scim-peer.sh).
#[derive(Debug, Clone)]
struct Peer {
    /// Its base URL, e.g. http://127.0.0.1:18080/v2
    url: String,
    token: String,
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

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn state_marks(store: &idpsync_core::store::Store) -> Result<(i64, i64)> {
    use idpsync_core::store::entity::connection;
    use sea_orm::EntityTrait;
    let version = connection::Entity::find_by_id("bench")
        .one(store.db())
        .await?
        .map_or(0, |c| c.state_version);
    Ok((version, idpsync_core::events::last_id(store.db()).await?))
}

/// The child side of `pull`: generates the tenant, serves the fake IdP on
/// loopback and changes 1% of users when told.
async fn fake_idp(idp: Idp, n_users: usize, n_groups: usize, per_user: usize) -> Result<()> {
    use idpsync_driver::fake::{Dataset, DatasetSpec};
    use tokio::io::AsyncBufReadExt;
    let dataset = Dataset::generate(&DatasetSpec {
        users: n_users,
        groups: n_groups,
        nested_groups: n_groups / 20,
        memberships_per_user: per_user,
        inactive_every: 0,
        seed: 99,
    });
    let n_memberships = dataset.members.len();
    let (config_text, _server, change): (
        String,
        idpsync_driver::fake::FakeServer,
        Box<dyn Fn(usize)>,
    ) = match idp {
        Idp::Okta => {
            let fake = idpsync_driver_okta::fake::FakeOkta::new(dataset, Vec::new());
            let server = fake.start().await?;
            let text = format!(
                "[[connections]]\nid = \"bench\"\nkind = \"okta\"\n[connections.okta]\norg_url = \"{}\"\napi_token = \"{}\"\n[connections.safety]\nmax_deletions = \"100%\"\n",
                server.base_url, fake.api_token
            );
            (
                text,
                server,
                Box::new(move |user| fake.set_status(user, "SUSPENDED")),
            )
        }
        Idp::Entra => {
            let fake = idpsync_driver_entra::fake::FakeGraph::new(dataset);
            let server = fake.start().await?;
            let settings = fake.settings(&server.base_url, 999);
            let text = format!(
                "[[connections]]\nid = \"bench\"\nkind = \"entra\"\n[connections.entra]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\nauthority_url = \"{}\"\ngraph_url = \"{}\"\n[connections.safety]\nmax_deletions = \"100%\"\n",
                settings["tenant_id"].as_str().unwrap_or_default(),
                settings["client_id"].as_str().unwrap_or_default(),
                settings["client_secret"].as_str().unwrap_or_default(),
                server.base_url,
                server.base_url
            );
            (text, server, Box::new(move |user| fake.disable_user(user)))
        }
    };
    println!(
        "{}",
        serde_json::json!({"config": config_text, "memberships": n_memberships})
    );
    let mut commands = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        if command.trim() == "change" {
            for user in (0..n_users).step_by(100) {
                change(user);
            }
            println!("ok");
        }
    }
    Ok(())
}

async fn pull(
    idp: Idp,
    n_users: usize,
    n_groups: usize,
    per_user: usize,
    backend: Backend,
) -> Result<(String, Vec<(String, String)>)> {
    use idpsync_core::sync::DriverRegistry;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    // The fake IdP (and its generated tenant) lives in a child process.
    let mut fake = tokio::process::Command::new(std::env::current_exe()?)
        .arg("fake-idp")
        .arg("--idp")
        .arg(match idp {
            Idp::Okta => "okta",
            Idp::Entra => "entra",
        })
        .args(["--users", &n_users.to_string()])
        .args(["--groups", &n_groups.to_string()])
        .args(["--memberships-per-user", &per_user.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut fake_in = fake.stdin.take().expect("piped");
    let mut fake_out = tokio::io::BufReader::new(fake.stdout.take().expect("piped")).lines();
    let hello: serde_json::Value = serde_json::from_str(
        &fake_out
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the fake IdP exited before serving"))?,
    )?;
    let config_text = hello["config"].as_str().unwrap_or_default().to_string();
    let n_memberships = hello["memberships"].as_u64().unwrap_or_default();
    let test_store = backend.open().await?;
    let store = test_store.store.clone();
    let mut registry = DriverRegistry::default();
    registry.register(idpsync_driver_okta::OktaFactory);
    registry.register(idpsync_driver_entra::EntraFactory);
    let config = config::load_str(&config_text, "bench.toml", &registry, &|_| None)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .register_config(&config.connections, &config.acl_groups)
        .await?;
    let state = AppState::with_drivers(config, store.clone(), registry);
    let run = |full: bool| {
        let runner = state.sync.clone();
        async move {
            runner
                .run(
                    "bench",
                    idpsync_core::reconcile::Trigger::Manual,
                    false,
                    full,
                    std::future::pending(),
                )
                .await
        }
    };

    let started = Instant::now();
    let first = run(true).await?;
    let full_time = started.elapsed();
    if first.status != "applied" {
        bail!("the full pull did not apply: {first:?}");
    }
    let rss_after_full = peak_rss_mib();

    // The same tenant again, read in full; then as the scheduler runs it,
    // a delta from the kept cursor. Neither may write.
    let mut unchanged = Vec::new();
    for full in [true, false] {
        let before = state_marks(&store).await?;
        let started = Instant::now();
        let result = run(full).await?;
        let took = started.elapsed();
        let after = state_marks(&store).await?;
        let writes = if before == after {
            "0 (no state change, no event)".to_string()
        } else {
            format!("state moved {before:?} -> {after:?}")
        };
        unchanged.push((result, took, writes));
    }
    let [
        (second, unchanged_time, writes),
        (scheduled, scheduled_time, scheduled_writes),
    ] = <[_; 2]>::try_from(unchanged).expect("two runs");

    fake_in.write_all(b"change\n").await?;
    fake_in.flush().await?;
    fake_out.next_line().await?;
    let started = Instant::now();
    let delta = run(false).await?;
    let delta_time = started.elapsed();
    drop(fake_in);
    fake.wait().await?;
    test_store.cleanup().await;

    let title = format!(
        "pull from the {} fake: {n_users} users, {n_groups} groups, {n_memberships} memberships, {}",
        match idp {
            Idp::Okta => "Okta",
            Idp::Entra => "Entra",
        },
        backend.label()
    );
    Ok((
        title,
        vec![
            (
                "full pull: wall time".into(),
                format!(
                    "{:.1} s ({:.1} s reading the IdP, {:.1} s diffing and applying)",
                    full_time.as_secs_f64(),
                    first.pull_ms as f64 / 1000.0,
                    first.duration_ms.saturating_sub(first.pull_ms) as f64 / 1000.0
                ),
            ),
            (
                "full pull: peak RSS of idpsync (the fake IdP runs in its own process)".into(),
                format!("{rss_after_full:.0} MiB"),
            ),
            (
                "unchanged re-run (full): wall time".into(),
                format!(
                    "{:.1} s ({}; {:.1} s reading the IdP)",
                    unchanged_time.as_secs_f64(),
                    second.status,
                    second.pull_ms as f64 / 1000.0
                ),
            ),
            ("unchanged re-run: data rows written".into(), writes),
            (
                format!(
                    "unchanged re-run as scheduled ({} mode from the kept cursor): wall time, rows written",
                    scheduled.mode
                ),
                format!(
                    "{:.2} s ({}), {scheduled_writes}",
                    scheduled_time.as_secs_f64(),
                    scheduled.status
                ),
            ),
            (
                format!("delta after 1% of users changed ({} mode)", delta.mode),
                format!(
                    "{:.2} s, {} users received, {}",
                    delta_time.as_secs_f64(),
                    delta.received.users,
                    delta.status
                ),
            ),
            (
                "targets (100k/10k/1M, SQLite)".into(),
                "full < 10 s and < 300 MB; unchanged < 3 s with 0 writes".into(),
            ),
        ],
    ))
}
