//! The JSON documents of plugin ABI version 1. Records are the SDK's own
//! (`SourceUser`, `SourceGroup`, `MembershipEdge`) in their serde form, so a
//! plugin built with an older SDK still speaks the same fields; new fields are
//! optional and unknown ones are ignored.
//!
//! A request is `{"op": "describe" | "validate" | "check" | "pull", ...}`.
//! Every answer is a sequence of messages, each one object with one key:
//!
//! | message | when |
//! |---|---|
//! | `{"plugin": {"kind", "version", "abi"}}` | answer to `describe` |
//! | `"valid"` | answer to `validate` |
//! | `{"capabilities": {...}}` | answer to `check` |
//! | `{"users": [...]}`, `{"user_updates": [...]}`, `{"groups": [...]}`, `{"memberships": [...]}` | pages during `pull` |
//! | `{"removed_users": [...]}`, `{"removed_groups": [...]}`, `{"removed_memberships": [...]}`, `{"replaced_members": [...]}`, `{"present_users": [...]}`, `{"present_groups": [...]}` | delta pulls |
//! | `{"outcome": {...}}` | the last message of a successful `pull` |
//! | `{"error": {"kind", "message", ...}}` | the last message of a failed call |

use idpsync_driver::{
    Capabilities, DeclaredTotals, DeltaCursor, DriverError, MembershipEdge, PullMode, PullOutcome,
    SourceGroup, SourceUser, UserUpdate,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What the host asks. `settings` is the plugin's own table from the
/// connection (`[connections.plugin.settings]`), TOML turned into JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Describe,
    Validate {
        settings: serde_json::Value,
    },
    Check {
        settings: serde_json::Value,
    },
    Pull {
        settings: serde_json::Value,
        mode: WireMode,
    },
}

/// [`PullMode`] on the wire: `"full"` or `{"delta": "<cursor>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireMode {
    Full,
    Delta(String),
}

impl From<&PullMode> for WireMode {
    fn from(mode: &PullMode) -> Self {
        match mode {
            PullMode::Full => WireMode::Full,
            PullMode::Delta(cursor) => WireMode::Delta(cursor.0.clone()),
        }
    }
}

impl From<WireMode> for PullMode {
    fn from(mode: WireMode) -> Self {
        match mode {
            WireMode::Full => PullMode::Full,
            WireMode::Delta(cursor) => PullMode::Delta(DeltaCursor(cursor)),
        }
    }
}

/// Who the plugin is: checked by the host before any other call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The driver kind, e.g. `ldap`; the connection's `plugin.kind` must match.
    pub kind: String,
    /// The plugin's own version, for people.
    pub version: String,
    /// The ABI the plugin was built for (the same as its version symbol).
    pub abi: u32,
}

/// One message from plugin to host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    Plugin(PluginInfo),
    Valid,
    Capabilities(WireCapabilities),
    Users(Vec<SourceUser>),
    UserUpdates(Vec<UserUpdate>),
    Groups(Vec<SourceGroup>),
    Memberships(Vec<MembershipEdge>),
    RemovedUsers(Vec<String>),
    RemovedGroups(Vec<String>),
    RemovedMemberships(Vec<MembershipEdge>),
    ReplacedMembers(Vec<String>),
    PresentUsers(Vec<String>),
    PresentGroups(Vec<String>),
    Outcome(WireOutcome),
    Error(WireError),
}

/// [`Capabilities`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireCapabilities {
    pub delta: bool,
    pub nested_groups: bool,
    pub page_size: u32,
    pub summary: String,
}

impl From<Capabilities> for WireCapabilities {
    fn from(c: Capabilities) -> Self {
        WireCapabilities {
            delta: c.delta,
            nested_groups: c.nested_groups,
            page_size: c.page_size,
            summary: c.summary,
        }
    }
}

impl From<WireCapabilities> for Capabilities {
    fn from(c: WireCapabilities) -> Self {
        Capabilities {
            delta: c.delta,
            nested_groups: c.nested_groups,
            page_size: c.page_size,
            summary: c.summary,
        }
    }
}

/// [`PullOutcome`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireOutcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_users: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_groups: Option<u64>,
    pub complete_snapshot: bool,
}

impl From<PullOutcome> for WireOutcome {
    fn from(o: PullOutcome) -> Self {
        WireOutcome {
            next_cursor: o.next_cursor.map(|c| c.0),
            declared_users: o.declared.users,
            declared_groups: o.declared.groups,
            complete_snapshot: o.complete_snapshot,
        }
    }
}

impl From<WireOutcome> for PullOutcome {
    fn from(o: WireOutcome) -> Self {
        PullOutcome {
            next_cursor: o.next_cursor.map(DeltaCursor),
            declared: DeclaredTotals {
                users: o.declared_users,
                groups: o.declared_groups,
            },
            complete_snapshot: o.complete_snapshot,
        }
    }
}

/// [`DriverError`] on the wire, so the host can still tell a bad setting
/// from a throttled IdP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// `unauthorized`, `forbidden`, `not_found`, `rate_limited`, `transient`,
    /// `protocol`, `incomplete`, `invalid_config`, `cancelled` or `panic`.
    pub kind: String,
    pub message: String,
    /// The setting's path, for `invalid_config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Seconds, for `rate_limited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl WireError {
    /// The plugin panicked; `message` is the panic's.
    pub fn panic(message: impl Into<String>) -> Self {
        WireError {
            kind: "panic".into(),
            message: message.into(),
            key: None,
            retry_after_secs: None,
        }
    }
}

impl From<&DriverError> for WireError {
    fn from(error: &DriverError) -> Self {
        let (kind, message, key, retry_after_secs) = match error {
            DriverError::Unauthorized(m) => ("unauthorized", m.clone(), None, None),
            DriverError::Forbidden(m) => ("forbidden", m.clone(), None, None),
            DriverError::NotFound(m) => ("not_found", m.clone(), None, None),
            DriverError::RateLimited { retry_after } => (
                "rate_limited",
                error.to_string(),
                None,
                Some(retry_after.as_secs()),
            ),
            DriverError::Transient(m) => ("transient", m.clone(), None, None),
            DriverError::Protocol(m) => ("protocol", m.clone(), None, None),
            DriverError::Incomplete { .. } => ("incomplete", error.to_string(), None, None),
            DriverError::InvalidConfig { key, message } => {
                ("invalid_config", message.clone(), Some(key.clone()), None)
            }
            DriverError::Cancelled => ("cancelled", error.to_string(), None, None),
        };
        WireError {
            kind: kind.into(),
            message,
            key,
            retry_after_secs,
        }
    }
}

impl WireError {
    /// The host's reading. `incomplete` keeps its text as a protocol error
    /// (its counts are in the message); a panic or an unknown kind is a
    /// protocol error naming it.
    pub fn into_driver_error(self) -> DriverError {
        match self.kind.as_str() {
            "unauthorized" => DriverError::Unauthorized(self.message),
            "forbidden" => DriverError::Forbidden(self.message),
            "not_found" => DriverError::NotFound(self.message),
            "rate_limited" => DriverError::RateLimited {
                retry_after: Duration::from_secs(self.retry_after_secs.unwrap_or(60)),
            },
            "transient" | "incomplete" => DriverError::Transient(self.message),
            "protocol" => DriverError::Protocol(self.message),
            "invalid_config" => DriverError::InvalidConfig {
                key: self.key.unwrap_or_default(),
                message: self.message,
            },
            "cancelled" => DriverError::Cancelled,
            "panic" => DriverError::Protocol(format!("the plugin panicked: {}", self.message)),
            other => DriverError::Protocol(format!("plugin error ({other}): {}", self.message)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_messages_have_the_documented_json_shape() {
        let request = Request::Pull {
            settings: serde_json::json!({"url": "ldap://127.0.0.1"}),
            mode: WireMode::Delta("20261124000000Z".into()),
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({"op": "pull", "settings": {"url": "ldap://127.0.0.1"},
                               "mode": {"delta": "20261124000000Z"}})
        );
        assert_eq!(
            serde_json::to_value(Request::Describe).unwrap(),
            serde_json::json!({"op": "describe"})
        );
        assert_eq!(serde_json::to_string(&Message::Valid).unwrap(), "\"valid\"");
        let page = Message::Memberships(vec![MembershipEdge::group("g1", "g2")]);
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            serde_json::json!({"memberships": [
                {"group_external_id": "g1", "member": {"type": "group", "external_id": "g2"}}
            ]})
        );
    }

    #[test]
    fn every_driver_error_survives_the_trip_across_the_boundary() {
        let errors = [
            DriverError::Unauthorized("bind refused".into()),
            DriverError::Forbidden("no read on ou=people".into()),
            DriverError::NotFound("base DN".into()),
            DriverError::RateLimited {
                retry_after: Duration::from_secs(7),
            },
            DriverError::Transient("connection reset".into()),
            DriverError::Protocol("bad entry".into()),
            DriverError::config("user_base_dn", "must not be empty"),
            DriverError::Cancelled,
        ];
        for error in errors {
            let wire: WireError =
                serde_json::from_str(&serde_json::to_string(&WireError::from(&error)).unwrap())
                    .unwrap();
            assert_eq!(wire.into_driver_error(), error);
        }
    }

    #[test]
    fn a_panic_reads_as_a_protocol_error_that_says_so() {
        let error = WireError::panic("index out of bounds").into_driver_error();
        assert_eq!(
            error.to_string(),
            "unexpected response: the plugin panicked: index out of bounds"
        );
    }
}
