//! The kinds of event: the public contract of the event feed and the
//! webhooks. Each kind is listed once, here, with its wire name; the README
//! and the OpenAPI document are checked against this list.

use serde::{Deserialize, Serialize};

macro_rules! event_kinds {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, )*) => {
        /// What happened, as `noun.past_verb`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum EventKind {
            $( $(#[doc = $doc])* #[serde(rename = $name)] $variant, )*
        }

        impl EventKind {
            /// Every kind, in the order listed.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant),*];

            /// The wire name, e.g. `device.revoked`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }

            /// What the kind means, for the documentation.
            pub fn description(self) -> &'static str {
                match self {
                    $(EventKind::$variant => concat!($($doc),*).trim_ascii(),)*
                }
            }
        }
    };
}

event_kinds! {
    /// A user appeared in a source.
    UserCreated = "user.created",
    /// A user's attributes changed.
    UserUpdated = "user.updated",
    /// A user was suspended (locked out): access goes, the account stays.
    UserSuspended = "user.suspended",
    /// A user was deactivated: access goes.
    UserDeactivated = "user.deactivated",
    /// A deactivated or suspended user is active again.
    UserReactivated = "user.reactivated",
    /// A user was deleted from the source.
    UserDeleted = "user.deleted",
    /// A group appeared in a source.
    GroupCreated = "group.created",
    /// A group was renamed or its attributes changed.
    GroupUpdated = "group.updated",
    /// A group was deleted from the source.
    GroupDeleted = "group.deleted",
    /// Members (up to 1,000 per event) joined one group.
    MembershipAdded = "membership.added",
    /// Members (up to 1,000 per event) left one group.
    MembershipRemoved = "membership.removed",
    /// A user joined an ACL group.
    AclGroupMemberAdded = "acl_group.member_added",
    /// A user left an ACL group.
    AclGroupMemberRemoved = "acl_group.member_removed",
    /// A device was registered (pending approval).
    DeviceRegistered = "device.registered",
    /// A device was approved.
    DeviceApproved = "device.approved",
    /// A device was quarantined.
    DeviceQuarantined = "device.quarantined",
    /// A device was locked.
    DeviceLocked = "device.locked",
    /// A device was revoked: by an admin, or because its owner lost access.
    DeviceRevoked = "device.revoked",
    /// A run was held by the safety gate for an admin's approval.
    SyncHeld = "sync.held",
    /// A held run was approved and applied.
    SyncApproved = "sync.approved",
    /// A held run was replaced by a newer run of its connection.
    SyncSuperseded = "sync.superseded",
    /// A held run was rejected by an admin; nothing of it was applied.
    SyncRejected = "sync.rejected",
    /// A run failed; nothing of it was applied.
    SyncFailed = "sync.failed",
}

impl EventKind {
    /// What the event is about: the part before the dot (`user`, `group`,
    /// `membership`, `acl_group`, `device`, `sync`).
    pub fn noun(self) -> &'static str {
        let name = self.as_str();
        name.split_once('.').map_or(name, |(noun, _)| noun)
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownEventKind(name.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind \"{0}\"")]
pub struct UnknownEventKind(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_serializes_as_its_wire_name_and_parses_back() {
        for kind in EventKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().into())
            );
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(*kind));
            assert!(!kind.description().is_empty(), "{kind} has no description");
        }
        assert!("user.exploded".parse::<EventKind>().is_err());
    }

    #[test]
    fn names_are_noun_dot_past_verb_and_unique() {
        let mut names: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
        for name in &names {
            let (noun, verb) = name.split_once('.').expect("noun.verb");
            assert!(!noun.is_empty() && !verb.is_empty() && !verb.contains('.'));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len());
    }
}
