//! The Google Workspace driver against its fake over loopback HTTP: the
//! signed delegation grant, pageToken paging at the API's maxima, suspended
//! and archived users inactive, GROUP and CUSTOMER members, quota 403s
//! retried, permission 403s explained.

use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver::{
    CollectedRecords, Driver, DriverContext, DriverError, DriverFactory, MemberRef, PullMode,
};
use idpsync_driver_google::GoogleFactory;
use idpsync_driver_google::fake::FakeGoogle;

const PUBLIC_KEY: &[u8] = include_bytes!("../../sdk/tests/data/test-rsa-public.der");
const PRIVATE_KEY: &str = include_str!("../../sdk/tests/data/test-rsa-key.pem");

fn build(settings: serde_json::Value) -> Box<dyn Driver> {
    let http = idpsync_driver::fake::test_kit();
    GoogleFactory
        .build(&settings, DriverContext { http })
        .unwrap()
}

async fn pull(driver: &dyn Driver) -> Result<CollectedRecords, DriverError> {
    let mut sink = CollectedRecords::default();
    driver.pull(PullMode::Full, &mut sink).await?;
    Ok(sink)
}

fn fake() -> FakeGoogle {
    FakeGoogle::new(
        Dataset::generate(&DatasetSpec {
            users: 1100,
            groups: 9,
            nested_groups: 3,
            memberships_per_user: 1,
            inactive_every: 20,
            seed: 6,
        }),
        PUBLIC_KEY.to_vec(),
    )
}

#[tokio::test]
async fn a_full_pull_reads_everything_with_delegation() {
    let fake = fake();
    fake.archived.lock().unwrap().push(0);
    fake.everyone_groups.lock().unwrap().push(8);
    let server = fake.start().await.unwrap();
    let driver = build(fake.settings(&server.base_url, PRIVATE_KEY, 500));
    assert!(
        driver
            .check()
            .await
            .unwrap()
            .summary
            .contains("admin@acme.test")
    );
    fake.faults.update(|f| f.throttle_next = 2);
    let sink = pull(driver.as_ref()).await.unwrap();
    assert_eq!(sink.users.len(), 1100);
    assert_eq!(
        sink.users.iter().filter(|u| !u.active).count(),
        55 + 1,
        "suspended and archived"
    );
    assert_eq!(
        sink.memberships
            .iter()
            .filter(|e| matches!(e.member, MemberRef::Group(_)))
            .count(),
        3
    );
    let everyone = &fake.dataset.lock().unwrap().groups[8].id.clone();
    assert!(
        sink.memberships
            .iter()
            .filter(|e| &*e.group_external_id == everyone.as_str())
            .count()
            >= 1100,
        "CUSTOMER means every user"
    );
    assert_eq!(fake.tokens.issued(), 1);
}

#[tokio::test]
async fn missing_delegation_and_permissions_are_explained() {
    let fake = fake();
    let server = fake.start().await.unwrap();
    let mut settings = fake.settings(&server.base_url, PRIVATE_KEY, 500);
    settings["admin_email"] = "someone@acme.test".into();
    assert!(
        matches!(build(settings).check().await, Err(DriverError::Unauthorized(m)) if m.contains("unauthorized to retrieve access tokens"))
    );
    *fake.forbidden.lock().unwrap() = true;
    match pull(build(fake.settings(&server.base_url, PRIVATE_KEY, 500)).as_ref()).await {
        Err(DriverError::Forbidden(message)) => assert!(
            message.contains("Domain-wide delegation")
                && message.contains("admin.directory.user.readonly"),
            "{message}"
        ),
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[test]
fn a_bad_key_is_named_without_echoing_it() {
    let settings =
        serde_json::json!({"service_account_key": "{\"secret-bits\": 1}", "admin_email": "a@b.c"});
    match GoogleFactory.validate(&settings) {
        Err(DriverError::InvalidConfig { key, message }) => {
            assert_eq!(key, "service_account_key");
            assert!(!message.contains("secret-bits"));
        }
        other => panic!("{other:?}"),
    }
}
// Paging, throttling, 5xx, bad pages, expiring tokens, deletions, reused
// names, an empty tenant and settings errors: the suite every driver runs.
idpsync_driver::compliance_suite!(idpsync_driver_google::fake::FakeGoogle);
