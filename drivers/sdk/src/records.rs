//! Plain-data records that a driver (or the SCIM endpoint) hands to core.
//!
//! Every record is identified by the IdP's own stable id (`external_id`); names
//! and e-mail addresses may change. Fields are public and owned so a driver can
//! build them without ceremony.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One e-mail address of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Email {
    pub value: String,
    /// `work`, `home`, `other` or whatever the IdP says; `None` when untyped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub primary: bool,
}

/// A user as the source reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceUser {
    /// The IdP's immutable id for the user (Entra object id, Okta id, ...).
    pub external_id: String,
    /// The login name; unique per connection, compared case-insensitively.
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<Email>,
    /// Whether the person may use the network now. Suspended,
    /// deprovisioned, locked-out and disabled accounts are `false`. Set it
    /// with [`SourceUser::set_access`] when the source has passing states.
    pub active: bool,
    /// With `active` false: the account is in a state the person is expected
    /// to come back from (a lockout): access is suspended but their devices
    /// are kept. `false` with `active` false means deprovisioned: devices
    /// are revoked. Never `true` with `active`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
    /// The IdP's own status word (`SUSPENDED`, `accountEnabled=false`, ...), kept
    /// for people to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_status: Option<String>,
    /// Everything else the IdP said that core does not interpret, kept as is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl SourceUser {
    /// A user with only the required fields set, active.
    pub fn new(external_id: impl Into<String>, user_name: impl Into<String>) -> Self {
        SourceUser {
            external_id: external_id.into(),
            user_name: user_name.into(),
            display_name: None,
            given_name: None,
            family_name: None,
            emails: Vec::new(),
            active: true,
            suspended: false,
            raw_status: None,
            attributes: BTreeMap::new(),
        }
    }

    /// What access the person has.
    pub fn access(&self) -> Access {
        match (self.active, self.suspended) {
            (true, _) => Access::Active,
            (false, true) => Access::Suspended,
            (false, false) => Access::Deprovisioned,
        }
    }

    /// Sets `active` and `suspended` together.
    pub fn set_access(&mut self, access: Access) {
        self.active = access == Access::Active;
        self.suspended = access == Access::Suspended;
    }

    /// The primary e-mail, else the first one.
    pub fn primary_email(&self) -> Option<&str> {
        self.emails
            .iter()
            .find(|email| email.primary)
            .or_else(|| self.emails.first())
            .map(|email| email.value.as_str())
    }
}

/// What a source's user state means for the person's access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// In ACL groups; may register devices.
    Active,
    /// Out of ACL groups until the state clears; devices kept.
    Suspended,
    /// Out of ACL groups and every device revoked (revocation is final).
    Deprovisioned,
}

/// Which of a source's user states (its own words: `LOCKED_OUT`,
/// `SUSPENDED`, ...) give access, which only suspend it, and (every other
/// state) which deprovision. A driver with more than two states reads one
/// from its settings (`[connections.<kind>.states]`), with its own defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePolicy {
    /// States with access.
    pub active: Vec<String>,
    /// States that suspend access until they clear; devices are kept.
    #[serde(default)]
    pub suspend: Vec<String>,
}

impl StatePolicy {
    pub fn new(active: &[&str], suspend: &[&str]) -> Self {
        StatePolicy {
            active: active.iter().map(|s| s.to_string()).collect(),
            suspend: suspend.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The access a state gives: any state not listed deprovisions.
    pub fn access(&self, state: &str) -> Access {
        if self.active.iter().any(|s| s == state) {
            Access::Active
        } else if self.suspend.iter().any(|s| s == state) {
            Access::Suspended
        } else {
            Access::Deprovisioned
        }
    }

    /// Checks that every state named is one of the source's `known` states
    /// and none is listed twice; errors name `key` (e.g. `states.suspend`).
    pub fn validate(&self, key: &str, known: &[&str]) -> Result<(), crate::DriverError> {
        for (list, states) in [("active", &self.active), ("suspend", &self.suspend)] {
            for state in states {
                if !known.contains(&state.as_str()) {
                    return Err(crate::DriverError::config(
                        format!("{key}.{list}"),
                        format!(
                            "unknown state \"{state}\"; the states are {}",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(both) = self.active.iter().find(|s| self.suspend.contains(s)) {
            return Err(crate::DriverError::config(
                format!("{key}.suspend"),
                format!("\"{both}\" is listed as active too"),
            ));
        }
        Ok(())
    }
}

/// One field of a [`UserUpdate`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Update<T> {
    /// The source did not send the field: it did not change.
    #[default]
    Keep,
    /// The field's new value.
    Set(T),
    /// The source sent the field empty (`null`): it no longer has a value.
    Clear,
}

impl<T> Update<T> {
    /// An update from a field the source may have left out (`None`), sent
    /// as `null` (`Some(None)`) or set.
    pub fn from_sent(sent: Option<Option<T>>) -> Self {
        match sent {
            None => Update::Keep,
            Some(None) => Update::Clear,
            Some(Some(value)) => Update::Set(value),
        }
    }

    /// Applies this update to an optional field.
    pub fn apply(self, field: &mut Option<T>) {
        match self {
            Update::Keep => {}
            Update::Set(value) => *field = Some(value),
            Update::Clear => *field = None,
        }
    }

    /// `later` over this one: a field the later record sent wins.
    pub fn then(self, later: Update<T>) -> Update<T> {
        match later {
            Update::Keep => self,
            sent => sent,
        }
    }

    fn is_keep(&self) -> bool {
        matches!(self, Update::Keep)
    }
}

/// Some of a user's fields, from a source that may send only what changed
/// (a Microsoft Graph delta record: "the id with at least the properties
/// that have been updated"). A field the source left out is
/// [`Update::Keep`]: core applies the update to the user as stored, so an
/// absent `active` never turns anyone on or off, and an absent name never
/// blanks one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserUpdate {
    pub external_id: String,
    /// A userName cannot be cleared: `None` keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(default, skip_serializing_if = "Update::is_keep")]
    pub display_name: Update<String>,
    #[serde(default, skip_serializing_if = "Update::is_keep")]
    pub given_name: Update<String>,
    #[serde(default, skip_serializing_if = "Update::is_keep")]
    pub family_name: Update<String>,
    /// The whole list of addresses, when the source sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emails: Option<Vec<Email>>,
    /// `None` keeps the stored state: never a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    #[serde(default, skip_serializing_if = "Update::is_keep")]
    pub raw_status: Update<String>,
}

impl UserUpdate {
    /// An update that keeps every field of the user `external_id`.
    pub fn new(external_id: impl Into<String>) -> Self {
        UserUpdate {
            external_id: external_id.into(),
            ..UserUpdate::default()
        }
    }

    /// Applies the fields this update sets to `user`.
    pub fn apply_to(self, user: &mut SourceUser) {
        if let Some(name) = self.user_name {
            user.user_name = name;
        }
        self.display_name.apply(&mut user.display_name);
        self.given_name.apply(&mut user.given_name);
        self.family_name.apply(&mut user.family_name);
        if let Some(emails) = self.emails {
            user.emails = emails;
        }
        if let Some(access) = self.access {
            user.set_access(access);
        }
        self.raw_status.apply(&mut user.raw_status);
    }

    /// This update followed by `later`, of the same user: what `later`
    /// sent wins, what it left out stays as this one says.
    pub fn then(self, later: UserUpdate) -> UserUpdate {
        UserUpdate {
            external_id: later.external_id,
            user_name: later.user_name.or(self.user_name),
            display_name: self.display_name.then(later.display_name),
            given_name: self.given_name.then(later.given_name),
            family_name: self.family_name.then(later.family_name),
            emails: later.emails.or(self.emails),
            access: later.access.or(self.access),
            raw_status: self.raw_status.then(later.raw_status),
        }
    }

    /// The whole user, when the update names the two fields a user cannot
    /// be without (userName and whether it is active; every field left out
    /// is empty), else the update as it is.
    pub fn into_record(self) -> UserRecord {
        let (Some(user_name), Some(_)) = (&self.user_name, self.access) else {
            return UserRecord::Part(self);
        };
        let mut user = SourceUser::new(self.external_id.clone(), user_name.clone());
        self.apply_to(&mut user);
        UserRecord::Whole(user)
    }
}

/// A user as a source sent it: every field, or some of them.
#[derive(Debug, Clone, PartialEq)]
pub enum UserRecord {
    Whole(SourceUser),
    Part(UserUpdate),
}

/// A group as the source reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceGroup {
    pub external_id: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl SourceGroup {
    pub fn new(external_id: impl Into<String>, display_name: impl Into<String>) -> Self {
        SourceGroup {
            external_id: external_id.into(),
            display_name: display_name.into(),
            attributes: BTreeMap::new(),
        }
    }
}

/// The id of a group or user inside a membership edge. Shared: a tenant's
/// million edges name its 100k users and 10k groups, so a collector that
/// interns ids (as [`crate::CollectedRecords`] does) holds each id once
/// rather than two strings per edge.
pub type EdgeId = Arc<str>;

/// The member side of a membership edge: a user, or a nested group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "external_id", rename_all = "snake_case")]
pub enum MemberRef {
    User(EdgeId),
    Group(EdgeId),
}

impl MemberRef {
    /// The member's external id, whatever its kind.
    pub fn external_id(&self) -> &str {
        match self {
            MemberRef::User(id) | MemberRef::Group(id) => id,
        }
    }
}

/// A direct membership: `member` is in the group `group_external_id`.
/// Transitive membership is computed by core, never by a driver.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MembershipEdge {
    pub group_external_id: EdgeId,
    pub member: MemberRef,
}

impl MembershipEdge {
    pub fn user(group: impl Into<EdgeId>, user: impl Into<EdgeId>) -> Self {
        MembershipEdge {
            group_external_id: group.into(),
            member: MemberRef::User(user.into()),
        }
    }

    pub fn group(group: impl Into<EdgeId>, nested: impl Into<EdgeId>) -> Self {
        MembershipEdge {
            group_external_id: group.into(),
            member: MemberRef::Group(nested.into()),
        }
    }
}

/// Hands out one shared [`EdgeId`] per distinct id. A cache, not data: any
/// two interners compare equal, so records that hold one compare by their
/// records alone.
#[derive(Clone, Default)]
pub struct IdInterner {
    ids: foldhash::HashSet<EdgeId>,
    /// The group id of the last edge as it came, and its shared copy: a
    /// driver lists one group's edges in a row with one id between them, so
    /// most group ids need no lookup.
    last_group: Option<(EdgeId, EdgeId)>,
}

impl PartialEq for IdInterner {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for IdInterner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdInterner({} ids)", self.ids.len())
    }
}

impl IdInterner {
    /// The shared copy of `id` (`id` itself the first time it is seen).
    pub fn intern(&mut self, id: EdgeId) -> EdgeId {
        match self.ids.get(&id) {
            Some(shared) => shared.clone(),
            None => {
                self.ids.insert(id.clone());
                id
            }
        }
    }

    /// `edge` with both of its ids shared.
    pub fn edge(&mut self, edge: MembershipEdge) -> MembershipEdge {
        let group = match &self.last_group {
            Some((came, shared)) if Arc::ptr_eq(came, &edge.group_external_id) => shared.clone(),
            _ => {
                let came = edge.group_external_id.clone();
                let shared = self.intern(edge.group_external_id);
                self.last_group = Some((came, shared.clone()));
                shared
            }
        };
        MembershipEdge {
            group_external_id: group,
            member: match edge.member {
                MemberRef::User(id) => MemberRef::User(self.intern(id)),
                MemberRef::Group(id) => MemberRef::Group(self.intern(id)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> SourceUser {
        let mut user = SourceUser::new("u1", "ann@acme.test");
        user.display_name = Some("Ann".into());
        user.given_name = Some("Ann".into());
        user.active = false;
        user.raw_status = Some("accountEnabled=false".into());
        user
    }

    #[test]
    fn an_update_changes_only_what_it_sends_and_null_clears() {
        let mut user = stored();
        UserUpdate {
            display_name: Update::Set("Ann B.".into()),
            given_name: Update::Clear,
            ..UserUpdate::new("u1")
        }
        .apply_to(&mut user);
        assert_eq!(user.display_name.as_deref(), Some("Ann B."));
        assert_eq!(user.given_name, None);
        assert!(!user.active, "an absent active keeps the user disabled");
        assert_eq!(user.user_name, "ann@acme.test");
        assert_eq!(user.raw_status.as_deref(), Some("accountEnabled=false"));
    }

    #[test]
    fn a_later_update_of_one_user_wins_field_by_field() {
        let first = UserUpdate {
            display_name: Update::Set("A".into()),
            access: Some(Access::Deprovisioned),
            ..UserUpdate::new("u1")
        };
        let later = UserUpdate {
            display_name: Update::Clear,
            user_name: Some("new@acme.test".into()),
            ..UserUpdate::new("u1")
        };
        let merged = first.then(later);
        assert_eq!(merged.display_name, Update::Clear);
        assert_eq!(merged.access, Some(Access::Deprovisioned));
        assert_eq!(merged.user_name.as_deref(), Some("new@acme.test"));
    }

    #[test]
    fn an_update_is_a_whole_user_only_with_a_name_and_a_state() {
        let partial = UserUpdate {
            user_name: Some("x".into()),
            ..UserUpdate::new("u1")
        };
        let UserRecord::Part(partial) = partial.into_record() else {
            panic!("a part without a state")
        };
        let UserRecord::Whole(whole) = UserUpdate {
            access: Some(Access::Active),
            ..partial
        }
        .into_record() else {
            panic!("a name and a state make a user")
        };
        assert_eq!((whole.user_name.as_str(), whole.active), ("x", true));
    }

    #[test]
    fn an_update_crosses_serde_field_by_field() {
        let update = UserUpdate {
            display_name: Update::Clear,
            given_name: Update::Set("G".into()),
            access: Some(Access::Deprovisioned),
            ..UserUpdate::new("u1")
        };
        let json = serde_json::to_value(&update).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"external_id": "u1", "display_name": "clear", "given_name": {"set": "G"}, "access": "deprovisioned"})
        );
        assert_eq!(serde_json::from_value::<UserUpdate>(json).unwrap(), update);
    }
}
