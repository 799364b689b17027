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
    /// Whether the person may use the network. Suspended, deprovisioned,
    /// locked-out-for-good and disabled accounts are `false`.
    pub active: bool,
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
            raw_status: None,
            attributes: BTreeMap::new(),
        }
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
