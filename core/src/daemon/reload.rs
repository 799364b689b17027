//! Re-reading the config file into a new [`Engine`](super::Engine).

use super::{Engine, LiveEngine};
use crate::config::{self, Config, ConfigErrors};
use crate::store::Store;
use crate::sync::DriverRegistry;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a reload kept the running configuration.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this daemon was not started from a config file: there is nothing to re-read")]
    NoFile,
    /// Every problem of the file, each with its key and line:column.
    #[error("{0}the running configuration is kept")]
    Invalid(ConfigErrors),
    #[error(
        "{} changed: only a restart applies {}; the running configuration is kept",
        .0.join(", "),
        if .0.len() == 1 { "it" } else { "them" }
    )]
    NeedsRestart(Vec<&'static str>),
    #[error(
        "cannot record the new configuration in the store ({0}); the running configuration is kept"
    )]
    Store(String),
}

impl ReloadError {
    /// A word for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ReloadError::NoFile => "no_file",
            ReloadError::Invalid(_) => "invalid",
            ReloadError::NeedsRestart(_) => "needs_restart",
            ReloadError::Store(_) => "store",
        }
    }
}

/// What a reload changed, for the admin who asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    pub connections_added: Vec<String>,
    pub connections_removed: Vec<String>,
    /// Connections in both: rebuilt from the file (settings, schedule,
    /// safety limits and notifications all as it now says).
    pub connections_kept: Vec<String>,
    pub acl_groups: usize,
    pub webhooks: usize,
}

impl Reloaded {
    fn between(old: &Config, new: &Config) -> Self {
        let ids = |config: &Config| -> Vec<String> {
            config.connections.iter().map(|c| c.id.clone()).collect()
        };
        let (old_ids, new_ids) = (ids(old), ids(new));
        Reloaded {
            connections_added: new_ids
                .iter()
                .filter(|id| !old_ids.contains(id))
                .cloned()
                .collect(),
            connections_removed: old_ids
                .iter()
                .filter(|id| !new_ids.contains(id))
                .cloned()
                .collect(),
            connections_kept: new_ids
                .iter()
                .filter(|id| old_ids.contains(id))
                .cloned()
                .collect(),
            acl_groups: new.acl_groups.len(),
            webhooks: new.webhooks.len(),
        }
    }
}

/// The keys a running daemon cannot change: the socket it listens on and
/// the database it holds open.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if old.server.listen != new.server.listen {
        changed.push("server.listen");
    }
    if old.database.url.expose() != new.database.url.expose() {
        changed.push("database.url");
    }
    if old.database.max_connections != new.database.max_connections {
        changed.push("database.max_connections");
    }
    if old.database.durability != new.database.durability {
        changed.push("database.durability");
    }
    changed
}

/// Re-reads the daemon's config file into its [`LiveEngine`], one reload
/// at a time.
#[derive(Clone)]
pub struct Reloader {
    file: Option<Arc<PathBuf>>,
    catalog: Arc<DriverRegistry>,
    store: Store,
    live: LiveEngine,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl Reloader {
    pub(crate) fn new(store: Store, live: LiveEngine, catalog: Arc<DriverRegistry>) -> Self {
        Reloader {
            file: None,
            catalog,
            store,
            live,
            one_at_a_time: Arc::default(),
        }
    }

    pub(crate) fn with_file(mut self, file: PathBuf) -> Self {
        self.file = Some(Arc::new(file));
        self
    }

    /// Reads and validates the file, registers its connections and ACL
    /// groups in the store, and swaps in the engine it builds; on any
    /// error, nothing changes. The outcome is logged and counted
    /// (`idpsync_config_reloads_total`).
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.one_at_a_time.lock().await;
        let outcome = self.try_reload().await;
        match &outcome {
            Ok(reloaded) => {
                metrics::counter!("idpsync_config_reloads_total", "result" => "applied")
                    .increment(1);
                tracing::info!(
                    added = ?reloaded.connections_added,
                    removed = ?reloaded.connections_removed,
                    kept = reloaded.connections_kept.len(),
                    "configuration reloaded"
                );
            }
            Err(error) => {
                metrics::counter!("idpsync_config_reloads_total", "result" => error.reason())
                    .increment(1);
                tracing::error!("reload refused: {error}");
            }
        }
        outcome
    }

    async fn try_reload(&self) -> Result<Reloaded, ReloadError> {
        let file = self.file.as_ref().ok_or(ReloadError::NoFile)?;
        let new = config::load_file(file, &*self.catalog).map_err(ReloadError::Invalid)?;
        let current = self.live.current();
        let restart = needs_restart(&current.config, &new);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart));
        }
        self.store
            .register_config(&new.connections, &new.acl_groups)
            .await
            .map_err(|error| ReloadError::Store(error.to_string()))?;
        let reloaded = Reloaded::between(&current.config, &new);
        let engine: Engine = current.reconfigured(new);
        self.live.replace(engine);
        Ok(reloaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        config::load_str(text, "test.toml", &["okta", "scim"], &|_| None).expect("a valid config")
    }

    #[test]
    fn only_the_listener_and_the_database_need_a_restart() {
        let old = config("[server]\nlisten = \"127.0.0.1:8080\"\n");
        let same = config(
            "[server]\nlisten = \"127.0.0.1:8080\"\npublic_url = \"https://idpsync.example\"\nshutdown_grace_secs = 3\n",
        );
        assert!(needs_restart(&old, &same).is_empty());
        let moved = config(
            "[server]\nlisten = \"127.0.0.1:9090\"\n[database]\nurl = \"sqlite://other.db?mode=rwc\"\n",
        );
        assert_eq!(
            needs_restart(&old, &moved),
            vec!["server.listen", "database.url"]
        );
        let error = ReloadError::NeedsRestart(needs_restart(&old, &moved));
        assert_eq!(
            error.to_string(),
            "server.listen, database.url changed: only a restart applies them; the running configuration is kept"
        );
    }

    #[test]
    fn the_summary_names_connections_added_removed_and_kept() {
        let old = config(
            "[[connections]]\nid = \"a\"\nkind = \"scim\"\n[[connections]]\nid = \"b\"\nkind = \"scim\"\n",
        );
        let new = config(
            "[[connections]]\nid = \"b\"\nkind = \"scim\"\n[[connections]]\nid = \"c\"\nkind = \"scim\"\n",
        );
        let summary = Reloaded::between(&old, &new);
        assert_eq!(summary.connections_added, vec!["c"]);
        assert_eq!(summary.connections_removed, vec!["a"]);
        assert_eq!(summary.connections_kept, vec!["b"]);
    }
}
