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
