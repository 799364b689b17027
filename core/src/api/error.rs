//! The admin API's error envelope: `{"error": {"status", "code", "message"}}`.
//! Anything unexpected becomes a logged 500 with a generic message.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// Logs the cause and answers 500 without it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error in the admin API");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the daemon's log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({
            "error": {"status": self.status.as_u16(), "code": self.code, "message": self.message}
        }));
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            StoreError::NotFound { what } => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict { what } => ApiError::conflict(format!("{what} already exists")),
            other => ApiError::internal(other),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        ApiError::internal(error)
    }
}

impl From<crate::reconcile::ReconcileError> for ApiError {
    fn from(error: crate::reconcile::ReconcileError) -> Self {
        use crate::reconcile::ReconcileError;
        match error {
            ReconcileError::UnknownConnection(_) | ReconcileError::RunNotFound(_) => {
                ApiError::not_found(error.to_string())
            }
            ReconcileError::RunNotHeld { .. } | ReconcileError::StateMoved { .. } => {
                ApiError::conflict(error.to_string())
            }
            ReconcileError::Input(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
                error.to_string(),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::devices::DeviceError> for ApiError {
    fn from(error: crate::devices::DeviceError) -> Self {
        use crate::devices::DeviceError;
        match error {
            DeviceError::OwnerNotFound { .. } | DeviceError::NotFound(_) => {
                ApiError::not_found(error.to_string())
            }
            DeviceError::OwnerInactive(_)
            | DeviceError::Revoked(_)
            | DeviceError::DuplicateNodeKey => ApiError::conflict(error.to_string()),
            DeviceError::Invalid(_) => ApiError::bad_request(error.to_string()),
            DeviceError::Store(store) => store.into(),
        }
    }
}

/// Maps axum's extractor rejections (bad query, bad JSON) to the envelope.
pub fn rejection(rejection: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(rejection.to_string())
}
