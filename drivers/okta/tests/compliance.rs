//! The Okta driver against its fake over loopback HTTP: Link-header paging,
//! every status mapped, DEPROVISIONED users found, incremental pulls, API
//! tokens and private_key_jwt service apps, rate limits and typed errors.

use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver::http::HttpKit;
use idpsync_driver::{
    CollectedRecords, Driver, DriverContext, DriverError, DriverFactory, PullMode,
};
use idpsync_driver_okta::OktaFactory;
use idpsync_driver_okta::fake::FakeOkta;

const PUBLIC_KEY: &[u8] = include_bytes!("../../sdk/tests/data/test-rsa-public.der");
const PRIVATE_KEY: &str = include_str!("../../sdk/tests/data/test-rsa-key.pem");

fn kit() -> HttpKit {
    idpsync_driver::fake::test_kit()
}

fn build(settings: serde_json::Value) -> Box<dyn Driver> {
    OktaFactory
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

fn fake() -> FakeOkta {
    FakeOkta::new(
        Dataset::generate(&DatasetSpec {
            users: 450,
            groups: 10,
            nested_groups: 0,
            memberships_per_user: 2,
            inactive_every: 15,
            seed: 4,
        }),
        PUBLIC_KEY.to_vec(),
    )
}

#[tokio::test]
async fn a_full_pull_maps_statuses_and_finds_deprovisioned_users() {
    let fake = fake();
    let server = fake.start().await.unwrap();
    fake.set_status(0, "DEPROVISIONED");
    fake.set_status(1, "PASSWORD_EXPIRED");
    fake.set_status(2, "STAGED");
    let driver = build(fake.settings(&server.base_url, 200));
    let (sink, outcome) = pull(driver.as_ref(), PullMode::Full).await.unwrap();
    assert!(outcome.complete_snapshot);
    assert_eq!(
        sink.users.len(),
        450,
        "DEPROVISIONED users come from the search"
    );
    let status = |i: usize| {
        sink.users
            .iter()
            .find(|u| u.external_id == fake.org.lock().unwrap().dataset.users[i].id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (status(0).active, status(0).raw_status.as_deref()),
        (false, Some("DEPROVISIONED"))
    );
    assert!(status(1).active, "an expired password still works here");
    assert!(!status(2).active);
    assert_eq!(
        sink.users
            .iter()
            .filter(|u| u.raw_status.as_deref() == Some("SUSPENDED"))
            .count(),
        30
    );
    assert_eq!(sink.groups.len(), 10, "OKTA_GROUP and APP_GROUP by default");
    let mut okta_only = fake.settings(&server.base_url, 200);
    okta_only["group_types"] = serde_json::json!(["OKTA_GROUP"]);
    let (sink, _) = pull(build(okta_only).as_ref(), PullMode::Full)
        .await
        .unwrap();
    assert_eq!(
        sink.groups.len(),
        8,
        "every fifth fake group is an APP_GROUP"
    );
}

#[tokio::test]
async fn incremental_pulls_return_only_what_changed() {
    let fake = fake();
    let server = fake.start().await.unwrap();
    let driver = build(fake.settings(&server.base_url, 100));
    let (_, outcome) = pull(driver.as_ref(), PullMode::Full).await.unwrap();
    let cursor = outcome.next_cursor.unwrap();
    fake.set_status(5, "SUSPENDED");
    let member = fake.org.lock().unwrap().dataset.members_of(3)[0];
    fake.remove_member(3, member);
    let (delta, outcome) = pull(driver.as_ref(), PullMode::Delta(cursor))
        .await
        .unwrap();
    assert!(!outcome.complete_snapshot);
    assert_eq!(delta.users.len(), 1);
    assert_eq!(
        delta.replaced_members.len(),
        1,
        "the changed group's members are re-read whole"
    );
}

#[tokio::test]
async fn service_apps_sign_their_assertion_and_rate_limits_are_waited_out() {
    let fake = fake();
    let server = fake.start().await.unwrap();
    let settings = serde_json::json!({"org_url": server.base_url, "client_id": fake.client_id, "private_key": PRIVATE_KEY, "private_key_id": "kid1", "page_size": 200});
    fake.faults.update(|f| {
        f.throttle_next = 2;
        f.retry_after_secs = 0;
    });
    let driver = build(settings.clone());
    assert_eq!(
        pull(driver.as_ref(), PullMode::Full)
            .await
            .unwrap()
            .0
            .users
            .len(),
        450
    );
    assert_eq!(fake.tokens.issued(), 1);

    let mut wrong = settings;
    wrong["client_id"] = "0oaother".into();
    assert!(
        matches!(build(wrong).check().await, Err(DriverError::Unauthorized(m)) if m.contains("invalid claims"))
    );
}

#[tokio::test]
async fn permission_errors_say_what_to_grant() {
    let fake = fake();
    let server = fake.start().await.unwrap();
    *fake.forbidden.lock().unwrap() = true;
    match pull(
        build(fake.settings(&server.base_url, 200)).as_ref(),
        PullMode::Full,
    )
    .await
    {
        Err(DriverError::Forbidden(message)) => {
            assert!(message.contains("okta.users.read"), "{message}")
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[test]
fn settings_need_exactly_one_way_to_authenticate() {
    let key = |settings: serde_json::Value| match OktaFactory.validate(&settings) {
        Err(DriverError::InvalidConfig { key, .. }) => key,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        key(serde_json::json!({"org_url": "https://acme.okta.com"})),
        "api_token"
    );
    assert_eq!(
        key(serde_json::json!({"org_url": "https://acme.okta.com", "client_id": "x"})),
        "private_key"
    );
    assert_eq!(
        key(
            serde_json::json!({"org_url": "https://acme.okta.com", "api_token": "t", "page_size": 500})
        ),
        "page_size"
    );
    assert!(
        OktaFactory
            .validate(&serde_json::json!({"org_url": "https://acme.okta.com", "api_token": "t"}))
            .is_ok()
    );
}
