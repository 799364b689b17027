//! JumpCloud driver: users from the v1 `systemusers` API, user groups and
//! their members from the v2 graph API; the v1 user `_id` is the id the v2
//! graph uses for users, so edges join directly.
//!
//! * Auth: the `x-api-key` header (an administrator's API key, read-only
//!   admins suffice); multi-tenant (MTP) admins also send `x-org-id`.
//! * Paging: `skip`/`limit` (limit at most 100). `systemusers` declares
//!   `totalCount`, which the pull reports so core can refuse a short pull.
//! * A user's state is the API's `state` (or, where it reports none,
//!   `SUSPENDED` / `ACTIVATED` / `STAGED` from `suspended` and `activated`),
//!   and `LOCKED` for an activated account with `account_locked`. The
//!   connection's `states` say what each means: by default ACTIVATED gives
//!   access, LOCKED only suspends it, STAGED and SUSPENDED deprovision.
//! * JumpCloud has no delta API for these objects: every pull is full.

mod api;
pub mod config;
#[cfg(feature = "fake")]
pub mod fake;

use api::JumpCloudApi;
use config::JumpCloudSettings;
use idpsync_driver::http::OffsetPager;
use idpsync_driver::{
    Capabilities, DeclaredTotals, Driver, DriverContext, DriverError, DriverKind, Email,
    MembershipEdge, PullMode, PullOutcome, RecordSink, SourceGroup, SourceUser, StatePolicy,
};

/// `kind = "jumpcloud"`.
pub struct JumpCloudFactory;

impl DriverKind for JumpCloudFactory {
    const KIND: &'static str = "jumpcloud";
    type Settings = JumpCloudSettings;

    fn build(
        &self,
        settings: JumpCloudSettings,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(JumpCloudDriver {
            api: JumpCloudApi::new(settings, context.http),
        }))
    }
}

struct JumpCloudDriver {
    api: JumpCloudApi,
}

fn user(user: api::SystemUser, states: &StatePolicy) -> Result<SourceUser, DriverError> {
    let id = user
        .id
        .or(user.alt_id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| DriverError::protocol("a system user without _id"))?;
    let mut record = SourceUser::new(id, user.username);
    record.given_name = user.firstname.filter(|s| !s.is_empty());
    record.family_name = user.lastname.filter(|s| !s.is_empty());
    record.display_name = user.displayname.filter(|s| !s.is_empty());
    if let Some(email) = user.email.filter(|e| !e.is_empty()) {
        record.emails.push(Email {
            value: email,
            kind: Some("work".into()),
            primary: true,
        });
    }
    let state = match (user.state, user.suspended, user.activated) {
        (_, true, _) => "SUSPENDED".to_string(),
        (Some(state), ..) => state.to_ascii_uppercase(),
        (None, false, true) => "ACTIVATED".into(),
        (None, false, false) => "STAGED".into(),
    };
    let state = if state == "ACTIVATED" && user.account_locked {
        "LOCKED".to_string()
    } else {
        state
    };
    record.set_access(states.access(&state));
    record.raw_status = Some(state);
    Ok(record)
}

#[async_trait::async_trait]
impl Driver for JumpCloudDriver {
    async fn check(&self) -> Result<Capabilities, DriverError> {
        let first = self.api.users_page(0).await?;
        self.api.groups_page(0).await?;
        Ok(Capabilities {
            delta: false,
            nested_groups: false,
            page_size: self.api.page_size(),
            summary: format!("{} users, user groups readable", first.total_count),
        })
    }

    async fn pull(
        &self,
        _mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let mut declared = None;
        let mut pager = OffsetPager::new(self.api.page_size());
        while let Some(skip) = pager.next_offset() {
            let page = self.api.users_page(skip).await?;
            declared.get_or_insert(page.total_count);
            pager.record(page.results.len());
            sink.users(
                page.results
                    .into_iter()
                    .map(|item| user(item, self.api.states()))
                    .collect::<Result<_, _>>()?,
            )
            .await?;
        }

        let mut groups = Vec::new();
        let mut pager = OffsetPager::new(self.api.page_size());
        while let Some(skip) = pager.next_offset() {
            let page = self.api.groups_page(skip).await?;
            pager.record(page.len());
            groups.extend(page.iter().map(|group| group.id.clone()));
            sink.groups(
                page.into_iter()
                    .map(|group| SourceGroup::new(group.id, group.name))
                    .collect(),
            )
            .await?;
        }
        for group in groups {
            let mut pager = OffsetPager::new(self.api.page_size());
            while let Some(skip) = pager.next_offset() {
                let edges = self.api.members_page(&group, skip).await?;
                pager.record(edges.len());
                let users: Vec<MembershipEdge> = edges
                    .into_iter()
                    .filter(|edge| edge.to.kind == "user")
                    .map(|edge| MembershipEdge::user(group.clone(), edge.to.id))
                    .collect();
                sink.memberships(users).await?;
            }
        }
        Ok(PullOutcome {
            next_cursor: None,
            declared: DeclaredTotals {
                users: declared,
                groups: None,
            },
            complete_snapshot: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use idpsync_driver::Access;

    fn access(json: serde_json::Value) -> Access {
        let settings: JumpCloudSettings =
            idpsync_driver::parse_settings(&serde_json::json!({"api_key": "k"})).unwrap();
        let item: api::SystemUser = serde_json::from_value(json).unwrap();
        user(item, &settings.states).unwrap().access()
    }

    #[test]
    fn a_lockout_suspends_and_suspended_or_staged_users_are_deprovisioned() {
        let base = serde_json::json!({"_id": "u1", "username": "ann", "activated": true});
        let with = |extra: serde_json::Value| {
            let mut json = base.clone();
            json.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json
        };
        assert_eq!(
            access(with(serde_json::json!({"state": "ACTIVATED"}))),
            Access::Active
        );
        assert_eq!(
            access(with(
                serde_json::json!({"state": "ACTIVATED", "account_locked": true})
            )),
            Access::Suspended
        );
        assert_eq!(
            access(with(
                serde_json::json!({"state": "SUSPENDED", "suspended": true})
            )),
            Access::Deprovisioned
        );
        assert_eq!(
            access(with(
                serde_json::json!({"suspended": true, "account_locked": true})
            )),
            Access::Deprovisioned,
            "a suspension outranks a lockout"
        );
        assert_eq!(
            access(with(serde_json::json!({"activated": false}))),
            Access::Deprovisioned
        );
    }
}
