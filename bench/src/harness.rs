//! What every benchmark shares: a fresh store on either database and
//! percentiles. (The engine is started by `idpsync_core::testing::TestApp`,
//! as in the tests.)

use anyhow::Result;
use clap::ValueEnum;
use idpsync_core::config;
use idpsync_core::testing::TestStore;
use std::time::Duration;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// `[database] durability`, for the SCIM benchmark's comparison.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Durability {
    Full,
    Relaxed,
}

impl Durability {
    pub fn name(self) -> &'static str {
        match self {
            Durability::Full => "full",
            Durability::Relaxed => "relaxed",
        }
    }

    pub fn config(self) -> config::Durability {
        match self {
            Durability::Full => config::Durability::Full,
            Durability::Relaxed => config::Durability::Relaxed,
        }
    }
}

impl Backend {
    /// The name run files use (`--database`'s value).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// A fresh store: a temporary SQLite file, or a new PostgreSQL schema.
    pub async fn open(self) -> Result<TestStore> {
        self.open_with(Durability::Full).await
    }

    /// [`Backend::open`] with `durability` (SQLite's commits).
    pub async fn open_with(self, durability: Durability) -> Result<TestStore> {
        Ok(match self {
            Backend::Sqlite => TestStore::sqlite_with(durability.config()).await,
            Backend::Postgres => TestStore::postgres().await.map_err(anyhow::Error::msg)?,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// CPU count and model, as run files name the host.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!("{cores} cores, {cpu}")
}

/// The value at `fraction` (0.5 = p50) of `sorted`.
pub fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `duration` in milliseconds, the unit latencies are kept in.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
