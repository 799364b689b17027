//! The JumpCloud driver against its fake over loopback HTTP: the SDK's
//! compliance suite (at the end), then what is JumpCloud's own: v1 users and
//! v2 graph edges joined, suspended and locked users, the org id of a
//! multi-tenant key, and a refused key named without echoing it.

use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver::http::HttpKit;
use idpsync_driver::{
    CollectedRecords, Driver, DriverContext, DriverError, DriverFactory, MemberRef, PullMode,
};
use idpsync_driver_jumpcloud::JumpCloudFactory;
use idpsync_driver_jumpcloud::fake::FakeJumpCloud;
use std::collections::HashSet;

fn kit() -> HttpKit {
    idpsync_driver::fake::test_kit()
}

fn build(settings: serde_json::Value) -> Box<dyn Driver> {
    JumpCloudFactory
        .build(&settings, DriverContext { http: kit() })
        .unwrap()
}

async fn pull(driver: &dyn Driver) -> Result<CollectedRecords, DriverError> {
    let mut sink = CollectedRecords::default();
    let outcome = driver.pull(PullMode::Full, &mut sink).await?;
    assert_eq!(outcome.declared.users, Some(sink.users.len() as u64));
    Ok(sink)
}

#[tokio::test]
async fn users_and_group_edges_join_and_suspension_means_inactive() {
    let dataset = Dataset::generate(&DatasetSpec {
        users: 230,
        groups: 7,
        nested_groups: 0,
        memberships_per_user: 2,
        inactive_every: 10,
        seed: 5,
    });
    let fake = FakeJumpCloud::new(dataset.clone());
    let server = fake.start().await.unwrap();
    let driver = build(fake.settings(&server.base_url, 100));
    assert!(driver.check().await.unwrap().summary.contains("230 users"));
    let sink = pull(driver.as_ref()).await.unwrap();
    assert_eq!(sink.users.len(), 230);
    assert_eq!(sink.groups.len(), 7);
    assert_eq!(sink.users.iter().filter(|u| !u.active).count(), 23);
    assert_eq!(
        sink.users
            .iter()
            .find(|u| !u.active)
            .unwrap()
            .raw_status
            .as_deref(),
        Some("SUSPENDED")
    );
    let user_ids: HashSet<&str> = sink.users.iter().map(|u| u.external_id.as_str()).collect();
    assert_eq!(sink.memberships.len(), dataset.members.len());
    assert!(
        sink.memberships
            .iter()
            .all(|e| matches!(&e.member, MemberRef::User(id) if user_ids.contains(id.as_ref()))),
        "v2 edges name v1 users"
    );
}

#[tokio::test]
async fn a_refused_api_key_says_which_key_without_echoing_it() {
    let fake = FakeJumpCloud::new(Dataset::generate(&DatasetSpec::default()));
    let server = fake.start().await.unwrap();
    let mut wrong = fake.settings(&server.base_url, 25);
    wrong["api_key"] = "wrong-key".into();
    match build(wrong).check().await {
        Err(DriverError::Unauthorized(message)) => {
            assert!(message.contains("check api_key"), "{message}");
            assert!(!message.contains("wrong-key"));
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn multi_tenant_keys_need_the_org_id() {
    let mut fake = FakeJumpCloud::new(Dataset::generate(&DatasetSpec {
        users: 5,
        groups: 1,
        ..DatasetSpec::default()
    }));
    fake.org_id = Some("org-123".into());
    let server = fake.start().await.unwrap();
    let mut without = fake.settings(&server.base_url, 100);
    without.as_object_mut().unwrap().remove("org_id");
    assert!(
        matches!(build(without).check().await, Err(DriverError::Forbidden(message)) if message.contains("organization"))
    );
    assert!(
        build(fake.settings(&server.base_url, 100))
            .check()
            .await
            .is_ok()
    );
}

#[test]
fn settings_are_validated_with_the_key_named() {
    let settings = serde_json::json!({"api_key": "k", "page_size": 500});
    assert!(
        matches!(JumpCloudFactory.validate(&settings), Err(DriverError::InvalidConfig { key, .. }) if key == "page_size")
    );
    assert!(
        JumpCloudFactory
            .validate(&serde_json::json!({"api_key": "k"}))
            .is_ok()
    );
}

// Paging, throttling, 5xx, bad pages, deletions, reused names, an empty
// tenant and settings errors: the suite every driver runs.
idpsync_driver::compliance_suite!(idpsync_driver_jumpcloud::fake::FakeJumpCloud);
