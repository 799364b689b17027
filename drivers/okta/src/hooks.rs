//! Okta event hooks: Okta POSTs batches of System Log events to
//! `{public_url}/hooks/okta/<connection>`.
//!
//! * Verification: once, Okta sends a GET with `X-Okta-Verification-Challenge`
//!   and expects `{"verification": <the same value>}` back.
//! * Delivery: a POST whose `Authorization` header is the configured secret
//!   and whose `data.events` list the events, each with its `uuid`, its
//!   `eventType` and its `target`s. Okta waits 3 seconds for a 2xx, retries
//!   once otherwise, and delivers at least once: the uuid is the key that
//!   makes a redelivered event one run.
//! * Registration (`register = true`): `POST /api/v1/eventHooks` with the
//!   callback and the secret as an `Authorization` header, then
//!   `POST /api/v1/eventHooks/{id}/lifecycle/verify`. A hook does not expire;
//!   stopping it is deactivate, then delete.

use crate::OktaDriver;
use idpsync_driver::DriverError;
use idpsync_driver::notify::{
    Heard, HookAnswer, HookMethod, HookRequest, Notifier, Receipt, Refusal, Subscription,
    secret_matches,
};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

/// The events an idpsync event hook subscribes to: every change to a person's
/// access or groups.
pub const HOOK_EVENTS: [&str; 13] = [
    "user.lifecycle.create",
    "user.lifecycle.activate",
    "user.lifecycle.reactivate",
    "user.lifecycle.deactivate",
    "user.lifecycle.suspend",
    "user.lifecycle.unsuspend",
    "user.lifecycle.delete.initiated",
    "user.account.lock",
    "user.account.unlock",
    "user.account.update_profile",
    "group.user_membership.add",
    "group.user_membership.remove",
    "group.lifecycle.delete",
];

/// What `register = true` subscribes as.
const RESOURCE: &str = "event_hook";

#[derive(Deserialize)]
struct Delivery {
    data: DeliveryData,
}

#[derive(Deserialize)]
struct DeliveryData {
    #[serde(default)]
    events: Vec<Event>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    uuid: String,
    event_type: String,
    #[serde(default)]
    target: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    id: String,
    #[serde(rename = "type")]
    kind: String,
}

/// An event hook as the Event Hooks API returns it (the fields read).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventHook {
    id: String,
    status: Option<String>,
    verification_status: Option<String>,
    channel: Option<Channel>,
}

#[derive(Deserialize)]
struct Channel {
    config: Option<ChannelConfig>,
}

#[derive(Deserialize)]
struct ChannelConfig {
    uri: Option<String>,
}

impl EventHook {
    fn delivers_to(&self, callback: &str) -> bool {
        self.status.as_deref() == Some("ACTIVE")
            && self.verification_status.as_deref() == Some("VERIFIED")
            && self
                .channel
                .as_ref()
                .and_then(|c| c.config.as_ref())
                .and_then(|c| c.uri.as_deref())
                == Some(callback)
    }
}

fn read_hook(value: serde_json::Value) -> Result<EventHook, DriverError> {
    serde_json::from_value(value)
        .map_err(|e| DriverError::protocol(format!("unreadable event hook: {e}")))
}

/// A 404 means the hook is gone, which is what stopping it wants.
fn gone_is_fine(result: Result<serde_json::Value, DriverError>) -> Result<(), DriverError> {
    match result {
        Ok(_) | Err(DriverError::NotFound(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

#[async_trait::async_trait]
impl Notifier for OktaDriver {
    fn receive(&self, request: &HookRequest<'_>) -> Result<Receipt, Refusal> {
        let Some(settings) = &self.api.settings().notifications else {
            return Err(Refusal::NotEnabled);
        };
        if request.method == HookMethod::Get {
            // The challenge is echoed to whoever asks: it reveals nothing.
            let challenge = request
                .header("x-okta-verification-challenge")
                .ok_or_else(|| {
                    Refusal::Malformed("a GET without a verification challenge".into())
                })?;
            return Ok(Receipt::answered(HookAnswer::json(
                200,
                &json!({ "verification": challenge }),
            )));
        }
        if !secret_matches(&settings.secret, request.header("authorization")) {
            return Err(Refusal::BadSecret);
        }
        let delivery: Delivery = serde_json::from_slice(request.body)
            .map_err(|e| Refusal::Malformed(format!("not an event hook delivery: {e}")))?;
        let heard = delivery
            .data
            .events
            .into_iter()
            .filter(|event| {
                event.event_type.starts_with("user.") || event.event_type.starts_with("group.")
            })
            .map(|event| {
                let of = |kind: &str| {
                    event
                        .target
                        .iter()
                        .filter(|t| t.kind == kind)
                        .map(|t| t.id.clone())
                        .collect::<Vec<_>>()
                };
                Heard::Changed {
                    users: of("User"),
                    groups: of("UserGroup"),
                    key: Some(event.uuid.clone()),
                }
            })
            .collect();
        Ok(Receipt {
            answer: HookAnswer::empty(200),
            heard,
        })
    }

    fn resources(&self) -> Vec<String> {
        match &self.api.settings().notifications {
            Some(settings) if settings.register => vec![RESOURCE.into()],
            _ => Vec::new(),
        }
    }

    async fn ensure(
        &self,
        callback: &str,
        _resource: &str,
        current: Option<&Subscription>,
    ) -> Result<Subscription, DriverError> {
        let secret = match &self.api.settings().notifications {
            Some(settings) => settings.secret.clone(),
            None => return Err(DriverError::config("notifications", "not configured")),
        };
        if let Some(current) = current {
            let found = self
                .api
                .call(
                    Method::GET,
                    &format!("/api/v1/eventHooks/{}", current.id),
                    None,
                )
                .await;
            match found.map(read_hook) {
                Ok(Ok(hook)) if hook.delivers_to(callback) => return Ok(current.clone()),
                Ok(_) | Err(DriverError::NotFound(_)) => self.unsubscribe(current).await?,
                Err(error) => return Err(error),
            }
        }
        let created = read_hook(
            self.api
                .call(
                    Method::POST,
                    "/api/v1/eventHooks",
                    Some(json!({
                        "name": format!("idpsync {callback}"),
                        "events": { "type": "EVENT_TYPE", "items": HOOK_EVENTS },
                        "channel": {
                            "type": "HTTP",
                            "version": "1.0.0",
                            "config": {
                                "uri": callback,
                                "authScheme": {
                                    "type": "HEADER",
                                    "key": "Authorization",
                                    "value": secret.expose(),
                                },
                            },
                        },
                    })),
                )
                .await?,
        )?;
        let verified = read_hook(
            self.api
                .call(
                    Method::POST,
                    &format!("/api/v1/eventHooks/{}/lifecycle/verify", created.id),
                    None,
                )
                .await?,
        )?;
        if verified.verification_status.as_deref() != Some("VERIFIED") {
            return Err(DriverError::protocol(format!(
                "Okta could not verify the event hook at {callback}: is public_url reachable from Okta?"
            )));
        }
        Ok(Subscription {
            resource: RESOURCE.into(),
            id: created.id,
            handle: None,
            expires_at: None,
            stop_on_shutdown: false,
        })
    }

    async fn unsubscribe(&self, subscription: &Subscription) -> Result<(), DriverError> {
        let path = format!("/api/v1/eventHooks/{}", subscription.id);
        gone_is_fine(
            self.api
                .call(Method::POST, &format!("{path}/lifecycle/deactivate"), None)
                .await,
        )?;
        gone_is_fine(self.api.call(Method::DELETE, &path, None).await)
    }
}
