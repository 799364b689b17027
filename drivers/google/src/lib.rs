//! Google Workspace driver, on the Admin SDK Directory API.
//!
//! * Auth: a service account with domain-wide delegation: an RS256 JWT
//!   (`iss` the service account, `sub` the admin it acts as, the read-only
//!   Directory scopes) exchanged at the key's `token_uri` (RFC 7523 JWT
//!   bearer grant); the token is cached.
//! * Users (`customer=my_customer` or a `domain`; suspended and archived users
//!   are deprovisioned unless the connection's `states` make them only
//!   suspended), groups, and members (`USER`, `GROUP` for nesting, and
//!   `CUSTOMER`, which means every user of the account), paged with
//!   `pageToken`/`nextPageToken` at the API's maxima (500 users, 200 groups
//!   and members).
//! * Quota errors come as 429 or as 403 with a quota reason
//!   (`rateLimitExceeded`, `userRateLimitExceeded`, `quotaExceeded`): all are
//!   retried with backoff by the SDK's HTTP kit (`dailyLimitExceeded` fails
//!   the run as rate limited); only other 403s are permission errors naming
//!   the delegation and scopes to set up.
//! * The Directory API has no delta for this: every pull is full.

mod api;
pub mod config;
#[cfg(feature = "fake")]
pub mod fake;
pub mod hooks;

use api::DirectoryApi;
use config::GoogleSettings;
use idpsync_driver::{
    Capabilities, DeclaredTotals, Driver, DriverContext, DriverError, DriverKind, Email,
    MembershipEdge, PullMode, PullOutcome, RecordSink, SourceGroup, SourceUser, StatePolicy,
};
use serde_json::Value;

/// The read-only Directory scopes the service account is delegated.
pub const SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
];

/// `kind = "google_workspace"`.
pub struct GoogleFactory;

impl DriverKind for GoogleFactory {
    const KIND: &'static str = "google_workspace";
    type Settings = GoogleSettings;

    fn build(
        &self,
        settings: GoogleSettings,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(GoogleDriver {
            api: DirectoryApi::new(settings, context.http)?,
        }))
    }
}

struct GoogleDriver {
    api: DirectoryApi,
}

fn user(item: &Value, states: &StatePolicy) -> Result<SourceUser, DriverError> {
    let text = |value: &Value| value.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let id = text(&item["id"]).ok_or_else(|| DriverError::protocol("a user without id"))?;
    let email = text(&item["primaryEmail"])
        .ok_or_else(|| DriverError::protocol(format!("user {id} without primaryEmail")))?;
    let mut record = SourceUser::new(id, email.clone());
    record.given_name = text(&item["name"]["givenName"]);
    record.family_name = text(&item["name"]["familyName"]);
    record.display_name = text(&item["name"]["fullName"]);
    record.emails.push(Email {
        value: email,
        kind: Some("work".into()),
        primary: true,
    });
    let suspended = item["suspended"].as_bool().unwrap_or(false);
    let archived = item["archived"].as_bool().unwrap_or(false);
    let state = if archived {
        "archived"
    } else if suspended {
        "suspended"
    } else {
        "active"
    };
    record.set_access(states.access(state));
    record.raw_status = Some(state.into());
    Ok(record)
}

#[async_trait::async_trait]
impl Driver for GoogleDriver {
    /// Always offered: without a `notifications` table it subscribes to
    /// nothing and refuses deliveries, but can still stop what an earlier
    /// configuration subscribed.
    fn notifier(&self) -> Option<&dyn idpsync_driver::notify::Notifier> {
        Some(self)
    }

    async fn check(&self) -> Result<Capabilities, DriverError> {
        let (users, _) = self.api.users_page(None).await?;
        self.api.groups_page(None).await?;
        Ok(Capabilities {
            delta: false,
            nested_groups: true,
            page_size: self.api.page_size(),
            summary: format!(
                "directory readable as {} ({} users on the first page)",
                self.api.admin(),
                users.len()
            ),
        })
    }

    async fn pull(
        &self,
        _mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let mut user_ids = Vec::new();
        let mut token = None;
        loop {
            let (items, next) = self.api.users_page(token.as_deref()).await?;
            let states = self.api.states();
            let page: Vec<SourceUser> = items
                .iter()
                .map(|item| user(item, states))
                .collect::<Result<_, _>>()?;
            user_ids.extend(page.iter().map(|u| u.external_id.clone()));
            sink.users(page).await?;
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let mut groups = Vec::new();
        let mut token = None;
        loop {
            let (items, next) = self.api.groups_page(token.as_deref()).await?;
            let page: Vec<SourceGroup> = items
                .iter()
                .filter_map(|g| {
                    Some(SourceGroup::new(
                        g["id"].as_str()?,
                        g["name"]
                            .as_str()
                            .or(g["email"].as_str())
                            .unwrap_or_default(),
                    ))
                })
                .collect();
            groups.extend(page.iter().map(|g| g.external_id.clone()));
            sink.groups(page).await?;
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        for group in groups {
            let mut token = None;
            loop {
                let (items, next) = self.api.members_page(&group, token.as_deref()).await?;
                let mut edges = Vec::new();
                for member in &items {
                    let Some(id) = member["id"].as_str() else {
                        continue;
                    };
                    match member["type"].as_str() {
                        Some("USER") => edges.push(MembershipEdge::user(group.clone(), id)),
                        Some("GROUP") => edges.push(MembershipEdge::group(group.clone(), id)),
                        // Everyone in the account.
                        Some("CUSTOMER") => edges.extend(
                            user_ids
                                .iter()
                                .map(|user| MembershipEdge::user(group.clone(), user.clone())),
                        ),
                        _ => {}
                    }
                }
                sink.memberships(edges).await?;
                match next {
                    Some(next) => token = Some(next),
                    None => break,
                }
            }
        }
        Ok(PullOutcome {
            next_cursor: None,
            declared: DeclaredTotals::default(),
            complete_snapshot: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idpsync_driver::Access;

    #[test]
    fn suspended_and_archived_deprovision_unless_the_connection_says_suspend() {
        let item = |suspended: bool, archived: bool| serde_json::json!({"id": "1", "primaryEmail": "a@x.test", "suspended": suspended, "archived": archived});
        let default = StatePolicy::new(&["active"], &[]);
        assert_eq!(
            user(&item(false, false), &default).unwrap().access(),
            Access::Active
        );
        assert_eq!(
            user(&item(true, false), &default).unwrap().access(),
            Access::Deprovisioned
        );
        assert_eq!(
            user(&item(false, true), &default).unwrap().access(),
            Access::Deprovisioned
        );
        let lenient = StatePolicy::new(&["active"], &["suspended"]);
        let suspended = user(&item(true, false), &lenient).unwrap();
        assert_eq!(suspended.access(), Access::Suspended);
        assert_eq!(suspended.raw_status.as_deref(), Some("suspended"));
    }
}
