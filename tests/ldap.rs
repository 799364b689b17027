//! End to end: the daemon loads the LDAP plugin from its `.so`, pulls a real
//! slapd on loopback, and when a person is deleted from the directory the
//! next run removes them and revokes their device. The bind password (from
//! the environment) never reaches the daemon's log.

mod common;

use common::{Api, Daemon, Workdir};
use idpsync_plugin_ldap::testing::{
    GROUPS, Group, PEOPLE, Person, SERVICE_DN, SERVICE_PASSWORD, Seed, Slapd, SlapdOptions,
    group_dn, person_dn,
};
use serde_json::json;

fn seed() -> Seed {
    let people: Vec<Person> = (0..30)
        .map(|i| {
            Person::new(
                &format!("p{i}"),
                &format!("Given{i}"),
                &format!("Family{i}"),
            )
        })
        .collect();
    let dns = |range: std::ops::Range<usize>| -> Vec<String> {
        range.map(|i| person_dn(&format!("p{i}"))).collect()
    };
    let mut engineering = dns(0..10);
    engineering.push(group_dn("platform"));
    Seed {
        people,
        groups: vec![
            Group {
                cn: "platform".into(),
                members: dns(10..15),
            },
            Group {
                cn: "engineering".into(),
                members: engineering,
            },
        ],
        extra_ldif: String::new(),
    }
}

async fn user_id(api: &Api, user_name: &str) -> String {
    let users = api.get("/users?connection=corp&limit=1000").await;
    users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_name"] == user_name)
        .unwrap_or_else(|| panic!("{user_name} in {users}"))["external_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_deleted_from_ldap_loses_their_devices_after_the_next_run() {
    let slapd = Slapd::start(&seed(), &SlapdOptions::default());
    let plugin = common::plugin_library("idpsync-plugin-ldap");
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{{port}}"
[database]
url = "{{db}}"

[[connections]]
id = "corp"
kind = "plugin"
[connections.plugin]
path = "{}"
kind = "ldap"
[connections.plugin.settings]
url = "{}"
bind_dn = "{SERVICE_DN}"
bind_password = "${{LDAP_BIND_PASSWORD}}"
user_base_dn = "{PEOPLE}"
group_base_dn = "{GROUPS}"
page_size = 10

[[acl_groups]]
name = "engineers"
[[acl_groups.from]]
connection = "corp"
group_glob = "engineering"
"#,
        plugin.display(),
        slapd.url
    );
    let (workdir, port) = Workdir::new(&config);
    let run = |args: &[&str]| {
        common::idpsync(&workdir.config_path, args)
            .env("LDAP_BIND_PASSWORD", SERVICE_PASSWORD)
            .output()
            .unwrap()
    };
    let checked = run(&["check-config"]);
    assert!(checked.status.success(), "{}", common::stderr(&checked));
    let check = run(&["check-connection", "corp"]);
    assert!(
        common::stdout(&check).contains(&format!("users under {PEOPLE}")),
        "{}{}",
        common::stdout(&check),
        common::stderr(&check)
    );
    let token = common::stdout(&run(&[
        "token", "create", "--name", "t", "--scope", "admin",
    ]))
    .trim()
    .to_string();

    let log_path = workdir.dir.path().join("daemon.log");
    let child = common::idpsync(&workdir.config_path, &["serve"])
        .env("LDAP_BIND_PASSWORD", SERVICE_PASSWORD)
        .env("IDPSYNC_LOG", "debug")
        .stdout(std::fs::File::create(workdir.dir.path().join("daemon.out")).unwrap())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let daemon = Daemon { child, port };
    daemon.wait_healthy();
    let api = Api {
        client: reqwest::Client::new(),
        base: daemon.url("/api/v1"),
        token,
    };

    let (status, first) = api.post("/connections/corp/sync", json!({})).await;
    assert_eq!(
        (status, first["status"].as_str()),
        (200, Some("applied")),
        "{first}"
    );
    assert_eq!(first["mode"], "full");
    assert_eq!(api.get("/connections/corp").await["users"], 30);
    // engineering holds p0..p9 and, through platform, p10..p14.
    let engineers = api.get("/acl-groups/engineers/members").await;
    assert_eq!(
        engineers["items"].as_array().unwrap().len(),
        15,
        "{engineers}"
    );

    let p12 = user_id(&api, "p12").await;
    let (status, device) = api
        .post(
            "/devices",
            json!({"owner_connection_id": "corp", "owner_external_id": p12,
                   "name": "p12-laptop", "node_key": "nk-p12"}),
        )
        .await;
    assert_eq!(status, 201, "{device}");
    let mut cursor = 0;
    loop {
        let page = api.get(&format!("/events?after={cursor}&limit=1000")).await;
        if page["events"].as_array().unwrap().is_empty() {
            break;
        }
        cursor = page["cursor"].as_i64().unwrap();
    }

    // p12 leaves the company: deleted from the directory (no refint overlay,
    // so platform still names the dangling DN).
    slapd.delete(&person_dn("p12")).await;
    let (status, second) = api.post("/connections/corp/sync", json!({})).await;
    assert_eq!(
        (status, second["status"].as_str()),
        (200, Some("applied")),
        "{second}"
    );
    assert_eq!(second["mode"], "delta", "{second}");
    assert_eq!(
        second["outcome"]["effects"]["devices_revoked"], 1,
        "{second}"
    );
    let device_now = api.get(&format!("/devices/{}", device["id"])).await;
    assert_eq!(device_now["status"], "revoked", "{device_now}");
    assert_eq!(api.get("/connections/corp").await["users"], 29);

    let events = api.get(&format!("/events?after={cursor}&limit=1000")).await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"device.revoked"), "{kinds:?}");
    assert!(kinds.contains(&"acl_group.member_removed"), "{kinds:?}");
    let engineers = api.get("/acl-groups/engineers/members").await;
    assert_eq!(engineers["items"].as_array().unwrap().len(), 14);

    assert!(daemon.terminate().success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.contains(SERVICE_PASSWORD),
        "the bind password leaked into the log"
    );
    assert!(!events.to_string().contains(SERVICE_PASSWORD));
}
