//! Microsoft Graph calls (through the SDK's HTTP kit) and the mapping of
//! Graph objects to driver records.

use crate::config::EntraSettings;
use idpsync_driver::http::{ClientCredentials, HttpKit};
use idpsync_driver::{
    CollectedRecords, DriverError, EdgeId, Email, MembershipEdge, RecordSink, SourceGroup,
    SourceUser,
};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

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

/// One page of a Graph collection. Items are read into typed structs: a
/// tenant's million inline members would otherwise each be a JSON object
/// tree built only to read two fields from.
#[derive(Debug, Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default)]
    delta_link: Option<String>,
}

/// A user as `/users` and `/users/delta` list it (the fields of
/// `USER_SELECT`; a delta item may carry only what changed).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphUser {
    id: Option<String>,
    #[serde(rename = "@removed")]
    removed: Option<IgnoredAny>,
    user_principal_name: Option<String>,
    mail: Option<String>,
    display_name: Option<String>,
    given_name: Option<String>,
    surname: Option<String>,
    account_enabled: Option<bool>,
}

/// A group as `/groups/delta?$select=displayName,members` lists it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphGroup {
    id: Option<String>,
    #[serde(rename = "@removed")]
    removed: Option<IgnoredAny>,
    display_name: Option<String>,
    #[serde(rename = "members@delta", default)]
    members: Vec<GraphMember>,
}

/// One entry of a group's `members@delta`.
#[derive(Debug, Deserialize)]
struct GraphMember {
    #[serde(rename = "@odata.type")]
    odata_type: Option<String>,
    id: Option<String>,
    #[serde(rename = "@removed")]
    removed: Option<IgnoredAny>,
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
    async fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, DriverError> {
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
        let users: Page<IgnoredAny> = self
            .get(&self.url(&format!(
                "/users?$select=id&$top={}",
                self.settings.page_size
            )))
            .await?;
        let groups: Page<IgnoredAny> = self
            .get(&self.url(&format!(
                "/groups?$select=id&$top={}",
                self.settings.page_size
            )))
            .await?;
        Ok((users.value.len(), groups.value.len()))
    }

    /// Walks pages from `start` to the delta link, handing each item to `each`.
    async fn walk<T: DeserializeOwned + Send>(
        &self,
        start: &str,
        mut each: impl AsyncItemFn<T>,
    ) -> Result<String, DriverError> {
        let mut url = start.to_string();
        loop {
            let page: Page<T> = self.get(&url).await?;
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

    async fn full_user(&self, id: &str) -> Result<GraphUser, DriverError> {
        self.get(&self.url(&format!("/users/{id}?$select={USER_SELECT}")))
            .await
    }
}

/// Something that takes a page of Graph items.
#[async_trait::async_trait]
trait AsyncItemFn<T>: Send {
    async fn page(&mut self, items: Vec<T>) -> Result<(), DriverError>;
}

struct UserPages<'a> {
    api: &'a GraphApi,
    sink: &'a mut dyn RecordSink,
}

#[async_trait::async_trait]
impl AsyncItemFn<GraphUser> for UserPages<'_> {
    async fn page(&mut self, items: Vec<GraphUser>) -> Result<(), DriverError> {
        let mut users = Vec::new();
        let mut removed = Vec::new();
        for mut item in items {
            let id = item
                .id
                .clone()
                .ok_or_else(|| DriverError::protocol("a user without id"))?;
            if item.removed.is_some() {
                removed.push(id);
                continue;
            }
            // Delta items may carry only what changed: read the whole user.
            if item.user_principal_name.is_none() {
                item = self.api.full_user(&id).await?;
            }
            users.push(user(item)?);
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
impl AsyncItemFn<GraphGroup> for GroupPages<'_> {
    async fn page(&mut self, items: Vec<GraphGroup>) -> Result<(), DriverError> {
        let mut groups = Vec::new();
        let mut removed_groups = Vec::new();
        let mut added = Vec::new();
        let mut removed_edges = Vec::new();
        for item in items {
            let id = item
                .id
                .ok_or_else(|| DriverError::protocol("a group without id"))?;
            if item.removed.is_some() {
                removed_groups.push(id);
                continue;
            }
            if let Some(name) = item.display_name {
                if !self.api.in_scope(&name) {
                    continue;
                }
                groups.push(SourceGroup::new(id.clone(), name));
            }
            // One copy of the group id, shared by all its edges.
            let group_id: EdgeId = id.into();
            for member in item.members {
                let Some(member_id) = member.id else {
                    continue;
                };
                let edge = match member.odata_type.as_deref() {
                    Some("#microsoft.graph.user") => {
                        MembershipEdge::user(group_id.clone(), member_id)
                    }
                    Some("#microsoft.graph.group") => {
                        MembershipEdge::group(group_id.clone(), member_id)
                    }
                    // Devices, service principals and contacts are not people.
                    _ => continue,
                };
                if member.removed.is_some() {
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

/// A user record from a Graph user; empty strings count as absent.
fn user(item: GraphUser) -> Result<SourceUser, DriverError> {
    let text = |value: Option<String>| value.filter(|s| !s.is_empty());
    let id = text(item.id).ok_or_else(|| DriverError::protocol("a user without id"))?;
    let upn = text(item.user_principal_name)
        .ok_or_else(|| DriverError::protocol(format!("user {id} without userPrincipalName")))?;
    let mut record = SourceUser::new(id, upn);
    record.display_name = text(item.display_name);
    record.given_name = text(item.given_name);
    record.family_name = text(item.surname);
    if let Some(mail) = text(item.mail) {
        record.emails.push(Email {
            value: mail,
            kind: Some("work".into()),
            primary: true,
        });
    }
    let enabled = item.account_enabled.unwrap_or(true);
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
