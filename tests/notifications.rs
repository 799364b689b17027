//! IdP change notifications end to end, on loopback: each fake IdP speaks
//! its notification protocol as its vendor documents it (handshakes,
//! deliveries after the change, expiry and renewal, lifecycle events,
//! redeliveries), and the daemon answers it. The promise under test: a
//! person offboarded at the IdP loses their devices within seconds, with no
//! scheduled run (none of these connections has a schedule), and nobody
//! else is touched; a notice delivered twice, to one daemon or to two, is
//! one run; what cannot be trusted is refused.

mod common;

use idpsync_core::reconcile::Trigger;
use idpsync_core::store::entity::sync_run;
use idpsync_core::sync::{DriverRegistry, SyncStatus};
use idpsync_core::testing::{TestApp, TestStore, device_status};
use idpsync_driver::DriverKind;
use idpsync_driver::compliance::{CompliantFake, Running, tenant};
use idpsync_driver_entra::fake::FakeGraph;
use idpsync_driver_google::fake::FakeGoogle;
use idpsync_driver_okta::fake::FakeOkta;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use std::time::Duration;

const SECRET: &str = "hook-secret-4f1c";

/// The config of one connection `idp` of `F`'s fake, with `notifications`
/// added to its settings, and `public_url` the app's own address.
fn config<F: CompliantFake>(running: &Running<F>, notifications: Value) -> String {
    let kind = <F::Kind as DriverKind>::KIND;
    let notifications = toml::to_string(&notifications).expect("a TOML table");
    format!(
        "{}[connections.{kind}.notifications]\n{notifications}\n",
        config_without_notifications(running)
    )
}

/// The same connection with no `notifications` table.
fn config_without_notifications<F: CompliantFake>(running: &Running<F>) -> String {
    let kind = <F::Kind as DriverKind>::KIND;
    let settings = running.fake.settings(&running.server.base_url, 50);
    let table = toml::to_string(&settings).expect("settings are a TOML table");
    format!(
        "[server]\npublic_url = \"${{APP_URL}}\"\n[[connections]]\nid = \"idp\"\nkind = \"{kind}\"\n[connections.{kind}]\n{table}\n"
    )
}

async fn daemon<F: CompliantFake>(test_store: &TestStore, config: &str) -> TestApp
where
    F::Kind: 'static,
{
    let mut registry = DriverRegistry::default();
    registry.register(F::kind());
    TestApp::builder(&test_store.store)
        .config(config)
        .drivers(registry)
        .daemon()
        .start()
        .await
}

async fn notification_runs(app: &TestApp) -> u64 {
    sync_run::Entity::find()
        .filter(sync_run::Column::ConnectionId.eq("idp"))
        .filter(sync_run::Column::Trigger.eq(Trigger::Notification.as_str()))
        .count(app.store().db())
        .await
        .unwrap()
}

/// The tenant synced once by hand, and two approved laptops: a leaver's
/// (user 3) and a colleague's (user 0).
async fn synced_with_laptops(app: &TestApp) -> (i64, i64) {
    let report = common::engine::sync(&app.state, "idp", Trigger::Manual).await;
    assert_eq!(report.status, SyncStatus::Applied, "{report:?}");
    let users = tenant().users;
    let leaver = common::engine::approved_device(&app.state, "idp", &users[3].id).await;
    let stayer = common::engine::approved_device(&app.state, "idp", &users[0].id).await;
    (leaver, stayer)
}

async fn revoked(app: &TestApp, device: i64) {
    common::eventually("the leaver's laptop is revoked", || async {
        device_status(app.store(), device).await == "revoked"
    })
    .await;
}

idpsync_core::store_test!(
    an_okta_event_hook_registered_by_idpsync_revokes_a_suspended_user,
    async |test_store: &TestStore| {
        let okta = Running::<FakeOkta>::start(tenant()).await;
        let app = daemon::<FakeOkta>(
            test_store,
            &config(&okta, json!({"secret": SECRET, "register": true})),
        )
        .await;
        // The keeper creates the hook and Okta verifies it against the daemon.
        common::eventually("the event hook is verified", || async {
            okta.fake
                .event_hooks()
                .iter()
                .any(|(_, uri, active, verified)| {
                    uri.ends_with("/hooks/okta/idp") && *active && *verified
                })
        })
        .await;
        let (leaver, stayer) = synced_with_laptops(&app).await;

        okta.fake.set_status(3, "SUSPENDED");
        revoked(&app, leaver).await;
        assert_eq!(device_status(app.store(), stayer).await, "approved");
        assert_eq!(notification_runs(&app).await, 1);
        common::eventually("Okta got its 200", || async {
            okta.fake.hook_deliveries.answers().contains(&Some(200))
        })
        .await;
        app.shut_down().await;
        // An event hook does not end with the daemon.
        assert_eq!(okta.fake.event_hooks().len(), 1);
    }
);

idpsync_core::store_test!(
    an_okta_event_delivered_twice_to_two_daemons_is_one_run,
    async |test_store: &TestStore| {
        let okta = Running::<FakeOkta>::start(tenant()).await;
        let config = config(&okta, json!({"secret": SECRET}));
        let first = daemon::<FakeOkta>(test_store, &config).await;
        let second = daemon::<FakeOkta>(test_store, &config).await;
        // Registered by hand in the Admin Console, at the first daemon.
        okta.fake
            .register_hook_by_hand(&first.url("/hooks/okta/idp"), SECRET);
        let (leaver, _) = synced_with_laptops(&first).await;

        // Okta delivers at least once: the same events twice.
        okta.fake
            .duplicate_deliveries
            .store(true, std::sync::atomic::Ordering::Relaxed);
        okta.fake.set_status(3, "DEPROVISIONED");
        revoked(&first, leaver).await;
        common::eventually("both deliveries were answered", || async {
            okta.fake.hook_deliveries.answers().len() == 2
        })
        .await;
        // And a load balancer sends a redelivery of an event already acted
        // on to the other daemon.
        let event = json!({"eventType": "com.okta.event_hook", "data": {"events": [
            {"uuid": "same-uuid", "eventType": "user.lifecycle.suspend", "target": [{"id": "x", "type": "User"}]}
        ]}});
        for app in [&first, &second, &first] {
            let answer = app
                .client
                .post(app.url("/hooks/okta/idp"))
                .header("authorization", SECRET)
                .json(&event)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        // Let any second run start, if one were coming.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let runs = notification_runs(&first).await;
        assert_eq!(runs, 2, "one run for the status change, one for same-uuid");
        first.shut_down().await;
        second.shut_down().await;
    }
);

idpsync_core::store_test!(
    an_okta_delivery_of_several_events_revokes_each_leaver_in_one_run,
    async |test_store: &TestStore| {
        let okta = Running::<FakeOkta>::start(tenant()).await;
        let app = daemon::<FakeOkta>(test_store, &config(&okta, json!({"secret": SECRET}))).await;
        okta.fake
            .register_hook_by_hand(&app.url("/hooks/okta/idp"), SECRET);
        let (leaver, stayer) = synced_with_laptops(&app).await;
        let users = tenant().users;
        let second_leaver = common::engine::approved_device(&app.state, "idp", &users[1].id).await;

        // Okta batches events that happen close together: both
        // suspensions, and a group change, reach the daemon in one POST.
        okta.fake.batch();
        okta.fake.set_status(3, "SUSPENDED");
        okta.fake.set_status(1, "DEPROVISIONED");
        okta.fake.set_status(2, "ACTIVE");
        okta.fake.send_batch();
        revoked(&app, leaver).await;
        revoked(&app, second_leaver).await;
        assert_eq!(device_status(app.store(), stayer).await, "approved");
        assert_eq!(okta.fake.hook_deliveries.answers(), vec![Some(200)]);
        assert_eq!(notification_runs(&app).await, 1);
        app.shut_down().await;
    }
);

idpsync_core::store_test!(
    deliveries_that_cannot_be_trusted_are_refused_and_run_nothing,
    async |test_store: &TestStore| {
        let okta = Running::<FakeOkta>::start(tenant()).await;
        let app = daemon::<FakeOkta>(test_store, &config(&okta, json!({"secret": SECRET}))).await;
        let post = |path: &str, secret: &str| {
            app.client
                .post(app.url(path))
                .header("authorization", secret.to_string())
                .json(&json!({"data": {"events": [{"uuid": "u1", "eventType": "user.lifecycle.suspend", "target": []}]}}))
                .send()
        };
        assert_eq!(
            post("/hooks/okta/idp", "wrong").await.unwrap().status(),
            401
        );
        assert_eq!(
            post("/hooks/okta/nope", SECRET).await.unwrap().status(),
            404
        );
        assert_eq!(
            post("/hooks/entra/idp", SECRET).await.unwrap().status(),
            404,
            "the kind must match"
        );
        let malformed = app
            .client
            .post(app.url("/hooks/okta/idp"))
            .header("authorization", SECRET)
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(malformed.status(), 400);
        // Okta's one-time verification is answered.
        let verification: Value = app
            .client
            .get(app.url("/hooks/okta/idp"))
            .header("x-okta-verification-challenge", "abc")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(verification, json!({"verification": "abc"}));
        // A flood is cut off with 429 before anything is read.
        let mut refused = 0;
        for _ in 0..300 {
            if post("/hooks/okta/idp", "wrong").await.unwrap().status() == 429 {
                refused += 1;
            }
        }
        assert!(
            refused > 0,
            "300 deliveries at once are more than the burst"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(notification_runs(&app).await, 0);
        app.shut_down().await;
    }
);

idpsync_core::store_test!(
    graph_subscriptions_are_validated_renewed_remade_and_stopped_when_turned_off,
    async |test_store: &TestStore| {
        let graph = Running::<FakeGraph>::start(tenant()).await;
        let app = daemon::<FakeGraph>(
            test_store,
            &config(&graph, json!({"secret": SECRET, "lifetime_secs": 6})),
        )
        .await;
        // Both subscriptions made: Graph validated the endpoint first.
        common::eventually("users and groups are subscribed", || async {
            graph.fake.subscriptions().len() == 2
        })
        .await;
        let (leaver, stayer) = synced_with_laptops(&app).await;
        let first_expiry = graph.fake.subscriptions()[0].2;

        graph.fake.disable_user(3);
        revoked(&app, leaver).await;
        assert_eq!(device_status(app.store(), stayer).await, "approved");

        // Renewed before they lapse: still live past the first expiry.
        common::eventually("the subscriptions outlive their first expiry", || async {
            chrono::Utc::now() > first_expiry + chrono::Duration::seconds(1)
                && graph.fake.subscriptions().len() == 2
        })
        .await;

        // Graph removes them: lifecycle notifications make new ones.
        graph.fake.send_lifecycle("subscriptionRemoved");
        common::eventually("removed subscriptions are made again", || async {
            graph.fake.subscriptions().len() == 2
        })
        .await;
        // Graph missed notifications: a run reads what they would have said.
        let before = notification_runs(&app).await;
        graph.fake.send_lifecycle("missed");
        common::eventually("a missed notification runs a delta", || async {
            notification_runs(&app).await > before
        })
        .await;
        app.shut_down().await;
        // Subscriptions outlive the daemon, for the next one to renew.
        assert_eq!(graph.fake.subscriptions().len(), 2);

        // The admin turns notifications off: the next daemon stops them.
        let app = daemon::<FakeGraph>(test_store, &config_without_notifications(&graph)).await;
        common::eventually("the subscriptions are deleted at Graph", || async {
            graph.fake.subscriptions().is_empty()
        })
        .await;
        app.shut_down().await;
        assert!(
            idpsync_core::hooks::subscriptions(&test_store.store)
                .await
                .unwrap()
                .is_empty()
        );
    }
);

idpsync_core::store_test!(
    google_channels_watch_users_and_are_stopped_at_shutdown,
    async |test_store: &TestStore| {
        let google = Running::<FakeGoogle>::start(tenant()).await;
        let app =
            daemon::<FakeGoogle>(test_store, &config(&google, json!({"secret": SECRET}))).await;
        common::eventually("a channel per event, each synced", || async {
            google.fake.channels().len() == 4
                && google
                    .fake
                    .push_deliveries
                    .answers()
                    .iter()
                    .filter(|a| **a == Some(200))
                    .count()
                    >= 4
        })
        .await;
        let (leaver, stayer) = synced_with_laptops(&app).await;

        google.fake.suspend_user(3);
        revoked(&app, leaver).await;
        assert_eq!(device_status(app.store(), stayer).await, "approved");
        let runs = notification_runs(&app).await;
        assert!(runs >= 1);

        // A message with another token is refused.
        let forged = app
            .client
            .post(app.url("/hooks/google_workspace/idp"))
            .header("x-goog-channel-token", "guess")
            .header("x-goog-resource-state", "delete")
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 401);

        app.shut_down().await;
        assert!(
            google.fake.channels().is_empty(),
            "channels end with the daemon"
        );
    }
);
