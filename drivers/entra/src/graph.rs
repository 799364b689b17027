//! Microsoft Graph calls (through the SDK's HTTP kit) and the mapping of
//! Graph objects to driver records.

use crate::config::EntraSettings;
use idpsync_driver::http::{ClientCredentials, HttpKit};
use idpsync_driver::{
    Access, CollectedRecords, DriverError, EdgeId, Email, MembershipEdge, RecordSink, SourceGroup,
    Update, UserRecord, UserUpdate,
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
/// `USER_SELECT`). A delta item of an updated user carries "its id with at
/// least the properties that have been updated": each property is `None`
/// when left out, `Some(None)` when sent as `null`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphUser {
    id: Option<String>,
    #[serde(rename = "@removed")]
    removed: Option<IgnoredAny>,
    #[serde(default, deserialize_with = "sent")]
    user_principal_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "sent")]
    mail: Option<Option<String>>,
    #[serde(default, deserialize_with = "sent")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "sent")]
    given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "sent")]
    surname: Option<Option<String>>,
    #[serde(default, deserialize_with = "sent")]
    account_enabled: Option<Option<bool>>,
}

/// A property that is present (`Some`), possibly `null` (`Some(None)`);
/// with `#[serde(default)]`, an absent one is `None`.
fn sent<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
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
            http.clone(),
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

    pub fn settings(&self) -> &EntraSettings {
        &self.settings
    }

    /// `method /v1.0{path}` with a JSON body, its JSON answer (`null` for
    /// an empty one, such as a DELETE's 204). Used for subscriptions.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, DriverError> {
        let url = self.url(path);
        self.http
            .send_json(
                &move |client| {
                    let request = client.request(method.clone(), &url);
                    match &body {
                        Some(body) => request.json(body),
                        None => request,
                    }
                },
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
            .walk(&users_start, UserPages { sink: &mut *sink })
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
}

/// Something that takes a page of Graph items.
#[async_trait::async_trait]
trait AsyncItemFn<T>: Send {
    async fn page(&mut self, items: Vec<T>) -> Result<(), DriverError>;
}

struct UserPages<'a> {
    sink: &'a mut dyn RecordSink,
}

#[async_trait::async_trait]
impl AsyncItemFn<GraphUser> for UserPages<'_> {
    async fn page(&mut self, items: Vec<GraphUser>) -> Result<(), DriverError> {
        let mut users = Vec::new();
        let mut updates = Vec::new();
        let mut removed = Vec::new();
        for item in items {
            let id = item
                .id
                .clone()
                .ok_or_else(|| DriverError::protocol("a user without id"))?;
            if item.removed.is_some() {
                removed.push(id);
                continue;
            }
            match user(item)? {
                UserRecord::Whole(whole) => users.push(whole),
                UserRecord::Part(part) => updates.push(part),
            }
        }
        self.sink.users(users).await?;
        if !updates.is_empty() {
            self.sink.user_updates(updates).await?;
        }
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

/// A Graph user as a whole record when it carries every selected property
/// (a full round, a new user), else as an update of the stored user with
/// what it sent. An empty string is `null`; `accountEnabled` is never
/// assumed.
fn user(item: GraphUser) -> Result<UserRecord, DriverError> {
    let text = |value: Option<Option<String>>| value.map(|v| v.filter(|s| !s.is_empty()));
    let id = text(Some(item.id))
        .flatten()
        .ok_or_else(|| DriverError::protocol("a user without id"))?;
    let upn = match text(item.user_principal_name) {
        Some(None) => {
            return Err(DriverError::protocol(format!(
                "user {id} with an empty userPrincipalName"
            )));
        }
        sent => sent.flatten(),
    };
    let enabled = item.account_enabled.flatten();
    let mail = text(item.mail);
    let update = UserUpdate {
        external_id: id,
        user_name: upn,
        display_name: Update::from_sent(text(item.display_name)),
        given_name: Update::from_sent(text(item.given_name)),
        family_name: Update::from_sent(text(item.surname)),
        emails: mail.clone().map(|mail| {
            mail.into_iter()
                .map(|value| Email {
                    value,
                    kind: Some("work".into()),
                    primary: true,
                })
                .collect()
        }),
        // A disabled account is deprovisioned: Entra has no passing state
        // to tell apart from it.
        access: enabled.map(|enabled| {
            if enabled {
                Access::Active
            } else {
                Access::Deprovisioned
            }
        }),
        raw_status: match enabled {
            Some(enabled) => Update::Set(format!("accountEnabled={enabled}")),
            None => Update::Keep,
        },
    };
    let whole = [
        update.display_name != Update::Keep,
        update.given_name != Update::Keep,
        update.family_name != Update::Keep,
        mail.is_some(),
    ]
    .iter()
    .all(|sent| *sent);
    Ok(if whole {
        update.into_record()
    } else {
        UserRecord::Part(update)
    })
}

/// Sends buffered delta records on to the real sink, repeats folded first
/// (the buffer knows the order they came in; the sink would not).
pub async fn forward(
    mut changes: CollectedRecords,
    sink: &mut dyn RecordSink,
) -> Result<(), DriverError> {
    changes.merge_repeats();
    sink.users(changes.users).await?;
    sink.user_updates(changes.user_updates).await?;
    sink.groups(changes.groups).await?;
    sink.membership_list(changes.memberships).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use idpsync_driver::SourceUser;

    fn map(json: serde_json::Value) -> UserRecord {
        user(serde_json::from_value(json).unwrap()).unwrap()
    }

    fn whole(record: UserRecord) -> SourceUser {
        match record {
            UserRecord::Whole(user) => user,
            UserRecord::Part(part) => panic!("not whole: {part:?}"),
        }
    }

    fn part(record: UserRecord) -> UserUpdate {
        match record {
            UserRecord::Part(part) => part,
            UserRecord::Whole(user) => panic!("not a part: {user:?}"),
        }
    }

    #[test]
    fn a_record_with_every_selected_property_is_a_whole_user() {
        let whole = whole(map(serde_json::json!({
            "id": "u1", "userPrincipalName": "ann@acme.test", "mail": null,
            "displayName": "Ann", "givenName": "Ann", "surname": "Lee", "accountEnabled": false
        })));
        assert_eq!((whole.active, whole.emails.len()), (false, 0));
        assert_eq!(whole.raw_status.as_deref(), Some("accountEnabled=false"));
    }

    #[test]
    fn a_delta_record_of_what_changed_keeps_everything_else() {
        let disabled = part(map(
            serde_json::json!({"id": "u1", "accountEnabled": false}),
        ));
        assert_eq!(
            disabled,
            UserUpdate {
                access: Some(Access::Deprovisioned),
                raw_status: Update::Set("accountEnabled=false".into()),
                ..UserUpdate::new("u1")
            }
        );
        // A rename without accountEnabled never turns the user on.
        let renamed = part(map(serde_json::json!({
            "id": "u1", "userPrincipalName": "new@acme.test", "displayName": null,
            "mail": "new@acme.test", "givenName": "A", "surname": "B"
        })));
        assert_eq!(renamed.access, None);
        assert_eq!(renamed.display_name, Update::Clear, "null clears");
        assert_eq!(renamed.user_name.as_deref(), Some("new@acme.test"));
    }
}
