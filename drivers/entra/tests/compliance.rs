//! The Entra driver against the fake Graph over loopback HTTP: full rounds
//! end in a delta link, deltas carry only changes and removals, expired
//! tokens fall back to a full round, throttling is survived, and a nextLink
//! to another host never receives the token.

use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver::http::HttpKit;
use idpsync_driver::{
    CollectedRecords, Driver, DriverContext, DriverError, DriverFactory, MemberRef, PullMode,
};
use idpsync_driver_entra::EntraFactory;
use idpsync_driver_entra::fake::FakeGraph;

fn kit() -> HttpKit {
    idpsync_driver::fake::test_kit()
}

fn build(settings: serde_json::Value) -> Box<dyn Driver> {
    EntraFactory
        .build(&settings, DriverContext { http: kit() })
        .unwrap()
}

async fn pull(
    driver: &dyn Driver,
    mode: PullMode,
) -> Result<(CollectedRecords, idpsync_driver::PullOutcome), DriverError> {
    let mut sink = CollectedRecords::default();
    let outcome = driver.pull(mode, &mut sink).await?;
    Ok((sink, outcome))
}

#[tokio::test]
async fn full_then_delta_then_expired_token() {
    let fake = FakeGraph::new(Dataset::generate(&DatasetSpec {
        users: 300,
        groups: 15,
        nested_groups: 4,
        memberships_per_user: 2,
        inactive_every: 0,
        seed: 8,
    }));
    let server = fake.start().await.unwrap();
    let driver = build(fake.settings(&server.base_url, 100));
    assert!(driver.check().await.unwrap().summary.contains("readable"));

    let (full, outcome) = pull(driver.as_ref(), PullMode::Full).await.unwrap();
    assert!(outcome.complete_snapshot);
    assert_eq!((full.users.len(), full.groups.len()), (300, 15));
    assert_eq!(
        full.memberships
            .iter()
            .filter(|e| matches!(e.member, MemberRef::Group(_)))
            .count(),
        4
    );
    let cursor = outcome.next_cursor.unwrap();

    fake.disable_user(3);
    fake.delete_user(4);
    let first_member = fake.tenant.lock().unwrap().dataset.members_of(0)[0];
    fake.remove_member(0, first_member);
    let (delta, outcome) = pull(driver.as_ref(), PullMode::Delta(cursor.clone()))
        .await
        .unwrap();
    assert!(!outcome.complete_snapshot);
    // Graph sends the disabled user as its id and the property that changed.
    assert!(delta.users.is_empty());
    assert_eq!(delta.user_updates.len(), 1);
    assert_eq!(
        delta.user_updates[0].access,
        Some(idpsync_driver::Access::Deprovisioned)
    );
    assert_eq!(delta.user_updates[0].user_name, None);
    assert_eq!(delta.removed_users.len(), 1);
    assert!(!delta.removed_memberships.is_empty());
    assert!(
        delta.groups.is_empty(),
        "member changes alone do not resend groups"
    );

    let (nothing, _) = pull(
        driver.as_ref(),
        PullMode::Delta(outcome.next_cursor.unwrap()),
    )
    .await
    .unwrap();
    assert!(
        nothing.users.is_empty()
            && nothing.user_updates.is_empty()
            && nothing.removed_users.is_empty()
            && nothing.memberships.is_empty()
    );

    fake.expire_delta_tokens();
    let (again, outcome) = pull(driver.as_ref(), PullMode::Delta(cursor))
        .await
        .unwrap();
    assert!(
        outcome.complete_snapshot,
        "an expired token falls back to a full round"
    );
    assert_eq!(again.users.len(), 299);
}

#[tokio::test]
async fn throttling_is_survived_and_secrets_stay_out_of_errors() {
    let fake = FakeGraph::new(Dataset::generate(&DatasetSpec {
        users: 120,
        groups: 5,
        ..DatasetSpec::default()
    }));
    let server = fake.start().await.unwrap();
    fake.faults.update(|f| {
        f.throttle_next = 3;
        f.retry_after = Some(0);
    });
    let driver = build(fake.settings(&server.base_url, 50));
    assert_eq!(
        pull(driver.as_ref(), PullMode::Full)
            .await
            .unwrap()
            .0
            .users
            .len(),
        120
    );

    let mut wrong = fake.settings(&server.base_url, 50);
    wrong["client_secret"] = "not~it".into();
    match build(wrong).check().await {
        Err(DriverError::Unauthorized(message)) => {
            assert!(!message.contains("not~it"), "{message}")
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    let fake = FakeGraph::new(Dataset::generate(&DatasetSpec {
        users: 10,
        groups: 1,
        ..DatasetSpec::default()
    }));
    let server = fake.start().await.unwrap();
    let mut settings = fake.settings(&server.base_url, 5);
    // Graph at "localhost" while the fake's links name 127.0.0.1.
    settings["graph_url"] = server.base_url.replace("127.0.0.1", "localhost").into();
    let driver = build(settings);
    let mut sink = CollectedRecords::default();
    // The first request goes to the configured origin; the link it returns does not.
    let error = driver.pull(PullMode::Full, &mut sink).await.unwrap_err();
    assert!(
        matches!(&error, DriverError::Protocol(m) if m.contains("refusing to send the token")),
        "{error:?}"
    );
}

#[tokio::test]
async fn an_unknown_route_answers_graphs_error_body() {
    let fake = FakeGraph::new(Dataset::generate(&DatasetSpec::default()));
    let server = fake.start().await.unwrap();
    let response = reqwest::get(format!("{}/v1.0/nosuchthing", server.base_url))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BadRequest");
    assert_eq!(
        body["error"]["message"],
        "Resource not found for the segment 'nosuchthing'."
    );
}
// Paging, throttling, 5xx, bad pages, expiring tokens, deletions, reused
// names, an empty tenant and settings errors: the suite every driver runs.
idpsync_driver::compliance_suite!(idpsync_driver_entra::fake::FakeGraph);
