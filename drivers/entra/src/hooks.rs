//! Microsoft Graph change notifications for users and groups.
//!
//! * Subscribing: `POST /subscriptions` with the callback as both
//!   `notificationUrl` and `lifecycleNotificationUrl`, `changeType`
//!   `updated,deleted`, an `expirationDateTime` at most 41,760 minutes ahead
//!   and the secret as `clientState`. Before Graph answers, it POSTs
//!   `?validationToken=...` to each URL and wants the token back as
//!   `text/plain` within 10 seconds. Renewing is `PATCH /subscriptions/{id}`
//!   with a new expiry (which also answers `reauthorizationRequired`);
//!   stopping is `DELETE /subscriptions/{id}`.
//! * Delivery: `{"value": [...]}`, each with its `subscriptionId`,
//!   `clientState`, and either a `changeType` with the `resource`
//!   (`Users/{id}`, `Groups/{id}`) or a `lifecycleEvent`
//!   (`reauthorizationRequired`, `subscriptionRemoved`, `missed`). Graph
//!   wants a 2xx within 3 seconds (we answer 202) and may deliver one
//!   change more than once; notifications carry no id of their own.

use crate::EntraDriver;
use crate::config::EntraNotifications;
use chrono::{DateTime, Utc};
use idpsync_driver::DriverError;
use idpsync_driver::notify::{
    Heard, HookAnswer, HookRequest, Notifier, Receipt, Refusal, Subscription, secret_matches,
};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
struct Delivery {
    value: Vec<Notification>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    subscription_id: Option<String>,
    client_state: Option<String>,
    change_type: Option<String>,
    resource: Option<String>,
    lifecycle_event: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphSubscription {
    id: String,
    expiration_date_time: DateTime<Utc>,
}

impl EntraDriver {
    fn notifications(&self) -> Option<&EntraNotifications> {
        self.api.settings().notifications.as_ref()
    }

    fn expiry(&self, settings: &EntraNotifications) -> String {
        let at = Utc::now() + chrono::Duration::seconds(settings.lifetime_secs as i64);
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

fn read(value: serde_json::Value) -> Result<GraphSubscription, DriverError> {
    serde_json::from_value(value)
        .map_err(|e| DriverError::protocol(format!("unreadable subscription: {e}")))
}

/// What one change notification names: `Users/{id}` or `Groups/{id}`
/// (Graph capitalises either way).
fn named(resource: &str) -> (Vec<String>, Vec<String>) {
    let mut parts = resource.trim_start_matches('/').splitn(2, '/');
    let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
    let id = parts.next().unwrap_or_default().to_string();
    match kind.as_str() {
        "users" if !id.is_empty() => (vec![id], Vec::new()),
        "groups" if !id.is_empty() => (Vec::new(), vec![id]),
        _ => (Vec::new(), Vec::new()),
    }
}

#[async_trait::async_trait]
impl Notifier for EntraDriver {
    fn receive(&self, request: &HookRequest<'_>) -> Result<Receipt, Refusal> {
        let Some(settings) = self.notifications() else {
            return Err(Refusal::NotEnabled);
        };
        if let Some(token) = request.query("validationToken") {
            return Ok(Receipt::answered(HookAnswer::text(200, token)));
        }
        let delivery: Delivery = serde_json::from_slice(request.body)
            .map_err(|e| Refusal::Malformed(format!("not a change notification: {e}")))?;
        if delivery.value.is_empty()
            || !delivery
                .value
                .iter()
                .all(|n| secret_matches(&settings.secret, n.client_state.as_deref()))
        {
            return Err(Refusal::BadSecret);
        }
        let heard = delivery
            .value
            .into_iter()
            .filter_map(|n| match n.lifecycle_event.as_deref() {
                Some("missed") => Some(Heard::Missed),
                Some(_) => n
                    .subscription_id
                    .map(|subscription| Heard::Resubscribe { subscription }),
                None if n.change_type.is_some() => {
                    let (users, groups) = named(n.resource.as_deref().unwrap_or_default());
                    Some(Heard::Changed {
                        key: None,
                        users,
                        groups,
                    })
                }
                None => None,
            })
            .collect();
        Ok(Receipt {
            answer: HookAnswer::empty(202),
            heard,
        })
    }

    fn resources(&self) -> Vec<String> {
        self.notifications()
            .map(|n| n.resources.clone())
            .unwrap_or_default()
    }

    async fn ensure(
        &self,
        callback: &str,
        resource: &str,
        current: Option<&Subscription>,
    ) -> Result<Subscription, DriverError> {
        let Some(settings) = self.notifications() else {
            return Err(DriverError::config("notifications", "not configured"));
        };
        let expiration = self.expiry(settings);
        let renewed = match current {
            Some(current) => match self
                .api
                .call(
                    Method::PATCH,
                    &format!("/subscriptions/{}", current.id),
                    Some(json!({ "expirationDateTime": expiration })),
                )
                .await
            {
                Ok(answer) => Some(read(answer)?),
                // Expired or removed: Graph forgot it; make a new one.
                Err(DriverError::NotFound(_)) => None,
                Err(error) => return Err(error),
            },
            None => None,
        };
        let subscription = match renewed {
            Some(renewed) => renewed,
            None => read(
                self.api
                    .call(
                        Method::POST,
                        "/subscriptions",
                        Some(json!({
                            "changeType": "updated,deleted",
                            "notificationUrl": callback,
                            "lifecycleNotificationUrl": callback,
                            "resource": resource,
                            "expirationDateTime": expiration,
                            "clientState": settings.secret.expose(),
                        })),
                    )
                    .await?,
            )?,
        };
        Ok(Subscription {
            resource: resource.into(),
            id: subscription.id,
            handle: None,
            expires_at: Some(subscription.expiration_date_time),
            stop_on_shutdown: false,
        })
    }

    async fn unsubscribe(&self, subscription: &Subscription) -> Result<(), DriverError> {
        match self
            .api
            .call(
                Method::DELETE,
                &format!("/subscriptions/{}", subscription.id),
                None,
            )
            .await
        {
            Ok(_) | Err(DriverError::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::named;

    #[test]
    fn a_notification_names_a_user_or_a_group() {
        assert_eq!(named("Users/abc"), (vec!["abc".to_string()], vec![]));
        assert_eq!(named("/groups/g1"), (vec![], vec!["g1".to_string()]));
        assert_eq!(named("Users"), (vec![], vec![]));
    }
}
