//! Keycloak and JumpCloud tenants of 5,000 people synced through the engine
//! from their fakes on loopback: everyone arrives, nested Keycloak groups give
//! the right transitive members, a disabled or suspended user loses their
//! devices, and a faulty pull applies nothing.

mod common;

use idpsync_core::reconcile::Trigger;
use idpsync_core::store::entity::{device, effective_membership, source_group, source_user};
use idpsync_core::sync::DriverRegistry;
use idpsync_core::sync::SyncStatus;
use idpsync_core::testing::TestStore;
use idpsync_driver::fake::{Dataset, DatasetSpec, PageFault};
use idpsync_driver_jumpcloud::fake::FakeJumpCloud;
use idpsync_driver_keycloak::fake::FakeKeycloak;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use std::collections::{BTreeSet, HashMap};

fn registry() -> DriverRegistry {
    let mut registry = DriverRegistry::default();
    registry.register(idpsync_driver_keycloak::KeycloakFactory);
    registry.register(idpsync_driver_jumpcloud::JumpCloudFactory);
    registry
}

fn tenant() -> Dataset {
    Dataset::generate(&DatasetSpec {
        users: 5000,
        groups: 60,
        nested_groups: 20,
        memberships_per_user: 2,
        inactive_every: 50,
        seed: 11,
    })
}

async fn count_users(
    store: &idpsync_core::store::Store,
    connection: &str,
    active: Option<bool>,
) -> u64 {
    let mut query =
        source_user::Entity::find().filter(source_user::Column::ConnectionId.eq(connection));
    if let Some(active) = active {
        query = query.filter(source_user::Column::Active.eq(active));
    }
    query.count(store.db()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_and_jumpcloud_tenants_sync_and_deprovision() {
    let test_store = TestStore::sqlite().await;
    let store = test_store.store.clone();
    let keycloak = FakeKeycloak::new("acme", tenant());
    let keycloak_server = keycloak.start().await.unwrap();
    let jumpcloud = FakeJumpCloud::new(tenant());
    let jumpcloud_server = jumpcloud.start().await.unwrap();
    let kc = keycloak.settings(&keycloak_server.base_url, 500);
    let jc = jumpcloud.settings(&jumpcloud_server.base_url, 100);
    let text = format!(
        r#"
[[connections]]
id = "kc"
kind = "keycloak"
[connections.keycloak]
base_url = "{}"
realm = "acme"
client_id = "{}"
client_secret = "{}"
page_size = 500
[connections.safety]
max_deletions = "5%"
[[connections]]
id = "jc"
kind = "jumpcloud"
[connections.jumpcloud]
api_key = "{}"
base_url = "{}"
"#,
        kc["base_url"].as_str().unwrap(),
        kc["client_id"].as_str().unwrap(),
        kc["client_secret"].as_str().unwrap(),
        jc["api_key"].as_str().unwrap(),
        jc["base_url"].as_str().unwrap(),
    );
    let state = common::engine::start(&store, &text, registry()).await;

    for id in ["kc", "jc"] {
        let report = common::engine::sync(&state, id, Trigger::Manual).await;
        assert_eq!(report.status, SyncStatus::Applied, "{id}: {report:?}");
        assert_eq!(count_users(&store, id, None).await, 5000, "{id}");
        assert_eq!(
            count_users(&store, id, Some(false)).await,
            100,
            "{id}: every 50th user is disabled/suspended"
        );
    }

    // Nested Keycloak groups: a group's effective members are its own and its
    // descendants' direct members.
    let dataset = keycloak.dataset.lock().unwrap().clone();
    let ids: HashMap<String, i64> = source_group::Entity::find()
        .filter(source_group::Column::ConnectionId.eq("kc"))
        .all(store.db())
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.external_id, g.id))
        .collect();
    let user_ids: HashMap<i64, String> = source_user::Entity::find()
        .filter(source_user::Column::ConnectionId.eq("kc"))
        .all(store.db())
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.id, u.external_id))
        .collect();
    let mut checked_nested = 0;
    for (index, group) in dataset.groups.iter().enumerate() {
        let mut expected = BTreeSet::new();
        let mut stack = vec![index];
        while let Some(current) = stack.pop() {
            expected.extend(
                dataset
                    .members_of(current)
                    .into_iter()
                    .map(|u| dataset.users[u].id.clone()),
            );
            stack.extend(dataset.children_of(current));
        }
        let actual: BTreeSet<String> = effective_membership::Entity::find()
            .filter(effective_membership::Column::GroupId.eq(ids[&group.id]))
            .all(store.db())
            .await
            .unwrap()
            .into_iter()
            .map(|m| user_ids[&m.user_id].clone())
            .collect();
        assert_eq!(actual, expected, "effective members of {}", group.name);
        if !dataset.children_of(index).is_empty() {
            checked_nested += 1;
        }
    }
    assert!(checked_nested > 0, "the tenant has nested groups");

    // Devices of one Keycloak and one JumpCloud user, then both are disabled at the source.
    let keycloak_owner = keycloak.dataset.lock().unwrap().users[1].id.clone();
    let jumpcloud_owner = jumpcloud.dataset.lock().unwrap().users[2].id.clone();
    let device_ids = [
        common::engine::approved_device(&state, "kc", &keycloak_owner).await,
        common::engine::approved_device(&state, "jc", &jumpcloud_owner).await,
    ];
    keycloak.dataset.lock().unwrap().users[1].active = false;
    jumpcloud.dataset.lock().unwrap().users[2].active = false;

    // A fault mid-pagination first: nothing is applied.
    keycloak
        .faults
        .update(|f| f.malformed_page = Some(PageFault::new("users", 3, 1)));
    assert_eq!(
        common::engine::sync(&state, "kc", Trigger::Manual)
            .await
            .status,
        SyncStatus::Failed
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
    assert_eq!(
        status(device_ids[0]).await,
        "approved",
        "the failed pull applied nothing"
    );

    for id in ["kc", "jc"] {
        let report = common::engine::sync(&state, id, Trigger::Manual).await;
        assert_eq!(report.status, SyncStatus::Applied, "{id}: {report:?}");
    }
    assert_eq!(status(device_ids[0]).await, "revoked");
    assert_eq!(status(device_ids[1]).await, "revoked");

    // In one sync period, user 3 leaves and a new account (a new id) gets
    // their username and groups; user 4 is renamed and user 5 takes user
    // 4's old name. Both IdPs' next runs apply it, and only the leaver's
    // laptop goes.
    let mut leavers = Vec::new();
    for (id, dataset) in [("kc", &keycloak.dataset), ("jc", &jumpcloud.dataset)] {
        let (leaver, stayer) = {
            let users = &dataset.lock().unwrap().users;
            (users[3].id.clone(), users[4].id.clone())
        };
        leavers.push((
            common::engine::approved_device(&state, id, &leaver).await,
            common::engine::approved_device(&state, id, &stayer).await,
        ));
        let mut dataset = dataset.lock().unwrap();
        dataset.users[3].id = format!("{leaver}-rehired");
        let old_name = dataset.users[4].user_name.clone();
        dataset.users[4].user_name = format!("renamed-{old_name}");
        dataset.users[5].user_name = old_name;
    }
    for (index, id) in ["kc", "jc"].into_iter().enumerate() {
        let report = common::engine::sync(&state, id, Trigger::Manual).await;
        assert_eq!(report.status, SyncStatus::Applied, "{id}: {report:?}");
        let (leaver_laptop, stayer_laptop) = leavers[index];
        assert_eq!(status(leaver_laptop).await, "revoked", "{id}");
        assert_eq!(status(stayer_laptop).await, "approved", "{id}");
    }
    test_store.cleanup().await;
}
