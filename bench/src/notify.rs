//! `idpsync-bench notify`: how soon a person offboarded at a pulled IdP
//! loses their device, with the IdP's change notifications and with the
//! schedule alone. For each of Okta, Entra and Google Workspace, a fake
//! tenant of `users` people (every one with an approved laptop up to
//! `iterations`) is synced once; then, `iterations` times, one person is
//! suspended (Okta, Google) or disabled (Entra) in the fake and the time is
//! taken from that change to a consumer long-polling the event feed holding
//! `device.revoked`. With notifications the connection has no schedule:
//! only the IdP's delivery makes it pull. Schedule only, it pulls every
//! `schedule_secs` seconds, so its latency is about half that on average.
//! Offboardings are spaced by a random pause of up to `schedule_secs`, in
//! both modes, so that they fall anywhere between two scheduled runs.

use crate::harness::{Backend, millis, percentile};
use crate::results::{Benchmark, Figure, Table, Unit};
use anyhow::{Context, Result, bail};
use idpsync_core::auth::Scope;
use idpsync_core::reconcile::Trigger;
use idpsync_core::sync::{DriverRegistry, SyncStatus};
use idpsync_core::testing::TestApp;
use idpsync_driver::DriverKind;
use idpsync_driver::compliance::{CompliantFake, Running};
use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver_entra::fake::FakeGraph;
use idpsync_driver_google::fake::FakeGoogle;
use idpsync_driver_okta::fake::FakeOkta;
use serde_json::json;
use std::time::{Duration, Instant};

/// A fake IdP whose admin can take a person's access away.
trait Offboards: CompliantFake {
    /// What the IdP's admin does, in the IdP's words.
    const ACTION: &'static str;
    fn offboard(&self, user: usize);
    /// The connection's `notifications` table.
    fn notifications() -> serde_json::Value {
        json!({"secret": "bench-secret"})
    }
    /// Whether the IdP delivers to the daemon yet.
    fn subscribed(&self) -> bool;
}

impl Offboards for FakeOkta {
    const ACTION: &'static str = "suspended in Okta";
    fn offboard(&self, user: usize) {
        self.set_status(user, "SUSPENDED");
    }
    fn notifications() -> serde_json::Value {
        json!({"secret": "bench-secret", "register": true})
    }
    fn subscribed(&self) -> bool {
        self.event_hooks()
            .iter()
            .any(|(_, _, active, verified)| *active && *verified)
    }
}

impl Offboards for FakeGraph {
    const ACTION: &'static str = "disabled in Entra";
    fn offboard(&self, user: usize) {
        self.disable_user(user);
    }
    fn subscribed(&self) -> bool {
        self.subscriptions().len() == 2
    }
}

impl Offboards for FakeGoogle {
    const ACTION: &'static str = "suspended in Google";
    fn offboard(&self, user: usize) {
        self.suspend_user(user);
    }
    fn subscribed(&self) -> bool {
        self.channels().len() == 4
    }
}

/// How the connection learns of the change.
#[derive(Clone, Copy)]
enum Mode {
    Notifications,
    Schedule(u64),
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Notifications => "with notifications".into(),
            Mode::Schedule(secs) => format!("schedule only, every {secs} s"),
        }
    }
}

pub async fn notify(
    n_users: usize,
    iterations: usize,
    schedule_secs: u64,
    backend: Backend,
) -> Result<Table> {
    if iterations > n_users {
        bail!("--iterations ({iterations}) cannot exceed --users ({n_users})");
    }
    let mut figures = Vec::new();
    let interval = Duration::from_secs(schedule_secs);
    for mode in [Mode::Notifications, Mode::Schedule(schedule_secs)] {
        figures.extend(measure::<FakeOkta>(n_users, iterations, mode, interval, backend).await?);
        figures.extend(measure::<FakeGraph>(n_users, iterations, mode, interval, backend).await?);
        figures.extend(measure::<FakeGoogle>(n_users, iterations, mode, interval, backend).await?);
    }
    let mut table = Table::new(
        Benchmark::Notify,
        format!(
            "Offboarding at the IdP -> device.revoked at a long-polling consumer, {}: {n_users} users, {iterations} offboardings per IdP and mode",
            backend.label()
        ),
    )
    .parameter("database", backend.name())
    .parameter("users", n_users)
    .parameter("iterations", iterations)
    .parameter("schedule_secs", schedule_secs);
    table.figures = figures;
    Ok(table)
}

fn config<F: Offboards>(running: &Running<F>, mode: Mode) -> Result<String> {
    let kind = <F::Kind as DriverKind>::KIND;
    let settings = running.fake.settings(&running.server.base_url, 200);
    let table = toml::to_string(&settings)?;
    let (schedule, notifications) = match mode {
        Mode::Notifications => (
            String::new(),
            format!(
                "[connections.{kind}.notifications]\n{}",
                toml::to_string(&F::notifications())?
            ),
        ),
        Mode::Schedule(secs) => (
            format!("schedule = \"*/{secs} * * * * *\"\n"),
            String::new(),
        ),
    };
    Ok(format!(
        "[server]\npublic_url = \"${{APP_URL}}\"\n[[connections]]\nid = \"idp\"\nkind = \"{kind}\"\n{schedule}[connections.safety]\nmax_deletions = \"100%\"\n[connections.{kind}]\n{table}\n{notifications}\n"
    ))
}

async fn measure<F: Offboards>(
    n_users: usize,
    iterations: usize,
    mode: Mode,
    interval: Duration,
    backend: Backend,
) -> Result<Vec<Figure>>
where
    F::Kind: 'static,
{
    let kind = <F::Kind as DriverKind>::KIND;
    let dataset = Dataset::generate(&DatasetSpec {
        users: n_users,
        groups: (n_users / 100).max(2),
        nested_groups: 1,
        memberships_per_user: 2,
        inactive_every: 0,
        seed: 11,
    });
    let running = Running::<F>::start(dataset.clone()).await;
    let test_store = backend.open().await?;
    let mut registry = DriverRegistry::default();
    registry.register(F::kind());
    let app = TestApp::builder(&test_store.store)
        .config(&config(&running, mode)?)
        .drivers(registry)
        .daemon()
        .start()
        .await;
    let first = loop {
        match app
            .state
            .engine()
            .sync
            .run("idp", Trigger::Manual, false, true, std::future::pending())
            .await
        {
            // The schedule fired first; its run ends soon.
            Err(idpsync_core::sync::SyncError::AlreadyRunning(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => break other?,
        }
    };
    if first.status != SyncStatus::Applied {
        bail!("{kind}: the first sync {}: {:?}", first.status, first.error);
    }
    for user in &dataset.users[..iterations] {
        idpsync_core::testing::approved_device(
            app.store(),
            &app.state.bus,
            "idp",
            &user.id,
            &format!("nk-{}", user.id),
        )
        .await;
    }
    if matches!(mode, Mode::Notifications) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !running.fake.subscribed() {
            if Instant::now() > deadline {
                bail!("{kind}: the IdP's subscriptions were not made within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let token = app.token("bench", Scope::Read, None).await;
    let client = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(iterations);
    for (index, user) in dataset.users[..iterations].iter().enumerate() {
        let cursor = idpsync_core::events::last_id(app.store().db()).await?;
        let consumer = {
            let client = client.clone();
            let token = token.clone();
            let feed = app.url("/api/v1/events");
            let owner = user.id.clone();
            tokio::spawn(async move {
                let mut after = cursor;
                loop {
                    let page: serde_json::Value = client
                        .get(&feed)
                        .query(&[
                            ("after", after.to_string()),
                            ("wait", "30".into()),
                            ("limit", "1000".into()),
                        ])
                        .bearer_auth(&token)
                        .send()
                        .await?
                        .json()
                        .await?;
                    let revoked = page["events"].as_array().is_some_and(|events| {
                        events.iter().any(|e| {
                            e["kind"] == "device.revoked"
                                && e["payload"]["owner_external_id"] == owner.as_str()
                        })
                    });
                    if revoked {
                        return Ok::<Instant, reqwest::Error>(Instant::now());
                    }
                    after = page["cursor"].as_i64().unwrap_or(after);
                }
            })
        };
        // Offboardings come at random times, not in step with the schedule
        // (nor right after the previous run, which the rate bound delays):
        // a pause drawn from [0, interval), which also lets the consumer's
        // request park.
        let pause = Duration::from_secs_f64(rand::random::<f64>() * interval.as_secs_f64());
        tokio::time::sleep(pause.max(Duration::from_millis(20))).await;
        let started = Instant::now();
        running.fake.offboard(index);
        let received = tokio::time::timeout(Duration::from_secs(120), consumer)
            .await
            .with_context(|| format!("{kind}: no device.revoked within 120 s"))???;
        latencies.push(received.saturating_duration_since(started));
    }
    latencies.sort();
    app.shut_down().await;
    test_store.cleanup().await;
    let label = format!("{kind}, {}", mode.label());
    let subject = F::ACTION;
    Ok(vec![
        Figure::number(
            format!("{label}: {subject} -> revoked, p50"),
            millis(percentile(&latencies, 0.5)),
            Unit::Millis,
        ),
        Figure::number(
            format!("{label}: {subject} -> revoked, p99"),
            millis(percentile(&latencies, 0.99)),
            Unit::Millis,
        ),
    ])
}
