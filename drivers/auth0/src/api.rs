//! Calls to Auth0's Management API v2 through the SDK's HTTP kit.

use crate::config::Auth0Settings;
use idpsync_driver::DriverError;
use idpsync_driver::http::{ClientCredentials, HttpKit};
use serde::Deserialize;
use serde_json::json;
use std::io::Read;

/// A user as the users listing and the export file give it.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub user_id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    /// Set by an admin (or the API) to block sign-in; absent means not blocked.
    #[serde(default)]
    pub blocked: Option<bool>,
}

/// `include_totals=true` answers: the page and the query's summary.
#[derive(Debug, Clone, Deserialize)]
pub struct UsersPage {
    pub users: Vec<User>,
    /// Results of the query, which Auth0 reports at most as 1,000.
    pub total: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Role {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RolesPage {
    pub roles: Vec<Role>,
    pub total: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Organization {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A member of a role or an organization: only the id matters here.
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    pub user_id: String,
}

/// A checkpoint page (`from`/`take`): `next` is absent on the last page.
#[derive(Debug, Clone, Deserialize)]
pub struct Checkpoint<T> {
    #[serde(alias = "users", alias = "members", alias = "organizations")]
    pub items: Vec<T>,
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Job {
    id: String,
    status: String,
    #[serde(default)]
    location: Option<String>,
}

/// The fields asked of an export: what [`User`] reads.
const EXPORT_FIELDS: [&str; 7] = [
    "user_id",
    "email",
    "username",
    "name",
    "given_name",
    "family_name",
    "blocked",
];

pub struct Auth0Api {
    http: HttpKit,
    token: ClientCredentials,
    api_base: String,
    pub settings: Auth0Settings,
}

impl Auth0Api {
    pub fn new(settings: Auth0Settings, http: HttpKit) -> Result<Self, DriverError> {
        // Machine-to-machine applications authenticate with the secret in
        // the body (client_secret_post) unless configured otherwise, and
        // get a Management API token only for its audience.
        let token = ClientCredentials::new(
            &format!("{}/oauth/token", settings.root()),
            &settings.client_id,
            &settings.client_secret,
            Vec::new(),
            http.clone(),
        )?
        .credentials_in_body()
        .with_param("audience", &settings.audience());
        Ok(Auth0Api {
            api_base: format!("{}/api/v2", settings.root()),
            http,
            token,
            settings,
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, DriverError> {
        let query = query.iter().map(|(k, v)| (k.to_string(), v.clone()));
        self.http
            .get_query(
                format!("{}{path}", self.api_base),
                query.collect(),
                Some(&self.token),
            )
            .await
            .map_err(explain)
    }

    fn offset_page(&self, page: u32) -> Vec<(&'static str, String)> {
        vec![
            ("page", page.to_string()),
            ("per_page", self.settings.page_size.to_string()),
            ("include_totals", "true".into()),
        ]
    }

    /// One page of the users listing, sorted by id so pages do not shift
    /// under a sign-in (the default order is not documented as stable).
    pub async fn users_page(&self, page: u32) -> Result<UsersPage, DriverError> {
        let mut query = self.offset_page(page);
        query.push(("sort", "user_id:1".into()));
        self.get("/users", &query).await
    }

    pub async fn roles_page(&self, page: u32) -> Result<RolesPage, DriverError> {
        self.get("/roles", &self.offset_page(page)).await
    }

    /// A role's members by checkpoint, the only paging that goes past 1,000.
    pub async fn role_members(
        &self,
        role: &str,
        from: Option<&str>,
    ) -> Result<Checkpoint<Member>, DriverError> {
        self.get(&format!("/roles/{role}/users"), &self.checkpoint(from))
            .await
    }

    pub async fn organizations(
        &self,
        from: Option<&str>,
    ) -> Result<Checkpoint<Organization>, DriverError> {
        self.get("/organizations", &self.checkpoint(from)).await
    }

    pub async fn organization_members(
        &self,
        organization: &str,
        from: Option<&str>,
    ) -> Result<Checkpoint<Member>, DriverError> {
        self.get(
            &format!("/organizations/{organization}/members"),
            &self.checkpoint(from),
        )
        .await
    }

    fn checkpoint(&self, from: Option<&str>) -> Vec<(&'static str, String)> {
        let mut query = vec![("take", self.settings.page_size.to_string())];
        if let Some(from) = from {
            query.push(("from", from.to_string()));
        }
        query
    }

    /// Every user, by an export job: create it, poll it until it completes,
    /// then download the file it made (gzipped JSON lines). The download
    /// URL is pre-signed storage: it gets no bearer token.
    pub async fn export_users(&self) -> Result<Vec<User>, DriverError> {
        let url = format!("{}/jobs/users-exports", self.api_base);
        let body = json!({
            "format": "json",
            "fields": EXPORT_FIELDS.iter().map(|name| json!({"name": name})).collect::<Vec<_>>(),
        });
        let mut job: Job = self
            .http
            .get_json(
                &move |client| client.post(&url).json(&body),
                Some(&self.token),
            )
            .await
            .map_err(explain)?;
        let started = tokio::time::Instant::now();
        let deadline = std::time::Duration::from_secs(self.settings.export_timeout_secs);
        loop {
            match job.status.as_str() {
                "completed" => break,
                "failed" => {
                    return Err(DriverError::Transient(format!(
                        "the users export job {} failed at Auth0",
                        job.id
                    )));
                }
                _ if started.elapsed() > deadline => {
                    return Err(DriverError::Transient(format!(
                        "the users export job {} did not complete in {} s (status {}); raise export_timeout_secs for a large tenant",
                        job.id, self.settings.export_timeout_secs, job.status
                    )));
                }
                _ => {
                    tokio::time::sleep(self.settings.export_poll()).await;
                    job = self.get(&format!("/jobs/{}", job.id), &[]).await?;
                }
            }
        }
        let location = job.location.ok_or_else(|| {
            DriverError::protocol(format!(
                "export job {} completed without a location",
                job.id
            ))
        })?;
        let response = self
            .http
            .send(&move |client| client.get(&location), None)
            .await?;
        let gzipped = response
            .bytes()
            .await
            .map_err(|error| DriverError::Transient(error.without_url().to_string()))?;
        parse_export(&gzipped)
    }
}

/// An export file: gzip of one JSON user per line.
pub fn parse_export(gzipped: &[u8]) -> Result<Vec<User>, DriverError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gzipped)
        .read_to_string(&mut text)
        .map_err(|error| DriverError::protocol(format!("unreadable export file: {error}")))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| {
                DriverError::protocol(format!("export file line {}: {error}", index + 1))
            })
        })
        .collect()
}

/// Adds what the admin must do to permission errors.
fn explain(error: DriverError) -> DriverError {
    match error {
        DriverError::Forbidden(body) => DriverError::Forbidden(format!(
            "{body}; authorize the application for the Management API with the scopes read:users, read:roles, read:role_members (and read:organizations, read:organization_members for organizations)"
        )),
        DriverError::Unauthorized(body) => DriverError::Unauthorized(format!(
            "{body}; check client_id and client_secret, and that the application is authorized for the Management API audience"
        )),
        other => other,
    }
}
