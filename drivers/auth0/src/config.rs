//! `[connections.auth0]` settings.

use idpsync_driver::settings::{self, Settings};
use idpsync_driver::{DriverError, Secret};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth0Settings {
    /// The tenant's canonical URL, e.g. `https://acme.eu.auth0.com` (not a
    /// custom domain: the Management API lives on the tenant domain).
    pub tenant_url: String,
    /// A machine-to-machine application authorized for the Management API.
    pub client_id: String,
    pub client_secret: Secret,
    /// The Management API's identifier; `{tenant_url}/api/v2/` by default.
    #[serde(default)]
    pub audience: Option<String>,
    /// `per_page` of the users and roles listings, 1 to 100.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Roles become groups (`read:roles`, `read:role_members`).
    #[serde(default = "default_true")]
    pub roles: bool,
    /// Organizations become groups of their members (`read:organizations`,
    /// `read:organization_members`).
    #[serde(default)]
    pub organizations: bool,
    /// How often an export job is polled, in seconds (tenants of 1,000 users
    /// or more are read by export).
    #[serde(default = "default_export_poll")]
    pub export_poll_secs: f64,
    /// How long an export job may take before the pull fails, in seconds.
    #[serde(default = "default_export_timeout")]
    pub export_timeout_secs: u64,
}

fn default_page_size() -> u32 {
    100
}

fn default_true() -> bool {
    true
}

fn default_export_poll() -> f64 {
    5.0
}

fn default_export_timeout() -> u64 {
    1800
}

/// `per_page`'s documented maximum.
pub const MAX_PAGE_SIZE: u32 = 100;

impl Settings for Auth0Settings {
    fn validate(&self) -> Result<(), DriverError> {
        settings::http_url("tenant_url", &self.tenant_url)?;
        if let Some(audience) = &self.audience {
            settings::http_url("audience", audience)?;
        }
        settings::not_empty("client_id", &self.client_id)?;
        settings::secret_set("client_secret", &self.client_secret)?;
        settings::page_size(self.page_size, MAX_PAGE_SIZE)?;
        if !(self.export_poll_secs > 0.0 && self.export_poll_secs <= 60.0) {
            return Err(DriverError::config(
                "export_poll_secs",
                format!(
                    "must be above 0 and at most 60, got {}",
                    self.export_poll_secs
                ),
            ));
        }
        if self.export_timeout_secs == 0 {
            return Err(DriverError::config(
                "export_timeout_secs",
                "must be at least 1",
            ));
        }
        if !self.roles && !self.organizations {
            return Err(DriverError::config(
                "roles",
                "with roles and organizations both off there are no groups to sync; turn one on",
            ));
        }
        Ok(())
    }
}

impl Auth0Settings {
    pub fn root(&self) -> &str {
        self.tenant_url.trim_end_matches('/')
    }

    pub fn audience(&self) -> String {
        self.audience
            .clone()
            .unwrap_or_else(|| format!("{}/api/v2/", self.root()))
    }

    pub fn export_poll(&self) -> Duration {
        Duration::from_secs_f64(self.export_poll_secs)
    }
}
