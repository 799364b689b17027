//! Admin SDK Directory API push notifications (`users.watch`).
//!
//! * Watching: `POST /admin/directory/v1/users/watch?customer=...&event=...`
//!   with a channel `id`, `type: web_hook`, the callback as `address`, the
//!   secret as `token` and a `ttl`; one channel per event. Google answers
//!   with the channel's `resourceId` and `expiration` (milliseconds), then
//!   sends a `sync` message. A channel cannot be renewed: a new one is made
//!   before the old one expires, and the old one stopped with
//!   `POST /admin/directory_v1/channels/stop` (`id` and `resourceId`).
//!   Channels are stopped when the daemon shuts down, as Google asks.
//! * Delivery: a POST whose headers say it all: `X-Goog-Channel-ID`,
//!   `X-Goog-Channel-Token` (the secret), `X-Goog-Resource-State` (`sync`,
//!   or the event: `add`, `delete`, `update`, ...) and
//!   `X-Goog-Message-Number`; the body is the user concerned. Any 2xx
//!   acknowledges; anything else is retried with exponential backoff, so a
//!   message may arrive twice: channel id and message number are its key.

use crate::GoogleDriver;
use crate::config::GoogleNotifications;
use chrono::{DateTime, Utc};
use idpsync_driver::DriverError;
use idpsync_driver::notify::{
    Heard, HookAnswer, HookRequest, Notifier, Receipt, Refusal, Subscription, secret_matches,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Channel {
    id: String,
    resource_id: String,
    /// Milliseconds since the epoch, as a string.
    expiration: Option<String>,
}

/// The user a message is about (its body); only the id is read.
#[derive(Deserialize)]
struct Concerned {
    id: Option<String>,
}

impl GoogleDriver {
    fn notifications(&self) -> Option<&GoogleNotifications> {
        self.api.settings().notifications.as_ref()
    }
}

fn expiry(channel: &Channel) -> Option<DateTime<Utc>> {
    let millis: i64 = channel.expiration.as_deref()?.parse().ok()?;
    DateTime::from_timestamp_millis(millis)
}

/// A channel id Google accepts (`[A-Za-z0-9-_+/=]`, at most 64).
fn channel_id() -> String {
    format!("idpsync-{:032x}", rand::random::<u128>())
}

#[async_trait::async_trait]
impl Notifier for GoogleDriver {
    fn receive(&self, request: &HookRequest<'_>) -> Result<Receipt, Refusal> {
        let Some(settings) = self.notifications() else {
            return Err(Refusal::NotEnabled);
        };
        if !secret_matches(&settings.secret, request.header("x-goog-channel-token")) {
            return Err(Refusal::BadSecret);
        }
        let state = request
            .header("x-goog-resource-state")
            .ok_or_else(|| Refusal::Malformed("no X-Goog-Resource-State".into()))?;
        if state == "sync" {
            return Ok(Receipt::answered(HookAnswer::empty(200)));
        }
        let channel = request.header("x-goog-channel-id").unwrap_or_default();
        let number = request.header("x-goog-message-number").unwrap_or_default();
        let user = serde_json::from_slice::<Concerned>(request.body)
            .ok()
            .and_then(|c| c.id);
        Ok(Receipt {
            answer: HookAnswer::empty(200),
            heard: vec![Heard::Changed {
                key: (!channel.is_empty() && !number.is_empty())
                    .then(|| format!("{channel}:{number}")),
                users: user.into_iter().collect(),
                groups: Vec::new(),
            }],
        })
    }

    fn resources(&self) -> Vec<String> {
        self.notifications()
            .map(|n| n.events.clone())
            .unwrap_or_default()
    }

    async fn ensure(
        &self,
        callback: &str,
        event: &str,
        current: Option<&Subscription>,
    ) -> Result<Subscription, DriverError> {
        let Some(settings) = self.notifications() else {
            return Err(DriverError::config("notifications", "not configured"));
        };
        let (scope, value) = self.api.scope_param();
        let answer = self
            .api
            .post(
                "/admin/directory/v1/users/watch",
                vec![(scope, value), ("event", event.to_string())],
                json!({
                    "id": channel_id(),
                    "type": "web_hook",
                    "address": callback,
                    "token": settings.secret.expose(),
                    "params": { "ttl": settings.channel_ttl_secs.to_string() },
                }),
            )
            .await?;
        let channel: Channel = serde_json::from_value(answer)
            .map_err(|e| DriverError::protocol(format!("unreadable channel: {e}")))?;
        // The new channel delivers from now on; the old one can go.
        if let Some(current) = current
            && let Err(error) = self.unsubscribe(current).await
        {
            tracing::warn!(channel = %current.id, %error, "stopping the replaced channel failed; it expires on its own");
        }
        Ok(Subscription {
            resource: event.into(),
            expires_at: expiry(&channel),
            id: channel.id,
            handle: Some(channel.resource_id),
            stop_on_shutdown: true,
        })
    }

    async fn unsubscribe(&self, subscription: &Subscription) -> Result<(), DriverError> {
        match self
            .api
            .post(
                "/admin/directory_v1/channels/stop",
                Vec::new(),
                json!({
                    "id": subscription.id,
                    "resourceId": subscription.handle.as_deref().unwrap_or_default(),
                }),
            )
            .await
        {
            Ok(_) | Err(DriverError::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }
}
