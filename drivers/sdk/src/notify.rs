//! Change notifications: an IdP telling us that something changed, so that
//! core can pull it now instead of at the next scheduled run.
//!
//! A driver whose IdP can notify offers a [`Notifier`] from
//! [`Driver::notifier`](crate::Driver::notifier). It has two halves:
//!
//! * [`Notifier::receive`] reads one HTTP request delivered to the
//!   connection's hook endpoint. It is pure (no IO): it answers a handshake,
//!   checks the shared secret in constant time ([`secret_matches`]) and says
//!   what the delivery reported ([`Heard`]). Core never takes a notification's
//!   payload as state: whatever it says, core pulls from the IdP.
//! * [`Notifier::ensure`] and [`Notifier::unsubscribe`] make the IdP deliver
//!   to a callback URL (a Graph subscription, a Google channel, an Okta event
//!   hook) and stop it. Core decides when: it keeps the [`Subscription`]s in
//!   its store, renews each before it expires, and stops them when the
//!   connection stops wanting them.
//!
//! A driver's notification settings live in its settings table under
//! `notifications` (e.g. `[connections.entra.notifications]`), with at least
//! a `secret`: core requires `[server] public_url` when that table exists.

use crate::{DriverError, Secret};
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde::Serialize;

/// The two methods IdPs deliver with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookMethod {
    Get,
    Post,
}

/// One HTTP request to a connection's hook endpoint, as received.
#[derive(Debug, Clone, Copy)]
pub struct HookRequest<'a> {
    pub method: HookMethod,
    pub query: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl HookRequest<'_> {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// A query parameter's (first) value.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// What the hook endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAnswer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl HookAnswer {
    /// A status with no body.
    pub fn empty(status: u16) -> Self {
        HookAnswer {
            status,
            content_type: "text/plain",
            body: Vec::new(),
        }
    }

    /// A `text/plain` body (Graph's validation echo).
    pub fn text(status: u16, text: &str) -> Self {
        HookAnswer {
            status,
            content_type: "text/plain",
            body: text.as_bytes().to_vec(),
        }
    }

    /// A JSON body (Okta's verification answer).
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        HookAnswer {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }
}

/// What one delivery reported. Never state: a reason to read the IdP now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Something changed. `key` identifies this notice across the IdP's
    /// redeliveries (Okta's event uuid, Google's channel and message number),
    /// so that a notice delivered twice, to one daemon or to two, leads to
    /// one run; `None` when the protocol names none. `users` and `groups`
    /// are the ids the notice named, for the logs.
    Changed {
        key: Option<String>,
        users: Vec<String>,
        groups: Vec<String>,
    },
    /// The IdP may have dropped notifications (Graph's `missed`): read now.
    Missed,
    /// The IdP asks for this subscription to be renewed or made again
    /// (Graph's `reauthorizationRequired` and `subscriptionRemoved`).
    Resubscribe { subscription: String },
}

/// A delivery read: what to answer and what it reported (nothing, for a
/// handshake).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub answer: HookAnswer,
    pub heard: Vec<Heard>,
}

impl Receipt {
    /// A handshake or an acknowledged delivery that reported nothing.
    pub fn answered(answer: HookAnswer) -> Self {
        Receipt {
            answer,
            heard: Vec::new(),
        }
    }
}

/// Why a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The shared secret is missing or wrong.
    #[error("the delivery's secret does not match")]
    BadSecret,
    /// Not a delivery of this protocol.
    #[error("not a notification: {0}")]
    Malformed(String),
    /// The connection has no `notifications` table.
    #[error("notifications are not enabled for this connection")]
    NotEnabled,
}

impl Refusal {
    /// The answer to a refused delivery.
    pub fn answer(&self) -> HookAnswer {
        match self {
            Refusal::BadSecret => HookAnswer::empty(401),
            Refusal::Malformed(_) => HookAnswer::empty(400),
            Refusal::NotEnabled => HookAnswer::empty(404),
        }
    }

    /// The metric label of this refusal.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::BadSecret => "bad_secret",
            Refusal::Malformed(_) => "malformed",
            Refusal::NotEnabled => "not_enabled",
        }
    }
}

/// What makes an IdP deliver to us, as core stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// What the notifier watches with it, one of [`Notifier::resources`].
    pub resource: String,
    /// The IdP's id for it (subscription, channel or event hook id).
    pub id: String,
    /// A second handle the IdP needs to stop it (Google's `resourceId`).
    pub handle: Option<String>,
    /// When the IdP stops delivering unless renewed; `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Stopped when the daemon that made it shuts down (Google's channels,
    /// as Google asks), rather than left for the next daemon to renew.
    pub stop_on_shutdown: bool,
}

/// An IdP's notification protocol for one connection.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync {
    /// Reads one delivery to the hook endpoint. Pure; answers within the
    /// IdP's deadline by construction.
    fn receive(&self, request: &HookRequest<'_>) -> Result<Receipt, Refusal>;

    /// What must be subscribed to, one [`Subscription`] each (e.g. Graph's
    /// `users` and `groups`). Empty when the admin registers the hook at the
    /// IdP by hand.
    fn resources(&self) -> Vec<String>;

    /// Makes the IdP deliver changes of `resource` to `callback` until at
    /// least the returned subscription's expiry: renews `current` where
    /// the IdP can, otherwise makes a new one (and stops `current`).
    async fn ensure(
        &self,
        callback: &str,
        resource: &str,
        current: Option<&Subscription>,
    ) -> Result<Subscription, DriverError>;

    /// Stops a subscription. One the IdP no longer knows is stopped.
    async fn unsubscribe(&self, subscription: &Subscription) -> Result<(), DriverError>;
}

/// Whether `given` is the shared secret, compared in constant time: both
/// are hashed first, so neither the content nor the length of the secret
/// shows in the time taken.
pub fn secret_matches(secret: &Secret, given: Option<&str>) -> bool {
    let Some(given) = given else {
        return false;
    };
    let expected = ring::digest::digest(&ring::digest::SHA256, secret.expose().as_bytes());
    let given = ring::digest::digest(&ring::digest::SHA256, given.as_bytes());
    let difference = expected
        .as_ref()
        .iter()
        .zip(given.as_ref())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    difference == 0 && !secret.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_only_itself_and_an_empty_secret_matches_nothing() {
        let secret = Secret::new("s3cret");
        assert!(secret_matches(&secret, Some("s3cret")));
        assert!(!secret_matches(&secret, Some("s3cret ")));
        assert!(!secret_matches(&secret, Some("")));
        assert!(!secret_matches(&secret, None));
        assert!(!secret_matches(&Secret::new(""), Some("")));
    }

    #[test]
    fn request_reads_headers_and_query() {
        let mut headers = HeaderMap::new();
        headers.insert("x-goog-channel-token", "t".parse().unwrap());
        let query = vec![("validationToken".to_string(), "v".to_string())];
        let request = HookRequest {
            method: HookMethod::Post,
            query: &query,
            headers: &headers,
            body: b"",
        };
        assert_eq!(request.header("X-Goog-Channel-Token"), Some("t"));
        assert_eq!(request.query("validationToken"), Some("v"));
        assert_eq!(request.query("other"), None);
    }
}
