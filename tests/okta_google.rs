//! Okta and Google Workspace tenants of 5,000 people synced through the
//! engine from their fakes on loopback: everyone arrives, changes converge,
//! suspended users lose their devices, throttling is survived, and a
//! permission error fails the run with an actionable message and applies
//! nothing.

use idpsync_core::api::AppState;
use idpsync_core::config;
use idpsync_core::devices::{self, DeviceStatus, NewDevice};
use idpsync_core::reconcile::Trigger;
use idpsync_core::store::entity::{device, source_user};
use idpsync_core::sync::DriverRegistry;
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
    let config = config::load_str(&text, "test.toml", &registry, &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .register_config(&config.connections, &config.acl_groups)
        .await
        .unwrap();
    let state = AppState::with_drivers(config, store.clone(), registry);
    let sync = |id: &'static str| {
        let runner = state.sync.clone();
        async move {
            runner
                .run(id, Trigger::Manual, false, false, std::future::pending())
                .await
                .unwrap()
        }
    };
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
        f.retry_after_secs = 0;
    });
    google.faults.update(|f| f.throttle_next = 2);
    for id in ["okta", "google"] {
        let report = sync(id).await;
        assert_eq!(report.status, "applied", "{id}: {report:?}");
        assert_eq!(count(id, true).await + count(id, false).await, 5000, "{id}");
        assert_eq!(count(id, false).await, 50, "{id}: every 100th is suspended");
    }

    // Devices of user 3 in each; both are suspended at the source.
    let okta_user = okta.org.lock().unwrap().dataset.users[3].id.clone();
    let google_user = google.dataset.lock().unwrap().users[3].id.clone();
    let mut laptops = Vec::new();
    for (connection, owner) in [("okta", okta_user), ("google", google_user)] {
        let registered = devices::register(
            &store,
            &state.bus,
            NewDevice {
                owner_connection_id: connection.into(),
                owner_external_id: owner,
                name: "laptop".into(),
                node_key: format!("nk-{connection}"),
            },
        )
        .await
        .unwrap();
        devices::set_status(
            &store,
            &state.bus,
            registered.id,
            DeviceStatus::Approved,
            None,
        )
        .await
        .unwrap();
        laptops.push(registered.id);
    }
    okta.set_status(3, "SUSPENDED");
    google.dataset.lock().unwrap().users[3].active = false;

    // A permission error first: the run fails, says what to grant, applies nothing.
    *google.forbidden.lock().unwrap() = true;
    let denied = sync("google").await;
    assert_eq!(denied.status, "failed");
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
    let okta_delta = sync("okta").await;
    assert_eq!(
        (okta_delta.status, okta_delta.mode),
        ("applied", "delta"),
        "{okta_delta:?}"
    );
    assert_eq!(sync("google").await.status, "applied");
    assert_eq!(status(laptops[0]).await, "revoked");
    assert_eq!(status(laptops[1]).await, "revoked");
    assert_eq!(count("okta", false).await, 51);
    assert_eq!(count("google", false).await, 51);
    test_store.cleanup().await;
}
