//! How long a worker of the daemon lives.

use tokio::sync::watch;

/// The two ways a worker's work ends: its generation is retired (a reload
/// replaced the configuration it was built from: it starts nothing new,
/// and what it has under way finishes), or the daemon shuts down (what is
/// under way and not yet applying is abandoned).
#[derive(Debug, Clone)]
pub struct WorkerLife {
    retired: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
}

impl WorkerLife {
    pub fn new(retired: watch::Receiver<bool>, shutdown: watch::Receiver<bool>) -> Self {
        WorkerLife { retired, shutdown }
    }

    /// A life that ends only with `shutdown` (a worker outside any
    /// generation, as in a test).
    pub fn until(shutdown: watch::Receiver<bool>) -> Self {
        WorkerLife {
            retired: watch::channel(false).1,
            shutdown,
        }
    }

    /// Whether the worker is to start nothing new.
    pub fn is_over(&self) -> bool {
        *self.retired.borrow() || self.is_shutting_down()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once the worker is to start nothing new: retired or
    /// shutting down.
    pub async fn over(&self) {
        tokio::select! {
            _ = turned_true(self.retired.clone()) => {}
            _ = turned_true(self.shutdown.clone()) => {}
        }
    }

    /// Resolves once the daemon shuts down: what a worker runs under this
    /// stops (a retired worker's run goes on).
    pub async fn shutting_down(&self) {
        turned_true(self.shutdown.clone()).await
    }
}

/// Resolves once `flag` is true; never if its sender is gone while false.
async fn turned_true(mut flag: watch::Receiver<bool>) {
    while !*flag.borrow_and_update() {
        if flag.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn resolves(future: impl std::future::Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), future)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn retiring_ends_new_work_but_not_the_work_under_way() {
        let (retire, retired) = watch::channel(false);
        let (_shutdown, shutdown) = watch::channel(false);
        let life = WorkerLife::new(retired, shutdown);
        assert!(!life.is_over());
        assert!(!resolves(life.over()).await);
        retire.send_replace(true);
        assert!(life.is_over());
        assert!(resolves(life.over()).await);
        assert!(!life.is_shutting_down());
        assert!(!resolves(life.shutting_down()).await);
    }

    #[tokio::test]
    async fn shutting_down_ends_both() {
        let (_retire, retired) = watch::channel(false);
        let (shutdown, stopping) = watch::channel(false);
        let life = WorkerLife::new(retired, stopping);
        shutdown.send_replace(true);
        assert!(life.is_over() && life.is_shutting_down());
        assert!(resolves(life.over()).await);
        assert!(resolves(life.shutting_down()).await);
    }
}
