//! `idpsync-bench console`: how long the console takes to render its
//! heaviest pages over a large tenant. A snapshot of `users` users, `groups`
//! groups and `memberships_per_user` memberships each (100k / 10k / 1M by
//! default) is applied; then a signed-in browser session asks, `requests`
//! times each, for a users page at a random depth and for a page of a big
//! group's effective members at a random depth. The time is from request
//! to the last byte on loopback, so it is the server's time plus a
//! loopback round trip.

use crate::harness::{Backend, millis, percentile};
use crate::results::{Benchmark, Figure, Table, Unit};
use anyhow::{Context, Result, bail};
use idpsync_core::auth::Scope;
use idpsync_core::reconcile::{Snapshot, SourceInput, SubmitOptions, Trigger};
use idpsync_core::store::entity::{source_group, source_user};
use idpsync_core::testing::TestApp;
use idpsync_driver::{MembershipEdge, SourceGroup, SourceUser};
use rand::Rng;
use sea_orm::{EntityTrait, QueryOrder};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[[connections]]
id = "bench"
kind = "scim"
"#;

pub async fn console(
    n_users: usize,
    n_groups: usize,
    per_user: usize,
    requests: usize,
    backend: Backend,
) -> Result<Table> {
    let test_store = backend.open().await?;
    let app = TestApp::builder(&test_store.store)
        .config(CONFIG)
        .start()
        .await;
    let users: Vec<SourceUser> = (0..n_users)
        .map(|i| SourceUser::new(format!("u{i:07}"), format!("user{i:07}@example.test")))
        .collect();
    let groups: Vec<SourceGroup> = (0..n_groups)
        .map(|g| SourceGroup::new(format!("g{g:05}"), format!("Group {g:05}")))
        .collect();
    // Each user in `per_user` groups; group 0 holds everyone (the big one).
    let mut memberships = Vec::with_capacity(n_users * per_user);
    for (i, user) in users.iter().enumerate() {
        memberships.push(MembershipEdge::user("g00000", user.external_id.clone()));
        for k in 1..per_user {
            let group = 1 + (i * 7 + k * 13) % (n_groups - 1).max(1);
            memberships.push(MembershipEdge::user(
                groups[group].external_id.clone(),
                user.external_id.clone(),
            ));
        }
    }
    let edges = memberships.len();
    let started = Instant::now();
    app.state
        .engine()
        .reconciler
        .submit(
            "bench",
            SourceInput::Snapshot(Snapshot {
                users,
                groups,
                memberships: memberships.into(),
                ..Snapshot::default()
            }),
            SubmitOptions::new(Trigger::Manual),
        )
        .await
        .context("applying the tenant")?;
    let load = started.elapsed();

    let db = app.store().db();
    let first_user = source_user::Entity::find()
        .order_by_asc(source_user::Column::Id)
        .one(db)
        .await?
        .context("no users")?
        .id;
    let big_group = source_group::Entity::find()
        .order_by_asc(source_group::Column::Id)
        .one(db)
        .await?
        .context("no groups")?
        .id;

    let admin = app.token("bench", Scope::Admin, None).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let answer = browser
        .post(app.url("/console/sign-in"))
        .form(&[("token", admin.as_str())])
        .send()
        .await?;
    let cookie = answer
        .headers()
        .get("set-cookie")
        .context("no session cookie")?
        .to_str()?
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();

    let mut rng = rand::rng();
    let time = async |path: String| -> Result<Duration> {
        let started = Instant::now();
        let answer = browser
            .get(app.url(&path))
            .header("cookie", &cookie)
            .send()
            .await?;
        let status = answer.status();
        let body = answer.text().await?;
        let took = started.elapsed();
        if !status.is_success() || !body.contains("</html>") {
            bail!("{path}: {status}");
        }
        Ok(took)
    };
    let mut users_page = Vec::with_capacity(requests);
    let mut members_page = Vec::with_capacity(requests);
    for _ in 0..requests {
        let after = first_user + rng.random_range(0..n_users as i64);
        users_page.push(time(format!("/console/users?after={after}")).await?);
        let after = first_user + rng.random_range(0..n_users as i64);
        members_page.push(time(format!("/console/groups/{big_group}?after={after}")).await?);
    }
    users_page.sort();
    members_page.sort();

    let mut table = Table::new(
        Benchmark::Console,
        format!(
            "Console page renders, {}: {n_users} users, {n_groups} groups, {edges} memberships, {requests} requests each at random depths",
            backend.label()
        ),
    )
    .parameter("database", backend.name())
    .parameter("users", n_users)
    .parameter("groups", n_groups)
    .parameter("memberships", edges);
    table.figures = vec![
        Figure::number(
            "users page: p50",
            millis(percentile(&users_page, 0.5)),
            Unit::Millis,
        ),
        Figure::number(
            "users page: p99",
            millis(percentile(&users_page, 0.99)),
            Unit::Millis,
        ),
        Figure::number(
            "a group of every user, effective members page: p50",
            millis(percentile(&members_page, 0.5)),
            Unit::Millis,
        ),
        Figure::number(
            "a group of every user, effective members page: p99",
            millis(percentile(&members_page, 0.99)),
            Unit::Millis,
        ),
        Figure::number("loading the tenant", load.as_secs_f64(), Unit::Seconds),
    ];
    Ok(table)
}
