//! Microsoft Entra ID driver, on Microsoft Graph v1.0.
//!
//! * Auth: OAuth 2.0 client credentials at
//!   `{authority_url}/{tenant_id}/oauth2/v2.0/token`, scope
//!   `{graph_url}/.default`, client secret in the body; cached, refreshed once
//!   on 401. Application permissions: `User.Read.All` and `Group.Read.All`
//!   (or `GroupMember.Read.All`).
//! * Full and delta pulls both use `/users/delta` and `/groups/delta`
//!   (`$select=displayName,members`): a round without a token returns every
//!   object and ends with an `@odata.deltaLink`; later rounds follow that link
//!   and return changes, `@removed` objects and `members@delta`. The cursor
//!   holds both links. A 410 (`resyncRequired`/`syncStateNotFound`) falls back
//!   to a full round.
//! * `@odata.nextLink` is followed verbatim, but only to the configured Graph
//!   origin: a token is never sent to another host.
//! * 429 and 503 with `Retry-After` are retried by the SDK's HTTP kit.
//!
//! Why not graph-rs-sdk for the calls: see ARCHITECTURE.md, "Entra and
//! graph-rs-sdk". `config` holds the settings, `graph` the calls and
//! mapping, `fake` (feature) a faithful Graph fake.

pub mod config;
#[cfg(feature = "fake")]
pub mod fake;
mod graph;
pub mod hooks;

use config::EntraSettings;
use graph::{DeltaLinks, GraphApi};
use idpsync_driver::{
    Capabilities, DeclaredTotals, DeltaCursor, Driver, DriverContext, DriverError, DriverKind,
    PullMode, PullOutcome, RecordSink,
};

/// `kind = "entra"`.
pub struct EntraFactory;

impl DriverKind for EntraFactory {
    const KIND: &'static str = "entra";
    type Settings = EntraSettings;

    fn build(
        &self,
        settings: EntraSettings,
        context: DriverContext,
    ) -> Result<Box<dyn Driver>, DriverError> {
        Ok(Box::new(EntraDriver {
            api: GraphApi::new(settings, context.http)?,
        }))
    }
}

struct EntraDriver {
    api: GraphApi,
}

#[async_trait::async_trait]
impl Driver for EntraDriver {
    /// Always offered: without a `notifications` table it subscribes to
    /// nothing and refuses deliveries, but can still stop what an earlier
    /// configuration subscribed.
    fn notifier(&self) -> Option<&dyn idpsync_driver::notify::Notifier> {
        Some(self)
    }

    async fn check(&self) -> Result<Capabilities, DriverError> {
        let (users, groups) = self.api.probe().await?;
        Ok(Capabilities {
            delta: true,
            nested_groups: true,
            page_size: self.api.page_size(),
            summary: format!(
                "tenant {}: users and groups readable ({users} users, {groups} groups on the first page)",
                self.api.tenant()
            ),
        })
    }

    async fn pull(
        &self,
        mode: PullMode,
        sink: &mut dyn RecordSink,
    ) -> Result<PullOutcome, DriverError> {
        if let PullMode::Delta(cursor) = &mode {
            let links: DeltaLinks = serde_json::from_str(&cursor.0)
                .map_err(|_| DriverError::protocol("the stored delta cursor is unreadable"))?;
            // A delta is small: buffer it, so an expired token halfway
            // through leaves nothing half-sent before the full round.
            let mut changes = idpsync_driver::CollectedRecords::default();
            match self.api.delta_round(Some(&links), &mut changes).await {
                Ok(next) => {
                    graph::forward(changes, sink).await?;
                    return Ok(outcome(next, false));
                }
                Err(DriverError::Protocol(message)) if graph::is_resync(&message) => {
                    tracing::info!("Graph delta token expired; falling back to a full pull");
                }
                Err(other) => return Err(other),
            }
        }
        let next = self.api.delta_round(None, sink).await?;
        Ok(outcome(next, true))
    }
}

fn outcome(links: DeltaLinks, complete_snapshot: bool) -> PullOutcome {
    PullOutcome {
        next_cursor: Some(DeltaCursor(
            serde_json::to_string(&links).unwrap_or_default(),
        )),
        declared: DeclaredTotals::default(),
        complete_snapshot,
    }
}
