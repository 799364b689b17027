//! `[connections.plugin]`: which library to load, which kind it must be, and
//! the plugin's own table, passed through untouched.

use idpsync_driver::{DriverError, parse_settings};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The host's view of a plugin connection's table.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// The shared library; relative paths are relative to the daemon's
    /// working directory.
    pub path: PathBuf,
    /// The kind the plugin must declare (`ldap`), so a swapped file is refused.
    pub kind: String,
    /// The plugin's own settings (`[connections.plugin.settings]`).
    #[serde(default = "empty_table")]
    pub settings: serde_json::Value,
    /// The longest a check or pull may take before the plugin is stopped.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

// Debug shows where the plugin is, never its settings (they hold credentials).
impl std::fmt::Debug for PluginSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSettings")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("timeout_secs", &self.timeout_secs)
            .finish_non_exhaustive()
    }
}

fn empty_table() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn default_timeout_secs() -> u64 {
    3600
}

impl PluginSettings {
    pub fn parse(settings: &serde_json::Value) -> Result<Self, DriverError> {
        let parsed: PluginSettings = parse_settings(settings)?;
        if parsed.kind.trim().is_empty() {
            return Err(DriverError::config("kind", "must name the plugin's kind"));
        }
        if !parsed.settings.is_object() {
            return Err(DriverError::config("settings", "must be a table"));
        }
        if parsed.timeout_secs == 0 {
            return Err(DriverError::config("timeout_secs", "must be at least 1"));
        }
        let path = std::path::absolute(&parsed.path).unwrap_or_else(|_| parsed.path.clone());
        if !path.is_file() {
            return Err(DriverError::config(
                "path",
                format!("{}: no such file", path.display()),
            ));
        }
        Ok(PluginSettings { path, ..parsed })
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_missing_library_is_named_under_the_path_key() {
        let error = PluginSettings::parse(&json!({"path": "/nonexistent/libx.so", "kind": "ldap"}))
            .unwrap_err();
        assert_eq!(
            error,
            DriverError::config("path", "/nonexistent/libx.so: no such file")
        );
    }

    #[test]
    fn unknown_keys_and_a_missing_kind_are_refused() {
        let error = PluginSettings::parse(&json!({"path": "/bin/sh", "kind": "ldap", "paht": 1}))
            .unwrap_err();
        assert!(error.to_string().contains("paht"), "{error}");
        let error = PluginSettings::parse(&json!({"path": "/bin/sh"})).unwrap_err();
        assert!(error.to_string().contains("kind"), "{error}");
    }

    #[test]
    fn debug_never_shows_the_plugin_settings() {
        let settings = PluginSettings::parse(&json!({
            "path": "/bin/sh", "kind": "ldap",
            "settings": {"bind_password": "hunter2-very-secret"}
        }))
        .unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
