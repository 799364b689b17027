//! `[connections.zitadel]` settings.

use idpsync_driver::settings::{self, Settings};
use idpsync_driver::{DriverError, Secret, StatePolicy};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZitadelSettings {
    /// The instance's issuer URL, e.g. `https://acme-x1y2z3.zitadel.cloud`.
    pub issuer_url: String,
    /// A service user's personal access token.
    #[serde(default)]
    pub personal_access_token: Option<Secret>,
    /// Or a service user's key file (JSON with `keyId`, `key`, `userId`) for
    /// the JWT profile grant.
    #[serde(default)]
    pub service_account_key: Option<Secret>,
    /// Only users (and authorizations) of this organization.
    #[serde(default)]
    pub organization_id: Option<String>,
    /// The project whose roles become groups (no groups without it).
    #[serde(default)]
    pub project_id: Option<String>,
    /// Objects per request, 1 to 1000.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Which user states give access, which only suspend it; the rest
    /// deprovision.
    #[serde(default = "default_states")]
    pub states: StatePolicy,
}

/// ZITADEL's user states.
pub const STATES: [&str; 6] = [
    "USER_STATE_ACTIVE",
    "USER_STATE_INACTIVE",
    "USER_STATE_DELETED",
    "USER_STATE_LOCKED",
    "USER_STATE_INITIAL",
    "USER_STATE_UNSPECIFIED",
];

fn default_states() -> StatePolicy {
    StatePolicy::new(&["USER_STATE_ACTIVE"], &["USER_STATE_LOCKED"])
}

fn default_page_size() -> u32 {
    100
}

/// ZITADEL's default maximum list limit.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A service user's key file, as ZITADEL's console downloads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountKey {
    pub key_id: String,
    pub key: Secret,
    pub user_id: String,
}

pub enum ZitadelAuth {
    Token(Secret),
    Key(ServiceAccountKey),
}

impl Settings for ZitadelSettings {
    fn validate(&self) -> Result<(), DriverError> {
        settings::http_url("issuer_url", &self.issuer_url)?;
        self.auth()?;
        settings::page_size(self.page_size, MAX_PAGE_SIZE)?;
        self.states.validate("states", &STATES)?;
        for (key, value) in [
            ("organization_id", &self.organization_id),
            ("project_id", &self.project_id),
        ] {
            if let Some(value) = value {
                settings::not_empty(key, value)?;
            }
        }
        Ok(())
    }
}

impl ZitadelSettings {
    pub fn root(&self) -> &str {
        self.issuer_url.trim_end_matches('/')
    }

    pub fn auth(&self) -> Result<ZitadelAuth, DriverError> {
        match (&self.personal_access_token, &self.service_account_key) {
            (Some(token), None) => {
                settings::secret_set("personal_access_token", token)?;
                Ok(ZitadelAuth::Token(token.clone()))
            }
            (None, Some(key)) => serde_json::from_str(key.expose())
                .map(ZitadelAuth::Key)
                // The key is a secret: say what is expected, never what was read.
                .map_err(|_| {
                    DriverError::config(
                        "service_account_key",
                        "not a ZITADEL key file (JSON with keyId, key and userId)",
                    )
                }),
            (Some(_), Some(_)) => Err(DriverError::config(
                "personal_access_token",
                "set either personal_access_token or service_account_key, not both",
            )),
            (None, None) => Err(DriverError::config(
                "personal_access_token",
                "set personal_access_token, or service_account_key for the JWT profile grant",
            )),
        }
    }
}
