//! `idpsync serve`: health, readiness and metrics on the configured port, and
//! a graceful stop on SIGTERM.

mod common;

use common::Workdir;

#[tokio::test]
async fn serve_answers_health_readiness_and_metrics_then_stops_on_sigterm() {
    let (workdir, port) = Workdir::new(
        r#"
[server]
listen = "127.0.0.1:{port}"
[database]
url = "{db}"
"#,
    );
    let daemon = workdir.serve(port);
    let client = reqwest::Client::new();

    let health = client.get(daemon.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    let ready = client.get(daemon.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let metrics = client.get(daemon.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let body = metrics.text().await.unwrap();
    assert!(body.contains("idpsync_build_info"), "{body}");

    assert!(
        workdir.db_path().exists(),
        "the SQLite file is created on first start"
    );
    let status = daemon.terminate();
    assert!(status.success(), "graceful exit, got {status}");
}
