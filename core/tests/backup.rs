//! Backups of a SQLite store: one taken while SCIM writes keep arriving,
//! restored elsewhere, holds every write acknowledged before the backup
//! began, and restoring checks what it is given.

use idpsync_core::auth::Scope;
use idpsync_core::store::Store;
use idpsync_core::store::entity::source_user;
use idpsync_core::testing::{TestApp, TestStore};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_every_acknowledged_write() {
    let test_store = TestStore::sqlite().await;
    let app = TestApp::builder(&test_store.store)
        .config("[[connections]]\nid = \"hr\"\nkind = \"scim\"\n")
        .start()
        .await;
    let token = app.token("hr", Scope::Scim, Some("hr")).await;
    let acknowledged: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/scim/v2/hr/Users"),
            token.clone(),
        );
        let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let user_name = format!("w{writer}-{n}@example.test");
                n += 1;
                let answer = client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/scim+json")
                    .body(serde_json::json!({"userName": user_name, "active": true}).to_string())
                    .send()
                    .await
                    .unwrap();
                if answer.status() == 201 {
                    acknowledged
                        .lock()
                        .unwrap()
                        .push((user_name, Instant::now()));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.db");
    let began = Instant::now();
    test_store.store.backup_to(&backup).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let before: Vec<String> = acknowledged
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < began)
        .map(|(name, _)| name.clone())
        .collect();
    assert!(before.len() > 10, "writes were under way: {}", before.len());
    assert!(
        acknowledged.lock().unwrap().len() > before.len(),
        "writes went on during the backup"
    );

    // A backup is never overwritten.
    assert!(test_store.store.backup_to(&backup).await.is_err());

    let restored_url = format!("sqlite://{}", dir.path().join("restored.db").display());
    let pending = idpsync_core::store::backup::restore(&backup, &restored_url)
        .await
        .unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    let restored = Store::open(&restored_url, 1).await.unwrap();
    for name in &before {
        let found = source_user::Entity::find()
            .filter(source_user::Column::UserName.eq(name.as_str()))
            .count(restored.db())
            .await
            .unwrap();
        assert_eq!(
            found, 1,
            "{name}, acknowledged before the backup began, is restored"
        );
    }
    test_store.cleanup().await;
}

#[tokio::test]
async fn restoring_refuses_what_is_not_a_backup_and_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all, just text").unwrap();
    let target = format!("sqlite://{}", dir.path().join("idpsync.db").display());
    let error = idpsync_core::store::backup::restore(&junk, &target)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("junk.db"), "{error}");
    assert!(
        !dir.path().join("idpsync.db").exists(),
        "nothing was replaced"
    );
    let error = idpsync_core::store::backup::restore(&junk, "postgres://u@127.0.0.1/db")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("pg_dump"), "{error}");
}
