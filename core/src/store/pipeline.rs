//! Statements sent one ahead: the caller builds its next statement while
//! the database runs the previous one.
//!
//! A bulk apply alternates between building a statement (its rows, the
//! events that announce them) and waiting for the database to run it, so
//! each side sat idle while the other worked: during a first sync's apply
//! the two cores were idle for about 40% of the time. With one statement
//! in flight, building and running overlap.
//!
//! A statement in flight holds the transaction's connection: any other use
//! of it before the statement is driven to completion would wait forever.
//! So the connection is reached only through [`Pipelined`]: `send` puts a
//! statement in flight, and [`Pipelined::idle`] first completes it and then
//! lends the connection for as long as nothing is sent. Holding the
//! connection and sending are both `&mut` borrows of the one handle, so
//! the compiler refuses code that would do both at once. A handle dropped
//! with a statement in flight (the caller failed) abandons it; the
//! transaction is then rolled back with the caller's error, so a caller
//! that succeeds must call [`Pipelined::finish`] before it commits.
//!
//! A statement whose rows are wanted (an insert with `RETURNING`) goes
//! through [`Pipelined::send_returning`]: its rows are kept when it has
//! run, and [`Pipelined::take_returned`] hands them out, each once.

use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, ExecResult, QueryResult, Statement};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

type Running<'a, T> = Pin<Box<dyn Future<Output = Result<T, DbErr>> + Send + 'a>>;

/// The statement in flight, and whether its rows are kept.
enum InFlight<'a> {
    Executed(Running<'a, ExecResult>),
    Returning(Running<'a, Vec<QueryResult>>),
}

/// A connection on which at most one statement is in flight.
pub struct Pipelined<'a, C> {
    db: &'a C,
    in_flight: Option<InFlight<'a>>,
    /// Rows of statements sent with `send_returning` that have run, not
    /// taken yet.
    returned: Vec<QueryResult>,
}

impl<'a, C: ConnectionTrait> Pipelined<'a, C> {
    pub fn new(db: &'a C) -> Self {
        Pipelined {
            db,
            in_flight: None,
            returned: Vec::new(),
        }
    }

    /// The connection's backend (asks nothing of the connection).
    pub fn backend(&self) -> DatabaseBackend {
        self.db.get_database_backend()
    }

    /// Waits for the statement in flight, then hands `statement` to the
    /// database and returns while it runs.
    pub async fn send(&mut self, statement: Statement) -> Result<(), DbErr> {
        self.finish().await?;
        let mut running = self.db.execute_raw(statement);
        if let Some(result) = started(&mut running) {
            return result.map(drop);
        }
        self.in_flight = Some(InFlight::Executed(running));
        Ok(())
    }

    /// [`Pipelined::send`] of a statement that returns rows: they are
    /// kept once it has run, for [`Pipelined::take_returned`].
    pub async fn send_returning(&mut self, statement: Statement) -> Result<(), DbErr> {
        self.finish().await?;
        let mut running = self.db.query_all_raw(statement);
        if let Some(result) = started(&mut running) {
            self.returned.extend(result?);
            return Ok(());
        }
        self.in_flight = Some(InFlight::Returning(running));
        Ok(())
    }

    /// The rows of the statements sent with
    /// [`Pipelined::send_returning`] that have run since the last call, in
    /// the order sent. The one in flight, if any, has not run: call
    /// [`Pipelined::finish`] first for every row.
    pub fn take_returned(&mut self) -> Vec<QueryResult> {
        std::mem::take(&mut self.returned)
    }

    /// The connection, once the statement in flight (if any) has run. It
    /// is lent for as long as the borrow lasts; nothing can be sent
    /// meanwhile.
    pub async fn idle(&mut self) -> Result<&C, DbErr> {
        self.finish().await?;
        Ok(self.db)
    }

    /// Waits for the statement in flight, if any.
    pub async fn finish(&mut self) -> Result<(), DbErr> {
        match self.in_flight.take() {
            Some(InFlight::Executed(running)) => running.await.map(drop),
            Some(InFlight::Returning(running)) => {
                self.returned.extend(running.await?);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Polls `running` once, which sends its statement to the connection: its
/// result if it is done already, else `None` (the await in
/// [`Pipelined::finish`] polls it again with a waker that counts).
fn started<T>(running: &mut Running<'_, T>) -> Option<Result<T, DbErr>> {
    match running
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => Some(result),
        Poll::Pending => None,
    }
}
