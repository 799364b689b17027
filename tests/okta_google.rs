//! Okta and Google Workspace tenants of 5,000 people synced through the
//! engine from their fakes on loopback: everyone arrives, changes converge,
//! suspended users lose their devices, throttling is survived, and a
//! permission error fails the run with an actionable message and applies
//! nothing.

mod common;

use idpsync_core::reconcile::Trigger;
use idpsync_core::store::entity::{device, source_user};
use idpsync_core::sync::DriverRegistry;
use idpsync_core::sync::SyncStatus;
use idpsync_core::testing::TestStore;
use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver_google::fake::FakeGoogle;
use idpsync_driver_okta::fake::FakeOkta;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

const PUBLIC_KEY: &[u8] = include_bytes!("../drivers/sdk/tests/data/test-rsa-public.der");
const PRIVATE_KEY: &str = include_str!("../drivers/sdk/tests/data/test-rsa-key.pem");

fn tenant() -> Dataset {
    Dataset::generate(&DatasetSpec {
        users: 5000,
        groups: 40,
        nested_groups: 8,
        memberships_per_user: 2,
        inactive_every: 100,
        seed: 17,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_and_google_tenants_sync_converge_and_deprovision() {
    let test_store = TestStore::sqlite().await;
    let store = test_store.store.clone();
    let okta = FakeOkta::new(tenant(), PUBLIC_KEY.to_vec());
    let okta_server = okta.start().await.unwrap();
    let google = FakeGoogle::new(tenant(), PUBLIC_KEY.to_vec());
    let google_server = google.start().await.unwrap();
    let google_settings = google.settings(&google_server.base_url, PRIVATE_KEY, 500);
    let text = format!(
        r#"
[[connections]]
id = "okta"
kind = "okta"
[connections.okta]
org_url = "{}"
client_id = "{}"
private_key = """{}"""
[[connections]]
id = "google"
kind = "google_workspace"
[connections.google_workspace]
service_account_key = '{}'
admin_email = "{}"
api_url = "{}"
"#,
        okta_server.base_url,
        okta.client_id,
        PRIVATE_KEY,
        google_settings["service_account_key"].as_str().unwrap(),
        google.admin_email,
        google_server.base_url,
    );
    let mut registry = DriverRegistry::default();
    registry.register(idpsync_driver_okta::OktaFactory);
    registry.register(idpsync_driver_google::GoogleFactory);
    let state = common::engine::start(&store, &text, registry).await;
    let count = |id: &'static str, active: bool| {
        let store = store.clone();
        async move {
            source_user::Entity::find()
                .filter(source_user::Column::ConnectionId.eq(id))
                .filter(source_user::Column::Active.eq(active))
                .count(store.db())
                .await
                .unwrap()
        }
    };

    // Throttled on the way in (Okta 429s, Google quota 403s), both arrive whole.
    okta.faults.update(|f| {
        f.throttle_next = 2;
        f.retry_after = Some(0);
    });
    google.faults.update(|f| f.throttle_next = 2);
    for id in ["okta", "google"] {
        let report = common::engine::sync(&state, id, Trigger::Manual).await;
        assert_eq!(report.status, SyncStatus::Applied, "{id}: {report:?}");
        assert_eq!(count(id, true).await + count(id, false).await, 5000, "{id}");
        assert_eq!(count(id, false).await, 50, "{id}: every 100th is suspended");
    }

    // Devices of user 3 in each; both are suspended at the source.
    let okta_user = okta.org.lock().unwrap().dataset.users[3].id.clone();
    let google_user = google.dataset.lock().unwrap().users[3].id.clone();
    let laptops = [
        common::engine::approved_device(&state, "okta", &okta_user).await,
        common::engine::approved_device(&state, "google", &google_user).await,
    ];
    okta.set_status(3, "SUSPENDED");
    google.dataset.lock().unwrap().users[3].active = false;

    // A permission error first: the run fails, says what to grant, applies nothing.
    *google.forbidden.lock().unwrap() = true;
    let denied = common::engine::sync(&state, "google", Trigger::Manual).await;
    assert_eq!(denied.status, SyncStatus::Failed);
    assert!(
        denied
            .error
            .as_deref()
            .unwrap()
            .contains("Domain-wide delegation"),
        "{denied:?}"
    );
    let status = |id: i64| {
        let store = store.clone();
        async move {
            device::Entity::find_by_id(id)
                .one(store.db())
                .await
                .unwrap()
                .unwrap()
                .status
        }
    };
    assert_eq!(status(laptops[1]).await, "approved");
    *google.forbidden.lock().unwrap() = false;

    // Okta by delta (the stored cursor), Google by full pull: both converge.
    let okta_delta = common::engine::sync(&state, "okta", Trigger::Manual).await;
    assert_eq!(
        (okta_delta.status, okta_delta.mode),
        (SyncStatus::Applied, "delta"),
        "{okta_delta:?}"
    );
    assert_eq!(
        common::engine::sync(&state, "google", Trigger::Manual)
            .await
            .status,
        SyncStatus::Applied
    );
    assert_eq!(status(laptops[0]).await, "revoked");
    assert_eq!(status(laptops[1]).await, "revoked");
    assert_eq!(count("okta", false).await, 51);
    assert_eq!(count("google", false).await, 51);

    // Okta: a user deactivated and deleted between two incremental runs is
    // in no listing any more; the System Log names them, and the scheduled
    // delta deprovisions them. A new hire takes their login meanwhile.
    let (leaver, login) = {
        let org = okta.org.lock().unwrap();
        (
            org.dataset.users[5].id.clone(),
            org.dataset.users[5].user_name.clone(),
        )
    };
    let leaver_laptop = common::engine::approved_device(&state, "okta", &leaver).await;
    okta.delete_user(5);
    let mut hire = okta.org.lock().unwrap().dataset.users[5].clone();
    hire.id = "00unewhire".into();
    okta.create_user(hire);
    let scheduled = common::engine::sync(&state, "okta", Trigger::Schedule).await;
    assert_eq!(
        (scheduled.status, scheduled.mode),
        (SyncStatus::Applied, "delta"),
        "{scheduled:?}"
    );
    assert_eq!(status(leaver_laptop).await, "revoked");
    let hire_row = source_user::Entity::find()
        .filter(source_user::Column::ExternalId.eq("00unewhire"))
        .one(store.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hire_row.user_name, login);

    // A lockout only suspends: access goes, the laptop stays, and both come
    // back when Okta unlocks the account.
    let locked = okta.org.lock().unwrap().dataset.users[6].id.clone();
    let locked_laptop = common::engine::approved_device(&state, "okta", &locked).await;
    let row = |id: String| {
        let store = store.clone();
        async move {
            source_user::Entity::find()
                .filter(source_user::Column::ExternalId.eq(id))
                .one(store.db())
                .await
                .unwrap()
                .unwrap()
        }
    };
    okta.set_status(6, "LOCKED_OUT");
    common::engine::sync(&state, "okta", Trigger::Schedule).await;
    let suspended = row(locked.clone()).await;
    assert_eq!((suspended.active, suspended.suspended), (false, true));
    assert_eq!(status(locked_laptop).await, "approved");
    okta.set_status(6, "ACTIVE");
    common::engine::sync(&state, "okta", Trigger::Schedule).await;
    let back = row(locked.clone()).await;
    assert_eq!((back.active, back.suspended), (true, false));
    assert_eq!(status(locked_laptop).await, "approved");

    // Google: user 7 leaves and a new account takes their primaryEmail, in
    // one sync period; user 8's laptop is untouched.
    let (leaver, stayer) = {
        let users = &google.dataset.lock().unwrap().users;
        (users[7].id.clone(), users[8].id.clone())
    };
    let leaver_laptop = common::engine::approved_device(&state, "google", &leaver).await;
    let stayer_laptop = common::engine::approved_device(&state, "google", &stayer).await;
    google.dataset.lock().unwrap().users[7].id = "rehired-7".into();
    let report = common::engine::sync(&state, "google", Trigger::Manual).await;
    assert_eq!(report.status, SyncStatus::Applied, "{report:?}");
    assert_eq!(status(leaver_laptop).await, "revoked");
    assert_eq!(status(stayer_laptop).await, "approved");
    test_store.cleanup().await;
}
