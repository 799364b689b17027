//! `idpsync demo` as a new admin meets it: the console URL and token it
//! prints sign a real headless Chromium in, and the console lists the
//! demo's connections, each pulled from its fake IdP.

mod common;

use idpsync_core::testing::browser::Driver;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_console_signs_in_with_the_printed_token_and_lists_its_connections() {
    let dir = tempfile::tempdir().unwrap();
    // Port 0: the demo binds a port the kernel picks and prints it, so no
    // other process can take it between a probe and the bind.
    let log_path = dir.path().join("demo.log");
    let mut demo = common::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_idpsync"))
            .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .env("IDPSYNC_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let stdout = demo.0.stdout.take().unwrap();
    // The walkthrough prints the console line, then keeps serving and
    // printing: the pipe is read to its end, or the demo would die of a
    // broken pipe at its next line.
    let (found, console_line) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("Console: ") {
                let _ = found.send(line);
            }
        }
    });
    let line = tokio::task::spawn_blocking(move || {
        console_line.recv_timeout(std::time::Duration::from_secs(120))
    })
    .await
    .unwrap()
    .unwrap_or_else(|_| {
        let status = demo.0.try_wait().ok().flatten();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("the demo printed no console line (exit: {status:?}); its log:\n{log}")
    });
    let base = line
        .strip_prefix("Console: ")
        .and_then(|rest| rest.split("/console").next())
        .expect("the console's address")
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{line}");
    let token = line
        .split("sign in with the token ")
        .nth(1)
        .and_then(|rest| rest.strip_suffix(')'))
        .expect("a token in the console line")
        .to_string();

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    let driver = Driver::start().await;
    let browser = driver.browser(shots).await;
    browser.sign_in(&base, &token).await;
    for connection in common::DEMO_PULLED.into_iter().chain(["hr-scim"]) {
        browser
            .wait_for(&format!("<th scope=\"row\">{connection}</th>"))
            .await;
    }
    browser.screenshot("demo-connections").await;
}
