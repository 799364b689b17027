//! A 5,000-person Entra tenant with 300 groups (some nested) synced from the
//! fake Graph: the first run is full; the next runs transfer only changes by
//! delta; a user disabled in Entra is deactivated and loses their devices; an
//! expired delta token falls back to a full pull; throttling is survived.

mod common;

use idpsync_core::reconcile::{Outcome, Trigger};
use idpsync_core::store::entity::source_user;
use idpsync_core::sync::DriverRegistry;
use idpsync_core::sync::SyncStatus;
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
        (SyncStatus::Applied, "full", 5000),
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
        (SyncStatus::Unchanged, "delta", 0),
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
        f.retry_after = Some(1);
    });
    let delta = common::engine::sync(&state, "entra", Trigger::Schedule).await;
    assert_eq!(
        (delta.status, delta.mode, delta.received.users),
        (SyncStatus::Applied, "delta", 1),
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
        idpsync_core::testing::device_status(&store, laptop).await,
        "revoked"
    );

    // The delta token expires: the next run pulls everything and converges.
    fake.delete_user(9);
    fake.expire_delta_tokens();
    let resync = common::engine::sync(&state, "entra", Trigger::Schedule).await;
    assert_eq!(
        (resync.status, resync.received.users),
        (SyncStatus::Applied, 4999),
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
        SyncStatus::Unchanged,
        "and deltas work again after the resync"
    );
    test_store.cleanup().await;
}

/// The engine wired to `fake` for connection "entra", on `store`.
async fn entra_engine(
    store: &idpsync_core::store::Store,
    fake: &FakeGraph,
    base_url: &str,
) -> idpsync_core::api::AppState {
    let settings = fake.settings(base_url, 5);
    let text = format!(
        r#"
[[connections]]
id = "entra"
kind = "entra"
[connections.entra]
tenant_id = "{}"
client_id = "{}"
client_secret = "{}"
authority_url = "{base_url}"
graph_url = "{base_url}"
page_size = 5
[connections.safety]
max_deletions = "50%"
"#,
        settings["tenant_id"].as_str().unwrap(),
        settings["client_id"].as_str().unwrap(),
        settings["client_secret"].as_str().unwrap(),
    );
    let mut registry = DriverRegistry::default();
    registry.register(idpsync_driver_entra::EntraFactory);
    common::engine::start(store, &text, registry).await
}

/// The stored user with this external id.
async fn stored_user(store: &idpsync_core::store::Store, id: &str) -> source_user::Model {
    source_user::Entity::find()
        .filter(source_user::Column::ExternalId.eq(id))
        .one(store.db())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("user {id} is not stored"))
}

idpsync_core::store_test!(
    graphs_documented_shapes_big_groups_repeats_partial_records_and_reused_names_apply,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let mut dataset = Dataset::generate(&DatasetSpec {
                users: 60,
                groups: 4,
                nested_groups: 1,
                memberships_per_user: 1,
                inactive_every: 0,
                seed: 5,
            });
            // Group 0 is "All Staff": everyone, over many objects and pages.
            dataset.members.retain(|(g, _)| *g != 0);
            dataset.members.extend((0..60).map(|u| (0, u)));
            dataset.members.sort();
            let n_edges = dataset.members.len() + 1;
            let fake = FakeGraph::new(dataset);
            {
                let mut tenant = fake.tenant.lock().unwrap();
                tenant.members_per_object = 7;
                tenant.repeat_objects = true;
            }
            let server = fake.start().await.unwrap();
            let state = entra_engine(&store, &fake, &server.base_url).await;

            let first = common::engine::sync(&state, "entra", Trigger::Schedule).await;
            assert_eq!(
                (first.status, first.received.users),
                (SyncStatus::Applied, 60),
                "{first:?}"
            );
            let Some(Outcome::Applied(report)) = &first.outcome else {
                panic!("{first:?}")
            };
            assert_eq!(report.changes.groups_created, 4);
            assert_eq!(report.changes.memberships_added, n_edges);

            // User 3 is disabled: Graph sends only its id and accountEnabled.
            let (user3, user4, user5) = {
                let tenant = fake.tenant.lock().unwrap();
                let users = &tenant.dataset.users;
                (users[3].clone(), users[4].clone(), users[5].clone())
            };
            let before = stored_user(&store, &user3.id).await;
            let laptop = common::engine::approved_device(&state, "entra", &user3.id).await;
            fake.disable_user(3);
            // User 4 leaves and a new hire gets their name; user 5 is
            // renamed and another new hire gets their old name.
            fake.delete_user(4);
            let mut hire = user4.clone();
            hire.id = "new-hire-1".into();
            fake.create_user(hire);
            fake.rename_user(5, "renamed@example.test");
            let mut second_hire = user5.clone();
            second_hire.id = "new-hire-2".into();
            fake.create_user(second_hire);

            let delta = common::engine::sync(&state, "entra", Trigger::Schedule).await;
            assert_eq!(
                (delta.status, delta.mode),
                (SyncStatus::Applied, "delta"),
                "{delta:?}"
            );
            let after = stored_user(&store, &user3.id).await;
            assert!(!after.active);
            assert_eq!(
                (&after.display_name, &after.given_name, &after.primary_email),
                (
                    &before.display_name,
                    &before.given_name,
                    &before.primary_email
                ),
                "what the partial record left out is unchanged"
            );
            assert_eq!(
                idpsync_core::testing::device_status(&store, laptop).await,
                "revoked"
            );
            assert_eq!(
                stored_user(&store, "new-hire-1").await.user_name,
                user4.user_name
            );
            assert_eq!(
                stored_user(&store, "new-hire-2").await.user_name,
                user5.user_name
            );
            let renamed = stored_user(&store, &user5.id).await;
            assert_eq!(renamed.user_name, "renamed@example.test");
            assert_eq!(renamed.display_name, before_display(&user5));

            // A partial record of a user the store lacks cannot be applied
            // as it is: the run reads everything instead, and converges.
            let write = store.begin_write().await.unwrap();
            source_user::Entity::delete_many()
                .filter(source_user::Column::ExternalId.eq(user5.id.clone()))
                .exec(&write.tx)
                .await
                .unwrap();
            write.commit().await.unwrap();
            fake.rename_user(5, "renamed.again@example.test");
            let fallback = common::engine::sync(&state, "entra", Trigger::Schedule).await;
            assert_eq!(
                (fallback.status, fallback.mode),
                (SyncStatus::Applied, "full"),
                "{fallback:?}"
            );
            assert_eq!(
                stored_user(&store, &user5.id).await.user_name,
                "renamed.again@example.test"
            );
            assert_eq!(
                common::engine::sync(&state, "entra", Trigger::Schedule)
                    .await
                    .status,
                SyncStatus::Unchanged
            );
        }
    }
);

/// The display name the fake gives a user.
fn before_display(user: &idpsync_driver::fake::FakeUser) -> Option<String> {
    Some(format!("{} {}", user.given_name, user.family_name))
}
