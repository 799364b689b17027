//! The reconciler from the command line: plan a snapshot (table and JSON),
//! import it, get held by the safety gate, list runs and approve.

mod common;

use common::{Workdir, stderr, stdout};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[database]
url = "{db}"
[[connections]]
id = "hr"
kind = "scim"
[connections.safety]
max_deletions = 1
[[acl_groups]]
name = "staff"
[[acl_groups.from]]
connection = "hr"
group_glob = "*"
"#;

fn snapshot(names: &[&str]) -> Value {
    json!({
        "users": names.iter().map(|n| json!({"external_id": n, "user_name": n, "active": true})).collect::<Vec<_>>(),
        "groups": [{"external_id": "g", "display_name": "Staff"}],
        "memberships": names.iter().map(|n| json!({"group_external_id": "g", "member": {"type": "user", "external_id": n}})).collect::<Vec<_>>(),
    })
}

fn write(workdir: &Workdir, name: &str, value: &Value) -> String {
    let path = workdir.dir.path().join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path.display().to_string()
}

#[test]
fn plan_import_hold_and_approve_from_the_command_line() {
    let (workdir, _) = Workdir::new(CONFIG);
    let everyone = write(
        &workdir,
        "everyone.json",
        &snapshot(&["ann", "ben", "cat", "dan"]),
    );

    let plan = workdir.run(&["plan", "hr", "--snapshot", &everyone]);
    assert!(plan.status.success(), "{}", stderr(&plan));
    let table = stdout(&plan);
    assert!(
        table.contains("plan for connection \"hr\" (nothing written)"),
        "{table}"
    );
    assert!(
        table.contains("user.created                     4  ann, ben, cat, dan"),
        "{table}"
    );
    assert!(
        table.contains("acl_group.member_added           4"),
        "{table}"
    );

    let json_plan = workdir.run(&["plan", "hr", "--snapshot", &everyone, "--json"]);
    let parsed: Value = serde_json::from_slice(&json_plan.stdout).unwrap();
    assert_eq!(parsed["changes"]["users_created"], 4);
    // 4 users, 1 group, 1 membership event listing its 4 members, 4 ACL members.
    assert_eq!(parsed["events"].as_array().unwrap().len(), 4 + 1 + 1 + 4);

    let import = workdir.run(&["import", "hr", "--snapshot", &everyone]);
    assert!(import.status.success(), "{}", stderr(&import));
    assert!(stdout(&import).contains("applied"));
    let again = workdir.run(&["import", "hr", "--snapshot", &everyone]);
    assert!(stdout(&again).contains("no changes"), "{}", stdout(&again));

    let two_left = write(&workdir, "two.json", &snapshot(&["ann", "ben"]));
    let held = workdir.run(&["import", "hr", "--snapshot", &two_left]);
    assert_eq!(held.status.code(), Some(2), "held exits 2");
    let held_text = stdout(&held);
    assert!(
        held_text.contains("HELD by the safety gate (2 deletions"),
        "{held_text}"
    );
    let run_id = held_text
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches(':')
        .to_string();

    let runs = stdout(&workdir.run(&["runs"]));
    assert!(runs.lines().nth(1).unwrap().contains("held"), "{runs}");

    let approve = workdir.run(&["approve", &run_id]);
    assert!(approve.status.success(), "{}", stderr(&approve));
    assert!(
        stdout(&approve).contains("users_deleted\":2"),
        "{}",
        stdout(&approve)
    );
    let twice = workdir.run(&["approve", &run_id]);
    assert!(!twice.status.success());
    assert!(
        stderr(&twice).contains("is approved, not held"),
        "{}",
        stderr(&twice)
    );

    let unknown = workdir.run(&["plan", "nope", "--snapshot", &everyone]);
    assert!(
        stderr(&unknown).contains("unknown connection \"nope\""),
        "{}",
        stderr(&unknown)
    );
}
