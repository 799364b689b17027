//! Health you can alert on: readiness follows the database (200 while it
//! answers, 503 once it does not), and the connections' health gauges follow
//! the store, across restarts and whoever changed it.

use idpsync_core::store_test;
use idpsync_core::testing::{TestApp, TestStore};

store_test!(
    readyz_turns_503_when_the_database_stops_answering,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let app = TestApp::builder(&store).start().await;
            let client = app.client.clone();
            let url = app.url("/readyz");

            assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
            store.db().clone().close().await.unwrap();
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 503);
            assert_eq!(response.text().await.unwrap(), "database unreachable\n");
        }
    }
);

store_test!(
    health_gauges_come_from_the_store_from_the_first_scrape_whoever_changed_it,
    async |test_store: &TestStore| {
        use idpsync_core::store::entity::connection;
        use idpsync_core::store::entity::status::Health;
        use sea_orm::{ActiveModelTrait, EntityTrait, Set};
        // The recorder is the process's: one connection id per backend.
        let id = format!("flaky-{:?}", test_store.backend).to_lowercase();
        let config = format!("[[connections]]\nid = \"{id}\"\nkind = \"scim\"\n");
        let app = TestApp::builder(&test_store.store)
            .config(&config)
            .start()
            .await;
        let set_health = async |health: Health, failures: i32| {
            let row = connection::Entity::find_by_id(&id)
                .one(test_store.store.db())
                .await
                .unwrap()
                .unwrap();
            let mut row: connection::ActiveModel = row.into();
            row.health = Set(health);
            row.consecutive_failures = Set(failures);
            let write = test_store.store.begin_write().await.unwrap();
            row.update(&write.tx).await.unwrap();
            write.commit().await.unwrap();
        };
        let scrape = async || {
            app.client
                .get(app.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        };
        // Quarantined before this daemon started (by an earlier one): the
        // first scrape says so, though this daemon never ran it.
        set_health(Health::Quarantined, 5).await;
        let text = scrape().await;
        assert!(
            text.contains(&format!(
                "idpsync_connection_quarantined{{connection=\"{id}\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "idpsync_connection_consecutive_failures{{connection=\"{id}\"}} 5"
            )),
            "{text}"
        );
        assert!(
            text.contains("# HELP idpsync_connection_quarantined "),
            "{text}"
        );
        // `idpsync sync` on the command line clears it: the next scrape shows it.
        set_health(Health::Healthy, 0).await;
        let text = scrape().await;
        assert!(
            text.contains(&format!(
                "idpsync_connection_quarantined{{connection=\"{id}\"}} 0"
            )),
            "{text}"
        );
    }
);
