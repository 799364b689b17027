//! `idpsync-bench`: measures what tests must not time. Each benchmark prints
//! its table and saves the run as JSON under `bench/results/`;
//! `idpsync-bench report` renders BENCHMARKS.md's figures from those files.
//!
//! * `revocation` ([`revocation`]): SCIM deactivation to `device.revoked`
//!   at a long-polling consumer, p50/p99.
//! * `scim` ([`scim`]): SCIM write and read throughput at N clients, side by
//!   side with a reference peer.
//! * `pull` ([`pull`]): a full pull, an unchanged re-run and a 1% delta from
//!   the Okta or Entra fake, with idpsync's peak RSS.
//! * `calls` ([`calls`]): API calls per full pull for every driver, next to
//!   the fewest its IdP's API allows.
//! * `console` ([`console`]): console page render times over a big tenant.
//! * `notify` ([`notify`]): offboarding at Okta, Entra and Google to
//!   `device.revoked`, with the IdPs' notifications and schedule only.
//! * `all` ([`suite`]): all of them, as one run.

/// The daemon's allocator and its options, so that figures are the daemon's.
#[path = "../../src/allocator.rs"]
mod allocator;
mod calls;
mod console;
mod harness;
mod notify;
mod pull;
mod report;
mod results;
mod revocation;
mod scim;
mod suite;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use harness::{Backend, Durability};
use pull::Idp;
use results::{Run, Table};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(about = "idpsync benchmarks")]
struct Cli {
    /// Where each run is saved as JSON.
    #[arg(long, default_value = results::RESULTS_DIR, global = true)]
    results: PathBuf,
    /// Print the tables only; save nothing.
    #[arg(long, global = true)]
    no_record: bool,
    /// Internal (`all`'s child runs): write the tables to this file instead
    /// of saving a run.
    #[arg(long, global = true, hide = true)]
    emit: Option<PathBuf>,
    #[command(subcommand)]
    benchmark: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Deactivation -> device.revoked on a long-polling consumer: p50/p99.
    Revocation {
        /// Users in the tenant.
        #[arg(long, default_value_t = 2000)]
        users: usize,
        /// Deactivations measured (each revokes one device).
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        #[arg(long, value_enum, default_value = "sqlite")]
        database: Backend,
    },
    /// Full pull, unchanged re-run and 1% delta from the Okta or Entra fake.
    Pull {
        #[arg(long, value_enum, default_value = "okta")]
        idp: Idp,
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 10_000)]
        groups: usize,
        /// Direct group memberships per user (users x this = memberships).
        #[arg(long, default_value_t = 10)]
        memberships_per_user: usize,
        #[arg(long, value_enum, default_value = "sqlite")]
        database: Backend,
        /// MiB of pulled users held in memory while staged (`[sync]
        /// staging_memory_mib`; the configuration's default when unset).
        #[arg(long)]
        staging_memory_mib: Option<u64>,
        /// Add two ACL groups fed by the tenant's groups ("everyone" from
        /// every group, "engineering" from the Engineering ones), so that
        /// the pull places users in ACL groups too.
        #[arg(long)]
        acl_rules: bool,
    },
    /// Everything the benchmark issue lists, one table each: revocation and
    /// SCIM (side by side with the reference peer when its script is found)
    /// on SQLite and PostgreSQL, and the 100k/10k/1M pull from the Okta and
    /// Entra fakes into both. About ten minutes on two cores.
    All {
        /// The script that starts the reference SCIM peer (scim2-server).
        #[arg(long, default_value = "../shared/tools/scim-peer.sh")]
        peer_script: PathBuf,
        #[arg(long, default_value_t = 18080)]
        peer_port: u16,
    },
    /// Internal: serves the fake IdP of a `pull` run from its own process,
    /// so the pull's peak RSS is idpsync's alone. Prints the connection's
    /// TOML as one JSON line; reads `change` on stdin (1% of users changed).
    #[command(hide = true)]
    FakeIdp {
        #[arg(long, value_enum)]
        idp: Idp,
        #[arg(long)]
        users: usize,
        #[arg(long)]
        groups: usize,
        #[arg(long)]
        memberships_per_user: usize,
    },
    /// API calls per full pull for every driver, next to the API's minimum.
    Calls {
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 10_000)]
        groups: usize,
        /// Direct group memberships per user (users x this = memberships).
        #[arg(long, default_value_t = 10)]
        memberships_per_user: usize,
    },
    /// Offboarding at a pulled IdP (Okta, Entra, Google) to device.revoked
    /// at a long-polling consumer, with the IdP's change notifications and
    /// with the schedule alone: p50/p99.
    Notify {
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        /// Offboardings per IdP and mode.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// The schedule-only connection's interval.
        #[arg(long, default_value_t = 10)]
        schedule_secs: u64,
        #[arg(long, value_enum, default_value = "sqlite")]
        database: Backend,
    },
    /// Console page render times (users page, a big group's effective
    /// members) over a big tenant: p50/p99.
    Console {
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 10_000)]
        groups: usize,
        /// Group memberships per user (users x this = memberships).
        #[arg(long, default_value_t = 10)]
        memberships_per_user: usize,
        /// Requests of each page.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        #[arg(long, value_enum, default_value = "sqlite")]
        database: Backend,
    },
    /// SCIM write and read throughput and latency at N concurrent clients.
    Scim {
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Users created (then deactivated, then looked up), split across clients.
        #[arg(long, default_value_t = 4000)]
        users: usize,
        #[arg(long, value_enum, default_value = "sqlite")]
        database: Backend,
        /// Also load a reference SCIM server at this base URL (e.g. the
        /// scim2-server started by ../shared/tools/scim-peer.sh:
        /// http://127.0.0.1:18080/v2) and report the ratio.
        #[arg(long)]
        peer_url: Option<String>,
        #[arg(long, default_value = "testtoken")]
        peer_token: String,
        /// SQLite's commits: `full` (the daemon's default) or `relaxed`.
        #[arg(long, value_enum, default_value = "full")]
        durability: Durability,
    },
    /// How a full pull's wall time and peak RSS grow with the tenant: the
    /// `pull` benchmark at each size (a tenth as many groups, ten
    /// memberships per user), per IdP and database, each in its own process.
    Scale {
        #[arg(long, value_delimiter = ',', default_value = "100000,300000,1000000")]
        sizes: Vec<usize>,
        #[arg(long, value_delimiter = ',', default_value = "okta,entra")]
        idps: Vec<String>,
        #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
        databases: Vec<String>,
        /// Each pull with `pull --acl-rules`: its users placed in two ACL
        /// groups too. BENCHMARKS.md shows these runs in a table of their own.
        #[arg(long)]
        acl_rules: bool,
    },
    /// Renders BENCHMARKS.md's figures (the latest full run against the
    /// targets, a line per full run) from the saved runs.
    Report {
        #[arg(long, default_value = "BENCHMARKS.md")]
        document: PathBuf,
        /// Fail, writing nothing, when the document is not what the runs render.
        #[arg(long)]
        check: bool,
    },
}

fn main() -> Result<()> {
    allocator::configure();
    let cli = Cli::parse();
    // IDPSYNC_LOG=idpsync_core=debug shows the reconciler's phase timings.
    if let Ok(filter) = std::env::var("IDPSYNC_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = chrono::Utc::now();
    let tables: Vec<Table> = match cli.benchmark {
        Command::All {
            ref peer_script,
            peer_port,
        } => runtime.block_on(suite::all(peer_script, peer_port))?,
        Command::Revocation {
            users,
            iterations,
            database,
        } => vec![runtime.block_on(revocation::revocation(users, iterations, database))?],
        Command::Scim {
            clients,
            users,
            database,
            peer_url,
            peer_token,
            durability,
        } => vec![runtime.block_on(scim::scim(
            clients,
            users,
            database,
            durability,
            peer_url.map(|url| scim::Peer {
                url,
                token: peer_token,
            }),
        ))?],
        Command::Pull {
            idp,
            users,
            groups,
            memberships_per_user,
            database,
            staging_memory_mib,
            acl_rules,
        } => vec![runtime.block_on(pull::pull(
            idp,
            users,
            groups,
            memberships_per_user,
            database,
            staging_memory_mib,
            acl_rules,
        ))?],
        Command::Console {
            users,
            groups,
            memberships_per_user,
            requests,
            database,
        } => vec![runtime.block_on(console::console(
            users,
            groups,
            memberships_per_user,
            requests,
            database,
        ))?],
        Command::Notify {
            users,
            iterations,
            schedule_secs,
            database,
        } => vec![runtime.block_on(notify::notify(users, iterations, schedule_secs, database))?],
        Command::Scale {
            ref sizes,
            ref idps,
            ref databases,
            acl_rules,
        } => runtime.block_on(suite::scale(sizes, idps, databases, acl_rules))?,
        Command::Calls {
            users,
            groups,
            memberships_per_user,
        } => vec![runtime.block_on(calls::calls(users, groups, memberships_per_user))?],
        Command::FakeIdp {
            idp,
            users,
            groups,
            memberships_per_user,
        } => {
            runtime.block_on(pull::fake_idp(idp, users, groups, memberships_per_user))?;
            return Ok(());
        }
        Command::Report { document, check } => return report(&cli.results, &document, check),
    };
    for table in &tables {
        println!("{}", table.render());
    }
    if let Some(path) = &cli.emit {
        std::fs::write(path, serde_json::to_string(&tables)?)
            .with_context(|| format!("while writing {}", path.display()))?;
    } else if !cli.no_record {
        let run = Run {
            started: started.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            host: harness::machine(),
            revision: Some(env!("IDPSYNC_BENCH_REVISION").to_string()),
            command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            tables,
        };
        let path = run.save(&cli.results)?;
        println!(
            "saved {}; `idpsync-bench report` renders BENCHMARKS.md",
            path.display()
        );
    }
    Ok(())
}

fn report(results: &std::path::Path, document: &std::path::Path, check: bool) -> Result<()> {
    let runs = Run::load_all(results)?;
    let text = std::fs::read_to_string(document)
        .with_context(|| format!("while reading {}", document.display()))?;
    let rendered = report::rewrite(&text, &runs)?;
    if rendered == text {
        println!(
            "{} is up to date with {} runs",
            document.display(),
            runs.len()
        );
    } else if check {
        anyhow::bail!(
            "{} differs from what the runs in {} render: run `idpsync-bench report`",
            document.display(),
            results.display()
        );
    } else {
        std::fs::write(document, rendered)?;
        println!("rendered {} from {} runs", document.display(), runs.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BENCHMARKS.md shows what the saved runs say, not what someone typed.
    #[test]
    fn benchmarks_md_is_rendered_from_the_saved_runs() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let runs = Run::load_all(&root.join(results::RESULTS_DIR)).unwrap();
        let text = std::fs::read_to_string(root.join("BENCHMARKS.md")).unwrap();
        let rendered = report::rewrite(&text, &runs).unwrap();
        assert!(
            rendered == text,
            "BENCHMARKS.md is out of date: run `cargo run -p idpsync-bench -- report`"
        );
    }
}
