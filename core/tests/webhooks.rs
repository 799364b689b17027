//! Webhooks against a real receiver on loopback: signed, in order, retried
//! with backoff after failures, and resumed after a restart.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use idpsync_core::config::{Secret, WebhookConfig};
use idpsync_core::daemon::WorkerLife;
use idpsync_core::events::{self, EventBus, NewEvent};
use idpsync_core::store::entity::webhook_delivery;
use idpsync_core::store_test;
use idpsync_core::testing::TestStore;
use idpsync_core::webhooks::{Backoff, Dispatcher, SIGNATURE_HEADER, signature};
use sea_orm::EntityTrait;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

const SECRET: &str = "webhook-test-secret";

/// What the receiver reports per accepted delivery: event id, kind, signature valid.
type Accepted = (i64, String, bool);

/// The receiver's state: where to report, how many calls so far, how many to fail.
type ReceiverState = (mpsc::UnboundedSender<Accepted>, Arc<AtomicUsize>, usize);

/// A receiver that fails the first `failures` requests with 500 and reports
/// every accepted event (kind, signature valid) on a channel.
async fn receiver(
    failures: usize,
) -> (String, mpsc::UnboundedReceiver<Accepted>, Arc<AtomicUsize>) {
    let (sender, accepted) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    let state = (sender, calls.clone(), failures);
    async fn handle(
        State((sender, calls, failures)): State<ReceiverState>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        if calls.fetch_add(1, Ordering::SeqCst) < failures {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let valid = headers[SIGNATURE_HEADER].to_str().unwrap() == signature(SECRET, &body);
        let _ = sender.send((
            event["id"].as_i64().unwrap(),
            event["kind"].as_str().unwrap().to_string(),
            valid,
        ));
        StatusCode::NO_CONTENT
    }
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(handle))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, accepted, calls)
}

fn webhook(url: &str, events: &[&str]) -> WebhookConfig {
    WebhookConfig {
        name: "control-plane".into(),
        url: url.into(),
        secret: Secret::new(SECRET),
        events: events.iter().map(|e| e.to_string()).collect(),
        timeout_secs: 5,
    }
}

async fn emit(test_store: &TestStore, bus: &EventBus, kinds: &[&'static str]) {
    let write = test_store.store.begin_write().await.unwrap();
    let new: Vec<NewEvent> = kinds
        .iter()
        .map(|kind| {
            let kind = kind.parse().expect("a known event kind");
            NewEvent::new(kind, Some("okta"), "test", "x", serde_json::json!({}))
        })
        .collect();
    events::append(&write.tx, &new, chrono::Utc::now())
        .await
        .unwrap();
    write.commit().await.unwrap();
    bus.notify();
}

async fn next(accepted: &mut mpsc::UnboundedReceiver<Accepted>) -> (i64, String, bool) {
    tokio::time::timeout(Duration::from_secs(20), accepted.recv())
        .await
        .expect("a delivery")
        .expect("receiver alive")
}

/// Waits until the webhook's worker has recorded where it starts.
async fn started(test_store: &TestStore) {
    for _ in 0..400 {
        if webhook_delivery::Entity::find_by_id("control-plane")
            .one(test_store.store.db())
            .await
            .unwrap()
            .is_some()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the webhook worker never started");
}

const FAST: Backoff = Backoff {
    first: Duration::from_millis(20),
    max: Duration::from_millis(100),
};

store_test!(
    matching_events_are_delivered_signed_in_order_after_retries,
    async |test_store: &TestStore| {
        let (url, mut accepted, calls) = receiver(2).await;
        let bus = EventBus::default();
        let (stop, stopped) = watch::channel(false);
        Dispatcher::new(test_store.store.clone(), bus.clone())
            .with_backoff(FAST)
            .spawn(
                vec![webhook(&url, &["device.*", "user.deleted"])],
                WorkerLife::until(stopped),
            );
        started(test_store).await;
        emit(
            test_store,
            &bus,
            &[
                "user.created",
                "device.revoked",
                "user.deleted",
                "acl_group.member_removed",
                "device.locked",
            ],
        )
        .await;

        let mut got = Vec::new();
        for _ in 0..3 {
            let (_, kind, valid) = next(&mut accepted).await;
            assert!(valid, "signature verifies");
            got.push(kind);
        }
        assert_eq!(got, ["device.revoked", "user.deleted", "device.locked"]);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            5,
            "two failed attempts, then three deliveries"
        );
        let _ = stop.send(true);
    }
);

store_test!(
    delivery_resumes_after_a_restart_without_repeating_delivered_events,
    async |test_store: &TestStore| {
        let (url, mut accepted, _) = receiver(0).await;
        let bus = EventBus::default();
        let (stop, stopped) = watch::channel(false);
        let workers = Dispatcher::new(test_store.store.clone(), bus.clone())
            .with_backoff(FAST)
            .spawn(vec![webhook(&url, &["*"])], WorkerLife::until(stopped));
        started(test_store).await;
        emit(test_store, &bus, &["device.revoked"]).await;
        let (first_id, _, _) = next(&mut accepted).await;
        let _ = stop.send(true);
        for worker in workers {
            worker.await.unwrap();
        }

        // While the daemon is down, more events are committed.
        emit(test_store, &bus, &["device.locked", "user.deleted"]).await;
        let state = webhook_delivery::Entity::find_by_id("control-plane")
            .one(test_store.store.db())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state.last_event_id, first_id);

        let (_stop, stopped) = watch::channel(false);
        Dispatcher::new(test_store.store.clone(), bus.clone())
            .with_backoff(FAST)
            .spawn(vec![webhook(&url, &["*"])], WorkerLife::until(stopped));
        let (second_id, second_kind, _) = next(&mut accepted).await;
        let (third_id, third_kind, _) = next(&mut accepted).await;
        assert_eq!(
            (second_kind.as_str(), third_kind.as_str()),
            ("device.locked", "user.deleted")
        );
        assert!(first_id < second_id && second_id < third_id);
    }
);
