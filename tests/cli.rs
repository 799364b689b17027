//! The CLI as an admin uses it: check-config, migrate, token create/list/revoke.

mod common;

use common::{Workdir, stderr, stdout};
use idpsync_core::store::Store;
use sea_orm::{ConnectionTrait, Statement};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:{port}"
[database]
url = "{db}"
[[connections]]
id = "okta-scim"
kind = "scim"
"#;

#[test]
fn check_config_accepts_the_example() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/idpsync.toml");
    let output = common::idpsync(example.as_ref(), &["check-config"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("ok (10 connections, 2 ACL groups, 1 webhooks)"));
}

#[test]
fn check_config_locates_mistakes_in_the_new_drivers_tables() {
    let (workdir, _) = Workdir::new(
        r#"
[database]
url = "{db}"
[[connections]]
id = "auth0"
kind = "auth0"
[connections.auth0]
tenant_url = "https://acme.eu.auth0.com"
client_id = "c"
client_secret = "s"
page_size = 500
[[connections]]
id = "authentik"
kind = "authentik"
[connections.authentik]
base_url = "https://auth.acme.test"
token = "t"
user_types = ["robot"]
[[connections]]
id = "zitadel"
kind = "zitadel"
[connections.zitadel]
issuer_url = "https://acme.zitadel.test"
personal_access_token = "p"
[connections.zitadel.states]
active = ["USER_STATE_ACTIVE"]
suspend = ["LOCKED"]
"#,
    );
    let output = workdir.run(&["check-config"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = format!("{}{}", stdout(&output), stderr(&output));
    for located in [
        "idpsync.toml:11:13: connections[0].auth0.page_size: must be between 1 and 100, got 500",
        "idpsync.toml:18:14: connections[1].authentik.user_types: \"robot\" is not one of",
        "idpsync.toml:27:11: connections[2].zitadel.states.suspend:",
    ] {
        assert!(text.contains(located), "{located}\n{text}");
    }
}

#[test]
fn check_config_lists_five_mistakes_with_positions_and_fails() {
    let (workdir, _) = Workdir::new(
        r#"
[server]
listen = "127.0.0.1:8080"
colour = "blue"
[[connections]]
id = "a"
kind = "scim"
[[connections]]
id = "a"
kind = "scim"
[[acl_groups]]
name = "eng"
[[acl_groups.from]]
connection = "nope"
group = "Engineering"
[[webhooks]]
name = "cp"
url = "http:/"
secret = "${IDPSYNC_TEST_UNSET_VARIABLE}"
"#,
    );
    let output = workdir.run(&["check-config"]);
    assert!(!output.status.success());
    let errors = stderr(&output);
    let file = workdir.config_path.display().to_string();
    let lines: Vec<&str> = errors
        .lines()
        .filter(|line| {
            line.trim_start()
                .strip_prefix(&format!("{file}:"))
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    assert_eq!(lines.len(), 5, "{errors}");
    for (line, expected) in lines.iter().zip([
        ":4:1: server.colour: unknown key",
        ":9:6: connections[1].id: duplicate connection id \"a\"",
        ":14:14: acl_groups[0].from[0].connection: unknown connection \"nope\"",
        ":18:7: webhooks[0].url: invalid URL \"http:/\"",
        ":19:10: webhooks[0].secret: environment variable ${IDPSYNC_TEST_UNSET_VARIABLE} not set",
    ]) {
        assert!(
            line.contains(expected),
            "{line:?} should contain {expected:?}\n{errors}"
        );
    }
    assert!(
        errors.starts_with(&format!("{file}: 5 problems")),
        "{errors}"
    );
}

#[tokio::test]
async fn token_create_prints_the_token_once_and_stores_only_its_hash() {
    let (workdir, _) = Workdir::new(CONFIG);
    let output = workdir.run(&[
        "token",
        "create",
        "--name",
        "okta",
        "--scope",
        "scim",
        "--connection",
        "okta-scim",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output).trim().to_string();
    assert!(token.starts_with("idps_") && token.len() == 69, "{token:?}");
    assert!(
        !stderr(&output).contains(&token),
        "the token goes to stdout only"
    );

    let store = Store::connect(&workdir.db_url(), 1, None).await.unwrap();
    let rows = store
        .db()
        .query_all_raw(Statement::from_string(
            store.backend(),
            "SELECT * FROM api_tokens",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let raw = std::fs::read(workdir.db_path()).unwrap();
    let wal = std::fs::read(workdir.dir.path().join("idpsync.db-wal")).unwrap_or_default();
    let secret_part = token.as_bytes()[5..].to_vec();
    for bytes in [&raw, &wal] {
        assert!(
            !bytes
                .windows(secret_part.len())
                .any(|window| window == secret_part.as_slice()),
            "plaintext found in the database file"
        );
    }
    let authenticated = store
        .authenticate_token(&token)
        .await
        .unwrap()
        .expect("token works");
    assert_eq!(authenticated.connection_id.as_deref(), Some("okta-scim"));

    let listing = workdir.run(&["token", "list"]);
    assert!(stdout(&listing).contains("okta") && !stdout(&listing).contains(&token));

    let revoke = workdir.run(&["token", "revoke", "okta"]);
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    // This store plays the running daemon, which trusts a token it has just
    // verified for up to `VERIFIED_FOR`: the CLI's revocation holds after it.
    tokio::time::sleep(idpsync_core::store::VERIFIED_FOR).await;
    assert!(store.authenticate_token(&token).await.unwrap().is_none());
    assert!(stdout(&workdir.run(&["token", "list"])).contains("revoked"));
}

#[test]
fn token_create_refuses_a_scim_token_without_a_scim_connection() {
    let (workdir, _) = Workdir::new(CONFIG);
    let unbound = workdir.run(&["token", "create", "--name", "x", "--scope", "scim"]);
    assert!(!unbound.status.success());
    assert!(
        stderr(&unbound).contains("add --connection"),
        "{}",
        stderr(&unbound)
    );
    let unknown = workdir.run(&[
        "token",
        "create",
        "--name",
        "x",
        "--scope",
        "scim",
        "--connection",
        "nope",
    ]);
    assert!(
        stderr(&unknown).contains("unknown connection \"nope\""),
        "{}",
        stderr(&unknown)
    );
    let bad_scope = workdir.run(&["token", "create", "--name", "x", "--scope", "root"]);
    assert!(
        stderr(&bad_scope).contains("unknown scope \"root\""),
        "{}",
        stderr(&bad_scope)
    );
}

#[tokio::test]
async fn migrate_creates_a_wal_sqlite_file_and_is_idempotent() {
    let (workdir, _) = Workdir::new(CONFIG);
    let first = workdir.run(&["migrate"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("applied m20261124_000001_create_store"));
    assert!(stdout(&first).contains("applied m20261124_000002_create_webhook_deliveries"));
    let second = workdir.run(&["migrate"]);
    assert_eq!(stdout(&second).trim(), "schema is up to date");
    let store = Store::connect(&workdir.db_url(), 1, None).await.unwrap();
    let row = store
        .db()
        .query_one_raw(Statement::from_string(
            store.backend(),
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap();
    let mode: String = row.try_get_by_index(0).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn check_config_checks_a_driver_s_own_table_with_positions() {
    let (workdir, _) = Workdir::new(
        r#"
[[connections]]
id = "kc"
kind = "keycloak"
schedule = "0 */5 * * * *"
[connections.keycloak]
base_url = "https://sso.acme.test"
realm = "acme"
client_id = "idpsync"
client_secret = "s"
page_size = 5000
"#,
    );
    let output = workdir.run(&["check-config"]);
    assert!(!output.status.success());
    let errors = stderr(&output);
    assert!(
        errors.contains(
            ":11:13: connections[0].keycloak.page_size: must be between 1 and 1000, got 5000"
        ),
        "{errors}"
    );
}

#[tokio::test]
async fn hooks_lists_each_subscription_with_its_state_and_expiry() {
    let (workdir, _) = Workdir::new(
        r#"
[server]
public_url = "https://idpsync.example.test/"
[database]
url = "{db}"
[[connections]]
id = "entra"
kind = "entra"
[connections.entra]
tenant_id = "t"
client_id = "c"
client_secret = "s"
[connections.entra.notifications]
secret = "client-state"
"#,
    );
    let migrated = workdir.run(&["migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let store = Store::open(&workdir.db_url(), 1).await.unwrap();
    let write = store.begin_write().await.unwrap();
    write
        .tx
        .execute_raw(Statement::from_string(
            store.backend(),
            "INSERT INTO hook_subscriptions (connection_id, resource, subscription_id, callback, \
             expires_at, stop_on_shutdown, renewed_at, last_error) VALUES \
             ('entra', 'users', 'sub-1', 'https://idpsync.example.test/hooks/entra/entra', \
              '2099-01-01 00:00:00+00:00', false, '2026-12-01 00:00:00+00:00', NULL), \
             ('entra', 'groups', '', 'https://idpsync.example.test/hooks/entra/entra', \
              NULL, false, '2026-12-01 00:00:00+00:00', 'Graph refused: 403 Forbidden')",
        ))
        .await
        .unwrap();
    write.commit().await.unwrap();
    let listed = workdir.run(&["hooks"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let text = stdout(&listed);
    assert!(
        text.contains("entra (entra) <- https://idpsync.example.test/hooks/entra/entra"),
        "{text}"
    );
    assert!(
        text.contains("users      active   expires 2099-01-01"),
        "{text}"
    );
    assert!(
        text.contains("groups     failing") && text.contains("403 Forbidden"),
        "{text}"
    );
    assert!(text.contains("no notification run yet"), "{text}");
}

#[test]
fn migrate_dry_run_lists_the_steps_and_applies_none() {
    let (workdir, _) = Workdir::new(CONFIG);
    for _ in 0..2 {
        let planned = workdir.run(&["migrate", "--dry-run"]);
        assert!(planned.status.success(), "{}", stderr(&planned));
        let text = stdout(&planned);
        assert!(
            text.contains("would apply m20261124_000001_create_store"),
            "{text}"
        );
        assert!(
            text.contains("would apply m20261205_000008_create_hook_tables"),
            "{text}"
        );
    }
    let applied = workdir.run(&["migrate"]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let planned = workdir.run(&["migrate", "--dry-run"]);
    assert!(
        stdout(&planned).contains("schema is up to date; nothing would change"),
        "{}",
        stdout(&planned)
    );
}
