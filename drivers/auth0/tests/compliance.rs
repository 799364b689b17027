//! The Auth0 driver against its fake over loopback HTTP: the SDK's
//! compliance suite (at the end), then what is Auth0's own: a tenant past the
//! listing's 1,000-result cap read whole by an export job, the token kept
//! off the export download, roles and organizations as groups, the
//! audience, and errors that say which scope to grant.

use idpsync_driver::compliance::{Running, pull};
use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver::{DriverError, MemberRef, PullMode};
use idpsync_driver_auth0::fake::FakeAuth0;
use std::collections::BTreeSet;

fn tenant(users: usize) -> Dataset {
    Dataset::generate(&DatasetSpec {
        users,
        groups: 8,
        nested_groups: 0,
        memberships_per_user: 2,
        inactive_every: 9,
        seed: 30,
    })
}

#[tokio::test]
async fn a_tenant_past_the_listing_cap_is_read_whole_by_an_export_job() {
    let dataset = tenant(2_345);
    let running = Running::<FakeAuth0>::start(dataset.clone()).await;
    let driver = running.driver(100);

    let check = driver.check().await.unwrap();
    assert!(
        check.summary.contains("1000+ users (read by export job)"),
        "{}",
        check.summary
    );

    let (records, outcome) = pull(driver.as_ref(), PullMode::Full).await.unwrap();
    assert_eq!(running.fake.export_jobs(), 1);
    let ids: BTreeSet<&str> = records
        .users
        .iter()
        .map(|u| u.external_id.as_str())
        .collect();
    assert_eq!(ids.len(), 2_345, "every user, not the first 1,000");
    assert_eq!(
        records.users.iter().filter(|u| !u.active).count(),
        dataset.users.iter().filter(|u| !u.active).count(),
        "blocked users are inactive"
    );
    assert_eq!(
        outcome.declared.users, None,
        "an export has no total to check"
    );
    assert_eq!(records.memberships.len(), dataset.members.len());
}

#[tokio::test]
async fn a_failed_export_job_fails_the_pull() {
    let running = Running::<FakeAuth0>::start(tenant(1_200)).await;
    *running.fake.exports_fail.lock().unwrap() = true;
    match pull(running.driver(100).as_ref(), PullMode::Full).await {
        Err(DriverError::Transient(message)) => {
            assert!(message.contains("export job"), "{message}")
        }
        other => panic!("expected a transient failure, got {other:?}"),
    }
}

#[tokio::test]
async fn organizations_are_groups_of_their_members_when_asked_for() {
    let dataset = tenant(40);
    let running = Running::<FakeAuth0>::start(dataset.clone()).await;
    let org = running
        .fake
        .add_organization("Acme Retail", &(0..30).collect::<Vec<_>>());
    let mut settings = running.fake.settings(&running.server.base_url, 7);
    settings["organizations"] = true.into();
    settings["roles"] = false.into();
    let driver = idpsync_driver::DriverFactory::build(
        &idpsync_driver_auth0::Auth0Factory,
        &settings,
        idpsync_driver::DriverContext {
            http: idpsync_driver::fake::test_kit(),
        },
    )
    .unwrap();
    let (records, _) = pull(driver.as_ref(), PullMode::Full).await.unwrap();
    assert_eq!(records.groups.len(), 1);
    assert_eq!(records.groups[0].display_name, "Acme Retail");
    let members: BTreeSet<String> = records
        .memberships
        .iter()
        .filter(|e| *e.group_external_id == *org)
        .map(|e| match &e.member {
            MemberRef::User(id) => id.to_string(),
            MemberRef::Group(_) => panic!("organizations do not nest"),
        })
        .collect();
    let expected: BTreeSet<String> = dataset.users[..30].iter().map(|u| u.id.clone()).collect();
    assert_eq!(members, expected, "30 members over 5 checkpoint pages of 7");
}

#[tokio::test]
async fn a_wrong_audience_or_missing_scope_says_what_to_fix() {
    let running = Running::<FakeAuth0>::start(tenant(10)).await;
    let mut settings = running.fake.settings(&running.server.base_url, 10);
    settings["audience"] = "https://other.auth0.test/api/v2/".into();
    let driver = idpsync_driver::DriverFactory::build(
        &idpsync_driver_auth0::Auth0Factory,
        &settings,
        idpsync_driver::DriverContext {
            http: idpsync_driver::fake::test_kit(),
        },
    )
    .unwrap();
    match driver.check().await {
        Err(DriverError::Unauthorized(message)) => {
            assert!(message.contains("Management API audience"), "{message}");
            assert!(!message.contains("fake-auth0-secret"));
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }

    *running.fake.forbidden.lock().unwrap() = true;
    match running.driver(10).check().await {
        Err(DriverError::Forbidden(message)) => {
            assert!(
                message.contains("read:users, read:roles, read:role_members"),
                "{message}"
            )
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn the_tenants_rate_limit_is_honoured_before_it_is_exceeded() {
    // 8 requests per one-second window: when X-RateLimit-Remaining reaches
    // 0 the kit waits for X-RateLimit-Reset instead of spending a 429.
    let dataset = tenant(30);
    let running = Running::<FakeAuth0>::start(dataset.clone()).await;
    *running.fake.rate_limit.lock().unwrap() = Some(8);
    let (records, _) = pull(running.driver(10).as_ref(), PullMode::Full)
        .await
        .unwrap();
    assert_eq!(records.users.len(), 30);
    assert_eq!(
        *running.fake.rate_limited.lock().unwrap(),
        0,
        "no request was refused"
    );
}

#[tokio::test]
async fn a_capped_share_of_the_rate_limit_is_honoured() {
    // The tenant allows 20 requests a window, shared with other clients;
    // this connection may use half: no window sees more than 10 of its
    // requests, and none is refused.
    let dataset = tenant(60);
    let running = Running::<FakeAuth0>::start(dataset.clone()).await;
    *running.fake.rate_limit.lock().unwrap() = Some(20);
    let http = idpsync_driver::fake::test_kit()
        .for_connection(idpsync_driver::http::RateShare::new(0.5).unwrap());
    let driver = idpsync_driver::DriverFactory::build(
        &idpsync_driver_auth0::Auth0Factory,
        &running.fake.settings(&running.server.base_url, 5),
        idpsync_driver::DriverContext { http },
    )
    .unwrap();
    let (records, _) = pull(driver.as_ref(), PullMode::Full).await.unwrap();
    assert_eq!(records.users.len(), 60);
    let peak = *running.fake.peak_window_requests.lock().unwrap();
    assert!(peak <= 10, "at most half of each window: {peak}");
    assert_eq!(*running.fake.rate_limited.lock().unwrap(), 0);
}

// Paging, throttling, 5xx, bad pages, expiring tokens, deletions, reused
// names, an empty tenant and settings errors: the suite every driver runs.
idpsync_driver::compliance_suite!(idpsync_driver_auth0::fake::FakeAuth0);
