//! Statements sent one ahead: the caller builds its next statement while
//! the database runs the previous one.
//!
//! A bulk apply alternates between building a statement (its rows, the
//! events that announce them) and waiting for the database to run it, so
//! each side sat idle while the other worked: during a first sync's apply
//! the two cores were idle for about 40% of the time. With one statement
//! in flight, building and running overlap.
//!
//! Rule: while a statement is in flight it holds the transaction's
//! connection. Any other use of the connection must come after
//! [`Pipeline::finish`], or it would wait for a statement that nothing
//! drives to completion. A pipeline dropped with a statement in flight
//! (the caller failed) abandons its result; the transaction is rolled back
//! with the caller's error.

use sea_orm::{ConnectionTrait, DbErr, ExecResult, Statement};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

type Running<'a> = Pin<Box<dyn Future<Output = Result<ExecResult, DbErr>> + Send + 'a>>;

/// At most one statement in flight on a connection.
#[derive(Default)]
pub struct Pipeline<'a> {
    in_flight: Option<Running<'a>>,
}

impl<'a> Pipeline<'a> {
    /// Waits for the statement in flight, then hands `statement` to the
    /// database and returns while it runs.
    pub async fn send<C: ConnectionTrait>(
        &mut self,
        db: &'a C,
        statement: Statement,
    ) -> Result<(), DbErr> {
        self.finish().await?;
        let mut running = db.execute_raw(statement);
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

    /// Waits for the statement in flight, if any.
    pub async fn finish(&mut self) -> Result<(), DbErr> {
        match self.in_flight.take() {
            Some(running) => running.await.map(drop),
            None => Ok(()),
        }
    }
}
