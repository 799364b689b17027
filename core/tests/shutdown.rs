//! Shutdown within its grace: the workers (webhooks here, waiting on
//! receivers that never answer) and the requests in flight share one
//! deadline, and a long poll in flight is answered (an empty page that
//! keeps its cursor), not cut.

use idpsync_core::auth::Scope;
use idpsync_core::store_test;
use idpsync_core::testing::{TestApp, TestStore};
use std::time::{Duration, Instant};

/// A receiver that takes connections and never answers.
fn silent_receiver() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    url
}

store_test!(
    shutdown_ends_within_one_grace_and_answers_long_polls,
    async |test_store: &TestStore| {
        let config = format!(
            r#"
[server]
shutdown_grace_secs = 2
[[connections]]
id = "hr"
kind = "scim"
[[webhooks]]
name = "slow-1"
url = "{}"
secret = "s1"
events = ["*"]
timeout_secs = 60
[[webhooks]]
name = "slow-2"
url = "{}"
secret = "s2"
events = ["*"]
timeout_secs = 60
"#,
            silent_receiver(),
            silent_receiver()
        );
        let app = TestApp::builder(&test_store.store)
            .config(&config)
            .daemon()
            .start()
            .await;
        // Events for the webhooks to (try to) deliver.
        app.person_with_laptop("hr", "ann@example.test").await;
        let cursor = idpsync_core::events::last_id(app.store().db())
            .await
            .unwrap();
        let read = app.token("reader", Scope::Read, None).await;
        let poll = app
            .client
            .get(app.url(&format!("/api/v1/events?after={cursor}&wait=30")))
            .bearer_auth(read)
            .send();
        let poll = tokio::spawn(poll);
        // Let the webhooks' requests and the long poll be under way.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let started = Instant::now();
        app.shut_down().await;
        let took = started.elapsed();
        // Before the fix each worker waited the whole grace in turn, then
        // the server again: three graces here.
        assert!(took < Duration::from_millis(3500), "shutdown took {took:?}");

        let answer = poll.await.unwrap().expect("the long poll is answered");
        assert_eq!(answer.status(), 200);
        let page: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(page["events"], serde_json::json!([]));
        assert_eq!(page["cursor"], serde_json::json!(cursor));
    }
);
