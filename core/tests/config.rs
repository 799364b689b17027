//! Config loading as an admin meets it: the example loads, mistakes are all
//! reported at once with key path and line:column, secrets stay hidden.

use idpsync_core::config::{self, ConfigErrors, DeletionLimit};
use std::collections::HashMap;

const KINDS: &[&str] = &["scim", "okta"];

fn load(text: &str, env: &[(&str, &str)]) -> Result<config::Config, ConfigErrors> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    config::load_str(text, "test.toml", KINDS, &|name| env.get(name).cloned())
}

/// Renders errors as `line:col path: message` lines.
fn rendered(errors: &ConfigErrors) -> Vec<String> {
    errors
        .errors
        .iter()
        .map(|error| error.to_string())
        .collect()
}

#[test]
fn the_example_config_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/idpsync.toml");
    let config = config::load_file(
        std::path::Path::new(path),
        &[
            "scim",
            "keycloak",
            "jumpcloud",
            "entra",
            "okta",
            "google_workspace",
            "auth0",
            "authentik",
            "zitadel",
        ],
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(config.connections.len(), 10);
    assert_eq!(
        config.connections[5].kind_settings().unwrap()["realm"].as_str(),
        Some("acme")
    );
    assert_eq!(config.acl_groups.len(), 2);
    assert_eq!(config.webhooks.len(), 1);
    assert_eq!(
        config.connections[0].safety.limit(),
        DeletionLimit::Percent(10)
    );
    assert_eq!(
        config.connections[1].safety.limit(),
        DeletionLimit::Count(25)
    );
}

#[test]
fn five_mistakes_give_five_errors_with_key_paths_and_positions() {
    let text = r#"
[server]
listen = "127.0.0.1:8080"
colour = "blue"

[[connections]]
id = "okta"
kind = "okta"
schedule = "*/5 * * * *"

[[connections]]
id = "okta"
kind = "scim"

[[acl_groups]]
name = "eng"
[[acl_groups.from]]
connection = "nope"
group = "Engineering"

[[webhooks]]
name = "cp"
url = "http://127.0.0.1:9000/hook"
secret = "${WEBHOOK_SECRET}"
"#;
    let errors = load(text, &[]).expect_err("five mistakes");
    assert_eq!(
        rendered(&errors),
        [
            "4:1: server.colour: unknown key",
            "9:12: connections[0].schedule: invalid cron expression \"*/5 * * * *\": expected \"sec min hour day-of-month month day-of-week [year]\" (the seconds field comes first: prepend \"0 \")",
            "12:6: connections[1].id: duplicate connection id \"okta\"",
            "18:14: acl_groups[0].from[0].connection: unknown connection \"nope\"",
            "24:10: webhooks[0].secret: environment variable ${WEBHOOK_SECRET} not set",
        ]
    );
}

#[test]
fn unknown_keys_in_nested_tables_and_kind_tables_are_reported_where_they_stand() {
    let text = r#"
[[connections]]
id = "okta"
kind = "okta"
sechdule = "0 * * * * *"
[connections.okta]
org_url = "https://acme.okta.com"
[connections.entra]
tenant = "x"
[connections.safety]
max_deletions = "150%"
"#;
    let errors = load(text, &[]).expect_err("three mistakes");
    assert_eq!(
        rendered(&errors),
        [
            "5:1: connections[0].sechdule: unknown key",
            "8:14: connections[0].entra: unknown key",
            "11:17: connections[0].safety.max_deletions: percentage must be between 0% and 100%, got \"150%\"",
        ]
    );
}

#[test]
fn bad_urls_kinds_and_rules_are_named() {
    let text = r#"
[server]
listen = "localhost"
public_url = "ftp://example.test"

[database]
url = "mysql://root:hunter2@127.0.0.1/db"

[[connections]]
id = "Bad Id"
kind = "workday"
full_sync_every_hours = 0
rate_limit_share = 1.5

[[acl_groups]]
name = "eng"
[[acl_groups.from]]
connection = "Bad Id"
group = "a"
group_regex = "(unclosed"

[[webhooks]]
name = "hook"
url = "not a url"
secret = ""
"#;
    let errors = load(text, &[]).expect_err("many mistakes");
    let lines = rendered(&errors);
    let expected_prefixes = [
        "3:10: server.listen: expected an address like 127.0.0.1:8080",
        "4:14: server.public_url: expected an http:// or https:// URL, got scheme \"ftp\"",
        "7:7: database.url: expected a sqlite://... or postgres://... URL",
        "10:6: connections[0].id: \"Bad Id\" is not a valid id",
        "11:8: connections[0].kind: unknown kind \"workday\"; this build knows: scim, okta",
        "12:25: connections[0].full_sync_every_hours: must be at least 1",
        "13:20: connections[0].rate_limit_share: must be above 0 and at most 1",
        "17:1: acl_groups[0].from[0]: set exactly one of group, group_glob or group_regex",
        "20:15: acl_groups[0].from[0].group_regex: invalid regex",
        "24:7: webhooks[0].url: invalid URL \"not a url\"",
        "25:10: webhooks[0].secret: must not be empty",
    ];
    assert_eq!(lines.len(), expected_prefixes.len(), "{lines:#?}");
    for (line, prefix) in lines.iter().zip(expected_prefixes) {
        assert!(
            line.starts_with(prefix),
            "{line:?} should start with {prefix:?}"
        );
    }
    assert!(
        !errors.to_string().contains("hunter2"),
        "a database password is never echoed"
    );
}

#[test]
fn env_vars_are_interpolated_and_secrets_stay_hidden() {
    let text = r#"
[database]
url = "postgres://idpsync:${DB_PASSWORD}@127.0.0.1/idpsync"
[[webhooks]]
name = "cp"
url = "http://127.0.0.1:9000/${HOOK_PATH}"
secret = "${HOOK_SECRET}"
events = ["literal-$${not-a-var}"]
"#;
    let config = load(
        text,
        &[
            ("DB_PASSWORD", "pw-123"),
            ("HOOK_PATH", "events"),
            ("HOOK_SECRET", "s3cret-key"),
        ],
    )
    .unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(
        config.database.url.expose(),
        "postgres://idpsync:pw-123@127.0.0.1/idpsync"
    );
    assert_eq!(config.webhooks[0].url, "http://127.0.0.1:9000/events");
    assert_eq!(config.webhooks[0].secret.expose(), "s3cret-key");
    assert_eq!(config.webhooks[0].events, vec!["literal-${not-a-var}"]);
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("pw-123") && !debug.contains("s3cret-key"),
        "{debug}"
    );
}

#[test]
fn a_type_error_and_a_syntax_error_are_placed_too() {
    let errors = load("[server]\nshutdown_grace_secs = \"ten\"\n", &[]).expect_err("type error");
    assert_eq!(errors.errors.len(), 1);
    assert_eq!(errors.errors[0].path, "server.shutdown_grace_secs");
    assert_eq!(
        errors.errors[0].location.map(|l| (l.line, l.column)),
        Some((2, 23))
    );

    let errors = load("[server\nlisten = 1\n", &[]).expect_err("syntax error");
    assert_eq!(errors.errors.len(), 1);
    assert_eq!(errors.errors[0].location.map(|l| l.line), Some(1));
    assert!(errors.errors[0].message.starts_with("invalid TOML"));
}

#[test]
fn an_empty_file_is_a_valid_config_with_defaults() {
    let config = load("", &[]).unwrap();
    assert_eq!(config.server.listen, "127.0.0.1:8080");
    assert_eq!(config.database.url.expose(), config::DEFAULT_DATABASE_URL);
}

#[test]
fn durability_is_full_unless_relaxed_and_a_wrong_word_is_placed() {
    use idpsync_core::config::Durability;
    assert_eq!(load("", &[]).unwrap().database.durability, Durability::Full);
    let relaxed = load("[database]\ndurability = \"relaxed\"\n", &[]).unwrap();
    assert_eq!(relaxed.database.durability, Durability::Relaxed);
    let errors = load("[database]\ndurability = \"fast\"\n", &[]).expect_err("unknown word");
    let lines = rendered(&errors);
    assert!(
        lines[0].starts_with("2:14: database.durability: unknown variant `fast`"),
        "{lines:?}"
    );
}

/// The core tables' options as the README's reference table lists them.
fn documented_options() -> Vec<(String, String)> {
    let readme = include_str!("../../README.md");
    readme
        .lines()
        .skip_while(|line| !line.starts_with("| table | option |"))
        .skip(2)
        .take_while(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('`').collect();
            (cells[1].to_string(), cells[3].to_string())
        })
        .collect()
}

/// The core tables' options in the example, commented out or not, by
/// table header (`[server]`, `[[connections]]`, ...).
fn example_options() -> Vec<(String, String)> {
    const CORE: [&str; 8] = [
        "[server]",
        "[database]",
        "[sync]",
        "[[connections]]",
        "[connections.safety]",
        "[[acl_groups]]",
        "[[acl_groups.from]]",
        "[[webhooks]]",
    ];
    let example = include_str!("../../examples/idpsync.toml");
    let mut table = String::new();
    let mut options = Vec::new();
    for line in example.lines() {
        let line = line.trim_start_matches('#').trim();
        if line.starts_with('[') {
            table = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        } else if let Some((key, _)) = line.split_once(" = ") {
            let key = key.trim();
            let is_key = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            if is_key && CORE.contains(&table.as_str()) {
                options.push((table.clone(), key.to_string()));
            }
        }
    }
    options.sort();
    options.dedup();
    options
}

#[test]
fn the_example_shows_exactly_the_options_the_readme_documents() {
    let mut documented = documented_options();
    documented.sort();
    assert!(documented.len() >= 20, "{documented:?}");
    assert_eq!(example_options(), documented);
}

#[test]
fn notifications_need_a_public_https_url_for_the_idp_to_call() {
    let connection = r#"
[[connections]]
id = "okta"
kind = "okta"
[connections.okta.notifications]
secret = "s"
"#;
    let errors = load(connection, &[]).expect_err("no public_url");
    assert_eq!(
        rendered(&errors),
        [
            "5:1: connections[0].okta.notifications: needs [server] public_url: the URL the IdP delivers notifications to (https://...)"
        ]
    );

    let plain_http =
        format!("[server]\npublic_url = \"http://idpsync.example.test\"\n{connection}");
    let errors = load(&plain_http, &[]).expect_err("http off loopback");
    assert_eq!(
        rendered(&errors),
        ["2:14: server.public_url: IdPs deliver notifications only to https:// URLs"]
    );

    for fine in ["https://idpsync.example.test", "http://127.0.0.1:8080"] {
        let text = format!("[server]\npublic_url = \"{fine}\"\n{connection}");
        load(&text, &[]).unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
}
