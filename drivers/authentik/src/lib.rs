//! authentik driver: users and groups (with their parents) from the API v3.
//!
//! * Auth: an API token (intent "API") as `Authorization: Bearer`; the
//!   token's user needs "Can view User" and "Can view Group".
//! * Paging: `page` (from 1) and `page_size`; each answer's `pagination`
//!   object gives `next` (0 on the last page) and `count`. The driver
//!   follows `next` rather than counting, since the server may clamp a page
//!   size silently, and declares `count` for core to check.
//! * Users: `/api/v3/core/users/?include_groups=false`; `is_active: false`
//!   deprovisions; only the configured `user_types` are people (service
//!   accounts are not).
//! * Groups: `/api/v3/core/groups/?include_users=false`, each with its
//!   members' numeric keys (`users`), so no user is read twice; nesting from
//!   `parent` (before 2025.8) or `parents` (from 2025.8: several).
//! * No delta API: every pull is full.
//!
//! `config` holds the settings, `api` the calls, `fake` (feature `fake`) a
//! faithful fake of the API.

mod api;
pub mod config;
#[cfg(feature = "fake")]
pub mod fake;

use api::AuthentikApi;
use config::AuthentikSettings;
use idpsync_driver::{
    Capabilities, DeclaredTotals, Driver, DriverContext, DriverError, DriverKind, EdgeId, Email,
    MembershipEdge, PullMode, PullOutcome, RecordSink, SourceGroup, SourceUser,
};
use std::collections::HashMap;

/// `kind = "authentik"`.
pub struct AuthentikFactory;

impl DriverKind for AuthentikFactory {
    const KIND: &'static str = "authentik";
    type Settings = AuthentikSettings;

    fn build(
        &self,
        settings: AuthentikSettings,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(AuthentikDriver {
            api: AuthentikApi::new(settings, context.http),
        }))
    }
}

struct AuthentikDriver {
    api: AuthentikApi,
}

fn user(user: api::User) -> SourceUser {
    let mut record = SourceUser::new(user.uuid, user.username);
    record.display_name = user.name.filter(|name| !name.is_empty());
    record.emails = user
        .email
        .filter(|email| !email.is_empty())
        .into_iter()
        .map(|value| Email {
            value,
            kind: None,
            primary: true,
        })
        .collect();
    record.active = user.is_active;
    record.raw_status = Some(if user.is_active { "active" } else { "inactive" }.into());
    record
        .attributes
        .insert("type".into(), serde_json::Value::String(user.kind));
    record
}

#[async_trait::async_trait]
impl Driver for AuthentikDriver {
    async fn check(&self) -> Result<Capabilities, DriverError> {
        let users = self.api.users_page(1).await?;
        let groups = self.api.groups_page(1).await?;
        Ok(Capabilities {
            delta: false,
            nested_groups: true,
            page_size: self.api.settings.page_size,
            summary: format!(
                "{}: {} users (all types), {} groups",
                self.api.settings.base_url, users.pagination.count, groups.pagination.count
            ),
        })
    }

    async fn pull(
        &self,
        _mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let types = &self.api.settings.user_types;
        // Group members come as numeric keys: the people's ids by key.
        let mut people: HashMap<i64, EdgeId> = HashMap::new();
        let mut listed = None;
        let mut skipped = 0u64;
        let mut page = 1;
        while page != 0 {
            let next = self.api.users_page(page).await?;
            listed.get_or_insert(next.pagination.count);
            let mut records = Vec::with_capacity(next.results.len());
            for found in next.results {
                if types.contains(&found.kind) {
                    people.insert(found.pk, found.uuid.as_str().into());
                    records.push(user(found));
                } else {
                    skipped += 1;
                }
            }
            sink.users(records).await?;
            page = next.pagination.next;
        }

        let mut groups_listed = None;
        let mut page = 1;
        while page != 0 {
            let next = self.api.groups_page(page).await?;
            groups_listed.get_or_insert(next.pagination.count);
            let mut edges = Vec::new();
            for group in &next.results {
                let id: EdgeId = group.pk.as_str().into();
                for parent in group.all_parents() {
                    edges.push(MembershipEdge::group(parent.as_str(), id.clone()));
                }
                edges.extend(
                    group
                        .users
                        .iter()
                        .filter_map(|key| people.get(key))
                        .map(|member| MembershipEdge::user(id.clone(), member.clone())),
                );
            }
            sink.groups(
                next.results
                    .into_iter()
                    .map(|group| SourceGroup::new(group.pk, group.name))
                    .collect(),
            )
            .await?;
            sink.memberships(edges).await?;
            page = next.pagination.next;
        }
        Ok(PullOutcome {
            next_cursor: None,
            declared: DeclaredTotals {
                // Service accounts are listed and counted, but not people.
                users: listed.map(|count| count.saturating_sub(skipped)),
                groups: groups_listed,
            },
            complete_snapshot: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_read_from_either_versions_field() {
        let old: api::Group = serde_json::from_value(serde_json::json!({
            "pk": "g2", "name": "Child", "parent": "g1", "users": [1, 2]
        }))
        .unwrap();
        let new: api::Group = serde_json::from_value(serde_json::json!({
            "pk": "g2", "name": "Child", "parents": ["g1", "g0"], "users": []
        }))
        .unwrap();
        let top: api::Group = serde_json::from_value(serde_json::json!({
            "pk": "g1", "name": "Top", "parent": null
        }))
        .unwrap();
        assert_eq!(old.all_parents().collect::<Vec<_>>(), ["g1"]);
        assert_eq!(new.all_parents().collect::<Vec<_>>(), ["g1", "g0"]);
        assert_eq!(top.all_parents().count(), 0);
    }

    #[test]
    fn an_inactive_user_is_deprovisioned_and_keeps_its_type() {
        let parsed: api::User = serde_json::from_value(serde_json::json!({
            "pk": 7, "uuid": "5b1c-...", "username": "ann", "name": "", "email": "",
            "is_active": false, "type": "external"
        }))
        .unwrap();
        let record = user(parsed);
        assert!(!record.active && !record.suspended);
        assert_eq!(record.display_name, None, "an empty name is no name");
        assert!(record.emails.is_empty());
        assert_eq!(record.attributes["type"], "external");
    }
}
