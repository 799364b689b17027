//! `[connections.entra]` settings.

use idpsync_driver::settings::{self, Settings};
use idpsync_driver::{DriverError, Secret};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraSettings {
    /// The directory (tenant) id.
    pub tenant_id: String,
    /// The app registration's application (client) id.
    pub client_id: String,
    pub client_secret: Secret,
    /// The identity platform: `https://login.microsoftonline.com`, or a
    /// national cloud's (`https://login.microsoftonline.us`, ...).
    #[serde(default = "default_authority")]
    pub authority_url: String,
    /// Microsoft Graph: `https://graph.microsoft.com`, or a national cloud's.
    #[serde(default = "default_graph")]
    pub graph_url: String,
    /// Only groups whose display name starts with one of these (all if empty).
    #[serde(default)]
    pub group_name_prefixes: Vec<String>,
    /// Objects per page (`Prefer: odata.maxpagesize`), 1 to 999.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Change notifications: Graph subscriptions deliver to
    /// `{public_url}/hooks/entra/<connection>` and the connection pulls its
    /// delta at once.
    #[serde(default)]
    pub notifications: Option<EntraNotifications>,
}

/// `[connections.entra.notifications]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraNotifications {
    /// The subscriptions' `clientState`: every notification carries it,
    /// and one without it is refused. At most 128 characters.
    pub secret: Secret,
    /// What to subscribe to: `users` (disabled, deleted, changed people)
    /// and `groups` (membership changes).
    #[serde(default = "default_resources")]
    pub resources: Vec<String>,
    /// How long each subscription is asked to last; Graph allows up to
    /// 41,760 minutes (29 days) for users and groups. Renewed when a third
    /// of it is left.
    #[serde(default = "default_lifetime_secs")]
    pub lifetime_secs: u64,
}

/// Graph's longest subscription to users or groups: 41,760 minutes.
pub const MAX_SUBSCRIPTION_SECS: u64 = 41_760 * 60;

fn default_resources() -> Vec<String> {
    vec!["users".into(), "groups".into()]
}

fn default_lifetime_secs() -> u64 {
    // A minute short of the maximum, for the clocks' disagreement.
    MAX_SUBSCRIPTION_SECS - 60
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}

fn default_graph() -> String {
    "https://graph.microsoft.com".into()
}

fn default_page_size() -> u32 {
    999
}

impl Settings for EntraSettings {
    fn validate(&self) -> Result<(), DriverError> {
        settings::http_url("authority_url", &self.authority_url)?;
        settings::http_url("graph_url", &self.graph_url)?;
        settings::not_empty("tenant_id", &self.tenant_id)?;
        settings::not_empty("client_id", &self.client_id)?;
        settings::secret_set("client_secret", &self.client_secret)?;
        if let Some(notifications) = &self.notifications {
            settings::secret_set("notifications.secret", &notifications.secret)?;
            if notifications.secret.expose().chars().count() > 128 {
                return Err(DriverError::config(
                    "notifications.secret",
                    "Graph's clientState holds at most 128 characters",
                ));
            }
            if notifications.resources.is_empty() {
                return Err(DriverError::config(
                    "notifications.resources",
                    "list users, groups or both",
                ));
            }
            for resource in &notifications.resources {
                if !matches!(resource.as_str(), "users" | "groups") {
                    return Err(DriverError::config(
                        "notifications.resources",
                        format!("\"{resource}\" is not users or groups"),
                    ));
                }
            }
            if !(1..=MAX_SUBSCRIPTION_SECS).contains(&notifications.lifetime_secs) {
                return Err(DriverError::config(
                    "notifications.lifetime_secs",
                    format!(
                        "Graph allows 1 to {MAX_SUBSCRIPTION_SECS} seconds for users and groups"
                    ),
                ));
            }
        }
        // Graph's `odata.maxpagesize` ceiling for users and groups.
        settings::page_size(self.page_size, 999)
    }
}

impl EntraSettings {
    /// The Graph host: tokens are sent there and nowhere else.
    pub fn graph_origin(&self) -> String {
        url::Url::parse(&self.graph_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }
}
