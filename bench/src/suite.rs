//! `all`: every benchmark, in the order the benchmark issue lists them, as
//! one run.

use crate::harness::{Backend, Durability};
use crate::results::Table;
use crate::revocation::revocation;
use crate::scim::{Peer, scim};
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

/// One `idpsync-bench pull` in a process of its own, so that its peak RSS
/// is its own; its tables, handed back through `--emit`.
pub async fn pull_in_child(
    idp: &str,
    database: &str,
    users: usize,
    groups: usize,
    per_user: usize,
    acl_rules: bool,
) -> Result<Vec<Table>> {
    let emitted = std::env::temp_dir().join(format!(
        "idpsync-bench-{}-{idp}-{database}-{users}.json",
        std::process::id()
    ));
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--emit")
        .arg(&emitted)
        .args(["pull", "--idp", idp, "--database", database])
        .args([
            "--users",
            &users.to_string(),
            "--groups",
            &groups.to_string(),
        ])
        .args(["--memberships-per-user", &per_user.to_string()])
        .args(acl_rules.then_some("--acl-rules"))
        .status()
        .await?;
    if !status.success() {
        bail!("the {idp} pull of {users} users into {database} failed ({status})");
    }
    let text = std::fs::read_to_string(&emitted)
        .with_context(|| format!("the {idp} pull into {database} left no tables"))?;
    std::fs::remove_file(&emitted)?;
    Ok(serde_json::from_str::<Vec<Table>>(&text)?)
}

/// `scale`: the full pull at each tenant size (users, a tenth as many
/// groups, ten memberships each), from each IdP into each database, each
/// in its own process; with `acl_rules`, the pull's ACL rules too.
pub async fn scale(
    sizes: &[usize],
    idps: &[String],
    databases: &[String],
    acl_rules: bool,
) -> Result<Vec<Table>> {
    let mut tables = Vec::new();
    for database in databases {
        for idp in idps {
            for &users in sizes {
                tables
                    .extend(pull_in_child(idp, database, users, users / 10, 10, acl_rules).await?);
            }
        }
    }
    Ok(tables)
}

/// The whole suite. Each pull runs as its own `idpsync-bench pull` process
/// (it hands its table back through `--emit`), so its peak RSS is its own;
/// the rest run here. SCIM on SQLite runs with durable commits (the
/// default) and with relaxed ones, each side by side with the peer.
pub async fn all(peer_script: &std::path::Path, peer_port: u16) -> Result<Vec<Table>> {
    let mut tables = Vec::new();
    for database in ["sqlite", "postgres"] {
        for idp in ["okta", "entra"] {
            tables.extend(pull_in_child(idp, database, 100_000, 10_000, 10, false).await?);
        }
    }
    // The reference peer, if its script is here; started once, stopped at the end.
    let peer = if peer_script.is_file() {
        let child = tokio::process::Command::new("bash")
            .arg(peer_script)
            .arg(peer_port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while tokio::net::TcpStream::connect(("127.0.0.1", peer_port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("the SCIM peer did not listen on {peer_port} within 300 s");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Some(child)
    } else {
        eprintln!(
            "{} not found: SCIM runs without the side-by-side peer",
            peer_script.display()
        );
        None
    };
    for database in [Backend::Sqlite, Backend::Postgres] {
        let side_by_side = (peer.is_some() && matches!(database, Backend::Sqlite)).then(|| Peer {
            url: format!("http://127.0.0.1:{peer_port}/v2"),
            token: "testtoken".into(),
        });
        tables.push(scim(16, 2000, database, Durability::Full, side_by_side.clone()).await?);
        if matches!(database, Backend::Sqlite) {
            tables.push(scim(16, 2000, database, Durability::Relaxed, side_by_side).await?);
        }
        tables.push(revocation(2000, 200, database).await?);
    }
    drop(peer);
    Ok(tables)
}
