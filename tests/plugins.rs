//! Driver plugins through the path users take: `kind = "plugin"` in the
//! config, a `.so` built from this workspace, loaded by `idpsync` in its
//! plugin child. A file built for another ABI, a file that is not a plugin or
//! a plugin of another kind is refused with the file, the versions and the
//! config line; a plugin that errors, panics, aborts, writes garbage or hangs
//! fails its run, and the daemon keeps serving.

mod common;

use common::{Api, Daemon, Workdir};
use serde_json::Value;
use std::path::Path;

fn plugin_connection(id: &str, path: &Path, kind: &str, behaviour: &str) -> String {
    // A hanging plugin is stopped after a short timeout; the others have time.
    let timeout = if behaviour == "hang" { 2 } else { 60 };
    format!(
        r#"
[[connections]]
id = "{id}"
kind = "plugin"
[connections.plugin]
path = "{}"
kind = "{kind}"
timeout_secs = {timeout}
[connections.plugin.settings]
behaviour = "{behaviour}"
"#,
        path.display()
    )
}

fn config(connections: &[String]) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{{port}}\"\n[database]\nurl = \"{{db}}\"\n{}",
        connections.concat()
    )
}

#[test]
fn check_config_refuses_a_plugin_built_for_another_abi_naming_the_file_and_both_versions() {
    let chaos = common::plugin_library("idpsync-plugin-chaos");
    let (workdir, _) = Workdir::new(&config(&[plugin_connection("corp", &chaos, "chaos", "ok")]));

    let fine = workdir.run(&["check-config"]);
    assert!(fine.status.success(), "{}", common::stderr(&fine));

    let output = common::idpsync(&workdir.config_path, &["check-config"])
        .env("IDPSYNC_CHAOS_PLUGIN_ABI", "2")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = common::stderr(&output);
    let expected = format!(
        "connections[0].plugin.path: {}: built for idpsync plugin ABI 2; this idpsync speaks plugin ABI 1",
        chaos.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    // The line of `path = ...` in the file (line 10: after the 5-line header).
    assert!(stderr.contains("idpsync.toml:10:"), "{stderr}");
}

#[test]
fn a_file_that_is_not_a_plugin_or_a_plugin_of_another_kind_is_refused_by_name() {
    let chaos = common::plugin_library("idpsync-plugin-chaos");
    let scratch = tempfile::tempdir().unwrap();
    let text = scratch.path().join("libnotes.so");
    std::fs::write(&text, "not a shared library").unwrap();
    let (workdir, _) = Workdir::new(&config(&[
        plugin_connection("text", &text, "ldap", "ok"),
        plugin_connection("swapped", &chaos, "ldap", "ok"),
        plugin_connection("typo", &chaos, "chaos", "dance"),
    ]));
    let output = workdir.run(&["check-config"]);
    assert!(!output.status.success());
    let stderr = common::stderr(&output);
    assert!(
        stderr.contains(&format!(
            "connections[0].plugin.path: {}: not a loadable shared library",
            text.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "connections[1].plugin.kind: {} is a \"chaos\" plugin (version 0.1.0), not \"ldap\"",
            chaos.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("connections[2].plugin.settings.behaviour: unknown variant `dance`"),
        "{stderr}"
    );
}

async fn sync(api: &Api, connection: &str) -> Value {
    let (status, report) = api
        .post(&format!("/connections/{connection}/sync"), Value::Null)
        .await;
    assert_eq!(status, 200, "{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_errors_panics_aborts_writes_garbage_or_hangs_fails_its_run_and_the_daemon_keeps_serving()
 {
    let chaos = common::plugin_library("idpsync-plugin-chaos");
    let behaviours = ["ok", "error", "panic", "abort", "garbage", "hang"];
    let connections: Vec<String> = behaviours
        .iter()
        .map(|b| plugin_connection(b, &chaos, "chaos", b))
        .collect();
    let (workdir, port) = Workdir::new(&config(&connections));
    let token =
        common::stdout(&workdir.run(&["token", "create", "--name", "t", "--scope", "admin"]))
            .trim()
            .to_string();
    let daemon: Daemon = workdir.serve(port);
    let api = Api {
        client: reqwest::Client::new(),
        base: daemon.url("/api/v1"),
        token,
    };

    let ok = sync(&api, "ok").await;
    assert_eq!(ok["status"], "applied", "{ok}");
    assert_eq!(api.get("/connections/ok").await["users"], 3);

    let expectations = [
        (
            "error",
            "authentication failed: the chaos plugin refuses, as asked".to_string(),
        ),
        (
            "panic",
            "unexpected response: the plugin panicked: the chaos plugin panics, as asked".into(),
        ),
        (
            "abort",
            format!(
                "unexpected response: {}: the plugin stopped before answering: killed by signal 6 (SIGABRT)",
                chaos.display()
            ),
        ),
        (
            "garbage",
            format!(
                "unexpected response: {}: the plugin sent a message that is not JSON",
                chaos.display()
            ),
        ),
        (
            "hang",
            format!(
                "transient failure: {}: the plugin did not finish within 2s and was stopped",
                chaos.display()
            ),
        ),
    ];
    for (connection, error) in expectations {
        let report = sync(&api, connection).await;
        assert_eq!(report["status"], "failed", "{connection}: {report}");
        let message = report["error"].as_str().unwrap_or_default();
        assert!(message.starts_with(&error), "{connection}: {message}");
        // Nothing of the failed pull was applied (the panicking plugin had
        // sent a page of users before it panicked).
        assert_eq!(
            api.get(&format!("/connections/{connection}")).await["users"],
            0,
            "{connection}"
        );
        let health = api.client.get(daemon.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200, "the daemon serves after {connection}");
    }

    // And the healthy plugin still works after its neighbours crashed.
    let again = sync(&api, "ok").await;
    assert_eq!(again["status"], "unchanged", "{again}");
}
