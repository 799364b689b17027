//! One function per CLI command. Each loads the config, opens the store and
//! calls into `idpsync-core`.

use anyhow::{Context, Result, bail};
use chrono::{Duration, Utc};
use idpsync_core::auth::Scope;
use idpsync_core::config::{self, Config, SCIM_KIND};
use idpsync_core::events::EventBus;
use idpsync_core::reconcile::{Outcome, Reconciler, Snapshot, SourceInput, SubmitOptions, Trigger};
use idpsync_core::store::{NewToken, Store};
use idpsync_core::sync::SyncStatus;
use std::path::Path;
use std::process::ExitCode;

pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("IDPSYNC_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sea_orm_migration=warn"));
    let json = std::env::var("IDPSYNC_LOG_FORMAT").as_deref() == Ok("json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Loads the config or fails with every problem listed.
fn load_config(path: &Path) -> Result<Config> {
    config::load_file(path, &crate::drivers::registry())
        .map_err(|errors| anyhow::anyhow!("{errors}"))
}

async fn open_store(config: &Config) -> Result<Store> {
    let store = Store::open_with(
        config.database.url.expose(),
        config.database.max_connections,
        config.database.durability,
    )
    .await
    .context("while opening the database named in [database].url")?;
    store
        .register_config(&config.connections, &config.acl_groups)
        .await
        .context("while registering the configured connections")?;
    Ok(store)
}

pub fn check_config(path: &Path) -> Result<ExitCode> {
    match config::load_file(path, &crate::drivers::registry()) {
        Ok(config) => {
            println!(
                "{}: ok ({} connections, {} ACL groups, {} webhooks)",
                path.display(),
                config.connections.len(),
                config.acl_groups.len(),
                config.webhooks.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprint!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn migrate(path: &Path, dry_run: bool) -> Result<ExitCode> {
    let config = load_config(path)?;
    let store = Store::connect_with(
        config.database.url.expose(),
        config.database.max_connections,
        None,
        config.database.durability,
    )
    .await
    .context("while opening the database named in [database].url")?;
    if dry_run {
        let pending = store
            .pending_migrations()
            .await
            .context("while reading the database's schema")?;
        if pending.is_empty() {
            println!("schema is up to date; nothing would change");
        }
        for name in pending {
            println!("would apply {name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let applied = store
        .migrate()
        .await
        .context("while migrating the database")?;
    if applied.is_empty() {
        println!("schema is up to date");
    } else {
        for name in applied {
            println!("applied {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token_create(
    path: &Path,
    name: String,
    scope_names: Vec<String>,
    connection: Option<String>,
    expires_in_days: Option<u32>,
) -> Result<ExitCode> {
    let config = load_config(path)?;
    let scopes = scope_names
        .iter()
        .map(|name| name.parse::<Scope>().map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    match (&connection, scopes.contains(&Scope::Scim)) {
        (None, true) => bail!("a scim token is bound to one connection: add --connection <id>"),
        (Some(id), _) => {
            let Some(found) = config.connection(id) else {
                bail!(
                    "unknown connection \"{id}\": it is not in {}",
                    path.display()
                );
            };
            if scopes.contains(&Scope::Scim) && found.kind != SCIM_KIND {
                bail!(
                    "connection \"{id}\" is of kind \"{}\", not \"scim\": it takes no SCIM pushes",
                    found.kind
                );
            }
        }
        (None, false) => {}
    }
    let store = open_store(&config).await?;
    let (plaintext, record) = store
        .create_token(NewToken {
            name,
            scopes,
            connection_id: connection,
            expires_at: expires_in_days.map(|days| Utc::now() + Duration::days(days.into())),
        })
        .await
        .context("while creating the token")?;
    eprintln!(
        "created token \"{}\" (scopes: {}{}). It is shown only now; store it safely:",
        record.name,
        record.scopes.join(","),
        record
            .connection_id
            .as_deref()
            .map(|id| format!(", connection: {id}"))
            .unwrap_or_default()
    );
    println!("{plaintext}");
    Ok(ExitCode::SUCCESS)
}

pub async fn token_list(path: &Path, json: bool) -> Result<ExitCode> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let tokens = store.list_tokens().await.context("while listing tokens")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&tokens)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:<14} {:<22} {:<16} {:<20} {:<8}",
        "NAME", "PREFIX", "SCOPES", "CONNECTION", "EXPIRES", "STATE"
    );
    let now = Utc::now();
    for token in tokens {
        let state = if token.revoked_at.is_some() {
            "revoked"
        } else if token.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        };
        println!(
            "{:<24} {:<14} {:<22} {:<16} {:<20} {:<8}",
            token.name,
            token.prefix,
            token.scopes.join(","),
            token.connection_id.as_deref().unwrap_or("-"),
            token
                .expires_at
                .map(|at| at.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "never".into()),
            state
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn token_revoke(path: &Path, name: &str) -> Result<ExitCode> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    store
        .revoke_token(name)
        .await
        .context("while revoking the token")?;
    println!("revoked token \"{name}\"");
    Ok(ExitCode::SUCCESS)
}

pub async fn serve(path: &Path) -> Result<ExitCode> {
    // The default actions of SIGHUP and SIGTERM end the process: their
    // handlers are in place before the port opens or systemd hears
    // READY=1, either of which may be followed by a reload or a stop.
    let hangups = listen_for_hangups();
    let shutdown = shutdown_signal();
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let listen = config
        .server
        .listen_addr()
        .context("while reading [server].listen")?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("while binding {listen}: is another process using the port?"))?;
    tracing::info!(address = %listener.local_addr()?, "idpsync serving");
    let state =
        idpsync_core::api::AppState::with_drivers(config, store, crate::drivers::registry())
            .reloadable_from(path.to_path_buf());
    crate::systemd::ready();
    tokio::spawn(reload_on_hangup(hangups, state.reloader.clone()));
    idpsync_core::api::serve(listener, state, async {
        shutdown.await;
        crate::systemd::notify("STOPPING=1");
    })
    .await
    .context("while serving HTTP")?;
    tracing::info!("idpsync stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

/// Installs the SIGHUP handler, replacing the default action (exit).
fn listen_for_hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let hangups = signal(SignalKind::hangup()).ok();
        if hangups.is_none() {
            tracing::warn!("cannot listen for SIGHUP: reload with POST /api/v1/reload");
        }
        hangups
    }
}

/// Re-reads the config file at each SIGHUP (`systemctl reload`); the
/// outcome is logged either way, and an error keeps the running config.
async fn reload_on_hangup(hangups: Hangups, reloader: idpsync_core::daemon::reload::Reloader) {
    #[cfg(unix)]
    {
        let Some(mut hangups) = hangups else {
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            crate::systemd::notify("RELOADING=1");
            // The reloader logs what it did, or why it kept the config.
            let _ = reloader.reload().await;
            crate::systemd::notify("READY=1");
        }
    }
    #[cfg(not(unix))]
    drop((hangups, reloader));
}

/// Installs the SIGTERM and SIGINT handlers at once (their default action
/// ends the process with a signal status) and resolves when either comes.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        let arrival = |handler: Option<Signal>| async move {
            match handler {
                Some(mut handler) => {
                    handler.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        async move {
            tokio::select! {
                _ = arrival(terminate) => {},
                _ = arrival(interrupt) => {},
            }
            tracing::info!("shutdown requested");
        }
    }
    #[cfg(not(unix))]
    async {
        tokio::signal::ctrl_c().await.ok();
        tracing::info!("shutdown requested");
    }
}

fn read_snapshot(path: &Path) -> Result<Snapshot> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("while reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "while parsing {}: expected {{\"users\": [...], \"groups\": [...], \"memberships\": [...]}}",
            path.display()
        )
    })
}

async fn reconciler(config: &Config) -> Result<Reconciler> {
    let store = open_store(config).await?;
    Ok(Reconciler::new(store, config, EventBus::default()))
}

pub async fn plan(
    path: &Path,
    connection: &str,
    snapshot: &Path,
    json: bool,
    examples: usize,
) -> Result<ExitCode> {
    let config = load_config(path)?;
    let snapshot = read_snapshot(snapshot)?;
    let reconciler = reconciler(&config).await?;
    let outcome = reconciler
        .submit(
            connection,
            SourceInput::Snapshot(snapshot),
            SubmitOptions::new(Trigger::Manual).dry_run(),
        )
        .await
        .with_context(|| format!("while planning connection \"{connection}\""))?;
    let Outcome::Planned(plan) = outcome else {
        bail!("a dry run returned {outcome:?}");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        print!("{}", plan.render_table(examples));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn import(path: &Path, connection: &str, snapshot: &Path) -> Result<ExitCode> {
    let config = load_config(path)?;
    let snapshot = read_snapshot(snapshot)?;
    let reconciler = reconciler(&config).await?;
    let outcome = reconciler
        .submit(
            connection,
            SourceInput::Snapshot(snapshot),
            SubmitOptions::new(Trigger::Manual),
        )
        .await
        .with_context(|| format!("while importing into connection \"{connection}\""))?;
    Ok(report_outcome(&outcome))
}

pub async fn approve(path: &Path, run: i64) -> Result<ExitCode> {
    let config = load_config(path)?;
    let reconciler = reconciler(&config).await?;
    let outcome = reconciler
        .approve(run)
        .await
        .with_context(|| format!("while approving run {run}"))?;
    Ok(report_outcome(&outcome))
}

/// Prints an outcome for a person; held exits 2 so scripts notice.
fn report_outcome(outcome: &Outcome) -> ExitCode {
    match outcome {
        Outcome::Applied(report) => {
            println!(
                "run {}: applied; {} events; changes {}; effects {}",
                report.run_id,
                report.n_events,
                serde_json::to_string(&report.changes).unwrap_or_default(),
                serde_json::to_string(&report.effects).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Outcome::Unchanged(report) => {
            println!("run {}: no changes", report.run_id);
            ExitCode::SUCCESS
        }
        Outcome::Held(report) => {
            println!(
                "run {}: HELD by the safety gate ({} deletions, {} deactivations); review with `idpsync runs`, apply with `idpsync approve {}`",
                report.run_id,
                report.changes.users_deleted,
                report.changes.users_deactivated,
                report.run_id
            );
            ExitCode::from(2)
        }
        Outcome::Planned(plan) => {
            print!("{}", plan.render_table(5));
            ExitCode::SUCCESS
        }
    }
}

pub async fn runs(
    path: &Path,
    connection: Option<&str>,
    limit: u64,
    json: bool,
) -> Result<ExitCode> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let runs = store
        .recent_runs(connection, limit)
        .await
        .context("while listing runs")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6}  {:<16} {:<9} {:<6} {:<11} {:<20} CHANGES",
        "RUN", "CONNECTION", "TRIGGER", "MODE", "STATUS", "STARTED"
    );
    for run in runs {
        println!(
            "{:>6}  {:<16} {:<9} {:<6} {:<11} {:<20} {}",
            run.id,
            run.connection_id,
            run.trigger,
            run.mode,
            run.status,
            run.started_at.format("%Y-%m-%d %H:%M:%S"),
            summarize_counts(&run.counts)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `users_created=3 memberships_added=7` from a run's counts JSON, zeros left out.
fn summarize_counts(counts: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(counts).unwrap_or_default();
    let mut parts = Vec::new();
    for section in ["changes", "effects"] {
        if let Some(fields) = value.get(section).and_then(|v| v.as_object()) {
            for (key, count) in fields {
                if count.as_u64().unwrap_or(0) > 0 {
                    parts.push(format!("{key}={count}"));
                }
            }
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

pub async fn sync(
    path: &Path,
    connection: &str,
    dry_run: bool,
    full: bool,
    json: bool,
) -> Result<ExitCode> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let state =
        idpsync_core::api::AppState::with_drivers(config, store, crate::drivers::registry());
    let report = state
        .engine()
        .sync
        .run(
            connection,
            Trigger::Manual,
            dry_run,
            full,
            std::future::pending(),
        )
        .await
        .with_context(|| format!("while syncing connection \"{connection}\""))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(Outcome::Planned(plan)) = &report.outcome {
        print!("{}", plan.render_table(5));
    } else {
        println!(
            "{}: {} {} sync {} in {} ms (received {} users, {} groups, {} memberships){}",
            report.connection_id,
            report.mode,
            report
                .run_id
                .map(|id| format!("run {id}"))
                .unwrap_or_default(),
            report.status,
            report.duration_ms,
            report.received.users,
            report.received.groups,
            report.received.memberships,
            report
                .error
                .as_deref()
                .map(|e| format!("\n  error: {e}"))
                .unwrap_or_default()
        );
    }
    Ok(match report.status {
        SyncStatus::Failed | SyncStatus::Abandoned => ExitCode::FAILURE,
        SyncStatus::Held => ExitCode::from(2),
        SyncStatus::Applied | SyncStatus::Unchanged | SyncStatus::Planned => ExitCode::SUCCESS,
    })
}

pub async fn check_connection(path: &Path, connection: &str) -> Result<ExitCode> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let state =
        idpsync_core::api::AppState::with_drivers(config, store, crate::drivers::registry());
    match state
        .engine()
        .sync
        .check(connection)
        .await
        .with_context(|| format!("while checking \"{connection}\""))?
    {
        Ok(capabilities) => {
            println!(
                "{connection}: ok: {} (delta: {}, nested groups: {})",
                capabilities.summary, capabilities.delta, capabilities.nested_groups
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("{connection}: FAILED: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub async fn connections(path: &Path, json: bool) -> Result<ExitCode> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let rows = store
        .connections()
        .await
        .context("while listing connections")?;
    let mut listing = Vec::new();
    for row in rows {
        let last = store
            .recent_runs(Some(&row.id), 1)
            .await?
            .into_iter()
            .next();
        listing.push(serde_json::json!({
            "id": row.id,
            "kind": row.kind,
            "configured": config.connection(&row.id).is_some(),
            "health": row.health,
            "consecutive_failures": row.consecutive_failures,
            "next_run_at": row.next_run_at,
            "last_run": last.as_ref().map(|run| serde_json::json!({
                "id": run.id, "status": run.status, "started_at": run.started_at, "error": run.error
            })),
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<18} {:<10} {:<12} {:>8}  {:<20} LAST RUN",
        "CONNECTION", "KIND", "HEALTH", "FAILURES", "BACKOFF UNTIL"
    );
    for item in listing {
        let last = &item["last_run"];
        println!(
            "{:<18} {:<10} {:<12} {:>8}  {:<20} {}",
            item["id"].as_str().unwrap_or_default(),
            item["kind"].as_str().unwrap_or_default(),
            item["health"].as_str().unwrap_or_default(),
            item["consecutive_failures"],
            item["next_run_at"]
                .as_str()
                .map(|at| at.chars().take(19).collect::<String>())
                .unwrap_or_else(|| "-".into()),
            if last.is_null() {
                "-".to_string()
            } else {
                format!(
                    "#{} {}{}",
                    last["id"],
                    last["status"].as_str().unwrap_or_default(),
                    last["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `idpsync hooks`: every connection with a `notifications` table, where
/// its IdP delivers, what is subscribed and until when, and its last
/// notification run.
pub async fn hooks(path: &Path, json: bool) -> Result<ExitCode> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    let subscriptions = idpsync_core::hooks::subscriptions(&store)
        .await
        .context("while reading the subscriptions")?;
    let now = chrono::Utc::now();
    let mut listing = Vec::new();
    for connection in config.connections.iter().filter(|c| {
        c.kind_settings()
            .and_then(|table| table.get("notifications"))
            .is_some()
    }) {
        let callback =
            config.server.public_url.as_deref().map(|url| {
                idpsync_core::hooks::Hooks::callback(url, &connection.kind, &connection.id)
            });
        let last_run = store
            .recent_runs(Some(&connection.id), 200)
            .await?
            .into_iter()
            .find(|run| run.trigger == idpsync_core::reconcile::Trigger::Notification.as_str());
        let rows: Vec<_> = subscriptions
            .iter()
            .filter(|row| row.connection_id == connection.id)
            .map(|row| {
                let state = match (&row.last_error, row.expires_at) {
                    (Some(_), _) => "failing",
                    (None, Some(at)) if at <= now => "expired",
                    _ => "active",
                };
                serde_json::json!({
                    "resource": row.resource,
                    "id": row.subscription_id,
                    "state": state,
                    "expires_at": row.expires_at,
                    "renewed_at": row.renewed_at,
                    "error": row.last_error,
                })
            })
            .collect();
        listing.push(serde_json::json!({
            "connection": connection.id,
            "kind": connection.kind,
            "callback": callback,
            "subscriptions": rows,
            "last_notification_run": last_run.map(|run| serde_json::json!({
                "id": run.id, "status": run.status, "started_at": run.started_at,
            })),
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(ExitCode::SUCCESS);
    }
    if listing.is_empty() {
        println!("no connection has a notifications table");
        return Ok(ExitCode::SUCCESS);
    }
    for item in &listing {
        println!(
            "{} ({}) <- {}",
            item["connection"].as_str().unwrap_or_default(),
            item["kind"].as_str().unwrap_or_default(),
            item["callback"]
                .as_str()
                .unwrap_or("(no [server] public_url)")
        );
        let rows = item["subscriptions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if rows.is_empty() {
            println!("  no subscription stored (registered by hand at the IdP, or not made yet)");
        }
        for row in rows {
            println!(
                "  {:<10} {:<8} expires {:<20} id {}{}",
                row["resource"].as_str().unwrap_or_default(),
                row["state"].as_str().unwrap_or_default(),
                row["expires_at"]
                    .as_str()
                    .map(|at| at.chars().take(19).collect::<String>())
                    .unwrap_or_else(|| "never".into()),
                row["id"].as_str().unwrap_or_default(),
                row["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
        match item["last_notification_run"].as_object() {
            Some(run) => println!(
                "  last notification run #{} {} at {}",
                run["id"],
                run["status"].as_str().unwrap_or_default(),
                run["started_at"].as_str().unwrap_or_default()
            ),
            None => println!("  no notification run yet"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `idpsync readyz`: asks the daemon at `[server] listen` (on loopback when
/// it listens on every address) for `/readyz`.
pub async fn readyz(path: &Path) -> Result<ExitCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = load_config(path)?;
    let mut address = config
        .server
        .listen_addr()
        .context("while reading [server].listen")?;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok::<String, std::io::Error>(text)
    })
    .await;
    let status_line = match answer {
        Ok(Ok(text)) => text.lines().next().unwrap_or_default().to_string(),
        Ok(Err(error)) => {
            eprintln!("not ready: {address}: {error}");
            return Ok(ExitCode::FAILURE);
        }
        Err(_) => {
            eprintln!("not ready: {address} did not answer within 5 s");
            return Ok(ExitCode::FAILURE);
        }
    };
    if status_line.split_whitespace().nth(1) == Some("200") {
        println!("ready");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("not ready: {status_line}");
        Ok(ExitCode::FAILURE)
    }
}

/// `idpsync backup --to FILE`.
pub async fn backup(path: &Path, file: &Path) -> Result<ExitCode> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    store
        .backup_to(file)
        .await
        .with_context(|| format!("while backing up to {}", file.display()))?;
    println!("backed up to {}", file.display());
    Ok(ExitCode::SUCCESS)
}

/// `idpsync restore --from FILE`.
pub async fn restore(path: &Path, file: &Path) -> Result<ExitCode> {
    let config = load_config(path)?;
    let pending = idpsync_core::store::backup::restore(file, config.database.url.expose())
        .await
        .with_context(|| format!("while restoring {}", file.display()))?;
    println!("restored {}", file.display());
    if !pending.is_empty() {
        println!(
            "the backup predates {} migration(s); the next start applies them",
            pending.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
