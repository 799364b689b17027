//! `idpsync serve`: health, readiness and metrics (the process's own memory
//! and files among them) on the configured port, and a graceful stop on
//! SIGTERM.

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
    assert!(body.contains("# HELP idpsync_build_info "), "{body}");
    // The daemon's own memory and files, read from its /proc/self.
    let resident = gauge(&body, "process_resident_memory_bytes");
    let peak = gauge(&body, "idpsync_resident_memory_peak_bytes");
    assert!(resident > f64::from(1 << 20), "{body}");
    assert!(peak >= resident, "{body}");
    assert!(
        gauge(&body, "process_virtual_memory_bytes") >= resident,
        "{body}"
    );
    let open = gauge(&body, "process_open_fds");
    assert!(open >= 3.0, "stdin, stdout, stderr at least: {body}");
    assert!(open <= gauge(&body, "process_max_fds"), "{body}");

    // The container's healthcheck.
    let probe = workdir.run(&["readyz"]);
    assert!(probe.status.success(), "{}", common::stderr(&probe));

    assert!(
        workdir.db_path().exists(),
        "the SQLite file is created on first start"
    );
    let status = daemon.terminate();
    assert!(status.success(), "graceful exit, got {status}");
    let probe = workdir.run(&["readyz"]);
    assert!(!probe.status.success(), "nothing serves any more");
}

/// The value of the unlabelled gauge `name` in a Prometheus exposition.
fn gauge(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {exposition}"))
        .trim()
        .parse()
        .unwrap()
}

/// A daemon started as systemd (`Type=notify`) would start it, with the
/// socket its notifications arrive on; `env` adds variables (the watchdog).
struct Notifying {
    daemon: common::Daemon,
    socket: std::os::unix::net::UnixDatagram,
    _workdir: Workdir,
}

impl Notifying {
    fn start(env: &[(&str, &str)]) -> Notifying {
        let (workdir, port) = Workdir::new(
            r#"
[server]
listen = "127.0.0.1:{port}"
[database]
url = "{db}"
"#,
        );
        let socket_path = workdir.dir.path().join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let child = common::idpsync(&workdir.config_path, &["serve"])
            .env("NOTIFY_SOCKET", &socket_path)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Notifying {
            daemon: common::Daemon { child, port },
            socket,
            _workdir: workdir,
        }
    }

    /// The next notification, within 20 s.
    fn next(&self) -> String {
        let mut buffer = [0u8; 256];
        let n = self
            .socket
            .recv(&mut buffer)
            .expect("a notification within 20 s");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }

    fn signal(&self, name: &str) {
        std::process::Command::new("kill")
            .args([name, &self.daemon.child.id().to_string()])
            .status()
            .unwrap();
    }
}

/// Under systemd (`Type=notify`): READY=1 once it serves, WATCHDOG=1 at half
/// the watchdog interval, STOPPING=1 on SIGTERM.
#[test]
fn serve_tells_systemd_it_is_ready_pets_the_watchdog_and_says_it_stops() {
    let started = Notifying::start(&[("WATCHDOG_USEC", "200000")]);
    assert_eq!(started.next(), "READY=1");
    // Ready means serving.
    started.daemon.wait_healthy();
    assert_eq!(started.next(), "WATCHDOG=1");
    assert_eq!(started.next(), "WATCHDOG=1");
    started.signal("-TERM");
    let mut said = started.next();
    while said == "WATCHDOG=1" {
        said = started.next();
    }
    assert_eq!(said, "STOPPING=1");
    assert!(started.daemon.terminate().success());
}

/// `systemctl reload` may come the moment the daemon says READY=1, and a
/// stop right after it; the default actions of SIGHUP and SIGTERM would
/// end the daemon, so their handlers are in place before then.
#[test]
fn a_sighup_right_after_ready_reloads_instead_of_ending_the_daemon() {
    let mut started = Notifying::start(&[]);
    assert_eq!(started.next(), "READY=1");
    started.signal("-HUP");
    assert_eq!(started.next(), "RELOADING=1");
    assert_eq!(started.next(), "READY=1");
    assert!(
        started.daemon.child.try_wait().unwrap().is_none(),
        "the daemon survives the SIGHUP"
    );
    started.daemon.wait_healthy();
    assert!(started.daemon.terminate().success());
}

/// `systemctl reload` sends SIGHUP: the daemon re-reads its file and keeps
/// serving (SIGHUP's default would end it); a file that does not validate
/// is refused and the running configuration kept. Both are counted.
#[tokio::test]
async fn sighup_reloads_the_config_file_and_refuses_an_invalid_one() {
    let template = r#"
[server]
listen = "127.0.0.1:{port}"
[database]
url = "{db}"
"#;
    let (workdir, port) = Workdir::new(template);
    let daemon = workdir.serve(port);
    let client = reqwest::Client::new();
    let reloads = |body: &str, result: &str| {
        body.lines()
            .find(|line| {
                line.starts_with("idpsync_config_reloads_total")
                    && line.contains(&format!("result=\"{result}\""))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|count| count.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let hangup_and_wait = |result: &'static str, before: u64| {
        let client = client.clone();
        let url = daemon.url("/metrics");
        let pid = daemon.child.id().to_string();
        async move {
            std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let body = client.get(&url).send().await.unwrap().text().await.unwrap();
                if reloads(&body, result) > before {
                    return body;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no {result} reload counted after SIGHUP:\n{body}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };

    let text = std::fs::read_to_string(&workdir.config_path).unwrap();
    std::fs::write(
        &workdir.config_path,
        format!("{text}\n[[connections]]\nid = \"hr\"\nkind = \"scim\"\n"),
    )
    .unwrap();
    hangup_and_wait("applied", 0).await;
    assert_eq!(
        client
            .get(daemon.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "still serving after SIGHUP"
    );

    std::fs::write(
        &workdir.config_path,
        format!("{text}\n[[connections]]\nid = \"hr\"\nkind = \"no-such-kind\"\n"),
    )
    .unwrap();
    let body = hangup_and_wait("invalid", 0).await;
    assert_eq!(reloads(&body, "applied"), 1);
    assert_eq!(
        client
            .get(daemon.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(daemon.terminate().success());
}
