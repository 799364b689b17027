//! The closed sets of names stored in status columns. Each is an enum so
//! that code cannot write, or compare against, a name the set lacks; the
//! stored text and the API's JSON are the names below.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A sync run's state (`sync_runs.status`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The run's change set was applied (or there was nothing to change).
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// The run failed; nothing of it was applied. Its error is recorded.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// The safety gate held the change set for an admin's approval.
    #[sea_orm(string_value = "held")]
    Held,
    /// A held run that an admin approved and that was then applied.
    #[sea_orm(string_value = "approved")]
    Approved,
    /// A held run replaced by a newer run of the same connection.
    #[sea_orm(string_value = "superseded")]
    Superseded,
    /// A held run an admin rejected: nothing of it was applied.
    #[sea_orm(string_value = "rejected")]
    Rejected,
}

/// Whether a connection's scheduled runs go ahead (`connections.health`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// The last run succeeded (or none ran yet).
    #[sea_orm(string_value = "healthy")]
    Healthy,
    /// The last runs failed; the next waits out a growing delay.
    #[sea_orm(string_value = "backoff")]
    Backoff,
    /// Too many runs in a row failed; no scheduled run until a manual
    /// one succeeds.
    #[sea_orm(string_value = "quarantined")]
    Quarantined,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Held => "held",
            RunStatus::Approved => "approved",
            RunStatus::Superseded => "superseded",
            RunStatus::Rejected => "rejected",
        }
    }

    /// Whether the run has ended (a held run waits for a decision).
    pub fn is_finished(self) -> bool {
        self != RunStatus::Held
    }
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Backoff => "backoff",
            Health::Quarantined => "quarantined",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ActiveEnum, Iterable};

    #[test]
    fn stored_names_and_json_names_are_the_same() {
        for status in RunStatus::iter() {
            assert_eq!(status.to_value(), status.as_str());
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str());
        }
        for health in Health::iter() {
            assert_eq!(health.to_value(), health.as_str());
            assert_eq!(serde_json::to_value(health).unwrap(), health.as_str());
        }
    }
}
