//! The ZITADEL driver against its fake over loopback HTTP: the SDK's
//! compliance suite (at the end, with the key file and the JWT profile
//! grant), then what is ZITADEL's own: machine users, other organizations,
//! inactive authorizations and other projects left out; a lockout only
//! suspends; a personal access token; and errors that say what to grant.

use idpsync_driver::compliance::{Running, pull, tenant};
use idpsync_driver::fake::{TEST_PRIVATE_KEY_PEM, test_kit};
use idpsync_driver::{Driver, DriverContext, DriverError, DriverFactory, PullMode};
use idpsync_driver_zitadel::ZitadelFactory;
use idpsync_driver_zitadel::fake::{FakeZitadel, PROJECT_ID};

fn build(settings: &serde_json::Value) -> Box<dyn Driver> {
    ZitadelFactory
        .build(settings, DriverContext { http: test_kit() })
        .unwrap()
}

#[tokio::test]
async fn what_is_not_a_person_of_the_organization_in_the_project_is_left_out() {
    let dataset = tenant();
    let running = Running::<FakeZitadel>::start(dataset.clone()).await;
    running.fake.add_noise();
    let (records, outcome) = pull(running.driver(7).as_ref(), PullMode::Full)
        .await
        .unwrap();
    assert_eq!(
        records.users.len(),
        dataset.users.len(),
        "no machines, no other organization"
    );
    assert_eq!(
        outcome.declared.users,
        Some(dataset.users.len() as u64),
        "machines are not counted as people"
    );
    let keys: Vec<&str> = records
        .groups
        .iter()
        .map(|g| g.external_id.as_str())
        .collect();
    assert!(
        !keys.contains(&"deactivated-role"),
        "an inactive authorization grants nothing"
    );
    assert!(
        !keys.contains(&"other-project-role"),
        "another project's roles are not groups"
    );
    assert!(
        records
            .memberships
            .iter()
            .all(|e| !e.member.external_id().starts_with("machine")
                && !e.member.external_id().starts_with("other")),
        "no edges to machines or other organizations' users"
    );
    assert_eq!(records.memberships.len(), dataset.members.len());
}

#[tokio::test]
async fn a_locked_user_is_suspended_and_an_inactive_one_deprovisioned() {
    let dataset = tenant();
    let running = Running::<FakeZitadel>::start(dataset.clone()).await;
    running
        .fake
        .set_state(&dataset.users[0].id, "USER_STATE_LOCKED");
    running
        .fake
        .set_state(&dataset.users[1].id, "USER_STATE_INITIAL");
    let (records, _) = pull(running.driver(100).as_ref(), PullMode::Full)
        .await
        .unwrap();
    let find = |id: &str| records.users.iter().find(|u| u.external_id == id).unwrap();
    let locked = find(&dataset.users[0].id);
    assert!(!locked.active && locked.suspended);
    let initial = find(&dataset.users[1].id);
    assert!(!initial.active && !initial.suspended);
    assert_eq!(initial.raw_status.as_deref(), Some("USER_STATE_INITIAL"));
}

#[tokio::test]
async fn a_personal_access_token_reads_the_same_tenant() {
    let dataset = tenant();
    let running = Running::<FakeZitadel>::start(dataset.clone()).await;
    let settings = serde_json::json!({
        "issuer_url": running.server.base_url,
        "personal_access_token": running.fake.personal_access_token,
        "project_id": PROJECT_ID,
    });
    let (records, _) = pull(build(&settings).as_ref(), PullMode::Full)
        .await
        .unwrap();
    assert_eq!(records.users.len(), dataset.users.len());
    assert_eq!(
        running.fake.tokens.issued(),
        0,
        "a PAT needs no token request"
    );
}

#[tokio::test]
async fn refusals_say_what_to_fix_without_echoing_secrets() {
    let running = Running::<FakeZitadel>::start(tenant()).await;
    let settings = serde_json::json!({
        "issuer_url": running.server.base_url, "personal_access_token": "revoked-pat",
    });
    match build(&settings).check().await {
        Err(DriverError::Unauthorized(message)) => {
            assert!(message.contains("personal_access_token"), "{message}");
            assert!(!message.contains("revoked-pat"));
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    *running.fake.forbidden.lock().unwrap() = true;
    match running.driver(7).check().await {
        Err(DriverError::Forbidden(message)) => {
            assert!(message.contains("ORG_USER_MANAGER"), "{message}")
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    let mut wrong_key = running
        .fake
        .settings(&running.server.base_url, TEST_PRIVATE_KEY_PEM, 7);
    wrong_key["service_account_key"] = "{\"keyId\": 1}".into();
    match ZitadelFactory.validate(&wrong_key) {
        Err(DriverError::InvalidConfig { key, message }) => {
            assert_eq!(key, "service_account_key");
            assert!(!message.contains("keyId\": 1"), "{message}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

// Paging, throttling, 5xx, bad pages, expiring tokens, deletions, reused
// names, an empty tenant and settings errors: the suite every driver runs.
idpsync_driver::compliance_suite!(idpsync_driver_zitadel::fake::FakeZitadel);
