//! `[connections.keycloak]` settings.

use idpsync_driver::settings::{self, Settings};
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

impl Settings for KeycloakSettings {
    fn validate(&self) -> Result<(), DriverError> {
        settings::http_url("base_url", &self.base_url)?;
        settings::not_empty("realm", &self.realm)?;
        settings::not_empty("client_id", &self.client_id)?;
        settings::secret_set("client_secret", &self.client_secret)?;
        // Keycloak takes any `max`; 1,000 keeps one page's answer small.
        settings::page_size(self.page_size, 1000)
    }
}
