//! Bearer-token authentication for the admin API: a missing, unknown, expired
//! or revoked token is 401; a live token without the needed scope is 403.

use super::AppState;
use super::error::ApiError;
use crate::auth::Scope;
use crate::store::TokenRecord;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

/// The caller, authenticated. Check scopes with [`Caller::require`].
pub struct Caller(pub TokenRecord);

impl Caller {
    /// Passes if the token has any of `scopes`.
    pub fn require(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        if scopes.iter().any(|scope| self.0.has_scope(*scope)) {
            Ok(())
        } else {
            let names: Vec<&str> = scopes.iter().map(|scope| scope.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "this token lacks the scope: needs one of {}",
                names.join(", ")
            )))
        }
    }

    /// Reading the admin API: `admin` or `read`.
    pub fn can_read(&self) -> Result<(), ApiError> {
        self.require(&[Scope::Admin, Scope::Read])
    }

    /// Changing anything: `admin`.
    pub fn can_admin(&self) -> Result<(), ApiError> {
        self.require(&[Scope::Admin])
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header_value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let token = header_value
            .strip_prefix("Bearer ")
            .or_else(|| header_value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("expected Authorization: Bearer <token>"))?
            .trim();
        match state.store.authenticate_token(token).await? {
            Some(record) => Ok(Caller(record)),
            None => Err(ApiError::unauthorized("unknown, expired or revoked token")),
        }
    }
}
