//! `[connections.google_workspace]` settings.

use idpsync_driver::settings::{self, Settings};
use idpsync_driver::{DriverError, Secret, StatePolicy};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleSettings {
    /// The service account's JSON key (the file's contents), e.g.
    /// `"${GOOGLE_SERVICE_ACCOUNT_KEY}"`.
    pub service_account_key: Secret,
    /// The Workspace admin the service account acts as (domain-wide delegation).
    pub admin_email: String,
    /// `my_customer` (the admin's account) or a customer id; ignored if `domain` is set.
    #[serde(default = "default_customer")]
    pub customer: String,
    /// Read only this domain's users and groups.
    #[serde(default)]
    pub domain: Option<String>,
    /// The Admin SDK root; change only for tests.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Users per page (1 to 500); groups and members use at most 200.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Which user states (`active`, `suspended`, `archived`) give access
    /// and which only suspend it; the others deprovision.
    #[serde(default = "default_states")]
    pub states: StatePolicy,
}

/// A Workspace user's states, as the driver names them.
pub const STATES: [&str; 3] = ["active", "suspended", "archived"];

/// An admin suspends or archives a person on purpose (or Google suspends
/// an abusive account): both deprovision unless the connection says so.
fn default_states() -> StatePolicy {
    StatePolicy::new(&["active"], &[])
}

fn default_customer() -> String {
    "my_customer".into()
}

fn default_api_url() -> String {
    "https://admin.googleapis.com".into()
}

fn default_page_size() -> u32 {
    500
}

/// The parts of a service account key the driver uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: Secret,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

impl Settings for GoogleSettings {
    fn validate(&self) -> Result<(), DriverError> {
        self.key()?;
        self.states.validate("states", &STATES)?;
        if !self.admin_email.contains('@') {
            return Err(DriverError::config(
                "admin_email",
                "must be the email of a Workspace administrator",
            ));
        }
        settings::http_url("api_url", &self.api_url)?;
        // users.list's documented maxResults (groups take 200, members 200).
        settings::page_size(self.page_size, 500)
    }
}

impl GoogleSettings {
    pub fn key(&self) -> Result<ServiceAccountKey, DriverError> {
        // The key is a secret: the error says what is expected, never what was read.
        serde_json::from_str(self.service_account_key.expose()).map_err(|_| {
            DriverError::config(
                "service_account_key",
                "not a service account JSON key (with client_email and private_key)",
            )
        })
    }
}
