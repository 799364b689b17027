//! `[connections.jumpcloud]` settings.

use idpsync_driver::settings::{self, Settings};
use idpsync_driver::{DriverError, Secret, StatePolicy};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JumpCloudSettings {
    /// An administrator's API key (Admin Portal → your account → API Settings).
    pub api_key: Secret,
    /// The organization id, for multi-tenant (MTP) administrators.
    #[serde(default)]
    pub org_id: Option<String>,
    /// The API root; change it only for JumpCloud's EU region or tests.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Objects per request, 1 to 100 (the API's maximum).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Which user states give access and which only suspend it; the others
    /// deprovision.
    #[serde(default = "default_states")]
    pub states: StatePolicy,
}

/// A JumpCloud user's states: the API's `state` (`ACTIVATED`, `STAGED`,
/// `SUSPENDED`), and `LOCKED` for an activated account with
/// `account_locked` (too many failed logins).
pub const STATES: [&str; 4] = ["ACTIVATED", "STAGED", "SUSPENDED", "LOCKED"];

/// A lockout passes (an admin or time unlocks it): it only suspends.
/// STAGED (never activated) and SUSPENDED (an admin's decision) deprovision.
fn default_states() -> StatePolicy {
    StatePolicy::new(&["ACTIVATED"], &["LOCKED"])
}

fn default_base_url() -> String {
    "https://console.jumpcloud.com".into()
}

fn default_page_size() -> u32 {
    100
}

impl Settings for JumpCloudSettings {
    fn validate(&self) -> Result<(), DriverError> {
        settings::http_url("base_url", &self.base_url)?;
        self.states.validate("states", &STATES)?;
        settings::secret_set("api_key", &self.api_key)?;
        // JumpCloud's documented maximum `limit`.
        settings::page_size(self.page_size, 100)
    }
}
