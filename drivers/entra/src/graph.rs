//! Microsoft Graph calls (through the SDK's HTTP kit) and the mapping of
//! Graph objects to driver records.

use crate::config::EntraSettings;
use idpsync_driver::http::{ClientCredentials, HttpKit};
use idpsync_driver::{
    CollectedRecords, DriverError, Email, MembershipEdge, RecordSink, SourceGroup, SourceUser,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const USER_SELECT: &str = "id,userPrincipalName,mail,displayName,givenName,surname,accountEnabled";

/// The two delta links: the cursor of a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaLinks {
    pub users: String,
    pub groups: String,
}

/// Whether an error is Graph's "the delta token expired, start over".
pub fn is_resync(message: &str) -> bool {
    message.starts_with("410")
        || message.contains("resyncRequired")
        || message.contains("syncStateNotFound")
}

pub struct GraphApi {
    http: HttpKit,
    token: ClientCredentials,
    settings: EntraSettings,
    origin: String,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

impl GraphApi {
    pub fn new(settings: EntraSettings, http: HttpKit) -> Result<Self, DriverError> {
        let authority = settings.authority_url.trim_end_matches('/');
        let token = ClientCredentials::new(
            &format!("{authority}/{}/oauth2/v2.0/token", settings.tenant_id),
            &settings.client_id,
            &settings.client_secret,
            vec![format!(
                "{}/.default",
                settings.graph_url.trim_end_matches('/')
            )],
        )?
        .credentials_in_body();
        let origin = settings.graph_origin();
        Ok(GraphApi {
            http,
            token,
            settings,
            origin,
        })
    }

    pub fn page_size(&self) -> u32 {
        self.settings.page_size
    }

    pub fn tenant(&self) -> &str {
        &self.settings.tenant_id
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1.0{path}",
            self.settings.graph_url.trim_end_matches('/')
        )
    }

    /// GETs a Graph URL; refuses URLs outside the configured Graph origin.
    async fn get(&self, url: &str) -> Result<Value, DriverError> {
        let parsed = url::Url::parse(url)
            .map_err(|_| DriverError::protocol(format!("Graph sent an invalid link: {url}")))?;
        if parsed.origin().ascii_serialization() != self.origin {
            return Err(DriverError::protocol(format!(
                "Graph sent a link to {}, outside {}; refusing to send the token there",
                parsed.origin().ascii_serialization(),
                self.origin
            )));
        }
        let url = url.to_string();
        let prefer = format!("odata.maxpagesize={}", self.settings.page_size);
        self.http
            .get_json(
                &move |client| client.get(&url).header("Prefer", &prefer),
                Some(&self.token),
            )
            .await
            .map_err(explain)
    }

    /// "Test connection": one page of users and of groups.
    pub async fn probe(&self) -> Result<(usize, usize), DriverError> {
        let users: Page = serde_json::from_value(
            self.get(&self.url(&format!(
                "/users?$select=id&$top={}",
                self.settings.page_size
            )))
            .await?,
        )
        .map_err(|e| DriverError::protocol(e.to_string()))?;
        let groups: Page = serde_json::from_value(
            self.get(&self.url(&format!(
                "/groups?$select=id&$top={}",
                self.settings.page_size
            )))
            .await?,
        )
        .map_err(|e| DriverError::protocol(e.to_string()))?;
        Ok((users.value.len(), groups.value.len()))
    }

    /// Walks pages from `start` to the delta link, handing each item to `each`.
    async fn walk(&self, start: &str, mut each: impl AsyncItemFn) -> Result<String, DriverError> {
        let mut url = start.to_string();
        loop {
            let page: Page = serde_json::from_value(self.get(&url).await?)
                .map_err(|e| DriverError::protocol(format!("unreadable page: {e}")))?;
            each.page(page.value).await?;
            match (page.next_link, page.delta_link) {
                (Some(next), _) => url = next,
                (None, Some(delta)) => return Ok(delta),
                (None, None) => {
                    return Err(DriverError::protocol(
                        "a delta page with neither @odata.nextLink nor @odata.deltaLink",
                    ));
                }
            }
        }
    }

    /// One delta round: everything (no links) or the changes since `links`.
    pub async fn delta_round(
        &self,
        links: Option<&DeltaLinks>,
        sink: &mut dyn RecordSink,
    ) -> Result<DeltaLinks, DriverError> {
        let users_start = links
            .map(|l| l.users.clone())
            .unwrap_or_else(|| self.url(&format!("/users/delta?$select={USER_SELECT}")));
        let users = self
            .walk(
                &users_start,
                UserPages {
                    api: self,
                    sink: &mut *sink,
                },
            )
            .await?;
        let groups_start = links
            .map(|l| l.groups.clone())
            .unwrap_or_else(|| self.url("/groups/delta?$select=displayName,members"));
        let groups = self
            .walk(&groups_start, GroupPages { api: self, sink })
            .await?;
        Ok(DeltaLinks { users, groups })
    }

    fn in_scope(&self, name: &str) -> bool {
        self.settings.group_name_prefixes.is_empty()
            || self
                .settings
                .group_name_prefixes
                .iter()
                .any(|prefix| name.starts_with(prefix))
    }

    async fn full_user(&self, id: &str) -> Result<Value, DriverError> {
        self.get(&self.url(&format!("/users/{id}?$select={USER_SELECT}")))
            .await
    }
}

/// Something that takes a page of Graph items.
#[async_trait::async_trait]
trait AsyncItemFn: Send {
    async fn page(&mut self, items: Vec<Value>) -> Result<(), DriverError>;
}

struct UserPages<'a> {
    api: &'a GraphApi,
    sink: &'a mut dyn RecordSink,
}

#[async_trait::async_trait]
impl AsyncItemFn for UserPages<'_> {
    async fn page(&mut self, items: Vec<Value>) -> Result<(), DriverError> {
        let mut users = Vec::new();
        let mut removed = Vec::new();
        for mut item in items {
            let id = item["id"]
                .as_str()
                .ok_or_else(|| DriverError::protocol("a user without id"))?
                .to_string();
            if item.get("@removed").is_some() {
                removed.push(id);
                continue;
            }
            // Delta items may carry only what changed: read the whole user.
            if item
                .get("userPrincipalName")
                .and_then(Value::as_str)
                .is_none()
            {
                item = self.api.full_user(&id).await?;
            }
            users.push(user(&item)?);
        }
        self.sink.users(users).await?;
        if !removed.is_empty() {
            self.sink.removed_users(removed).await?;
        }
        Ok(())
    }
}

struct GroupPages<'a> {
    api: &'a GraphApi,
    sink: &'a mut dyn RecordSink,
}

#[async_trait::async_trait]
impl AsyncItemFn for GroupPages<'_> {
    async fn page(&mut self, items: Vec<Value>) -> Result<(), DriverError> {
        let mut groups = Vec::new();
        let mut removed_groups = Vec::new();
        let mut added = Vec::new();
        let mut removed_edges = Vec::new();
        for item in items {
            let id = item["id"]
                .as_str()
                .ok_or_else(|| DriverError::protocol("a group without id"))?
                .to_string();
            if item.get("@removed").is_some() {
                removed_groups.push(id);
                continue;
            }
            if let Some(name) = item.get("displayName").and_then(Value::as_str) {
                if !self.api.in_scope(name) {
                    continue;
                }
                groups.push(SourceGroup::new(id.clone(), name));
            }
            for member in item
                .get("members@delta")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(member_id) = member["id"].as_str() else {
                    continue;
                };
                let edge = match member["@odata.type"].as_str() {
                    Some("#microsoft.graph.user") => MembershipEdge::user(id.clone(), member_id),
                    Some("#microsoft.graph.group") => MembershipEdge::group(id.clone(), member_id),
                    // Devices, service principals and contacts are not people.
                    _ => continue,
                };
                if member.get("@removed").is_some() {
                    removed_edges.push(edge);
                } else {
                    added.push(edge);
                }
            }
        }
        self.sink.groups(groups).await?;
        self.sink.memberships(added).await?;
        if !removed_groups.is_empty() {
            self.sink.removed_groups(removed_groups).await?;
        }
        if !removed_edges.is_empty() {
            self.sink.removed_memberships(removed_edges).await?;
        }
        Ok(())
    }
}

fn user(item: &Value) -> Result<SourceUser, DriverError> {
    let text = |key: &str| {
        item.get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let id = text("id").ok_or_else(|| DriverError::protocol("a user without id"))?;
    let upn = text("userPrincipalName")
        .ok_or_else(|| DriverError::protocol(format!("user {id} without userPrincipalName")))?;
    let mut record = SourceUser::new(id, upn);
    record.display_name = text("displayName");
    record.given_name = text("givenName");
    record.family_name = text("surname");
    if let Some(mail) = text("mail") {
        record.emails.push(Email {
            value: mail,
            kind: Some("work".into()),
            primary: true,
        });
    }
    let enabled = item
        .get("accountEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    record.active = enabled;
    record.raw_status = Some(format!("accountEnabled={enabled}"));
    Ok(record)
}

/// Sends buffered delta records on to the real sink.
pub async fn forward(
    changes: CollectedRecords,
    sink: &mut dyn RecordSink,
) -> Result<(), DriverError> {
    sink.users(changes.users).await?;
    sink.groups(changes.groups).await?;
    sink.memberships(changes.memberships).await?;
    sink.removed_users(changes.removed_users).await?;
    sink.removed_groups(changes.removed_groups).await?;
    sink.removed_memberships(changes.removed_memberships)
        .await?;
    Ok(())
}

/// Graph's OData errors, with what the admin should do.
fn explain(error: DriverError) -> DriverError {
    match error {
        DriverError::Forbidden(body) => DriverError::Forbidden(format!(
            "{body}; grant the app registration the application permissions User.Read.All and Group.Read.All (or GroupMember.Read.All) and an admin consent"
        )),
        DriverError::Unauthorized(body) => DriverError::Unauthorized(format!(
            "{body}; check tenant_id, client_id and client_secret (it may have expired)"
        )),
        other => other,
    }
}
