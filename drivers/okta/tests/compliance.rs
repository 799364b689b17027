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
async fn a_user_deactivated_and_deleted_between_two_pulls_is_removed_by_the_next() {
    let fake = fake();
    let server = fake.start().await.unwrap();
    let driver = build(fake.settings(&server.base_url, 100));
    let (_, outcome) = pull(driver.as_ref(), PullMode::Full).await.unwrap();
    let (gone, reused) = {
        let org = fake.org.lock().unwrap();
        (org.dataset.users[7].clone(), org.dataset.users[8].clone())
    };
    // User 7 is deactivated and deleted; user 8 too, and a new hire takes
    // user 8's login.
    fake.delete_user(7);
    fake.delete_user(8);
    let mut hire = reused.clone();
    hire.id = "00unewhire".into();
    fake.create_user(hire);

    let (delta, _) = pull(
        driver.as_ref(),
        PullMode::Delta(outcome.next_cursor.unwrap()),
    )
    .await
    .unwrap();
    let mut removed = delta.removed_users.clone();
    removed.sort();
    removed.dedup();
    let mut expected = vec![gone.id.clone(), reused.id.clone()];
    expected.sort();
    assert_eq!(removed, expected, "the System Log names both deletions");
    assert_eq!(
        delta
            .users
            .iter()
            .map(|u| u.external_id.as_str())
            .collect::<Vec<_>>(),
        ["00unewhire"],
        "the deleted users are in no listing; the new hire is"
    );
    assert_eq!(delta.users[0].user_name, reused.user_name);

    // Without the System Log, an incremental pull cannot see a deletion.
    let mut blind = fake.settings(&server.base_url, 100);
    blind["read_system_log"] = false.into();
    let (_, outcome) = pull(build(blind.clone()).as_ref(), PullMode::Full)
        .await
        .unwrap();
    let ninth = fake.org.lock().unwrap().dataset.users[9].id.clone();
    fake.delete_user(9);
    let (delta, _) = pull(
        build(blind).as_ref(),
        PullMode::Delta(outcome.next_cursor.unwrap()),
    )
    .await
    .unwrap();
    assert!(delta.removed_users.is_empty());
    assert!(delta.users.iter().all(|u| u.external_id != ninth));
}

#[tokio::test]
async fn unknown_routes_and_searches_get_oktas_error_bodies() {
    let fake = fake();
    let server = fake.start().await.unwrap();
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("{}{path}", server.base_url))
            .header("authorization", format!("SSWS {}", fake.api_token))
            .send()
    };
    let missing = get("/api/v1/nothing").await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000007");
    let bad = get("/api/v1/users?search=profile.nickName%20sw%20%22a%22")
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["errorCode"], "E0000031");
}

#[tokio::test]
async fn service_apps_sign_their_assertion_and_rate_limits_are_waited_out() {
    let fake = fake();
    let server = fake.start().await.unwrap();
    let settings = serde_json::json!({"org_url": server.base_url, "client_id": fake.client_id, "private_key": PRIVATE_KEY, "private_key_id": "kid1", "page_size": 200});
    fake.faults.update(|f| {
        f.throttle_next = 2;
        f.retry_after = Some(0);
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
// Paging, throttling, 5xx, bad pages, expiring tokens, deletions, reused
// names, an empty tenant and settings errors: the suite every driver runs.
idpsync_driver::compliance_suite!(idpsync_driver_okta::fake::FakeOkta);
