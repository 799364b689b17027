//! Calls to Keycloak's Admin REST API through the SDK's HTTP kit.

use crate::config::KeycloakSettings;
use idpsync_driver::DriverError;
use idpsync_driver::http::{ClientCredentials, HttpKit, OffsetPager};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRepresentation {
    pub id: String,
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupRepresentation {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub sub_group_count: Option<u64>,
    /// Older Keycloak versions inline subgroups here.
    #[serde(default)]
    pub sub_groups: Vec<GroupRepresentation>,
}

pub struct KeycloakApi {
    http: HttpKit,
    token: ClientCredentials,
    admin_base: String,
    settings: KeycloakSettings,
}

impl KeycloakApi {
    pub fn new(settings: KeycloakSettings, http: HttpKit) -> Result<Self, DriverError> {
        let root = settings.base_url.trim_end_matches('/');
        let token = ClientCredentials::new(
            &format!(
                "{root}/realms/{}/protocol/openid-connect/token",
                settings.realm
            ),
            &settings.client_id,
            &settings.client_secret,
            Vec::new(),
            http.clone(),
        )?;
        Ok(KeycloakApi {
            admin_base: format!("{root}/admin/realms/{}", settings.realm),
            http,
            token,
            settings,
        })
    }

    pub fn page_size(&self) -> u32 {
        self.settings.page_size
    }

    pub fn realm(&self) -> &str {
        &self.settings.realm
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, DriverError> {
        let query = query.iter().map(|(k, v)| (k.to_string(), v.clone()));
        self.http
            .get_query(
                format!("{}{path}", self.admin_base),
                query.collect(),
                Some(&self.token),
            )
            .await
            .map_err(explain)
    }

    fn page(&self, first: u32) -> Vec<(&'static str, String)> {
        vec![
            ("first", first.to_string()),
            ("max", self.settings.page_size.to_string()),
        ]
    }

    pub async fn user_count(&self) -> Result<u64, DriverError> {
        self.get("/users/count", &[]).await
    }

    pub async fn users_page(&self, first: u32) -> Result<Vec<UserRepresentation>, DriverError> {
        let mut query = self.page(first);
        query.push(("briefRepresentation", "true".into()));
        self.get("/users", &query).await
    }

    /// Top-level groups. `subGroupsCount=true` is asked for explicitly:
    /// it is Keycloak's default today, and a server whose default changed
    /// would otherwise hide every subgroup.
    pub async fn groups_page(&self, first: u32) -> Result<Vec<GroupRepresentation>, DriverError> {
        let mut query = self.page(first);
        query.push(("subGroupsCount", "true".into()));
        self.get("/groups", &query).await
    }

    pub async fn all_children(
        &self,
        group_id: &str,
    ) -> Result<Vec<GroupRepresentation>, DriverError> {
        let mut children = Vec::new();
        let mut pager = OffsetPager::new(self.settings.page_size);
        while let Some(first) = pager.next_offset() {
            let mut query = self.page(first as u32);
            query.push(("subGroupsCount", "true".into()));
            let page: Vec<GroupRepresentation> = self
                .get(&format!("/groups/{group_id}/children"), &query)
                .await?;
            pager.record(page.len());
            children.extend(page);
        }
        Ok(children)
    }

    pub async fn members_page(
        &self,
        group_id: &str,
        first: u32,
    ) -> Result<Vec<UserRepresentation>, DriverError> {
        let mut query = self.page(first);
        query.push(("briefRepresentation", "true".into()));
        self.get(&format!("/groups/{group_id}/members"), &query)
            .await
    }
}

/// Adds what the admin must do to permission errors.
fn explain(error: DriverError) -> DriverError {
    match error {
        DriverError::Forbidden(body) => DriverError::Forbidden(format!(
            "{body}; give the client's service account the realm-management roles view-users and query-groups"
        )),
        DriverError::Unauthorized(body) => DriverError::Unauthorized(format!(
            "{body}; check client_id and client_secret, and that the client is confidential with service accounts enabled"
        )),
        other => other,
    }
}
