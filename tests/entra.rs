//! A 5,000-person Entra tenant with 300 groups (some nested) synced from the
//! fake Graph: the first run is full; the next runs transfer only changes by
//! delta; a user disabled in Entra is deactivated and loses their devices; an
//! expired delta token falls back to a full pull; throttling is survived.

mod common;

use idpsync_core::reconcile::{Outcome, Trigger};
use idpsync_core::store::entity::{device, source_user};
use idpsync_core::sync::DriverRegistry;
use idpsync_core::testing::TestStore;
use idpsync_driver::fake::{Dataset, DatasetSpec};
use idpsync_driver_entra::fake::FakeGraph;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entra_tenant_syncs_fully_then_by_delta() {
    let test_store = TestStore::sqlite().await;
    let store = test_store.store.clone();
    let fake = FakeGraph::new(Dataset::generate(&DatasetSpec {
        users: 5000,
        groups: 300,
        nested_groups: 60,
        memberships_per_user: 3,
        inactive_every: 0,
        seed: 21,
    }));
    let server = fake.start().await.unwrap();
    let settings = fake.settings(&server.base_url, 999);
    let text = format!(
        r#"
[[connections]]
id = "entra"
kind = "entra"
[connections.entra]
tenant_id = "{}"
client_id = "{}"
client_secret = "{}"
authority_url = "{}"
graph_url = "{}"
[connections.safety]
max_deletions = 50
"#,
        settings["tenant_id"].as_str().unwrap(),
        settings["client_id"].as_str().unwrap(),
        settings["client_secret"].as_str().unwrap(),
        server.base_url,
        server.base_url,
    );
    let mut registry = DriverRegistry::default();
    registry.register(idpsync_driver_entra::EntraFactory);
    let state = common::engine::start(&store, &text, registry).await;

    let first = common::engine::sync(&state, "entra", Trigger::Schedule).await;
    assert_eq!(
        (first.status, first.mode, first.received.users),
        ("applied", "full", 5000),
        "{first:?}"
    );
    let users = source_user::Entity::find()
        .filter(source_user::Column::ConnectionId.eq("entra"))
        .count(store.db())
        .await
        .unwrap();
    assert_eq!(users, 5000);

    // Nothing changed: the delta transfers nothing and writes nothing.
    let served_before = fake.tenant.lock().unwrap().items_served;
    let quiet = common::engine::sync(&state, "entra", Trigger::Schedule).await;
    assert_eq!(
        (quiet.status, quiet.mode, quiet.received.users),
        ("unchanged", "delta", 0),
        "{quiet:?}"
    );
    assert_eq!(
        fake.tenant.lock().unwrap().items_served,
        served_before,
        "no object crossed the wire"
    );

    // A device of user 7; Entra disables them and moves user 8 out of a group.
    let user7 = fake.tenant.lock().unwrap().dataset.users[7].id.clone();
    let laptop = common::engine::approved_device(&state, "entra", &user7).await;
    fake.disable_user(7);
    let group_of_8 = fake
        .tenant
        .lock()
        .unwrap()
        .dataset
        .members
        .iter()
        .find(|(_, u)| *u == 8)
        .unwrap()
        .0;
    fake.remove_member(group_of_8, 8);

    // Throttled on the way, the delta still applies exactly the changes.
    fake.faults.update(|f| {
        f.throttle_next = 2;
        f.retry_after_secs = 1;
    });
    let delta = common::engine::sync(&state, "entra", Trigger::Schedule).await;
    assert_eq!(
        (delta.status, delta.mode, delta.received.users),
        ("applied", "delta", 1),
        "{delta:?}"
    );
    let Some(Outcome::Applied(report)) = &delta.outcome else {
        panic!("{delta:?}")
    };
    assert_eq!(
        (
            report.changes.users_deactivated,
            report.changes.memberships_removed,
            report.effects.devices_revoked
        ),
        (1, 1, 1)
    );
    assert_eq!(
        device::Entity::find_by_id(laptop)
            .one(store.db())
            .await
            .unwrap()
            .unwrap()
            .status,
        "revoked"
    );

    // The delta token expires: the next run pulls everything and converges.
    fake.delete_user(9);
    fake.expire_delta_tokens();
    let resync = common::engine::sync(&state, "entra", Trigger::Schedule).await;
    assert_eq!(
        (resync.status, resync.received.users),
        ("applied", 4999),
        "{resync:?}"
    );
    let Some(Outcome::Applied(report)) = &resync.outcome else {
        panic!("{resync:?}")
    };
    assert_eq!(report.changes.users_deleted, 1);
    assert_eq!(
        common::engine::sync(&state, "entra", Trigger::Schedule)
            .await
            .status,
        "unchanged",
        "and deltas work again after the resync"
    );
    test_store.cleanup().await;
}
