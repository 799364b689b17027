//! Keeps the IdPs delivering: for each endpoint, one subscription per
//! resource its notifier names, stored in `hook_subscriptions`. A
//! subscription is made when missing, made again when the callback URL
//! changed or the IdP asked (Graph's lifecycle notifications), renewed when
//! a third of its life is left, retried after a failure, and stopped when
//! the connection no longer wants it. Daemons sharing a PostgreSQL database
//! take turns per connection (`hooks:<connection>` lock), so one
//! subscription is renewed once. At shutdown, subscriptions that end with
//! the daemon (Google's channels) are stopped.

use super::{Endpoint, Hooks};
use crate::daemon::WorkerLife;
use crate::store::Store;
use crate::store::entity::{hook_delivery, hook_subscription};
use chrono::{DateTime, Utc};
use idpsync_driver::notify::Subscription;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use std::time::Duration;

/// The longest the keeper sleeps; also how soon a failed renewal is retried.
const TICK: Duration = Duration::from_secs(60);
/// How long the keys of notices acted on are kept (IdPs redeliver within
/// hours: Okta once at once, Google with backoff, Graph up to 4 hours).
const KEEP_DELIVERIES: chrono::Duration = chrono::Duration::hours(24);

/// A stored subscription, as `idpsync hooks` shows it.
pub type SubscriptionRow = hook_subscription::Model;

/// Every stored subscription, by connection and resource.
pub async fn subscriptions(store: &Store) -> Result<Vec<SubscriptionRow>, sea_orm::DbErr> {
    hook_subscription::Entity::find()
        .order_by_asc(hook_subscription::Column::ConnectionId)
        .order_by_asc(hook_subscription::Column::Resource)
        .all(store.db())
        .await
}

fn stored(row: &SubscriptionRow) -> Subscription {
    Subscription {
        resource: row.resource.clone(),
        id: row.subscription_id.clone(),
        handle: row.handle.clone(),
        expires_at: row.expires_at,
        stop_on_shutdown: row.stop_on_shutdown,
    }
}

/// When `row` should be renewed: with a third of its life left.
fn renew_at(row: &SubscriptionRow) -> Option<DateTime<Utc>> {
    let expires = row.expires_at?;
    Some(expires - (expires - row.renewed_at) / 3)
}

pub(super) async fn keep(hooks: Hooks, store: Store, public_url: Option<String>, life: WorkerLife) {
    forget_removed_connections(&hooks, &store).await;
    loop {
        let mut next = Utc::now() + chrono::Duration::from_std(TICK).unwrap_or_default();
        for (connection, endpoint) in hooks.endpoints.iter() {
            let callback = public_url
                .as_deref()
                .map(|url| Hooks::callback(url, &endpoint.kind, connection));
            match tend(&store, connection, endpoint, callback.as_deref()).await {
                Ok(Some(at)) => next = next.min(at),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(connection, %error, "cannot read or write the subscriptions");
                }
            }
        }
        prune_deliveries(&store).await;
        let sleep = (next - Utc::now())
            .to_std()
            .unwrap_or_default()
            .max(Duration::from_millis(200));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = hooks.wake_keeper.notified() => {}
            _ = life.over() => break,
        }
    }
    // Retired by a reload, the next configuration's keeper takes the
    // subscriptions over as they are.
    if life.is_shutting_down() {
        stop_at_shutdown(&hooks, &store).await;
    }
}

/// Brings one connection's subscriptions to what its notifier wants; when
/// the next one is due for renewal. Skipped while another daemon does it.
async fn tend(
    store: &Store,
    connection: &str,
    endpoint: &Endpoint,
    callback: Option<&str>,
) -> Result<Option<DateTime<Utc>>, sea_orm::DbErr> {
    let notifier = endpoint.notifier();
    // Without a public URL nothing can be delivered: stop what was made.
    let (wanted, callback) = match callback {
        Some(callback) => (notifier.resources(), callback),
        None => (Vec::new(), ""),
    };
    let rows = hook_subscription::Entity::find()
        .filter(hook_subscription::Column::ConnectionId.eq(connection))
        .all(store.db())
        .await?;
    if wanted.is_empty() && rows.is_empty() {
        return Ok(None);
    }
    let Some(lock) = store
        .try_lock_across_daemons(&format!("hooks:{connection}"))
        .await
        .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
    else {
        return Ok(None);
    };
    let asked: std::collections::HashSet<String> = std::mem::take(
        &mut *endpoint
            .resubscribe
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    let now = Utc::now();
    let mut next: Option<DateTime<Utc>> = None;
    for resource in &wanted {
        let row = rows.iter().find(|r| &r.resource == resource);
        let due = match row {
            None => true,
            Some(row) => {
                row.callback != callback
                    || row.last_error.is_some()
                    || asked.contains(&row.subscription_id)
                    || renew_at(row).is_some_and(|at| at <= now)
            }
        };
        if !due {
            next = [next, row.and_then(renew_at)].into_iter().flatten().min();
            continue;
        }
        let current = row
            .filter(|r| r.callback == callback && !r.subscription_id.is_empty())
            .map(stored);
        match notifier.ensure(callback, resource, current.as_ref()).await {
            Ok(subscription) => {
                if let Some(old) =
                    row.filter(|r| r.callback != callback && !r.subscription_id.is_empty())
                    && let Err(error) = notifier.unsubscribe(&stored(old)).await
                {
                    tracing::warn!(connection, resource, %error, "stopping the subscription to the old URL failed");
                }
                tracing::info!(connection, resource, id = %subscription.id, expires_at = ?subscription.expires_at, "subscribed to notifications");
                let saved = save(store, connection, callback, &subscription).await?;
                next = [next, renew_at(&saved)].into_iter().flatten().min();
            }
            Err(error) => {
                tracing::warn!(connection, resource, %error, "subscribing to notifications failed; the schedule still runs; retrying");
                metrics::counter!("idpsync_hook_subscription_failures_total", "connection" => connection.to_string()).increment(1);
                let row = match row {
                    Some(row) => row.clone(),
                    // Stored without an id, so that `idpsync hooks` shows why.
                    None => {
                        let nothing_yet = Subscription {
                            resource: resource.clone(),
                            id: String::new(),
                            handle: None,
                            expires_at: None,
                            stop_on_shutdown: false,
                        };
                        save(store, connection, callback, &nothing_yet).await?
                    }
                };
                record_failure(store, row, error.to_string()).await?;
            }
        }
    }
    for row in rows.iter().filter(|r| !wanted.contains(&r.resource)) {
        if !row.subscription_id.is_empty()
            && let Err(error) = notifier.unsubscribe(&stored(row)).await
        {
            tracing::warn!(connection, resource = %row.resource, %error, "stopping a subscription no longer configured failed; retrying");
            continue;
        }
        tracing::info!(connection, resource = %row.resource, "stopped a subscription no longer configured");
        delete(store, row).await?;
    }
    lock.release().await;
    gauge_expiries(store, connection).await?;
    Ok(next)
}

async fn save(
    store: &Store,
    connection: &str,
    callback: &str,
    subscription: &Subscription,
) -> Result<SubscriptionRow, sea_orm::DbErr> {
    let row = hook_subscription::Model {
        connection_id: connection.to_string(),
        resource: subscription.resource.clone(),
        subscription_id: subscription.id.clone(),
        handle: subscription.handle.clone(),
        callback: callback.to_string(),
        expires_at: subscription.expires_at,
        stop_on_shutdown: subscription.stop_on_shutdown,
        renewed_at: Utc::now(),
        last_error: None,
    };
    let active: hook_subscription::ActiveModel = row.clone().into();
    let write = store.begin_write().await.map_err(store_err)?;
    hook_subscription::Entity::insert(active)
        .on_conflict(
            OnConflict::columns([
                hook_subscription::Column::ConnectionId,
                hook_subscription::Column::Resource,
            ])
            .update_columns([
                hook_subscription::Column::SubscriptionId,
                hook_subscription::Column::Handle,
                hook_subscription::Column::Callback,
                hook_subscription::Column::ExpiresAt,
                hook_subscription::Column::StopOnShutdown,
                hook_subscription::Column::RenewedAt,
                hook_subscription::Column::LastError,
            ])
            .to_owned(),
        )
        .exec_without_returning(&write.tx)
        .await?;
    write.commit().await.map_err(store_err)?;
    Ok(row)
}

async fn delete(store: &Store, row: &SubscriptionRow) -> Result<(), sea_orm::DbErr> {
    let write = store.begin_write().await.map_err(store_err)?;
    hook_subscription::Entity::delete_many()
        .filter(hook_subscription::Column::ConnectionId.eq(&row.connection_id))
        .filter(hook_subscription::Column::Resource.eq(&row.resource))
        .exec(&write.tx)
        .await?;
    write.commit().await.map_err(store_err)
}

/// Records why renewing `row` failed.
async fn record_failure(
    store: &Store,
    row: SubscriptionRow,
    error: String,
) -> Result<(), sea_orm::DbErr> {
    let mut failed: hook_subscription::ActiveModel = row.into();
    failed.last_error = Set(Some(error));
    let write = store.begin_write().await.map_err(store_err)?;
    hook_subscription::Entity::update(failed)
        .exec(&write.tx)
        .await?;
    write.commit().await.map_err(store_err)
}

/// Every write goes through the store's writer lock (SQLite: one writer
/// at a time, or an apply in flight would fail).
fn store_err(error: crate::store::StoreError) -> sea_orm::DbErr {
    match error {
        crate::store::StoreError::Db(db) => db,
        other => sea_orm::DbErr::Custom(other.to_string()),
    }
}

/// Seconds until each of the connection's subscriptions lapses, for alerts.
async fn gauge_expiries(store: &Store, connection: &str) -> Result<(), sea_orm::DbErr> {
    let rows = hook_subscription::Entity::find()
        .filter(hook_subscription::Column::ConnectionId.eq(connection))
        .all(store.db())
        .await?;
    for row in rows {
        if let Some(expires) = row.expires_at {
            metrics::gauge!("idpsync_hook_subscription_expiry_timestamp_seconds", "connection" => connection.to_string(), "resource" => row.resource.clone())
                .set(expires.timestamp() as f64);
        }
    }
    Ok(())
}

/// Rows of connections no longer configured cannot be stopped (there is no
/// driver to call the IdP with): they are forgotten, and lapse at the IdP.
async fn forget_removed_connections(hooks: &Hooks, store: &Store) {
    let rows = match subscriptions(store).await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "cannot read the subscriptions to forget those of connections no longer configured; retrying when the keeper next starts (daemon start or config reload)");
            return;
        }
    };
    for row in rows
        .iter()
        .filter(|r| !hooks.endpoints.contains_key(&r.connection_id))
    {
        tracing::warn!(connection = %row.connection_id, resource = %row.resource, expires_at = ?row.expires_at, "the connection is no longer configured for notifications: its subscription is forgotten and lapses at the IdP");
        if let Err(error) = delete(store, row).await {
            tracing::warn!(%error, "forgetting a subscription failed");
        }
    }
}

async fn prune_deliveries(store: &Store) {
    let pruned = async {
        let write = store.begin_write().await.map_err(store_err)?;
        hook_delivery::Entity::delete_many()
            .filter(hook_delivery::Column::ReceivedAt.lt(Utc::now() - KEEP_DELIVERIES))
            .exec(&write.tx)
            .await?;
        write.commit().await.map_err(store_err)
    };
    if let Err(error) = pruned.await {
        tracing::warn!(%error, "pruning the keys of old notices failed");
    }
}

async fn stop_at_shutdown(hooks: &Hooks, store: &Store) {
    for (connection, endpoint) in hooks.endpoints.iter() {
        let Ok(rows) = hook_subscription::Entity::find()
            .filter(hook_subscription::Column::ConnectionId.eq(connection))
            .filter(hook_subscription::Column::StopOnShutdown.eq(true))
            .all(store.db())
            .await
        else {
            continue;
        };
        for row in rows {
            if row.subscription_id.is_empty() {
                continue;
            }
            match endpoint.notifier().unsubscribe(&stored(&row)).await {
                Ok(()) => {
                    tracing::info!(connection, resource = %row.resource, "stopped a notification channel at shutdown");
                    if let Err(error) = delete(store, &row).await {
                        tracing::warn!(connection, %error, "forgetting a stopped channel failed");
                    }
                }
                Err(error) => {
                    tracing::warn!(connection, resource = %row.resource, %error, "stopping a notification channel at shutdown failed; it lapses at its expiry");
                }
            }
        }
    }
}
