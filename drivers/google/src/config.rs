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
    /// Push notifications: `users.watch` channels deliver to
    /// `{public_url}/hooks/google_workspace/<connection>` and the connection
    /// pulls at once.
    #[serde(default)]
    pub notifications: Option<GoogleNotifications>,
}

/// `[connections.google_workspace.notifications]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleNotifications {
    /// The channels' token: Google sends it back as `X-Goog-Channel-Token`
    /// with every message, and one without it is refused. At most 256
    /// characters.
    pub secret: Secret,
    /// The user events to watch, one channel each: `add`, `delete`,
    /// `update` (suspension is an update), `undelete`, `makeAdmin`.
    #[serde(default = "default_events")]
    pub events: Vec<String>,
    /// The channels' requested time to live; a new channel replaces each
    /// when a third of it is left.
    #[serde(default = "default_channel_ttl_secs")]
    pub channel_ttl_secs: u64,
}

/// The user events `users.watch` takes.
pub const WATCH_EVENTS: [&str; 5] = ["add", "delete", "makeAdmin", "undelete", "update"];

fn default_events() -> Vec<String> {
    ["add", "delete", "update", "undelete"]
        .map(String::from)
        .to_vec()
}

fn default_channel_ttl_secs() -> u64 {
    6 * 3600
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
        if let Some(notifications) = &self.notifications {
            settings::secret_set("notifications.secret", &notifications.secret)?;
            if notifications.secret.expose().chars().count() > 256 {
                return Err(DriverError::config(
                    "notifications.secret",
                    "a channel token holds at most 256 characters",
                ));
            }
            if notifications.events.is_empty() {
                return Err(DriverError::config(
                    "notifications.events",
                    format!("list some of {}", WATCH_EVENTS.join(", ")),
                ));
            }
            if let Some(event) = notifications
                .events
                .iter()
                .find(|e| !WATCH_EVENTS.contains(&e.as_str()))
            {
                return Err(DriverError::config(
                    "notifications.events",
                    format!("\"{event}\" is not one of {}", WATCH_EVENTS.join(", ")),
                ));
            }
            if notifications.channel_ttl_secs == 0 {
                return Err(DriverError::config(
                    "notifications.channel_ttl_secs",
                    "must be at least 1",
                ));
            }
        }
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
