//! `idpsync demo --exit` runs its whole walkthrough: eight pulled IdPs and a
//! SCIM connection, then an Okta suspension, an Entra disabling and a Google
//! suspension that each revoke a device through the IdP's change
//! notification, and a SCIM deactivation, shown as events.

mod common;

#[test]
fn the_demo_walks_through_offboarding_and_shows_the_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_idpsync"))
        .args(["demo", "--exit", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .env("IDPSYNC_LOG", "warn")
        .output()
        .unwrap();
    let stdout = common::stdout(&output);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        common::stderr(&output)
    );
    for connection in common::DEMO_PULLED {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(connection) && l.contains("300") && l.ends_with("applied")),
            "{connection}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("/console  (sign in with the token idps_"),
        "the demo prints the console and a sign-in token:\n{stdout}"
    );
    let revoked: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("device.revoked"))
        .collect();
    assert_eq!(revoked.len(), 4, "{stdout}");
    for (line, connection) in revoked.iter().zip(["okta", "entra", "google", "hr-scim"]) {
        assert!(line.contains(connection), "{stdout}");
    }
    // The three pulled IdPs' leavers were revoked by their notifications,
    // not by a sync started by hand.
    for through in [
        "through Okta's event hook",
        "through a Graph change notification",
        "through a Google push notification",
    ] {
        assert!(stdout.contains(through), "{stdout}");
    }
    assert!(stdout.contains("acl_group.member_removed"), "{stdout}");
    assert!(dir.path().join("idpsync-demo.toml").exists());
    let check = common::idpsync(&dir.path().join("idpsync-demo.toml"), &["check-config"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the generated config is valid: {}",
        common::stderr(&check)
    );
}
