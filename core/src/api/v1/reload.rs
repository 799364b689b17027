//! `POST /reload`: re-read the config file, as `SIGHUP` does.

use crate::api::AppState;
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::daemon::{ReloadError, Reloaded};
use axum::extract::State;
use axum::http::StatusCode;

/// Validates and applies the config file; on any error the running
/// configuration is kept and the answer says why (every problem of an
/// invalid file with its line:column).
pub async fn reload(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Reloaded>, ApiError> {
    caller.can_admin()?;
    Ok(axum::Json(state.reloader.reload().await?))
}

impl From<ReloadError> for ApiError {
    fn from(error: ReloadError) -> Self {
        let (status, code) = match &error {
            ReloadError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_config"),
            ReloadError::NeedsRestart(_) => (StatusCode::CONFLICT, "needs_restart"),
            ReloadError::NoFile => (StatusCode::CONFLICT, "no_config_file"),
            ReloadError::Store(_) => return ApiError::internal(error),
        };
        ApiError::new(status, code, error.to_string())
    }
}
