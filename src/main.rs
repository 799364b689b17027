//! The `idpsync` binary: argument parsing and wiring only. Everything it runs
//! lives in `idpsync-core`; errors here carry context for the person at the
//! terminal (anyhow).

mod commands;

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
    Migrate,
    /// Create, list or revoke API and SCIM tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Run the daemon: HTTP server with /healthz, /readyz and /metrics.
    Serve,
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
    let cli = Cli::parse();
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
            Command::Migrate => commands::migrate(&cli.config).await,
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
