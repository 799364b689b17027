//! [`DriverError`]: typed so core can decide: retry later, fail the run, or
//! tell the admin which key to fix. Messages never carry a secret.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The credentials were refused (401), even after one token refresh.
    #[error("authentication failed: {0}")]
    Unauthorized(String),
    /// The credentials lack a permission (403); the message says which.
    #[error("permission denied: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// Throttled, and retrying within the kit's budget did not get through.
    #[error("rate limited; retry after {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// A network failure or a 5xx that outlasted the retries.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The IdP answered something we cannot read (bad JSON, missing field).
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// The pull ended with fewer (or more) records than the IdP declared.
    #[error("incomplete pull: the IdP declared {expected} {what}, {got} were received")]
    Incomplete {
        what: &'static str,
        expected: u64,
        got: u64,
    },
    /// The connection's settings are wrong: `key` is the setting's path.
    #[error("{key}: {message}")]
    InvalidConfig { key: String, message: String },
    /// The pull was stopped (shutdown).
    #[error("cancelled")]
    Cancelled,
}

impl DriverError {
    pub fn protocol(message: impl Into<String>) -> Self {
        DriverError::Protocol(message.into())
    }

    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        DriverError::InvalidConfig {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            DriverError::RateLimited { .. }
                | DriverError::Transient(_)
                | DriverError::Incomplete { .. }
        )
    }
}
