//! Okta driver, on the Management API v1.
//!
//! * Auth: an API token (`Authorization: SSWS`), or an OAuth 2.0 service app
//!   with `private_key_jwt` (scopes `okta.users.read okta.groups.read`) at
//!   `{org_url}/oauth2/v1/token`; the token is cached.
//! * Users of every status (the default listing omits `DEPROVISIONED`, so
//!   those are searched for too); what each status means for access is the
//!   connection's `states` (see `config`): by default ACTIVE, PROVISIONED,
//!   RECOVERY and PASSWORD_EXPIRED give access, LOCKED_OUT only suspends it
//!   (devices kept until the lockout clears), STAGED, SUSPENDED and
//!   DEPROVISIONED deprovision. The raw status is kept.
//! * Groups of the configured types, and their members.
//! * Paging: the `Link` header's `rel="next"` URL (with its `after` cursor),
//!   followed only on the org's own origin.
//! * Rate limits: `X-Rate-Limit-Remaining: 0` pauses until
//!   `X-Rate-Limit-Reset`; a 429 waits until the reset (the SDK's HTTP kit).
//! * Incremental pulls: users `search=lastUpdated gt "<t>"` and groups
//!   `filter=lastUpdated gt "<t>" or lastMembershipUpdated gt "<t>"`, whose
//!   members are re-read whole. Both timestamps are exact in Okta. A deleted
//!   user or group vanishes from every listing and search (a user
//!   deactivated and deleted between two pulls is never listed as
//!   DEPROVISIONED), so deletions come from the System Log: a bounded query
//!   of `user.lifecycle.delete.*` and `group.lifecycle.delete` events since
//!   the cursor, whose targets are removed (`read_system_log`, on by
//!   default). Core's periodic full pull (`full_sync_every_hours`) is the
//!   safety net.

mod api;
pub mod config;
#[cfg(feature = "fake")]
pub mod fake;
pub mod hooks;

use api::OktaApi;
use config::OktaSettings;
use futures_util::StreamExt;
use idpsync_driver::{
    Capabilities, DeclaredTotals, DeltaCursor, Driver, DriverContext, DriverError, DriverKind,
    EdgeId, Email, MembershipEdge, PullMode, PullOutcome, RecordSink, SourceGroup, SourceUser,
    StatePolicy,
};
use serde_json::Value;

/// `kind = "okta"`.
pub struct OktaFactory;

impl DriverKind for OktaFactory {
    const KIND: &'static str = "okta";
    type Settings = OktaSettings;

    fn build(
        &self,
        settings: OktaSettings,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(OktaDriver {
            api: OktaApi::new(settings, context.http)?,
        }))
    }
}

struct OktaDriver {
    api: OktaApi,
}

/// A user object as the driver reads it: the fields it maps, typed (serde
/// skips the rest of the object without building it).
#[derive(serde::Deserialize)]
struct OktaUser {
    id: Option<String>,
    status: Option<String>,
    #[serde(default)]
    profile: OktaProfile,
}

/// The standard profile attributes the driver maps (all strings in Okta's
/// base schema; null or missing when unset).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct OktaProfile {
    login: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    display_name: Option<String>,
    email: Option<String>,
}

fn user(item: OktaUser, states: &StatePolicy) -> Result<SourceUser, DriverError> {
    let id = item
        .id
        .ok_or_else(|| DriverError::protocol("a user without id"))?;
    let text = |value: Option<String>| value.filter(|s| !s.is_empty());
    let profile = item.profile;
    let login = text(profile.login)
        .ok_or_else(|| DriverError::protocol(format!("user {id} without profile.login")))?;
    let status = item.status.unwrap_or_else(|| "ACTIVE".to_string());
    let mut record = SourceUser::new(id, login);
    record.given_name = text(profile.first_name);
    record.family_name = text(profile.last_name);
    record.display_name = text(profile.display_name);
    if let Some(email) = text(profile.email) {
        record.emails.push(Email {
            value: email,
            kind: Some("work".into()),
            primary: true,
        });
    }
    record.set_access(states.access(&status));
    record.raw_status = Some(status);
    Ok(record)
}

/// A System Log event as the driver reads it: its type and targets.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogEvent {
    event_type: String,
    #[serde(default)]
    target: Vec<LogTarget>,
}

#[derive(serde::Deserialize)]
struct LogTarget {
    id: String,
    #[serde(rename = "type")]
    kind: String,
}

/// A group member as the driver reads it: the id of a listed user object.
#[derive(serde::Deserialize)]
struct MemberId {
    id: String,
}

/// Groups whose members are read at the same time (Okta serves each group's
/// members separately; the HTTP kit bounds requests in flight and honours
/// the rate-limit headers across all of them).
const MEMBER_READS_IN_FLIGHT: usize = 4;

impl OktaDriver {
    /// Users and groups the System Log says were deleted in `[since, until)`.
    async fn deletions(
        &self,
        since: &str,
        until: &str,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DriverError> {
        let mut next = Some(self.api.deletions_url(since, until));
        while let Some(url) = next {
            let (events, link) = self.api.page::<LogEvent>(&url).await?;
            // A page without events ends the query, whatever its links say.
            next = link.filter(|_| !events.is_empty());
            let (mut users, mut groups) = (Vec::new(), Vec::new());
            for event in events {
                let targets = event.target.into_iter();
                if event.event_type.starts_with("user.lifecycle.delete") {
                    users.extend(targets.filter(|t| t.kind == "User").map(|t| t.id));
                } else if event.event_type == "group.lifecycle.delete" {
                    groups.extend(targets.filter(|t| t.kind == "UserGroup").map(|t| t.id));
                }
            }
            if !users.is_empty() {
                sink.removed_users(users).await?;
            }
            if !groups.is_empty() {
                sink.removed_groups(groups).await?;
            }
        }
        Ok(())
    }

    /// Every member of one group, all its pages.
    async fn members(&self, group_id: String) -> Result<Vec<MembershipEdge>, DriverError> {
        let mut next = Some(self.api.group_users_url(&group_id));
        let mut edges = Vec::new();
        // One copy of the group id, shared by all its edges.
        let group_id: EdgeId = group_id.into();
        while let Some(url) = next {
            // Okta lists whole user objects; only their ids are read.
            let (items, link) = self.api.page::<MemberId>(&url).await?;
            next = link;
            edges.extend(
                items
                    .into_iter()
                    .map(|member| MembershipEdge::user(group_id.clone(), member.id)),
            );
        }
        Ok(edges)
    }

    async fn users(&self, url: String, sink: &mut dyn RecordSink) -> Result<u64, DriverError> {
        let mut next = Some(url);
        let mut count = 0;
        while let Some(url) = next {
            let (items, link) = self.api.page::<OktaUser>(&url).await?;
            next = link;
            count += items.len() as u64;
            let states = self.api.states();
            sink.users(
                items
                    .into_iter()
                    .map(|item| user(item, states))
                    .collect::<Result<_, _>>()?,
            )
            .await?;
        }
        Ok(count)
    }

    async fn groups(
        &self,
        url: String,
        sink: &mut dyn RecordSink,
        replace_members: bool,
    ) -> Result<(), DriverError> {
        let mut next = Some(url);
        let mut groups = Vec::new();
        while let Some(url) = next {
            let (items, link) = self.api.page::<Value>(&url).await?;
            next = link;
            let page: Vec<SourceGroup> = items
                .iter()
                .filter(|item| {
                    item["type"]
                        .as_str()
                        .is_some_and(|kind| self.api.wants_group_type(kind))
                })
                .filter_map(|item| {
                    Some(SourceGroup::new(
                        item["id"].as_str()?,
                        item["profile"]["name"].as_str().unwrap_or_default(),
                    ))
                })
                .collect();
            groups.extend(page.iter().map(|g| g.external_id.clone()));
            sink.groups(page).await?;
        }
        if replace_members && !groups.is_empty() {
            sink.replaced_members(groups.clone()).await?;
        }
        // Several groups at a time, handed to the sink in group order.
        let reads = groups.into_iter().map(|group| self.members(group));
        let mut reads = futures_util::stream::iter(reads).buffered(MEMBER_READS_IN_FLIGHT);
        while let Some(edges) = reads.next().await {
            sink.memberships(edges?).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Driver for OktaDriver {
    /// Always offered: without a `notifications` table it subscribes to
    /// nothing and refuses deliveries, but can still stop what an earlier
    /// configuration subscribed.
    fn notifier(&self) -> Option<&dyn idpsync_driver::notify::Notifier> {
        Some(self)
    }

    async fn check(&self) -> Result<Capabilities, DriverError> {
        let (users, _) = self.api.page::<Value>(&self.api.users_url(None)).await?;
        let (groups, _) = self.api.page::<Value>(&self.api.groups_url(None)).await?;
        Ok(Capabilities {
            delta: true,
            nested_groups: false,
            page_size: self.api.page_size(),
            summary: format!(
                "{}: users and groups readable ({} users, {} groups on the first page)",
                self.api.org(),
                users.len(),
                groups.len()
            ),
        })
    }

    async fn pull(
        &self,
        mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        // Changes made while this pull runs are caught by the next one,
        // which starts a minute early (clocks and Okta's indexing lag):
        // windows overlap, and a change seen twice is applied once.
        let okta_time =
            |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let now = chrono::Utc::now();
        let cursor = Some(DeltaCursor(okta_time(now - chrono::Duration::seconds(60))));
        if let PullMode::Delta(since) = mode {
            if self.api.reads_system_log() {
                // `until` a second ahead: the timestamp keeps only
                // milliseconds, and an event of this very instant must be in.
                let until = okta_time(now + chrono::Duration::seconds(1));
                self.deletions(&since.0, &until, sink).await?;
            }
            self.users(
                self.api
                    .users_url(Some(&format!("lastUpdated gt \"{}\"", since.0))),
                sink,
            )
            .await?;
            self.groups(self.api.groups_url(Some(&since.0)), sink, true)
                .await?;
            return Ok(PullOutcome {
                next_cursor: cursor,
                declared: DeclaredTotals::default(),
                complete_snapshot: false,
            });
        }
        self.users(self.api.users_url(None), sink).await?;
        self.users(
            self.api.users_url(Some("status eq \"DEPROVISIONED\"")),
            sink,
        )
        .await?;
        self.groups(self.api.groups_url(None), sink, false).await?;
        Ok(PullOutcome {
            next_cursor: cursor,
            declared: DeclaredTotals::default(),
            complete_snapshot: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idpsync_driver::{DriverFactory, parse_settings};

    fn parsed(json: serde_json::Value) -> Result<SourceUser, DriverError> {
        let settings: config::OktaSettings = parse_settings(&serde_json::json!({
            "org_url": "https://acme.okta.com", "api_token": "t"
        }))?;
        user(
            serde_json::from_value(json).expect("a user object"),
            &settings.states,
        )
    }

    #[test]
    fn a_lockout_suspends_and_an_admins_suspension_deprovisions_by_default() {
        let status = |status: &str| {
            parsed(serde_json::json!({"id": "00u1", "status": status, "profile": {"login": "a"}}))
                .unwrap()
                .access()
        };
        assert_eq!(status("LOCKED_OUT"), idpsync_driver::Access::Suspended);
        assert_eq!(status("PASSWORD_EXPIRED"), idpsync_driver::Access::Active);
        assert_eq!(status("RECOVERY"), idpsync_driver::Access::Active);
        for gone in ["SUSPENDED", "DEPROVISIONED", "STAGED"] {
            assert_eq!(
                status(gone),
                idpsync_driver::Access::Deprovisioned,
                "{gone}"
            );
        }
    }

    #[test]
    fn states_are_checked_against_oktas_statuses() {
        let error = OktaFactory
            .validate(&serde_json::json!({
                "org_url": "https://acme.okta.com", "api_token": "t",
                "states": {"active": ["ACTIVE"], "suspend": ["LOCKED"]}
            }))
            .unwrap_err();
        assert!(
            matches!(&error, DriverError::InvalidConfig { key, message } if key == "states.suspend" && message.contains("LOCKED_OUT")),
            "{error:?}"
        );
    }

    #[test]
    fn a_user_object_maps_its_profile_and_status_and_skips_the_rest() {
        let record = parsed(serde_json::json!({
            "id": "00u1", "status": "SUSPENDED", "lastLogin": null,
            "type": {"id": "oty1"},
            "profile": {"login": "ann@acme.test", "firstName": "Ann", "lastName": "Lee",
                        "displayName": null, "email": "ann@acme.test", "mobilePhone": null,
                        "costCenter": 42, "tags": ["a"]},
            "credentials": {"provider": {"type": "OKTA"}},
            "_links": {"self": {"href": "/api/v1/users/00u1"}}
        }))
        .unwrap();
        assert_eq!(record.external_id, "00u1");
        assert_eq!(record.user_name, "ann@acme.test");
        assert_eq!(record.given_name.as_deref(), Some("Ann"));
        assert_eq!(record.display_name, None);
        assert_eq!(record.emails[0].value, "ann@acme.test");
        assert!(!record.active, "SUSPENDED has no access");
        assert_eq!(record.raw_status.as_deref(), Some("SUSPENDED"));
    }

    #[test]
    fn a_user_without_a_login_is_a_protocol_error() {
        let error =
            parsed(serde_json::json!({"id": "00u2", "profile": {"login": ""}})).unwrap_err();
        assert!(error.to_string().contains("00u2"), "{error}");
    }
}
