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

use sea_orm::{ConnectionTrait, DatabaseBackend, DbErr, ExecResult, Statement};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

type Running<'a> = Pin<Box<dyn Future<Output = Result<ExecResult, DbErr>> + Send + 'a>>;

/// A connection on which at most one statement is in flight.
pub struct Pipelined<'a, C> {
    db: &'a C,
    in_flight: Option<Running<'a>>,
}

impl<'a, C: ConnectionTrait> Pipelined<'a, C> {
    pub fn new(db: &'a C) -> Self {
        Pipelined {
            db,
            in_flight: None,
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
        // The first poll sends the statement to the connection; the
        // await in `finish` polls it again with a waker that counts.
        match running
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(result) => result.map(drop),
            Poll::Pending => {
                self.in_flight = Some(running);
                Ok(())
            }
        }
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
            Some(running) => running.await.map(drop),
            None => Ok(()),
        }
    }
}
