//! `[connections.okta]` settings.

use idpsync_driver::settings::{self, Settings};
use idpsync_driver::{DriverError, Secret, StatePolicy};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OktaSettings {
    /// The org URL, e.g. `https://acme.okta.com`.
    pub org_url: String,
    /// An API token (`Authorization: SSWS ...`). Or use OAuth below.
    #[serde(default)]
    pub api_token: Option<Secret>,
    /// OAuth 2.0 service app: its client id ...
    #[serde(default)]
    pub client_id: Option<String>,
    /// ... and the PEM private key whose public half is registered with it
    /// (`private_key_jwt`).
    #[serde(default)]
    pub private_key: Option<Secret>,
    /// The key's id (`kid`) as registered in Okta, if it has one.
    #[serde(default)]
    pub private_key_id: Option<String>,
    /// Group types to read.
    #[serde(default = "default_group_types")]
    pub group_types: Vec<String>,
    /// Objects per request (`limit`), 1 to 200.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Read user and group deletions from the System Log in incremental
    /// pulls (`/api/v1/logs`; a service app then also needs the scope
    /// `okta.logs.read`). Deleted users vanish from every listing, so
    /// without it a deletion is seen only by the next full pull (see
    /// `full_sync_every_hours`).
    #[serde(default = "default_true")]
    pub read_system_log: bool,
    /// Which user statuses give access and which only suspend it (devices
    /// kept); every other status deprovisions (devices revoked).
    #[serde(default = "default_states")]
    pub states: StatePolicy,
    /// Event hooks: Okta calls `{public_url}/hooks/okta/<connection>` when a
    /// user or a membership changes, and the connection pulls at once.
    #[serde(default)]
    pub notifications: Option<OktaNotifications>,
}

/// `[connections.okta.notifications]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OktaNotifications {
    /// The value Okta sends in the `Authorization` header of every
    /// delivery (the event hook's "Authentication secret").
    pub secret: Secret,
    /// Create and verify the event hook through the Event Hooks API (the
    /// token then needs `okta.eventHooks.manage`, or a super admin's API
    /// token). Off: an admin creates it in the Admin Console.
    #[serde(default)]
    pub register: bool,
}

/// Okta's user statuses.
pub const STATUSES: [&str; 8] = [
    "STAGED",
    "PROVISIONED",
    "ACTIVE",
    "RECOVERY",
    "PASSWORD_EXPIRED",
    "LOCKED_OUT",
    "SUSPENDED",
    "DEPROVISIONED",
];

/// The person still works here in ACTIVE, PROVISIONED (activated, no
/// password yet), RECOVERY and PASSWORD_EXPIRED (resetting a password);
/// LOCKED_OUT (mistyped passwords) passes, so it only suspends; STAGED
/// (never activated), SUSPENDED and DEPROVISIONED are an admin's decision
/// and deprovision.
fn default_states() -> StatePolicy {
    StatePolicy::new(
        &["ACTIVE", "PROVISIONED", "RECOVERY", "PASSWORD_EXPIRED"],
        &["LOCKED_OUT"],
    )
}

fn default_true() -> bool {
    true
}

fn default_group_types() -> Vec<String> {
    vec!["OKTA_GROUP".into(), "APP_GROUP".into()]
}

fn default_page_size() -> u32 {
    200
}

/// How the driver authenticates.
pub enum OktaAuth<'a> {
    ApiToken(&'a Secret),
    OAuth {
        client_id: &'a str,
        private_key: &'a Secret,
        key_id: Option<&'a str>,
    },
}

impl Settings for OktaSettings {
    fn validate(&self) -> Result<(), DriverError> {
        settings::http_url("org_url", &self.org_url)?;
        self.auth()?;
        // The users and groups endpoints' documented maximum `limit`.
        settings::page_size(self.page_size, 200)?;
        self.states.validate("states", &STATUSES)?;
        if let Some(notifications) = &self.notifications {
            settings::secret_set("notifications.secret", &notifications.secret)?;
        }
        for kind in &self.group_types {
            if !matches!(kind.as_str(), "OKTA_GROUP" | "APP_GROUP" | "BUILT_IN") {
                return Err(DriverError::config(
                    "group_types",
                    format!("\"{kind}\" is not OKTA_GROUP, APP_GROUP or BUILT_IN"),
                ));
            }
        }
        Ok(())
    }
}

impl OktaSettings {
    pub fn auth(&self) -> Result<OktaAuth<'_>, DriverError> {
        match (&self.api_token, &self.client_id, &self.private_key) {
            (Some(token), None, None) if !token.is_empty() => Ok(OktaAuth::ApiToken(token)),
            (None, Some(client_id), Some(private_key)) => Ok(OktaAuth::OAuth {
                client_id,
                private_key,
                key_id: self.private_key_id.as_deref(),
            }),
            (None, Some(_), None) => Err(DriverError::config(
                "private_key",
                "an OAuth service app needs its private_key",
            )),
            (None, None, Some(_)) => Err(DriverError::config(
                "client_id",
                "an OAuth service app needs its client_id",
            )),
            (Some(_), _, _) if self.client_id.is_some() || self.private_key.is_some() => {
                Err(DriverError::config(
                    "api_token",
                    "set either api_token or client_id with private_key, not both",
                ))
            }
            _ => Err(DriverError::config(
                "api_token",
                "set api_token, or client_id and private_key for an OAuth service app",
            )),
        }
    }
}
