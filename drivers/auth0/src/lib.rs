//! Auth0 driver: users, and roles (and optionally organizations) as groups,
//! from the Management API v2 of one tenant.
//!
//! * Auth: a machine-to-machine application, OAuth 2.0 client credentials
//!   at `{tenant_url}/oauth/token` with `audience={tenant_url}/api/v2/`
//!   (the secret in the body, Auth0's default). Scopes: `read:users`,
//!   `read:roles`, `read:role_members`; for organizations also
//!   `read:organizations`, `read:organization_members`.
//! * Users: `GET /api/v2/users` with `page`/`per_page` (at most 100) and
//!   `include_totals`. That listing stops at 1,000 results and reports at
//!   most 1,000 as its total, so a tenant whose total reaches 1,000 is read
//!   by an export job (`POST /api/v2/jobs/users-exports`, polled, then the
//!   gzipped JSON-lines file downloaded) instead: never silently the
//!   first 1,000.
//! * `blocked: true` is a deprovisioned user (Auth0's way to disable one).
//! * Groups: roles (`/roles`, members by checkpoint paging `from`/`take`
//!   at `/roles/{id}/users`), organizations (`/organizations` and
//!   `/organizations/{id}/members`, checkpoint paging). Neither nests.
//! * No delta API for users: every pull is full, so a deleted user is
//!   gone by absence.
//! * Rate limits are per tenant, shared with every other client:
//!   `X-RateLimit-Remaining: 0` pauses until `X-RateLimit-Reset`.
//!
//! `config` holds the settings, `api` the calls, `fake` (feature `fake`) a
//! faithful fake of the API.

mod api;
pub mod config;
#[cfg(feature = "fake")]
pub mod fake;

use api::{Auth0Api, Member};
use config::Auth0Settings;
use idpsync_driver::{
    Capabilities, DeclaredTotals, Driver, DriverContext, DriverError, DriverKind, Email,
    MembershipEdge, PullMode, PullOutcome, RecordSink, SourceGroup, SourceUser,
};

/// The users listing's documented ceiling: no page beyond the first 1,000
/// results, and a total reported as at most 1,000.
pub const LISTING_CAP: u64 = 1000;

/// `kind = "auth0"`.
pub struct Auth0Factory;

impl DriverKind for Auth0Factory {
    const KIND: &'static str = "auth0";
    type Settings = Auth0Settings;

    fn build(
        &self,
        settings: Auth0Settings,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(Auth0Driver {
            api: Auth0Api::new(settings, context.http)?,
        }))
    }
}

struct Auth0Driver {
    api: Auth0Api,
}

fn user(user: api::User) -> SourceUser {
    // The login name: the e-mail address where the connection has one (most
    // do), else the username, else the id itself.
    let user_name = user
        .email
        .clone()
        .or_else(|| user.username.clone())
        .unwrap_or_else(|| user.user_id.clone());
    let mut record = SourceUser::new(user.user_id, user_name);
    record.display_name = user.name;
    record.given_name = user.given_name;
    record.family_name = user.family_name;
    record.emails = user
        .email
        .into_iter()
        .map(|value| Email {
            value,
            kind: None,
            primary: true,
        })
        .collect();
    let blocked = user.blocked.unwrap_or(false);
    record.active = !blocked;
    record.raw_status = Some(if blocked { "blocked" } else { "active" }.into());
    if let Some(username) = user.username {
        record
            .attributes
            .insert("username".into(), serde_json::Value::String(username));
    }
    record
}

fn edges(group: &str, members: Vec<Member>) -> Vec<MembershipEdge> {
    let group: idpsync_driver::EdgeId = group.into();
    members
        .into_iter()
        .map(|member| MembershipEdge::user(group.clone(), member.user_id))
        .collect()
}

impl Auth0Driver {
    /// Every user: by the listing below its cap, by export at or above it.
    async fn pull_users(&self, sink: &mut dyn RecordSink) -> Result<Option<u64>, DriverError> {
        let first = self.api.users_page(0).await?;
        if first.total >= LISTING_CAP {
            let users = self.api.export_users().await?;
            for page in users.chunks(self.api.settings.page_size as usize * 10) {
                sink.users(page.iter().cloned().map(user).collect()).await?;
            }
            // An export has no total to check against: it is the tenant.
            return Ok(None);
        }
        let total = first.total;
        let mut seen = first.users.len() as u64;
        let mut short = first.users.len() < self.api.settings.page_size as usize;
        sink.users(first.users.into_iter().map(user).collect())
            .await?;
        let mut page = 1;
        while seen < total && !short {
            let next = self.api.users_page(page).await?;
            seen += next.users.len() as u64;
            short = next.users.len() < self.api.settings.page_size as usize;
            sink.users(next.users.into_iter().map(user).collect())
                .await?;
            page += 1;
        }
        Ok(Some(total))
    }

    /// Roles as groups; returns the number of roles Auth0 declared.
    async fn pull_roles(&self, sink: &mut dyn RecordSink) -> Result<u64, DriverError> {
        let mut roles = Vec::new();
        let mut declared = None;
        let mut page = 0;
        loop {
            let next = self.api.roles_page(page).await?;
            let total = *declared.get_or_insert(next.total);
            let done =
                next.roles.is_empty() || roles.len() as u64 + next.roles.len() as u64 >= total;
            roles.extend(next.roles);
            if done {
                break;
            }
            page += 1;
        }
        sink.groups(
            roles
                .iter()
                .map(|role| SourceGroup::new(role.id.clone(), role.name.clone()))
                .collect(),
        )
        .await?;
        for role in &roles {
            let mut from: Option<String> = None;
            loop {
                let page = self.api.role_members(&role.id, from.as_deref()).await?;
                sink.memberships(edges(&role.id, page.items)).await?;
                match page.next {
                    Some(next) if !next.is_empty() => from = Some(next),
                    _ => break,
                }
            }
        }
        // What the API declared, for core to check against what arrived.
        Ok(declared.unwrap_or(0))
    }

    async fn pull_organizations(&self, sink: &mut dyn RecordSink) -> Result<(), DriverError> {
        let mut from: Option<String> = None;
        let mut organizations = Vec::new();
        loop {
            let page = self.api.organizations(from.as_deref()).await?;
            organizations.extend(page.items);
            match page.next {
                Some(next) if !next.is_empty() => from = Some(next),
                _ => break,
            }
        }
        sink.groups(
            organizations
                .iter()
                .map(|org| {
                    let mut group = SourceGroup::new(
                        org.id.clone(),
                        org.display_name.clone().unwrap_or_else(|| org.name.clone()),
                    );
                    group
                        .attributes
                        .insert("organization".into(), org.name.clone().into());
                    group
                })
                .collect(),
        )
        .await?;
        for org in &organizations {
            let mut from: Option<String> = None;
            loop {
                let page = self
                    .api
                    .organization_members(&org.id, from.as_deref())
                    .await?;
                sink.memberships(edges(&org.id, page.items)).await?;
                match page.next {
                    Some(next) if !next.is_empty() => from = Some(next),
                    _ => break,
                }
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Driver for Auth0Driver {
    async fn check(&self) -> Result<Capabilities, DriverError> {
        let users = self.api.users_page(0).await?;
        let roles = if self.api.settings.roles {
            Some(self.api.roles_page(0).await?.total)
        } else {
            None
        };
        let users = if users.total >= LISTING_CAP {
            format!("{LISTING_CAP}+ users (read by export job)")
        } else {
            format!("{} users", users.total)
        };
        Ok(Capabilities {
            delta: false,
            nested_groups: false,
            page_size: self.api.settings.page_size,
            summary: format!(
                "tenant {}: {users}{}",
                self.api.settings.root(),
                roles.map(|n| format!(", {n} roles")).unwrap_or_default()
            ),
        })
    }

    async fn pull(
        &self,
        _mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let users = self.pull_users(sink).await?;
        let mut groups = 0;
        if self.api.settings.roles {
            groups += self.pull_roles(sink).await?;
        }
        if self.api.settings.organizations {
            self.pull_organizations(sink).await?;
        }
        Ok(PullOutcome {
            next_cursor: None,
            declared: DeclaredTotals {
                users,
                groups: (!self.api.settings.organizations).then_some(groups),
            },
            complete_snapshot: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_user_is_inactive_and_the_login_is_the_email_where_there_is_one() {
        let parsed: api::User = serde_json::from_value(serde_json::json!({
            "user_id": "auth0|42", "email": "ann@acme.test", "username": "ann",
            "name": "Ann Ng", "blocked": true
        }))
        .unwrap();
        let record = user(parsed);
        assert_eq!(record.user_name, "ann@acme.test");
        assert!(!record.active && !record.suspended);
        assert_eq!(record.raw_status.as_deref(), Some("blocked"));

        let parsed: api::User =
            serde_json::from_value(serde_json::json!({"user_id": "sms|7", "username": "bob"}))
                .unwrap();
        let record = user(parsed);
        assert_eq!(record.user_name, "bob");
        assert!(record.active, "absent blocked means not blocked");
        let parsed: api::User =
            serde_json::from_value(serde_json::json!({"user_id": "sms|8"})).unwrap();
        assert_eq!(user(parsed).user_name, "sms|8");
    }
}
