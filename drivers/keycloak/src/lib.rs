//! Keycloak driver: users, groups (a tree, nesting stored as edges) and group
//! members from the Admin REST API of one realm.
//!
//! * Auth: a confidential client with a service account, OAuth 2.0 client
//!   credentials at `{base_url}/realms/{realm}/protocol/openid-connect/token`;
//!   the account needs the realm-management roles `view-users` and
//!   `query-groups`. The token is cached and refreshed once on 401.
//! * Paging: `first`/`max`; no totals in pages, so a page shorter than `max`
//!   is the last. `users/count` gives the declared total.
//! * Groups: top-level from `/groups`, subgroups from `/groups/{id}/children`
//!   (Keycloak 23+), members from `/groups/{id}/members`. `subGroupsCount=true`
//!   is sent explicitly; a group without a `subGroupCount` has its children
//!   probed, so a server default can never hide a subtree.
//! * Keycloak has no delta API: every pull is full.
//!
//! `config` holds the settings, `api` the calls, `map` the mapping; `fake`
//! (feature `fake`) a faithful fake of the API.

mod api;
pub mod config;
#[cfg(feature = "fake")]
pub mod fake;
mod map;

use api::KeycloakApi;
use config::KeycloakSettings;
use idpsync_driver::http::OffsetPager;
use idpsync_driver::{
    Capabilities, DeclaredTotals, Driver, DriverContext, DriverError, DriverKind, MembershipEdge,
    PullMode, PullOutcome, RecordSink,
};

/// `kind = "keycloak"`.
pub struct KeycloakFactory;

impl DriverKind for KeycloakFactory {
    const KIND: &'static str = "keycloak";
    type Settings = KeycloakSettings;

    fn build(
        &self,
        settings: KeycloakSettings,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(KeycloakDriver {
            api: KeycloakApi::new(settings, context.http)?,
        }))
    }
}

struct KeycloakDriver {
    api: KeycloakApi,
}

#[async_trait::async_trait]
impl Driver for KeycloakDriver {
    async fn check(&self) -> Result<Capabilities, DriverError> {
        let users = self.api.user_count().await?;
        let top_groups = self.api.groups_page(0).await?;
        Ok(Capabilities {
            delta: false,
            nested_groups: true,
            page_size: self.api.page_size(),
            summary: format!(
                "realm {}: {users} users, {}{} top-level groups readable",
                self.api.realm(),
                top_groups.len(),
                if top_groups.len() as u32 == self.api.page_size() {
                    "+"
                } else {
                    ""
                }
            ),
        })
    }

    async fn pull(
        &self,
        _mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let declared_users = self.api.user_count().await?;

        let mut pager = OffsetPager::new(self.api.page_size());
        while let Some(first) = pager.next_offset() {
            let page = self.api.users_page(first as u32).await?;
            pager.record(page.len());
            sink.users(page.into_iter().map(map::user).collect::<Result<_, _>>()?)
                .await?;
        }

        // Walk the tree breadth-first: top-level groups, then children.
        let mut queue: Vec<(Option<String>, api::GroupRepresentation)> = Vec::new();
        let mut pager = OffsetPager::new(self.api.page_size());
        while let Some(first) = pager.next_offset() {
            let page = self.api.groups_page(first as u32).await?;
            pager.record(page.len());
            queue.extend(page.into_iter().map(|group| (None, group)));
        }
        let mut index = 0;
        while index < queue.len() {
            let (parent, group) = queue[index].clone();
            index += 1;
            sink.groups(vec![map::group(&group)?]).await?;
            if let Some(parent) = parent {
                sink.memberships(vec![MembershipEdge::group(parent, group.id.clone())])
                    .await?;
            }
            // Subgroups: inlined (before Keycloak 23), counted, or, when a
            // server says neither, probed for: an absent count is not zero.
            let has_children =
                !group.sub_groups.is_empty() || group.sub_group_count.is_none_or(|count| count > 0);
            if has_children {
                let children = if group.sub_groups.is_empty() {
                    self.api.all_children(&group.id).await?
                } else {
                    group.sub_groups.clone()
                };
                queue.extend(
                    children
                        .into_iter()
                        .map(|child| (Some(group.id.clone()), child)),
                );
            }
            let mut pager = OffsetPager::new(self.api.page_size());
            while let Some(first) = pager.next_offset() {
                let members = self.api.members_page(&group.id, first as u32).await?;
                pager.record(members.len());
                sink.memberships(
                    members
                        .into_iter()
                        .map(|member| MembershipEdge::user(group.id.clone(), member.id))
                        .collect(),
                )
                .await?;
            }
        }
        Ok(PullOutcome {
            next_cursor: None,
            declared: DeclaredTotals {
                users: Some(declared_users),
                groups: None,
            },
            complete_snapshot: true,
        })
    }
}
