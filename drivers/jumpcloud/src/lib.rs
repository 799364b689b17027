//! JumpCloud driver: users from the v1 `systemusers` API, user groups and
//! their members from the v2 graph API; the v1 user `_id` is the id the v2
//! graph uses for users, so edges join directly.
//!
//! * Auth: the `x-api-key` header (an administrator's API key, read-only
//!   admins suffice); multi-tenant (MTP) admins also send `x-org-id`.
//! * Paging: `skip`/`limit` (limit at most 100). `systemusers` declares
//!   `totalCount`, which the pull reports so core can refuse a short pull.
//! * Active means not suspended, and activated (state `ACTIVATED` where the
//!   API reports a state); `STAGED` and `SUSPENDED` users are inactive.
//! * JumpCloud has no delta API for these objects: every pull is full.

mod api;
pub mod config;
#[cfg(feature = "fake")]
pub mod fake;

use api::JumpCloudApi;
use config::JumpCloudSettings;
use idpsync_driver::http::OffsetPager;
use idpsync_driver::{
    Capabilities, DeclaredTotals, Driver, DriverContext, DriverError, DriverFactory, Email,
    MembershipEdge, PullMode, PullOutcome, RecordSink, SourceGroup, SourceUser, parse_settings,
};

/// `kind = "jumpcloud"`.
pub struct JumpCloudFactory;

impl DriverFactory for JumpCloudFactory {
    fn kind(&self) -> &'static str {
        "jumpcloud"
    }

    fn build(
        &self,
        settings: &serde_json::Value,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        let settings: JumpCloudSettings = parse_settings(settings)?;
        settings.validate()?;
        Ok(Box::new(JumpCloudDriver {
            api: JumpCloudApi::new(settings, context.http),
        }))
    }

    fn validate(&self, settings: &serde_json::Value) -> Result<(), DriverError> {
        parse_settings::<JumpCloudSettings>(settings)?.validate()
    }
}

struct JumpCloudDriver {
    api: JumpCloudApi,
}

fn user(user: api::SystemUser) -> Result<SourceUser, DriverError> {
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
    let state_active = user
        .state
        .as_deref()
        .is_none_or(|state| state.eq_ignore_ascii_case("ACTIVATED"));
    record.active = !user.suspended && user.activated && state_active;
    record.raw_status = Some(match (&user.state, user.suspended) {
        (Some(state), _) => state.clone(),
        (None, true) => "SUSPENDED".into(),
        (None, false) => if user.activated {
            "ACTIVATED"
        } else {
            "NOT_ACTIVATED"
        }
        .into(),
    });
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
                    .map(user)
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
