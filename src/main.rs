//! The `idpsync` binary: argument parsing and wiring only. Everything it runs
//! lives in `idpsync-core`; errors here carry context for the person at the
//! terminal (anyhow).

mod allocator;
mod commands;
/// The demo and the fakes it serves exist only with the `demo` feature
/// (default); nothing else in the binary refers to them.
#[cfg(feature = "demo")]
mod demo;
mod drivers;
mod systemd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps a zero-trust network's view of people in lockstep with its identity providers.
#[derive(Debug, Parser)]
#[command(name = "idpsync", version, about)]
struct Cli {
    /// The TOML config file.
    #[arg(
        long,
        short,
        global = true,
        env = "IDPSYNC_CONFIG",
        default_value = "idpsync.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config and print every problem with its key and line:column.
    CheckConfig,
    /// Create or upgrade the database schema.
    Migrate {
        /// Print the migrations that would be applied; apply none.
        #[arg(long)]
        dry_run: bool,
    },
    /// Create, list or revoke API and SCIM tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run the daemon: admin API, event feed, webhooks, /healthz, /readyz, /metrics.
    Serve,
    /// Show what reconciling a snapshot file into a connection would change; writes nothing.
    Plan {
        connection: String,
        /// JSON file: {"users": [...], "groups": [...], "memberships": [...]}.
        #[arg(long)]
        snapshot: PathBuf,
        /// Print the whole plan as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Examples per row of the table.
        #[arg(long, default_value_t = 5)]
        examples: usize,
    },
    /// Reconcile a snapshot file into a connection (through the safety gate).
    Import {
        connection: String,
        #[arg(long)]
        snapshot: PathBuf,
    },
    /// List sync runs, newest first.
    Runs {
        #[arg(long)]
        connection: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u64,
        #[arg(long)]
        json: bool,
    },
    /// Apply a held run's change set, if the stored state has not moved since.
    Approve { run: i64 },
    /// Pull a connection now and apply what it reports (through the safety gate).
    Sync {
        connection: String,
        /// Plan only: pull, compute, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Ignore the delta cursor and pull everything.
        #[arg(long)]
        full: bool,
        #[arg(long)]
        json: bool,
    },
    /// Test a pull connection's credentials and reachability.
    CheckConnection { connection: String },
    /// Zero-setup demo: the daemon on SQLite with fake Entra, Okta, Google,
    /// Keycloak, JumpCloud, Auth0, authentik and ZITADEL tenants and a SCIM connection; scripted offboarding.
    #[cfg(feature = "demo")]
    Demo {
        /// Where the demo's config and SQLite file go (replaced on each run).
        #[arg(long, default_value = "demo-data")]
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Stop after the scripted walkthrough instead of serving on.
        #[arg(long)]
        exit: bool,
    },
    /// List connections with their health (healthy, backoff, quarantined) and last run.
    Connections {
        #[arg(long)]
        json: bool,
    },
    /// Copy the SQLite database to FILE, consistent while the daemon runs
    /// (for PostgreSQL, use pg_dump).
    Backup {
        #[arg(long)]
        to: PathBuf,
    },
    /// Replace the SQLite database with a backup, after checking it. Stop
    /// the daemon first.
    Restore {
        #[arg(long)]
        from: PathBuf,
    },
    /// Exit 0 when the local daemon's /readyz answers 200 (the database
    /// answers), else 1: a container healthcheck with no shell or curl.
    Readyz,
    /// List IdP notification subscriptions (Graph subscriptions, Google
    /// channels, Okta event hooks) with their state and expiry, and each
    /// notified connection's last notification run.
    Hooks {
        #[arg(long)]
        json: bool,
    },
    /// Internal: hosts one call of a driver plugin (spawned by the daemon).
    #[command(hide = true)]
    PluginChild,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it once.
    Create {
        /// A unique name, e.g. "okta-provisioning".
        #[arg(long)]
        name: String,
        /// scim, admin, read or devices; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// The connection a scim token may push into.
        #[arg(long)]
        connection: Option<String>,
        /// Expire after this many days.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List tokens (never their secret).
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name.
    Revoke { name: String },
}

fn main() -> ExitCode {
    allocator::configure();
    let cli = Cli::parse();
    if let Command::PluginChild = cli.command {
        // Before anything else touches stdout: it is the protocol pipe.
        return idpsync_plugin_host::child::child_main();
    }
    commands::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::CheckConfig => commands::check_config(&cli.config),
            Command::Migrate { dry_run } => commands::migrate(&cli.config, dry_run).await,
            Command::Token(TokenCommand::Create {
                name,
                scopes,
                connection,
                expires_in_days,
            }) => {
                commands::token_create(&cli.config, name, scopes, connection, expires_in_days).await
            }
            Command::Token(TokenCommand::List { json }) => {
                commands::token_list(&cli.config, json).await
            }
            Command::Token(TokenCommand::Revoke { name }) => {
                commands::token_revoke(&cli.config, &name).await
            }
            Command::Serve => commands::serve(&cli.config).await,
            Command::Plan {
                connection,
                snapshot,
                json,
                examples,
            } => commands::plan(&cli.config, &connection, &snapshot, json, examples).await,
            Command::Import {
                connection,
                snapshot,
            } => commands::import(&cli.config, &connection, &snapshot).await,
            Command::Runs {
                connection,
                limit,
                json,
            } => commands::runs(&cli.config, connection.as_deref(), limit, json).await,
            Command::Approve { run } => commands::approve(&cli.config, run).await,
            Command::Sync {
                connection,
                dry_run,
                full,
                json,
            } => commands::sync(&cli.config, &connection, dry_run, full, json).await,
            Command::CheckConnection { connection } => {
                commands::check_connection(&cli.config, &connection).await
            }
            Command::Connections { json } => commands::connections(&cli.config, json).await,
            Command::Hooks { json } => commands::hooks(&cli.config, json).await,
            Command::Readyz => commands::readyz(&cli.config).await,
            Command::Backup { to } => commands::backup(&cli.config, &to).await,
            Command::Restore { from } => commands::restore(&cli.config, &from).await,
            #[cfg(feature = "demo")]
            Command::Demo { dir, listen, exit } => demo::run(&dir, &listen, exit).await,
            Command::PluginChild => unreachable!("served before the runtime starts"),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
