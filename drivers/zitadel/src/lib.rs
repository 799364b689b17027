//! ZITADEL driver: users from the v2 user service, groups from one
//! project's roles as assigned by authorizations.
//!
//! * Auth: a service user, by personal access token (Bearer), or by its key
//!   file through the JWT profile grant at `{issuer}/oauth/v2/token`
//!   (`iss` = `sub` = the user, `aud` = the issuer, `kid` = the key, scope
//!   `openid urn:zitadel:iam:org:project:id:zitadel:aud`).
//! * Calls: the Connect protocol with JSON (`POST
//!   /zitadel.user.v2.UserService/ListUsers`, `POST
//!   /zitadel.authorization.v2.AuthorizationService/ListAuthorizations`),
//!   offset/limit paging with `totalResult` (a 64-bit integer, so a string
//!   in JSON, and absent when 0). With `organization_id`, users are filtered
//!   to it (query and `x-zitadel-orgid` header) and so are authorizations.
//! * Users: `human` users are people; `machine` users are service accounts
//!   and are left out. States map through `states` (`StatePolicy`): by
//!   default ACTIVE gives access, LOCKED (too many failed logins) suspends
//!   it, INACTIVE, DELETED, INITIAL and UNSPECIFIED deprovision.
//! * Groups: ZITADEL's model for "who may do what in an application" is
//!   project roles assigned to users by authorizations (formerly user
//!   grants), and the roles reach applications in tokens, so each role key
//!   of `project_id` is a group and each active authorization makes its
//!   user a member of its roles. ZITADEL v4 also has a Group API, but only
//!   in v4, and roles are what applications see; see ARCHITECTURE.md. A
//!   role that nobody holds is not listed (nothing to sync).
//! * No delta API: every pull is full.
//!
//! `config` holds the settings, `api` the calls, `fake` (feature `fake`) a
//! faithful fake of the API.

mod api;
pub mod config;
#[cfg(feature = "fake")]
pub mod fake;

use api::ZitadelApi;
use config::ZitadelSettings;
use idpsync_driver::{
    Capabilities, DeclaredTotals, Driver, DriverContext, DriverError, DriverKind, EdgeId, Email,
    MembershipEdge, PullMode, PullOutcome, RecordSink, SourceGroup, SourceUser, StatePolicy,
};
use std::collections::{BTreeMap, HashSet};

/// `kind = "zitadel"`.
pub struct ZitadelFactory;

impl DriverKind for ZitadelFactory {
    const KIND: &'static str = "zitadel";
    type Settings = ZitadelSettings;

    fn build(
        &self,
        settings: ZitadelSettings,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(ZitadelDriver {
            api: ZitadelApi::new(settings, context.http)?,
        }))
    }
}

struct ZitadelDriver {
    api: ZitadelApi,
}

const UNSPECIFIED: &str = "USER_STATE_UNSPECIFIED";

/// A human user as a record; `None` for a machine user.
fn user(user: api::User, states: &StatePolicy) -> Option<SourceUser> {
    let human = user.human?;
    let email = human.email.and_then(|e| e.email).filter(|e| !e.is_empty());
    let user_name = user
        .username
        .or(user.preferred_login_name)
        .or_else(|| email.clone())
        .unwrap_or_else(|| user.user_id.clone());
    let mut record = SourceUser::new(user.user_id, user_name);
    record.given_name = human.profile.given_name;
    record.family_name = human.profile.family_name;
    record.display_name = human.profile.display_name;
    record.emails = email
        .into_iter()
        .map(|value| Email {
            value,
            kind: None,
            primary: true,
        })
        .collect();
    let state = user.state.unwrap_or_else(|| UNSPECIFIED.into());
    record.set_access(states.access(&state));
    record.raw_status = Some(state);
    Some(record)
}

impl ZitadelDriver {
    /// Every human user; returns their ids and the total declared for them.
    async fn pull_users(
        &self,
        sink: &mut dyn RecordSink,
    ) -> Result<(HashSet<String>, u64), DriverError> {
        let mut people = HashSet::new();
        let mut machines = 0u64;
        let mut offset = 0u64;
        let mut total = None;
        loop {
            let page = self.api.users_page(offset).await?;
            let total = *total.get_or_insert(page.details.total_result);
            if page.result.is_empty() {
                break;
            }
            offset += page.result.len() as u64;
            let mut records = Vec::with_capacity(page.result.len());
            for found in page.result {
                match user(found, &self.api.settings.states) {
                    Some(record) => {
                        people.insert(record.external_id.clone());
                        records.push(record);
                    }
                    None => machines += 1,
                }
            }
            sink.users(records).await?;
            if offset >= total {
                break;
            }
        }
        let declared = total.unwrap_or(0).saturating_sub(machines);
        Ok((people, declared))
    }

    /// The project's roles held by the people pulled, as groups and edges.
    async fn pull_roles(
        &self,
        project: &str,
        people: &HashSet<String>,
        sink: &mut dyn RecordSink,
    ) -> Result<(), DriverError> {
        let organization = self.api.settings.organization_id.as_deref();
        let mut groups: BTreeMap<String, String> = BTreeMap::new();
        let mut ids: BTreeMap<String, EdgeId> = BTreeMap::new();
        let mut edges = Vec::new();
        let mut offset = 0u64;
        loop {
            let page = self.api.authorizations_page(offset).await?;
            if page.authorizations.is_empty() {
                break;
            }
            offset += page.authorizations.len() as u64;
            for authorization in page.authorizations {
                let active = authorization.state.as_deref() != Some("STATE_INACTIVE");
                let in_scope = authorization.project.id == project
                    && organization.is_none_or(|org| {
                        authorization
                            .organization
                            .as_ref()
                            .is_none_or(|found| found.id == org)
                    });
                if !active || !in_scope || !people.contains(&authorization.user.id) {
                    continue;
                }
                let member: EdgeId = authorization.user.id.as_str().into();
                for role in authorization.roles {
                    let id = ids
                        .entry(role.key.clone())
                        .or_insert_with(|| role.key.as_str().into())
                        .clone();
                    groups
                        .entry(role.key.clone())
                        .or_insert_with(|| role.display_name.clone().unwrap_or(role.key));
                    edges.push(MembershipEdge::user(id, member.clone()));
                }
            }
            if offset >= page.pagination.total_result {
                break;
            }
        }
        sink.groups(
            groups
                .into_iter()
                .map(|(key, name)| SourceGroup::new(key, name))
                .collect(),
        )
        .await?;
        for page in edges.chunks(1000) {
            sink.memberships(page.to_vec()).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Driver for ZitadelDriver {
    async fn check(&self) -> Result<Capabilities, DriverError> {
        let users = self.api.users_page(0).await?;
        if self.api.settings.project_id.is_some() {
            self.api.authorizations_page(0).await?;
        }
        Ok(Capabilities {
            delta: false,
            nested_groups: false,
            page_size: self.api.settings.page_size,
            summary: format!(
                "{}{}: {} users (humans and machines){}",
                self.api.settings.root(),
                self.api
                    .settings
                    .organization_id
                    .as_deref()
                    .map(|org| format!(" organization {org}"))
                    .unwrap_or_default(),
                users.details.total_result,
                self.api
                    .settings
                    .project_id
                    .as_deref()
                    .map(|project| format!(", roles of project {project}"))
                    .unwrap_or_default()
            ),
        })
    }

    async fn pull(
        &self,
        _mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        let (people, declared) = self.pull_users(sink).await?;
        if let Some(project) = &self.api.settings.project_id {
            self.pull_roles(project, &people, sink).await?;
        }
        Ok(PullOutcome {
            next_cursor: None,
            declared: DeclaredTotals {
                users: Some(declared),
                groups: None,
            },
            complete_snapshot: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: serde_json::Value) -> Option<SourceUser> {
        let settings: ZitadelSettings = idpsync_driver::parse_settings(&serde_json::json!({
            "issuer_url": "https://acme.zitadel.test", "personal_access_token": "t"
        }))
        .unwrap();
        user(serde_json::from_value(json).unwrap(), &settings.states)
    }

    #[test]
    fn states_map_under_the_policy_and_machines_are_not_people() {
        let human = |state: &str| {
            serde_json::json!({
                "userId": "1", "state": state, "username": "ann@acme.test",
                "human": {"profile": {"givenName": "Ann"}, "email": {"email": "ann@acme.test"}}
            })
        };
        let active = parsed(human("USER_STATE_ACTIVE")).unwrap();
        assert!(active.active);
        let locked = parsed(human("USER_STATE_LOCKED")).unwrap();
        assert!(
            !locked.active && locked.suspended,
            "a lockout only suspends"
        );
        for state in [
            "USER_STATE_INACTIVE",
            "USER_STATE_DELETED",
            "USER_STATE_INITIAL",
        ] {
            let user = parsed(human(state)).unwrap();
            assert!(!user.active && !user.suspended, "{state} deprovisions");
        }
        let unspecified = parsed(serde_json::json!({"userId": "2", "human": {}})).unwrap();
        assert!(!unspecified.active, "no state is no access");
        assert_eq!(unspecified.user_name, "2");
        assert!(parsed(serde_json::json!({"userId": "3", "machine": {"name": "ci"}})).is_none());
    }

    #[test]
    fn totals_come_as_strings_numbers_or_not_at_all() {
        for (json, total) in [
            (serde_json::json!({"details": {"totalResult": "42"}}), 42),
            (serde_json::json!({"details": {"totalResult": 7}}), 7),
            (serde_json::json!({"details": {}}), 0),
            (serde_json::json!({}), 0),
        ] {
            let page: api::UsersPage = serde_json::from_value(json).unwrap();
            assert_eq!(page.details.total_result, total);
            assert!(page.result.is_empty());
        }
    }
}
