//! `[connections.authentik]` settings.

use idpsync_driver::settings::{self, Settings};
use idpsync_driver::{DriverError, Secret};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthentikSettings {
    /// authentik's root URL, e.g. `https://auth.acme.test`.
    pub base_url: String,
    /// An API token (intent "API") of a user or service account that may
    /// view users and groups.
    pub token: Secret,
    /// Which user types are people to sync. authentik's types are
    /// `internal`, `external`, `service_account` and
    /// `internal_service_account`; service accounts are not people.
    #[serde(default = "default_user_types")]
    pub user_types: Vec<String>,
    /// `page_size` of the listings, 1 to 100.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
}

pub const USER_TYPES: [&str; 4] = [
    "internal",
    "external",
    "service_account",
    "internal_service_account",
];

fn default_user_types() -> Vec<String> {
    vec!["internal".into(), "external".into()]
}

fn default_page_size() -> u32 {
    100
}

/// The largest page the driver asks for: the API may clamp a page size
/// silently (Django REST framework's `max_page_size`), so the driver follows
/// `pagination.next` rather than counting.
pub const MAX_PAGE_SIZE: u32 = 100;

impl Settings for AuthentikSettings {
    fn validate(&self) -> Result<(), DriverError> {
        settings::http_url("base_url", &self.base_url)?;
        settings::secret_set("token", &self.token)?;
        settings::page_size(self.page_size, MAX_PAGE_SIZE)?;
        if self.user_types.is_empty() {
            return Err(DriverError::config(
                "user_types",
                "must name at least one user type",
            ));
        }
        for kind in &self.user_types {
            if !USER_TYPES.contains(&kind.as_str()) {
                return Err(DriverError::config(
                    "user_types",
                    format!("\"{kind}\" is not one of {}", USER_TYPES.join(", ")),
                ));
            }
        }
        Ok(())
    }
}
