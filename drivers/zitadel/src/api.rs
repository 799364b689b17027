//! Calls to ZITADEL's v2 services (Connect protocol, JSON) through the
//! SDK's HTTP kit.

use crate::config::{ZitadelAuth, ZitadelSettings};
use idpsync_driver::DriverError;
use idpsync_driver::http::{HttpKit, StaticToken, TokenSource};
use idpsync_driver::jwt::{Grant, RsaSigner, SignedGrant};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

/// Protobuf's JSON mapping writes 64-bit integers as strings, and leaves out
/// zeros: read either form, absent as 0.
fn uint64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Number(number) => number
            .as_u64()
            .ok_or_else(|| serde::de::Error::custom("not an unsigned integer")),
        Value::String(text) => text.parse().map_err(serde::de::Error::custom),
        Value::Null => Ok(0),
        other => Err(serde::de::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDetails {
    #[serde(default, deserialize_with = "uint64")]
    pub total_result: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UsersPage {
    #[serde(default)]
    pub details: ListDetails,
    /// Absent, not empty, when there are none.
    #[serde(default)]
    pub result: Vec<User>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub user_id: String,
    /// `USER_STATE_*`; absent is `USER_STATE_UNSPECIFIED`.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub preferred_login_name: Option<String>,
    /// Absent for machine users (service accounts), which carry `machine`.
    #[serde(default)]
    pub human: Option<Human>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Human {
    #[serde(default)]
    pub profile: Profile,
    #[serde(default)]
    pub email: Option<HumanEmail>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HumanEmail {
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    #[serde(default, deserialize_with = "uint64")]
    pub total_result: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuthorizationsPage {
    #[serde(default)]
    pub pagination: Pagination,
    #[serde(default)]
    pub authorizations: Vec<Authorization>,
}

/// A role assignment ("authorization", formerly "user grant").
#[derive(Debug, Clone, Deserialize)]
pub struct Authorization {
    pub project: Reference,
    #[serde(default)]
    pub organization: Option<Reference>,
    pub user: Reference,
    /// `STATE_ACTIVE` or `STATE_INACTIVE` (a deactivated assignment).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Reference {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub key: String,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// The scope that makes ZITADEL's own API the token's audience.
pub const API_SCOPE: &str = "urn:zitadel:iam:org:project:id:zitadel:aud";

pub struct ZitadelApi {
    http: HttpKit,
    token: Box<dyn TokenSource>,
    pub settings: ZitadelSettings,
}

impl ZitadelApi {
    pub fn new(settings: ZitadelSettings, http: HttpKit) -> Result<Self, DriverError> {
        let token: Box<dyn TokenSource> = match settings.auth()? {
            ZitadelAuth::Token(token) => Box::new(StaticToken(token)),
            ZitadelAuth::Key(key) => Box::new(SignedGrant::new(
                &format!("{}/oauth/v2/token", settings.root()),
                Grant::JwtProfile {
                    user_id: key.user_id,
                    key_id: key.key_id,
                    audience: settings.root().to_string(),
                    scopes: vec!["openid".into(), API_SCOPE.into()],
                },
                RsaSigner::from_pem(&key.key, "service_account_key")?,
                http.clone(),
            )?),
        };
        Ok(ZitadelApi {
            http,
            token,
            settings,
        })
    }

    /// A Connect unary call with a JSON body.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        body: Value,
    ) -> Result<T, DriverError> {
        let url = format!("{}/{method}", self.settings.root());
        let organization = self.settings.organization_id.clone();
        self.http
            .get_json(
                &move |client| {
                    let request = client
                        .post(&url)
                        .header("connect-protocol-version", "1")
                        .json(&body);
                    match &organization {
                        Some(id) => request.header("x-zitadel-orgid", id),
                        None => request,
                    }
                },
                Some(self.token.as_ref()),
            )
            .await
            .map_err(explain)
    }

    /// Users from `offset`, oldest first, scoped to the organization when
    /// one is set.
    pub async fn users_page(&self, offset: u64) -> Result<UsersPage, DriverError> {
        let mut body = json!({
            "query": {"offset": offset.to_string(), "limit": self.settings.page_size, "asc": true},
            "sortingColumn": "USER_FIELD_NAME_CREATION_DATE",
        });
        if let Some(organization) = &self.settings.organization_id {
            body["queries"] = json!([{"organizationIdQuery": {"organizationId": organization}}]);
        }
        self.call("zitadel.user.v2.UserService/ListUsers", body)
            .await
    }

    /// Role assignments from `offset`, oldest first.
    pub async fn authorizations_page(
        &self,
        offset: u64,
    ) -> Result<AuthorizationsPage, DriverError> {
        let body = json!({
            "pagination": {"offset": offset.to_string(), "limit": self.settings.page_size, "asc": true},
            "sortingColumn": "AUTHORIZATION_FIELD_NAME_CREATED_DATE",
        });
        self.call(
            "zitadel.authorization.v2.AuthorizationService/ListAuthorizations",
            body,
        )
        .await
    }
}

/// Adds what the admin must do to permission errors.
fn explain(error: DriverError) -> DriverError {
    match error {
        DriverError::Forbidden(body) => DriverError::Forbidden(format!(
            "{body}; give the service user the organization role ORG_USER_MANAGER (users and authorizations) or ORG_OWNER_VIEWER, or IAM_OWNER_VIEWER for every organization"
        )),
        DriverError::Unauthorized(body) => DriverError::Unauthorized(format!(
            "{body}; check personal_access_token or service_account_key, and that the service user exists and is active"
        )),
        other => other,
    }
}
