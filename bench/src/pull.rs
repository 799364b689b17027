//! `pull`: a full pull of a generated tenant from the Okta or Entra fake
//! through the whole engine, an unchanged re-run (read in full, then as
//! scheduled), and a delta after 1% of users changed. The fake IdP runs in
//! a child process (`idpsync-bench fake-idp`), so the peak RSS is idpsync's.

use crate::harness::Backend;
use crate::results::{Benchmark, Figure, NOTHING_WRITTEN, Table, Unit};
use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use idpsync_core::testing::TestApp;
use std::time::Instant;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Idp {
    Okta,
    Entra,
}

impl Idp {
    pub fn name(self) -> &'static str {
        match self {
            Idp::Okta => "okta",
            Idp::Entra => "entra",
        }
    }
}

/// Starts this process's peak resident memory (VmHWM) over from what it
/// holds now (`5` to `/proc/self/clear_refs`, Linux 4.0 and later), so the
/// next run's own peak can be read; `false` where it cannot.
fn restart_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    idpsync_core::process::Memory::now()
        .and_then(|memory| memory.resident_peak)
        .map_or(0.0, |bytes| bytes as f64 / f64::from(1 << 20))
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

/// The figure of the rows a full pull wrote.
pub const ROWS_WRITTEN: &str = "rows written: full pull";

/// The figures of the API calls of each run: the full pull, its unchanged
/// re-run read in full, that re-run as scheduled (from the kept cursor),
/// and the delta of 1% of the users.
pub const CALLS_OF_FULL_PULL: &str = "API calls: full pull";
pub const CALLS_OF_UNCHANGED_RERUN: &str = "API calls: unchanged re-run (full)";
pub const CALLS_OF_SCHEDULED_RERUN: &str = "API calls: unchanged re-run as scheduled";
pub const CALLS_OF_DELTA: &str = "API calls: 1% delta";

/// The figure `measure` of `calls` API calls, saying what was counted.
fn calls_figure(measure: &str, calls: u64) -> Figure {
    Figure::number(measure, calls as f64, Unit::Count)
        .with_note("requests the fake IdP answered, token requests aside")
}

/// The tables a pull writes, whose rows [`StoredRows`] counts.
const WRITTEN_TABLES: [&str; 8] = [
    "source_users",
    "source_groups",
    "user_memberships",
    "group_memberships",
    "inherited_memberships",
    "acl_group_members",
    "events",
    "sync_runs",
];

/// The rows of each table a pull writes, counted by the database: the
/// difference of two counts is what a run wrote when it only inserts (a
/// full pull into an empty store).
struct StoredRows([u64; WRITTEN_TABLES.len()]);

impl StoredRows {
    /// Counts in one read, whose page cache is given back after so that
    /// the count does not stay in the next run's resident memory.
    async fn count(store: &idpsync_core::store::Store) -> Result<StoredRows> {
        use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
        let read = store.db().begin().await?;
        let mut rows = [0; WRITTEN_TABLES.len()];
        for (count, table) in rows.iter_mut().zip(WRITTEN_TABLES) {
            let row = read
                .query_one_raw(Statement::from_string(
                    store.backend(),
                    format!("SELECT COUNT(*) AS n FROM {table}"),
                ))
                .await?
                .with_context(|| format!("no count of {table}"))?;
            *count = u64::try_from(row.try_get::<i64>("", "n")?)?;
        }
        idpsync_core::store::release_cache(&read).await?;
        read.commit().await?;
        Ok(StoredRows(rows))
    }

    /// The rows added since `before`.
    fn since(&self, before: &StoredRows) -> StoredRows {
        StoredRows(std::array::from_fn(|i| {
            self.0[i].saturating_sub(before.0[i])
        }))
    }

    fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl std::fmt::Display for StoredRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for (table, rows) in WRITTEN_TABLES
            .iter()
            .zip(self.0)
            .filter(|(_, rows)| *rows > 0)
        {
            write!(f, "{}{rows} {table}", if first { "" } else { ", " })?;
            first = false;
        }
        Ok(())
    }
}

/// The fake IdP's child process (`idpsync-bench fake-idp`), told what to
/// do one line at a time; it answers each with one line.
struct FakeIdp {
    child: tokio::process::Child,
    input: tokio::process::ChildStdin,
    output: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// The fake's count of calls answered when it was last asked.
    calls_counted: u64,
}

impl FakeIdp {
    /// Starts the fake with its generated tenant; returns it and its first
    /// line (the connection's config and the tenant's membership count).
    async fn spawn(
        idp: Idp,
        n_users: usize,
        n_groups: usize,
        per_user: usize,
    ) -> Result<(FakeIdp, serde_json::Value)> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("fake-idp")
            .arg("--idp")
            .arg(idp.name())
            .args(["--users", &n_users.to_string()])
            .args(["--groups", &n_groups.to_string()])
            .args(["--memberships-per-user", &per_user.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let input = child.stdin.take().expect("piped");
        let output = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut fake = FakeIdp {
            child,
            input,
            output,
            calls_counted: 0,
        };
        let hello = serde_json::from_str(&fake.line().await?)?;
        Ok((fake, hello))
    }

    async fn line(&mut self) -> Result<String> {
        self.output
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the fake IdP exited"))
    }

    /// Sends `command`; returns the fake's answer.
    async fn tell(&mut self, command: &str) -> Result<String> {
        use tokio::io::AsyncWriteExt;
        self.input
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.input.flush().await?;
        self.line().await
    }

    /// The API calls the fake has answered since it was last asked (or
    /// since it started).
    async fn new_calls(&mut self) -> Result<u64> {
        let answer = self.tell("calls").await?;
        let answered: u64 = answer
            .trim()
            .parse()
            .with_context(|| format!("the fake IdP answered {answer:?} to \"calls\""))?;
        let new = answered.saturating_sub(self.calls_counted);
        self.calls_counted = answered;
        Ok(new)
    }

    /// Closes the fake's input and waits for it to exit.
    async fn finish(self) -> Result<()> {
        let FakeIdp {
            mut child, input, ..
        } = self;
        drop(input);
        child.wait().await?;
        Ok(())
    }
}

/// The child side of `pull`: generates the tenant, serves the fake IdP on
/// loopback and changes 1% of users when told.
pub async fn fake_idp(idp: Idp, n_users: usize, n_groups: usize, per_user: usize) -> Result<()> {
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
    use idpsync_driver::compliance::CompliantFake;
    // The connection's config, the server, how a user changes, and the
    // calls answered so far.
    type Served = (
        String,
        idpsync_driver::fake::FakeServer,
        Box<dyn Fn(usize)>,
        Box<dyn Fn() -> u64>,
    );
    let (config_text, _server, change, calls): Served = match idp {
        Idp::Okta => {
            let fake = idpsync_driver_okta::fake::FakeOkta::new(dataset, Vec::new());
            let counted = fake.clone();
            let server = fake.start().await?;
            let text = format!(
                "[[connections]]\nid = \"bench\"\nkind = \"okta\"\n[connections.okta]\norg_url = \"{}\"\napi_token = \"{}\"\n[connections.safety]\nmax_deletions = \"100%\"\n",
                server.base_url, fake.api_token
            );
            (
                text,
                server,
                Box::new(move |user| fake.set_status(user, "SUSPENDED")),
                Box::new(move || counted.faults().requests()),
            )
        }
        Idp::Entra => {
            let fake = idpsync_driver_entra::fake::FakeGraph::new(dataset);
            let counted = fake.clone();
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
            (
                text,
                server,
                Box::new(move |user| fake.disable_user(user)),
                Box::new(move || counted.faults().requests()),
            )
        }
    };
    println!(
        "{}",
        serde_json::json!({"config": config_text, "memberships": n_memberships})
    );
    let mut commands = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        match command.trim() {
            "change" => {
                for user in (0..n_users).step_by(100) {
                    change(user);
                }
                println!("ok");
            }
            // The API calls answered so far, token requests aside (the
            // fake's own count, as `idpsync-bench calls` reads it).
            "calls" => println!("{}", calls()),
            other => bail!("the fake IdP was told {other:?}"),
        }
    }
    Ok(())
}

/// The ACL rules `--acl-rules` adds: every active user lands in
/// "everyone", and most in "engineering" (the fake's groups are named
/// after eight departments, and a user belongs to ten groups). A first
/// sync then places about 1.7 ACL memberships a user, each an event.
const ACL_RULES: &str = r#"
[[acl_groups]]
name = "everyone"
[[acl_groups.from]]
connection = "bench"
group_glob = "*"
[[acl_groups]]
name = "engineering"
[[acl_groups.from]]
connection = "bench"
group_glob = "Engineering *"
"#;

pub async fn pull(
    idp: Idp,
    n_users: usize,
    n_groups: usize,
    per_user: usize,
    backend: Backend,
    staging_memory_mib: Option<u64>,
    acl_rules: bool,
) -> Result<Table> {
    use idpsync_core::sync::DriverRegistry;
    let (mut fake, hello) = FakeIdp::spawn(idp, n_users, n_groups, per_user).await?;
    let mut config_text = hello["config"].as_str().unwrap_or_default().to_string();
    if let Some(mib) = staging_memory_mib {
        config_text = format!("[sync]\nstaging_memory_mib = {mib}\n{config_text}");
    }
    if acl_rules {
        config_text.push_str(ACL_RULES);
    }
    let n_memberships = hello["memberships"].as_u64().unwrap_or_default();
    let test_store = backend.open().await?;
    let store = test_store.store.clone();
    let mut registry = DriverRegistry::default();
    registry.register(idpsync_driver_okta::OktaFactory);
    registry.register(idpsync_driver_entra::EntraFactory);
    let state = TestApp::builder(&store)
        .config(&config_text)
        .drivers(registry)
        .start()
        .await
        .state;
    let run = |full: bool| {
        let runner = state.engine().sync.clone();
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

    let rows_before = StoredRows::count(&store).await?;
    fake.new_calls().await?;
    let started = Instant::now();
    let first = run(true).await?;
    let full_time = started.elapsed();
    if first.status != idpsync_core::sync::SyncStatus::Applied {
        bail!("the full pull did not apply: {first:?}");
    }
    let rss_after_full = peak_rss_mib();
    let full_calls = fake.new_calls().await?;
    let full_rows = StoredRows::count(&store).await?.since(&rows_before);

    // The same tenant again, read in full; then as the scheduler runs it,
    // a delta from the kept cursor. Neither may write.
    let mut unchanged = Vec::new();
    let own_peak_read = restart_peak_rss();
    for full in [true, false] {
        let before = state_marks(&store).await?;
        let started = Instant::now();
        let result = run(full).await?;
        let took = started.elapsed();
        let after = state_marks(&store).await?;
        let writes = if before == after {
            NOTHING_WRITTEN.to_string()
        } else {
            format!("state moved {before:?} -> {after:?}")
        };
        unchanged.push((result, took, writes, fake.new_calls().await?));
    }
    // The re-run's own peak (the scheduled delta beside it holds little),
    // and the process's so far: the full pull's, or the re-run's if higher.
    let rss_of_rerun = peak_rss_mib();
    let rss_through_unchanged = rss_after_full.max(rss_of_rerun);
    let [
        (second, unchanged_time, writes, unchanged_calls),
        (scheduled, scheduled_time, scheduled_writes, scheduled_calls),
    ] = <[_; 2]>::try_from(unchanged).expect("two runs");

    fake.tell("change").await?;
    let started = Instant::now();
    let delta = run(false).await?;
    let delta_time = started.elapsed();
    let delta_calls = fake.new_calls().await?;
    fake.finish().await?;
    test_store.cleanup().await;

    let budget = staging_memory_mib.map_or(String::new(), |mib| {
        format!(", users staged within {mib} MiB")
    });
    let rules = if acl_rules {
        ", ACL groups \"everyone\" (every group) and \"engineering\" (every Engineering group)"
    } else {
        ""
    };
    let title = format!(
        "pull from the {} fake: {n_users} users, {n_groups} groups, {n_memberships} memberships, {}{budget}{rules}",
        match idp {
            Idp::Okta => "Okta",
            Idp::Entra => "Entra",
        },
        backend.label()
    );
    let seconds = |ms: u64| ms as f64 / 1000.0;
    let mut table = Table::new(Benchmark::Pull, title)
        .parameter("idp", idp.name())
        .parameter("users", n_users)
        .parameter("groups", n_groups)
        .parameter("memberships_per_user", per_user)
        .parameter("database", backend.name());
    if let Some(mib) = staging_memory_mib {
        table = table.parameter("staging_memory_mib", mib);
    }
    if acl_rules {
        table = table.parameter("acl_rules", "everyone, engineering");
    }
    let mut figures = vec![
        Figure::number(
            "full pull: wall time",
            full_time.as_secs_f64(),
            Unit::Seconds,
        )
        .with_note(format!(
            "{:.1} s reading the IdP, {:.1} s diffing and applying",
            seconds(first.pull_ms),
            seconds(first.duration_ms.saturating_sub(first.pull_ms))
        )),
        Figure::number(
            "full pull: peak RSS of idpsync (the fake IdP runs in its own process)",
            rss_after_full,
            Unit::Mebibytes,
        ),
        Figure::number(ROWS_WRITTEN, full_rows.total() as f64, Unit::Count)
            .with_note(full_rows.to_string()),
        calls_figure(CALLS_OF_FULL_PULL, full_calls),
        Figure::number(
            "unchanged re-run (full): wall time",
            unchanged_time.as_secs_f64(),
            Unit::Seconds,
        )
        .with_note(format!(
            "{}; {:.1} s reading the IdP",
            second.status,
            seconds(second.pull_ms)
        )),
        Figure::number(
            "unchanged re-run (full): peak RSS of idpsync so far",
            rss_through_unchanged,
            Unit::Mebibytes,
        ),
    ];
    if own_peak_read {
        figures.push(Figure::number(
            "unchanged re-run (full): peak RSS of idpsync in the re-run alone",
            rss_of_rerun,
            Unit::Mebibytes,
        ));
    }
    figures.extend([
        Figure::words("unchanged re-run: data rows written", writes),
        Figure::number(
            format!(
                "unchanged re-run as scheduled ({} mode from the kept cursor): wall time, rows written",
                scheduled.mode
            ),
            scheduled_time.as_secs_f64(),
            Unit::Seconds,
        )
        .with_note(format!("{}, {scheduled_writes}", scheduled.status)),
        Figure::number(
            format!("delta after 1% of users changed ({} mode)", delta.mode),
            delta_time.as_secs_f64(),
            Unit::Seconds,
        )
        .with_note(format!(
            "{} users received, {}",
            delta.received.users, delta.status
        )),
        calls_figure(CALLS_OF_UNCHANGED_RERUN, unchanged_calls),
        calls_figure(CALLS_OF_SCHEDULED_RERUN, scheduled_calls),
        calls_figure(CALLS_OF_DELTA, delta_calls),
    ]);
    table.figures = figures;
    Ok(table)
}
