//! Calls to the Admin SDK Directory API through the SDK's HTTP kit, with a
//! token from the service account's signed JWT bearer grant.

use crate::SCOPES;
use crate::config::GoogleSettings;
use idpsync_driver::DriverError;
use idpsync_driver::http::{HttpKit, TokenSource};
use idpsync_driver::jwt::{Grant, RsaSigner, SignedGrant};
use serde_json::Value;

pub struct DirectoryApi {
    http: HttpKit,
    token: SignedGrant,
    settings: GoogleSettings,
}

impl DirectoryApi {
    pub fn states(&self) -> &idpsync_driver::StatePolicy {
        &self.settings.states
    }

    pub fn new(settings: GoogleSettings, http: HttpKit) -> Result<Self, DriverError> {
        let key = settings.key()?;
        let token = SignedGrant::new(
            &key.token_uri,
            Grant::JwtBearer {
                issuer: key.client_email.clone(),
                subject: settings.admin_email.clone(),
                scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
            },
            RsaSigner::from_pem(&key.private_key, "service_account_key")?,
            http.clone(),
        )?;
        Ok(DirectoryApi {
            http,
            token,
            settings,
        })
    }

    pub fn settings(&self) -> &GoogleSettings {
        &self.settings
    }

    /// `POST {api_url}{path}?query` with a JSON body, its JSON answer
    /// (`null` for an empty one). Used for watch channels.
    pub async fn post(
        &self,
        path: &str,
        query: Vec<(&'static str, String)>,
        body: Value,
    ) -> Result<Value, DriverError> {
        let url = format!("{}{path}", self.settings.api_url.trim_end_matches('/'));
        self.http
            .send_json(
                &move |client| client.post(&url).query(&query).json(&body),
                Some(&self.token as &dyn TokenSource),
            )
            .await
    }

    /// The `customer` or `domain` parameter every listing and watch takes.
    pub fn scope_param(&self) -> (&'static str, String) {
        self.scope()
    }

    pub fn page_size(&self) -> u32 {
        self.settings.page_size
    }

    pub fn admin(&self) -> &str {
        &self.settings.admin_email
    }

    fn scope(&self) -> (&'static str, String) {
        match &self.settings.domain {
            Some(domain) => ("domain", domain.clone()),
            None => ("customer", self.settings.customer.clone()),
        }
    }

    async fn page(
        &self,
        path: &str,
        list: &str,
        max: u32,
        page_token: Option<&str>,
        scoped: bool,
    ) -> Result<(Vec<Value>, Option<String>), DriverError> {
        let url = format!(
            "{}/admin/directory/v1{path}",
            self.settings.api_url.trim_end_matches('/')
        );
        let mut query = vec![("maxResults", max.to_string())];
        if scoped {
            let (key, value) = self.scope();
            query.push((key, value));
        }
        if let Some(token) = page_token {
            query.push(("pageToken", token.to_string()));
        }
        let body: Value = self
            .http
            .get_json(
                &move |client| client.get(&url).query(&query),
                Some(&self.token as &dyn TokenSource),
            )
            .await
            .map_err(explain)?;
        let items = body
            .get(list)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok((
            items,
            body["nextPageToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        ))
    }

    pub async fn users_page(
        &self,
        token: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), DriverError> {
        self.page(
            "/users",
            "users",
            self.settings.page_size.min(500),
            token,
            true,
        )
        .await
    }

    pub async fn groups_page(
        &self,
        token: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), DriverError> {
        self.page(
            "/groups",
            "groups",
            self.settings.page_size.min(200),
            token,
            true,
        )
        .await
    }

    pub async fn members_page(
        &self,
        group: &str,
        token: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), DriverError> {
        self.page(
            &format!("/groups/{group}/members"),
            "members",
            self.settings.page_size.min(200),
            token,
            false,
        )
        .await
    }
}

fn explain(error: DriverError) -> DriverError {
    match error {
        DriverError::Forbidden(body) => DriverError::Forbidden(format!(
            "{body}; in the Admin console (Security > API controls > Domain-wide delegation) authorize the service account's client id for {}, and make admin_email an administrator who can read users and groups",
            SCOPES.join(", ")
        )),
        DriverError::Unauthorized(body) => DriverError::Unauthorized(format!(
            "{body}; check the service account key, that domain-wide delegation is enabled for it, and admin_email"
        )),
        other => other,
    }
}
