//! The Keycloak driver against its fake over loopback HTTP: the SDK's
//! compliance suite (at the end), then what is Keycloak's own: nested groups
//! as edges whatever the server's subgroup-count default, and failures that
//! say which role or credential to fix.

use idpsync_driver::fake::{Dataset, DatasetSpec, PageFault};
use idpsync_driver::http::HttpKit;
use idpsync_driver::{
    CollectedRecords, Driver, DriverContext, DriverError, DriverFactory, MemberRef, PullMode,
};
use idpsync_driver_keycloak::KeycloakFactory;
use idpsync_driver_keycloak::fake::{FakeKeycloak, SubGroupCounts};

fn fast_kit() -> HttpKit {
    idpsync_driver::fake::test_kit()
}

fn spec(users: usize) -> DatasetSpec {
    DatasetSpec {
        users,
        groups: 12,
        nested_groups: 5,
        memberships_per_user: 2,
        inactive_every: 7,
        seed: 42,
    }
}

async fn driver_for(fake: &FakeKeycloak, base_url: &str, page_size: u32) -> Box<dyn Driver> {
    KeycloakFactory
        .build(
            &fake.settings(base_url, page_size),
            DriverContext { http: fast_kit() },
        )
        .unwrap()
}

async fn pull(driver: &dyn Driver) -> Result<CollectedRecords, DriverError> {
    let mut sink = CollectedRecords::default();
    driver.pull(PullMode::Full, &mut sink).await?;
    Ok(sink)
}

#[tokio::test]
async fn a_full_pull_reaches_the_last_page_and_keeps_nesting_as_edges() {
    let dataset = Dataset::generate(&spec(250));
    let fake = FakeKeycloak::new("acme", dataset.clone());
    let server = fake.start().await.unwrap();
    let driver = driver_for(&fake, &server.base_url, 100).await;

    let check = driver.check().await.unwrap();
    assert!(check.summary.contains("250 users"), "{}", check.summary);

    let mut sink = CollectedRecords::default();
    let outcome = driver.pull(PullMode::Full, &mut sink).await.unwrap();
    assert_eq!(outcome.declared.users, Some(250));
    assert!(outcome.complete_snapshot);
    assert_eq!(sink.users.len(), 250);
    assert_eq!(sink.groups.len(), 12);
    assert_eq!(sink.users.iter().filter(|u| !u.active).count(), 250 / 7);
    let nested: Vec<_> = sink
        .memberships
        .iter()
        .filter(|e| matches!(e.member, MemberRef::Group(_)))
        .collect();
    assert_eq!(nested.len(), 5);
    let user_edges = sink.memberships.len() - nested.len();
    assert_eq!(user_edges, dataset.members.len());
    assert_eq!(
        fake.tokens.issued(),
        1,
        "the token is cached, not fetched per call"
    );
}

#[tokio::test]
async fn subgroups_are_found_whatever_the_servers_subgroup_count_default() {
    let dataset = Dataset::generate(&spec(40));
    for counts in [
        SubGroupCounts::Parameter { default: true },
        SubGroupCounts::Parameter { default: false },
        SubGroupCounts::Never,
    ] {
        let fake = FakeKeycloak::new("acme", dataset.clone());
        *fake.sub_group_counts.lock().unwrap() = counts;
        let server = fake.start().await.unwrap();
        let sink = pull(driver_for(&fake, &server.base_url, 100).await.as_ref())
            .await
            .unwrap();
        assert_eq!(sink.groups.len(), 12, "{counts:?}");
        let nested = sink
            .memberships
            .iter()
            .filter(|e| matches!(e.member, MemberRef::Group(_)))
            .count();
        assert_eq!(nested, 5, "{counts:?}");
    }
}

#[tokio::test]
async fn failures_are_typed_and_say_what_to_fix() {
    let fake = FakeKeycloak::new("acme", Dataset::generate(&spec(60)));
    let server = fake.start().await.unwrap();
    let driver = driver_for(&fake, &server.base_url, 25).await;

    fake.faults
        .update(|faults| faults.fail_page = Some(PageFault::new("users", 1, u32::MAX)));
    assert!(matches!(
        pull(driver.as_ref()).await,
        Err(DriverError::Transient(_))
    ));

    fake.faults.update(|faults| {
        faults.fail_page = None;
        faults.truncate_page = Some(PageFault::new("members", 0, 1));
    });
    assert!(matches!(
        pull(driver.as_ref()).await,
        Err(DriverError::Protocol(_))
    ));

    fake.faults
        .update(|faults| faults.malformed_page = Some(PageFault::new("groups", 0, 1)));
    assert!(matches!(
        pull(driver.as_ref()).await,
        Err(DriverError::Protocol(_))
    ));

    *fake.forbidden.lock().unwrap() = true;
    match pull(driver.as_ref()).await {
        Err(DriverError::Forbidden(message)) => {
            assert!(message.contains("view-users and query-groups"), "{message}")
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    *fake.forbidden.lock().unwrap() = false;

    let mut wrong = fake.settings(&server.base_url, 25);
    wrong["client_secret"] = "nope".into();
    let driver = KeycloakFactory
        .build(&wrong, DriverContext { http: fast_kit() })
        .unwrap();
    match driver.check().await {
        Err(DriverError::Unauthorized(message)) => {
            assert!(
                message.contains("refused the client credentials"),
                "{message}"
            );
            assert!(
                !message.contains("nope"),
                "the secret never appears in errors"
            );
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[test]
fn settings_are_validated_with_the_key_named() {
    let error = |settings: serde_json::Value| match KeycloakFactory.validate(&settings) {
        Err(DriverError::InvalidConfig { key, .. }) => key,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let good = serde_json::json!({"base_url": "http://127.0.0.1:8080", "realm": "acme", "client_id": "c", "client_secret": "s"});
    assert!(KeycloakFactory.validate(&good).is_ok());
    let mut bad = good.clone();
    bad["page_size"] = 5000.into();
    assert_eq!(error(bad), "page_size");
    let mut bad = good.clone();
    bad["base_url"] = "ftp://x".into();
    assert_eq!(error(bad), "base_url");
    let mut bad = good.clone();
    bad["colour"] = "blue".into();
    assert!(format!("{:?}", KeycloakFactory.validate(&bad)).contains("colour"));
    let mut bad = good;
    bad.as_object_mut().unwrap().remove("realm");
    assert!(format!("{:?}", KeycloakFactory.validate(&bad)).contains("realm"));
}

// Paging, throttling, 5xx, bad pages, expiring tokens, deletions, reused
// names, an empty tenant and settings errors: the suite every driver runs.
idpsync_driver::compliance_suite!(idpsync_driver_keycloak::fake::FakeKeycloak);
