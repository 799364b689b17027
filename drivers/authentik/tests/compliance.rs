//! The authentik driver against its fake over loopback HTTP: the SDK's
//! compliance suite (at the end), then what is authentik's own: service
//! accounts are not people (and their memberships are not edges), the
//! parent relation in either version's shape, a server that clamps the page
//! size, and errors that say which permission to grant.

use idpsync_driver::compliance::{Running, pull, tenant};
use idpsync_driver::{DriverError, MemberRef, PullMode};
use idpsync_driver_authentik::fake::{FakeAuthentik, GroupShape};

#[tokio::test]
async fn service_accounts_are_listed_but_are_not_people() {
    let dataset = tenant();
    let running = Running::<FakeAuthentik>::start(dataset.clone()).await;
    running.fake.add_service_account("ak-outpost-1", &[0, 1]);
    running.fake.add_service_account("ci-bot", &[2]);
    let (records, outcome) = pull(running.driver(7).as_ref(), PullMode::Full)
        .await
        .unwrap();
    assert_eq!(records.users.len(), dataset.users.len());
    assert!(
        records
            .users
            .iter()
            .all(|u| !u.external_id.starts_with("sa-"))
    );
    assert!(
        records
            .memberships
            .iter()
            .all(|e| !e.member.external_id().starts_with("sa-")),
        "a service account's membership is no edge"
    );
    assert_eq!(
        outcome.declared.users,
        Some(dataset.users.len() as u64),
        "the declared total counts people only"
    );
}

#[tokio::test]
async fn nesting_is_read_from_parent_and_from_parents() {
    let dataset = tenant();
    let nested = dataset.groups.iter().filter(|g| g.parent.is_some()).count();
    assert!(nested > 0);
    for shape in [GroupShape::Parent, GroupShape::Parents] {
        let running = Running::<FakeAuthentik>::start(dataset.clone()).await;
        *running.fake.shape.lock().unwrap() = shape;
        let (records, _) = pull(running.driver(7).as_ref(), PullMode::Full)
            .await
            .unwrap();
        let edges = records
            .memberships
            .iter()
            .filter(|e| matches!(e.member, MemberRef::Group(_)))
            .count();
        assert_eq!(edges, nested, "{shape:?}");
    }
}

#[tokio::test]
async fn a_server_that_clamps_the_page_size_is_followed_to_the_end() {
    let dataset = tenant();
    let running = Running::<FakeAuthentik>::start(dataset.clone()).await;
    *running.fake.max_page_size.lock().unwrap() = 5;
    let (records, outcome) = pull(running.driver(50).as_ref(), PullMode::Full)
        .await
        .unwrap();
    assert_eq!(records.users.len(), dataset.users.len());
    assert_eq!(outcome.declared.users, Some(dataset.users.len() as u64));
    assert!(records.n_pages >= dataset.users.len() / 5);
}

#[tokio::test]
async fn a_bad_token_or_missing_permission_says_what_to_fix() {
    let running = Running::<FakeAuthentik>::start(tenant()).await;
    let mut settings = running.fake.settings(&running.server.base_url, 7);
    settings["token"] = "expired-token".into();
    let driver = idpsync_driver::DriverFactory::build(
        &idpsync_driver_authentik::AuthentikFactory,
        &settings,
        idpsync_driver::DriverContext {
            http: idpsync_driver::fake::test_kit(),
        },
    )
    .unwrap();
    match driver.check().await {
        Err(DriverError::Unauthorized(message)) => {
            assert!(message.contains("intent API"), "{message}");
            assert!(!message.contains("expired-token"));
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    *running.fake.forbidden.lock().unwrap() = true;
    match running.driver(7).check().await {
        Err(DriverError::Forbidden(message)) => {
            assert!(message.contains("Can view User"), "{message}")
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

// Paging, throttling, 5xx, bad pages, deletions, reused names, an empty
// tenant and settings errors: the suite every driver runs.
idpsync_driver::compliance_suite!(idpsync_driver_authentik::fake::FakeAuthentik);
