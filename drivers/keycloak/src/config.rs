//! `[connections.keycloak]` settings.

use idpsync_driver::{DriverError, Secret};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeycloakSettings {
    /// Keycloak's root URL, e.g. `https://sso.acme.test` (add `/auth` for
    /// Keycloak before 17).
    pub base_url: String,
    pub realm: String,
    /// The confidential client whose service account reads the realm.
    pub client_id: String,
    pub client_secret: Secret,
    /// Page size (`max`), 1 to 1000.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

fn default_page_size() -> u32 {
    100
}

impl KeycloakSettings {
    pub fn validate(&self) -> Result<(), DriverError> {
        match url::Url::parse(&self.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => {
                return Err(DriverError::config(
                    "base_url",
                    format!("\"{}\" is not an http(s) URL", self.base_url),
                ));
            }
        }
        if self.realm.trim().is_empty() {
            return Err(DriverError::config("realm", "must not be empty"));
        }
        if self.client_id.trim().is_empty() {
            return Err(DriverError::config("client_id", "must not be empty"));
        }
        if self.client_secret.is_empty() {
            return Err(DriverError::config("client_secret", "must not be empty"));
        }
        if !(1..=1000).contains(&self.page_size) {
            return Err(DriverError::config(
                "page_size",
                format!("must be between 1 and 1000, got {}", self.page_size),
            ));
        }
        Ok(())
    }
}
