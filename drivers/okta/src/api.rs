//! Calls to Okta's Management API through the SDK's HTTP kit.

use crate::config::{OktaAuth, OktaSettings};
use idpsync_driver::http::{HttpKit, TokenSource, next_link};
use idpsync_driver::jwt::{Grant, RsaSigner, SignedGrant};
use idpsync_driver::{DriverError, Secret};

enum Auth {
    Ssws(Secret),
    OAuth(Box<SignedGrant>),
}

pub struct OktaApi {
    http: HttpKit,
    auth: Auth,
    settings: OktaSettings,
    origin: String,
}

impl OktaApi {
    pub fn new(settings: OktaSettings, http: HttpKit) -> Result<Self, DriverError> {
        let root = settings.org_url.trim_end_matches('/').to_string();
        let auth = match settings.auth()? {
            OktaAuth::ApiToken(token) => Auth::Ssws(token.clone()),
            OktaAuth::OAuth {
                client_id,
                private_key,
                key_id,
            } => Auth::OAuth(Box::new(SignedGrant::new(
                &format!("{root}/oauth2/v1/token"),
                Grant::ClientAssertion {
                    client_id: client_id.to_string(),
                    key_id: key_id.map(str::to_string),
                    scopes: scopes(&settings),
                },
                RsaSigner::from_pem(private_key, "private_key")?,
                http.clone(),
            )?)),
        };
        let origin = url::Url::parse(&root)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        Ok(OktaApi {
            http,
            auth,
            settings,
            origin,
        })
    }

    pub fn page_size(&self) -> u32 {
        self.settings.page_size
    }

    pub fn org(&self) -> &str {
        &self.settings.org_url
    }

    pub fn wants_group_type(&self, kind: &str) -> bool {
        self.settings
            .group_types
            .iter()
            .any(|wanted| wanted == kind)
    }

    fn root(&self) -> &str {
        self.settings.org_url.trim_end_matches('/')
    }

    fn with_query(&self, path: &str, params: &[(&str, &str)]) -> String {
        let mut url =
            url::Url::parse(&format!("{}{path}", self.root())).expect("org_url was validated");
        url.query_pairs_mut()
            .append_pair("limit", &self.settings.page_size.to_string());
        for (key, value) in params {
            url.query_pairs_mut().append_pair(key, value);
        }
        url.to_string()
    }

    pub fn users_url(&self, search: Option<&str>) -> String {
        match search {
            Some(search) => self.with_query("/api/v1/users", &[("search", search)]),
            None => self.with_query("/api/v1/users", &[]),
        }
    }

    pub fn groups_url(&self, changed_since: Option<&str>) -> String {
        match changed_since {
            Some(since) => self.with_query(
                "/api/v1/groups",
                &[(
                    "filter",
                    &format!("lastUpdated gt \"{since}\" or lastMembershipUpdated gt \"{since}\""),
                )],
            ),
            None => self.with_query("/api/v1/groups", &[]),
        }
    }

    pub fn states(&self) -> &idpsync_driver::StatePolicy {
        &self.settings.states
    }

    pub fn reads_system_log(&self) -> bool {
        self.settings.read_system_log
    }

    /// The System Log's deletions of users and groups published in
    /// `[since, until)`: a bounded query, so its pages end (a polling query,
    /// without `until`, always links a next page).
    pub fn deletions_url(&self, since: &str, until: &str) -> String {
        let filter = DELETION_EVENTS
            .iter()
            .map(|kind| format!("eventType eq \"{kind}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        self.with_query(
            "/api/v1/logs",
            &[("since", since), ("until", until), ("filter", &filter)],
        )
    }

    pub fn group_users_url(&self, group_id: &str) -> String {
        self.with_query(&format!("/api/v1/groups/{group_id}/users"), &[])
    }

    /// One page: its items and the `rel="next"` URL. Items are read as
    /// `T`: a [`Value`] for whole objects, or a struct of the few fields
    /// wanted (serde skips the rest without building it).
    pub async fn page<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<(Vec<T>, Option<String>), DriverError> {
        let parsed = url::Url::parse(url)
            .map_err(|_| DriverError::protocol(format!("invalid link {url}")))?;
        if parsed.origin().ascii_serialization() != self.origin {
            return Err(DriverError::protocol(format!(
                "Okta linked to {}, outside the org; refusing to send credentials there",
                parsed.origin().ascii_serialization()
            )));
        }
        let url = url.to_string();
        let response = self
            .authorized(&move |client| client.get(&url).header("accept", "application/json"))
            .await
            .map_err(explain)?;
        let next = next_link(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| DriverError::Transient(e.without_url().to_string()))?;
        let items: Vec<T> = serde_json::from_slice(&bytes)
            .map_err(|e| DriverError::protocol(format!("unreadable JSON: {e}")))?;
        Ok((items, next))
    }
}

impl OktaApi {
    /// Sends the request `build` makes with the org's credentials.
    async fn authorized(
        &self,
        build: &(dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<reqwest::Response, DriverError> {
        match &self.auth {
            Auth::Ssws(token) => {
                let header = format!("SSWS {}", token.expose());
                self.http
                    .send(
                        &move |client| build(client).header("authorization", &header),
                        None,
                    )
                    .await
            }
            Auth::OAuth(grant) => {
                self.http
                    .send(build, Some(grant.as_ref() as &dyn TokenSource))
                    .await
            }
        }
    }

    /// `method path` on the org with a JSON body, its JSON answer (`null`
    /// for an empty one). Used to manage event hooks.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, DriverError> {
        let url = format!("{}{path}", self.root());
        let response = self
            .authorized(&move |client| {
                let request = client
                    .request(method.clone(), &url)
                    .header("accept", "application/json");
                match &body {
                    Some(body) => request.json(body),
                    None => request,
                }
            })
            .await?;
        idpsync_driver::http::json_or_null(response).await
    }

    pub fn settings(&self) -> &OktaSettings {
        &self.settings
    }
}

/// System Log event types that delete a user or a group.
pub const DELETION_EVENTS: [&str; 3] = [
    "user.lifecycle.delete.initiated",
    "user.lifecycle.delete.completed",
    "group.lifecycle.delete",
];

/// The OAuth scopes a service app asks for.
fn scopes(settings: &OktaSettings) -> Vec<String> {
    let mut scopes = vec![
        "okta.users.read".to_string(),
        "okta.groups.read".to_string(),
    ];
    if settings.read_system_log {
        scopes.push("okta.logs.read".into());
    }
    if settings.notifications.as_ref().is_some_and(|n| n.register) {
        scopes.push("okta.eventHooks.manage".into());
    }
    scopes
}

fn explain(error: DriverError) -> DriverError {
    match error {
        DriverError::Unauthorized(body) => DriverError::Unauthorized(format!(
            "{body}; check api_token (or the service app's client_id and key)"
        )),
        DriverError::Forbidden(body) => DriverError::Forbidden(format!(
            "{body}; the token needs read access to users, groups and the System Log (API token of a read-only admin, or a service app granted okta.users.read, okta.groups.read and okta.logs.read; or set read_system_log = false)"
        )),
        other => other,
    }
}
