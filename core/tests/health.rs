//! Readiness follows the database: 200 while it answers, 503 once it does not.

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
