//! Readiness follows the database: 200 while it answers, 503 once it does not.

use idpsync_core::api::{AppState, router};
use idpsync_core::config::Config;
use idpsync_core::store_test;
use idpsync_core::testing::TestStore;

store_test!(
    readyz_turns_503_when_the_database_stops_answering,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let app = router(AppState::new(Config::default(), store.clone()));
            tokio::spawn(async move { axum::serve(listener, app).await });
            let client = reqwest::Client::new();
            let url = format!("http://{address}/readyz");

            assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
            store.db().clone().close().await.unwrap();
            let response = client.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 503);
            assert_eq!(response.text().await.unwrap(), "database unreachable\n");
        }
    }
);
