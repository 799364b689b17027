//! Calls to JumpCloud's v1 and v2 APIs through the SDK's HTTP kit.

use crate::config::JumpCloudSettings;
use idpsync_driver::DriverError;
use idpsync_driver::http::HttpKit;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct SystemUser {
    #[serde(rename = "_id", default)]
    pub id: Option<String>,
    #[serde(rename = "id", default)]
    pub alt_id: Option<String>,
    pub username: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub firstname: Option<String>,
    #[serde(default)]
    pub lastname: Option<String>,
    #[serde(default)]
    pub displayname: Option<String>,
    #[serde(default = "activated_by_default")]
    pub activated: bool,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub account_locked: bool,
}

fn activated_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsersPage {
    pub total_count: u64,
    pub results: Vec<SystemUser>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserGroup {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GraphTarget {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GraphEdge {
    pub to: GraphTarget,
}

pub struct JumpCloudApi {
    http: HttpKit,
    settings: JumpCloudSettings,
}

impl JumpCloudApi {
    pub fn states(&self) -> &idpsync_driver::StatePolicy {
        &self.settings.states
    }

    pub fn new(settings: JumpCloudSettings, http: HttpKit) -> Self {
        JumpCloudApi { http, settings }
    }

    pub fn page_size(&self) -> u32 {
        self.settings.page_size
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        skip: u64,
    ) -> Result<T, DriverError> {
        let url = format!("{}{path}", self.settings.base_url.trim_end_matches('/'));
        let query = [
            ("limit", self.settings.page_size.to_string()),
            ("skip", skip.to_string()),
        ];
        let key = self.settings.api_key.clone();
        let org = self.settings.org_id.clone();
        self.http
            .get_json(
                &move |client| {
                    let mut request = client
                        .get(&url)
                        .query(&query)
                        .header("x-api-key", key.expose())
                        .header("accept", "application/json");
                    if let Some(org) = &org {
                        request = request.header("x-org-id", org);
                    }
                    request
                },
                None,
            )
            .await
            .map_err(explain)
    }

    pub async fn users_page(&self, skip: u64) -> Result<UsersPage, DriverError> {
        self.get("/api/systemusers", skip).await
    }

    pub async fn groups_page(&self, skip: u64) -> Result<Vec<UserGroup>, DriverError> {
        self.get("/api/v2/usergroups", skip).await
    }

    pub async fn members_page(
        &self,
        group_id: &str,
        skip: u64,
    ) -> Result<Vec<GraphEdge>, DriverError> {
        self.get(&format!("/api/v2/usergroups/{group_id}/members"), skip)
            .await
    }
}

fn explain(error: DriverError) -> DriverError {
    match error {
        DriverError::Unauthorized(body) => DriverError::Unauthorized(format!(
            "{body}; check api_key (and org_id for multi-tenant administrators)"
        )),
        DriverError::Forbidden(body) => DriverError::Forbidden(format!(
            "{body}; the API key's administrator needs read access to users and user groups (and to this organization)"
        )),
        other => other,
    }
}
