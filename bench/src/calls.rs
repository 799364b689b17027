//! `idpsync-bench calls`: API calls per full pull, for every driver, next
//! to the fewest the IdP's API allows.
//!
//! Each driver pulls a generated tenant from its fake (in this process: the
//! figure is a count, not a time) at the API's largest page size; the fake
//! counts the calls it answered (token requests aside, which are counted
//! apart). The minimum is the fake's own [`CompliantFake::minimum_calls`]:
//! the API's documented page limits, and one listing per group's members
//! where the API has no other way. A driver far above its minimum spends
//! the tenant's shared rate limit for nothing.

use crate::results::{Benchmark, Figure, Table, Unit};
use anyhow::{Context, Result};
use idpsync_driver::compliance::{CompliantFake, Running};
use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver::{DriverError, EdgeList, MembershipEdge, PullMode, RecordSink};
use idpsync_driver::{SourceGroup, SourceUser, UserUpdate};
use std::time::Instant;

/// A sink that counts the users that arrive and keeps nothing: the bench
/// measures calls, and 1M edges per driver need not be held.
#[derive(Default)]
struct Counted {
    users: u64,
}

#[async_trait::async_trait]
impl RecordSink for Counted {
    async fn users(&mut self, page: Vec<SourceUser>) -> Result<(), DriverError> {
        self.users += page.len() as u64;
        Ok(())
    }
    async fn user_updates(&mut self, page: Vec<UserUpdate>) -> Result<(), DriverError> {
        self.users += page.len() as u64;
        Ok(())
    }
    async fn groups(&mut self, _: Vec<SourceGroup>) -> Result<(), DriverError> {
        Ok(())
    }
    async fn memberships(&mut self, _: Vec<MembershipEdge>) -> Result<(), DriverError> {
        Ok(())
    }
    async fn membership_list(&mut self, _: EdgeList) -> Result<(), DriverError> {
        Ok(())
    }
    async fn removed_users(&mut self, _: Vec<String>) -> Result<(), DriverError> {
        Ok(())
    }
    async fn removed_groups(&mut self, _: Vec<String>) -> Result<(), DriverError> {
        Ok(())
    }
    async fn removed_memberships(&mut self, _: Vec<MembershipEdge>) -> Result<(), DriverError> {
        Ok(())
    }
    async fn replaced_members(&mut self, _: Vec<String>) -> Result<(), DriverError> {
        Ok(())
    }
    async fn present_users(&mut self, _: Vec<String>) -> Result<(), DriverError> {
        Ok(())
    }
    async fn present_groups(&mut self, _: Vec<String>) -> Result<(), DriverError> {
        Ok(())
    }
}

/// One driver's count.
struct Count {
    kind: &'static str,
    /// What of the tenant the IdP cannot hold, when something was cut.
    cut: Option<&'static str>,
    calls: u64,
    minimum: u64,
    tokens: u64,
    users: u64,
    seconds: f64,
}

async fn count<F: CompliantFake>(dataset: &Dataset) -> Result<Count> {
    let kind = <F::Kind as idpsync_driver::DriverKind>::KIND;
    let (dataset, cut) = F::within_api_limits(dataset);
    let dataset = &dataset;
    let running = Running::<F>::start(dataset.clone()).await;
    let driver = running.driver(F::MAX_PAGE_SIZE);
    let started = Instant::now();
    let mut sink = Counted::default();
    driver
        .pull(PullMode::Full, &mut sink)
        .await
        .with_context(|| format!("{kind}: the full pull failed"))?;
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        sink.users == dataset.users.len() as u64,
        "{kind}: {} users pulled of {}",
        sink.users,
        dataset.users.len()
    );
    Ok(Count {
        kind,
        cut,
        calls: running.fake.faults().requests(),
        minimum: F::minimum_calls(dataset),
        tokens: running.fake.tokens().map_or(0, |tokens| tokens.issued()),
        users: sink.users,
        seconds,
    })
}

/// A capped share honoured, counted by the Auth0 fake: the tenant allows
/// `limit` requests a window; a connection with half of it pulls 2,000
/// users. Returns the busiest window's requests and the requests refused.
async fn rate_share(limit: u32) -> Result<(u32, u32)> {
    use idpsync_driver::http::RateShare;
    use idpsync_driver_auth0::fake::FakeAuth0;
    let dataset = Dataset::generate(&DatasetSpec {
        users: 2000,
        groups: 20,
        nested_groups: 0,
        memberships_per_user: 2,
        inactive_every: 50,
        seed: 5,
    });
    let running = Running::<FakeAuth0>::start(dataset).await;
    *running
        .fake
        .rate_limit
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(limit);
    let http = idpsync_driver::fake::test_kit()
        .for_connection(RateShare::new(0.5).context("a valid share")?);
    let driver = idpsync_driver::DriverFactory::build(
        &idpsync_driver_auth0::Auth0Factory,
        &running.fake.settings(&running.server.base_url, 100),
        idpsync_driver::DriverContext { http },
    )?;
    driver
        .pull(PullMode::Full, &mut Counted::default())
        .await
        .context("auth0 with half the rate limit: the pull failed")?;
    let peak = *running
        .fake
        .peak_window_requests
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let refused = *running
        .fake
        .rate_limited
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Ok((peak, refused))
}

/// API calls per full pull of a `users`/`groups` tenant with
/// `memberships_per_user` groups per person, for every driver.
pub async fn calls(users: usize, groups: usize, memberships_per_user: usize) -> Result<Table> {
    use idpsync_driver_auth0::fake::FakeAuth0;
    use idpsync_driver_authentik::fake::FakeAuthentik;
    use idpsync_driver_entra::fake::FakeGraph;
    use idpsync_driver_google::fake::FakeGoogle;
    use idpsync_driver_jumpcloud::fake::FakeJumpCloud;
    use idpsync_driver_keycloak::fake::FakeKeycloak;
    use idpsync_driver_okta::fake::FakeOkta;
    use idpsync_driver_zitadel::fake::FakeZitadel;

    let dataset = Dataset::generate(&DatasetSpec {
        users,
        groups,
        nested_groups: groups / 10,
        memberships_per_user,
        inactive_every: 50,
        seed: 23,
    });
    let counts = vec![
        count::<FakeKeycloak>(&dataset).await?,
        count::<FakeJumpCloud>(&dataset).await?,
        count::<FakeGraph>(&dataset).await?,
        count::<FakeOkta>(&dataset).await?,
        count::<FakeGoogle>(&dataset).await?,
        count::<FakeAuth0>(&dataset).await?,
        count::<FakeAuthentik>(&dataset).await?,
        count::<FakeZitadel>(&dataset).await?,
    ];
    let memberships = dataset.members.len();
    let mut table = Table::new(
        Benchmark::Calls,
        format!(
            "API calls per full pull: {users} users, {groups} groups, {memberships} memberships, every driver at its API's largest page"
        ),
    )
    .parameter("users", users.to_string())
    .parameter("groups", groups.to_string())
    .parameter("memberships", memberships.to_string());
    for count in counts {
        table.figures.push(
            Figure::number(
                format!("{}: API calls", count.kind),
                count.calls as f64,
                Unit::Count,
            )
            .with_note(format!(
                "{} token requests, {} users, {:.1} s in-process{}",
                count.tokens,
                count.users,
                count.seconds,
                count.cut.map(|cut| format!("; {cut}")).unwrap_or_default()
            )),
        );
        table.figures.push(Figure::number(
            format!("{}: API minimum", count.kind),
            count.minimum as f64,
            Unit::Count,
        ));
    }
    let limit = 20;
    let (peak, refused) = rate_share(limit).await?;
    table.figures.push(
        Figure::number(
            "rate share: auth0 with rate_limit_share 0.5, busiest window",
            peak as f64,
            Unit::Count,
        )
        .with_note(format!(
            "requests, of a tenant limit of {limit} a window; {refused} refused; 2,000 users"
        )),
    );
    Ok(table)
}
