//! `[connections.entra]` settings.

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

impl EntraSettings {
    pub fn validate(&self) -> Result<(), DriverError> {
        for (key, value) in [
            ("authority_url", &self.authority_url),
            ("graph_url", &self.graph_url),
        ] {
            match url::Url::parse(value) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
                _ => {
                    return Err(DriverError::config(
                        key,
                        format!("\"{value}\" is not an http(s) URL"),
                    ));
                }
            }
        }
        for (key, value) in [
            ("tenant_id", &self.tenant_id),
            ("client_id", &self.client_id),
        ] {
            if value.trim().is_empty() {
                return Err(DriverError::config(key, "must not be empty"));
            }
        }
        if self.client_secret.is_empty() {
            return Err(DriverError::config("client_secret", "must not be empty"));
        }
        if !(1..=999).contains(&self.page_size) {
            return Err(DriverError::config(
                "page_size",
                format!("must be between 1 and 999, got {}", self.page_size),
            ));
        }
        Ok(())
    }

    /// The Graph host: tokens are sent there and nowhere else.
    pub fn graph_origin(&self) -> String {
        url::Url::parse(&self.graph_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default()
    }
}
