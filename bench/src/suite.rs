//! `all`: every benchmark, in the order the benchmark issue lists them, as
//! one run.

use crate::harness::{Backend, Durability};
use crate::results::Table;
use crate::revocation::revocation;
use crate::scim::{Peer, scim};
use anyhow::{Context, Result, bail};
use std::time::{Duration, Instant};

/// The whole suite. Each pull runs as its own `idpsync-bench pull` process
/// (it hands its table back through `--emit`), so its peak RSS is its own;
/// the rest run here. SCIM on SQLite runs with durable commits (the
/// default) and with relaxed ones, each side by side with the peer.
pub async fn all(peer_script: &std::path::Path, peer_port: u16) -> Result<Vec<Table>> {
    let mut tables = Vec::new();
    let emitted = std::env::temp_dir().join(format!("idpsync-bench-{}.json", std::process::id()));
    for database in ["sqlite", "postgres"] {
        for idp in ["okta", "entra"] {
            let status = tokio::process::Command::new(std::env::current_exe()?)
                .arg("--emit")
                .arg(&emitted)
                .args(["pull", "--idp", idp, "--database", database])
                .args(["--users", "100000", "--groups", "10000"])
                .args(["--memberships-per-user", "10"])
                .status()
                .await?;
            if !status.success() {
                bail!("the {idp} pull into {database} failed ({status})");
            }
            let text = std::fs::read_to_string(&emitted)
                .with_context(|| format!("the {idp} pull into {database} left no tables"))?;
            tables.extend(serde_json::from_str::<Vec<Table>>(&text)?);
            std::fs::remove_file(&emitted)?;
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
