//! The event log: typed events appended in the reconciler's transaction, the
//! feed that reads them by cursor, and the in-process bus that wakes
//! long-polling readers the moment a transaction commits.

mod kind;

pub use kind::{EventKind, UnknownEventKind};

use crate::store::entity::event;
use chrono::{DateTime, Utc};
use sea_orm::ColumnTrait;
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Set, Statement,
};
use serde::Serialize;
use std::time::Duration;

/// An event about to be written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewEvent {
    pub kind: EventKind,
    pub connection_id: Option<String>,
    pub subject_type: &'static str,
    pub subject_id: String,
    pub payload: serde_json::Value,
}

impl NewEvent {
    pub fn new(
        kind: EventKind,
        connection_id: Option<&str>,
        subject_type: &'static str,
        subject_id: impl Into<String>,
        payload: serde_json::Value,
    ) -> Self {
        NewEvent {
            kind,
            connection_id: connection_id.map(str::to_string),
            subject_type,
            subject_id: subject_id.into(),
            payload,
        }
    }
}

/// An event as the feed returns it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// The cursor: strictly increasing in commit order.
    pub id: i64,
    /// An [`EventKind`]'s name. Kept as text: a feed read by an older
    /// binary passes through a kind that a newer one wrote.
    pub kind: String,
    pub connection_id: Option<String>,
    pub subject_type: String,
    pub subject_id: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl From<event::Model> for Event {
    fn from(model: event::Model) -> Self {
        Event {
            id: model.id,
            kind: model.kind,
            connection_id: model.connection_id,
            subject_type: model.subject_type,
            subject_id: model.subject_id,
            payload: serde_json::from_str(&model.payload).unwrap_or(serde_json::Value::Null),
            created_at: model.created_at,
        }
    }
}

/// Rows per INSERT statement: 7 columns each, 28,000 parameters, below
/// SQLite's 32,766 and PostgreSQL's 65,535.
pub const EVENTS_PER_INSERT: usize = 4_000;

/// Appends events in order inside the caller's transaction.
pub async fn append(
    db: &impl ConnectionTrait,
    events: &[NewEvent],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for statement in append_statements(db.get_database_backend(), events, now) {
        db.execute_raw(statement).await?;
    }
    Ok(())
}

/// The INSERT statements that append `events`, in order (for a caller
/// that sends them itself, e.g. through a [`Pipelined`] connection).
///
/// [`Pipelined`]: crate::store::pipeline::Pipelined
pub fn append_statements(
    backend: DatabaseBackend,
    events: &[NewEvent],
    now: DateTime<Utc>,
) -> impl Iterator<Item = Statement> + '_ {
    events.chunks(EVENTS_PER_INSERT).map(move |chunk| {
        let rows = chunk.iter().map(|new| event::ActiveModel {
            kind: Set(new.kind.as_str().to_string()),
            connection_id: Set(new.connection_id.clone()),
            subject_type: Set(new.subject_type.to_string()),
            subject_id: Set(new.subject_id.clone()),
            payload: Set(new.payload.to_string()),
            created_at: Set(now),
            ..Default::default()
        });
        event::Entity::insert_many(rows).build(backend)
    })
}

/// Events after `cursor`, oldest first, at most `limit`.
pub async fn read_after(
    db: &impl ConnectionTrait,
    cursor: i64,
    limit: u64,
) -> Result<Vec<Event>, DbErr> {
    Ok(event::Entity::find()
        .filter(event::Column::Id.gt(cursor))
        .order_by_asc(event::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(Event::from)
        .collect())
}

/// The id of the newest event, or 0 for an empty log.
pub async fn last_id(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    Ok(event::Entity::find()
        .order_by_desc(event::Column::Id)
        .one(db)
        .await?
        .map_or(0, |last| last.id))
}

/// Wakes long-polling readers when events are committed in this process.
/// Readers also re-check on a short interval so events committed by another
/// daemon on the same PostgreSQL are seen too.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: tokio::sync::watch::Sender<u64>,
    /// True once the daemon shuts down: long polls answer at once.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            sender: tokio::sync::watch::channel(0).0,
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

/// How often a waiting reader looks at the database without a wake-up.
pub const FALLBACK_POLL: Duration = Duration::from_millis(500);

impl EventBus {
    /// Called after a commit that wrote events.
    pub fn notify(&self) {
        self.sender.send_modify(|generation| *generation += 1);
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sender.subscribe()
    }

    /// The daemon is shutting down: every long poll answers now with what
    /// it has (an empty page keeps its cursor), so that none is cut off.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub fn is_closed(&self) -> bool {
        *self.closing.borrow()
    }

    /// Resolves once [`EventBus::close`] was called.
    pub async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        // An error means the bus is gone, which is closed too.
        let _ = closing.wait_for(|closed| *closed).await;
    }
}
