//! Calls to authentik's API v3 through the SDK's HTTP kit.

use crate::config::AuthentikSettings;
use idpsync_driver::DriverError;
use idpsync_driver::http::{HttpKit, StaticToken};
use serde::Deserialize;

/// A page of a listing: `pagination.next` is the next page's number, 0 on
/// the last page; `count` is the listing's total.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub pagination: Pagination,
    pub results: Vec<T>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pagination {
    pub next: u64,
    pub count: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// The numeric primary key groups list their members by.
    pub pk: i64,
    /// The stable id: the user's UUID.
    pub uuid: String,
    pub username: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default = "active_by_default")]
    pub is_active: bool,
    /// `internal`, `external`, `service_account`, `internal_service_account`.
    #[serde(rename = "type", default = "internal")]
    pub kind: String,
}

fn active_by_default() -> bool {
    true
}

fn internal() -> String {
    "internal".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    pub pk: String,
    pub name: String,
    /// The parent group, before authentik 2025.8.
    #[serde(default)]
    pub parent: Option<String>,
    /// The parent groups, from authentik 2025.8 (a group may have several).
    #[serde(default)]
    pub parents: Vec<String>,
    /// Members' numeric primary keys.
    #[serde(default)]
    pub users: Vec<i64>,
}

impl Group {
    /// Every parent, whichever field the server version sends.
    pub fn all_parents(&self) -> impl Iterator<Item = &String> {
        self.parent.iter().chain(&self.parents)
    }
}

pub struct AuthentikApi {
    http: HttpKit,
    token: StaticToken,
    api_base: String,
    pub settings: AuthentikSettings,
}

impl AuthentikApi {
    pub fn new(settings: AuthentikSettings, http: HttpKit) -> Self {
        AuthentikApi {
            api_base: format!("{}/api/v3", settings.base_url.trim_end_matches('/')),
            token: StaticToken(settings.token.clone()),
            http,
            settings,
        }
    }

    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        page: u64,
        extra: &[(&str, &str)],
    ) -> Result<Page<T>, DriverError> {
        let url = format!("{}{path}", self.api_base);
        let mut query: Vec<(String, String)> = vec![
            ("page".into(), page.to_string()),
            ("page_size".into(), self.settings.page_size.to_string()),
            ("ordering".into(), "pk".into()),
        ];
        query.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self.http
            .get_query(url, query, Some(&self.token))
            .await
            .map_err(explain)
    }

    /// A page of users (1-based), without their groups: memberships come
    /// from the groups listing, so no user is read twice.
    pub async fn users_page(&self, page: u64) -> Result<Page<User>, DriverError> {
        self.page("/core/users/", page, &[("include_groups", "false")])
            .await
    }

    /// A page of groups with their members' keys, not the members' objects.
    pub async fn groups_page(&self, page: u64) -> Result<Page<Group>, DriverError> {
        self.page("/core/groups/", page, &[("include_users", "false")])
            .await
    }
}

/// Adds what the admin must do to permission errors.
fn explain(error: DriverError) -> DriverError {
    match error {
        DriverError::Forbidden(body) => DriverError::Forbidden(format!(
            "{body}; give the token's user the permissions \"Can view User\" and \"Can view Group\" (or make it a superuser)"
        )),
        DriverError::Unauthorized(body) => DriverError::Unauthorized(format!(
            "{body}; check token: an API token (intent API) that has not expired"
        )),
        other => other,
    }
}
