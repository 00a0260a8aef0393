//! `ApiError`: every failure an endpoint can return, mapped to a status code and a stable
//! snake_case code in one place. Bodies are `{"error": {"code": "…", "message": "…"}}`.
//! Internal causes are logged, never sent to the client. [`ErrorBody`] is that body's type, so
//! the OpenAPI schema of error responses is the type that is serialized.

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_shared::db::DbError;
use kiln_shared::queue::QueueError;
use kiln_shared::storage::StorageError;
use serde::Serialize;
use utoipa::ToSchema;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401 `unauthorized`: no, malformed, bad or expired bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`: the token lacks the scope the route needs.
    #[error("this route needs the admin scope")]
    Forbidden,
    /// 404 `not_found`: no such upload for this owner.
    #[error("upload not found")]
    NotFound,
    /// 404 `route_not_found`: no route matches the path (the router's fallback).
    #[error("no route for {method} {path}")]
    RouteNotFound {
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
    },
    /// 405 `method_not_allowed`: the path exists, but not with this method (the `Allow` header
    /// lists the methods it has).
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// Request method.
        method: Method,
        /// Request path.
        path: String,
    },
    /// 400 `invalid_request`: a malformed body or parameter.
    #[error("{0}")]
    InvalidRequest(String),
    /// 413 `upload_too_large`: `byte_size` over `api.max_upload_bytes`.
    #[error("byte_size {size} is over the {max}-byte limit")]
    TooLarge {
        /// Declared size, in bytes.
        size: u64,
        /// Limit, in bytes.
        max: u64,
    },
    /// 415 `unsupported_content_type`: the declared content type is not accepted.
    #[error("content type {0:?} is not accepted")]
    UnsupportedContentType(String),
    /// 409 `object_missing`: complete was called before the object reached the temp key.
    #[error("no object has been uploaded for this upload yet")]
    ObjectMissing,
    /// 422 `size_mismatch`: the stored object's size differs from the declared one.
    #[error("uploaded {actual} bytes but declared {declared}")]
    SizeMismatch {
        /// Declared size, in bytes.
        declared: u64,
        /// Stored size, in bytes.
        actual: u64,
    },
    /// 503 `storage_unavailable`.
    #[error("object storage is unavailable")]
    Storage(#[source] StorageError),
    /// 503 `database_unavailable`.
    #[error("the database is unavailable")]
    Database(#[source] DbError),
    /// 503 `queue_unavailable`.
    #[error("the job queue is unavailable")]
    Queue(#[source] QueueError),
}

impl ApiError {
    /// Status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::RouteNotFound { .. } => (StatusCode::NOT_FOUND, "route_not_found"),
            Self::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "upload_too_large"),
            Self::UnsupportedContentType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_type",
            ),
            Self::ObjectMissing => (StatusCode::CONFLICT, "object_missing"),
            Self::SizeMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "size_mismatch"),
            Self::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            Self::Database(_) => (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable"),
            Self::Queue(_) => (StatusCode::SERVICE_UNAVAILABLE, "queue_unavailable"),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        Self::Database(e)
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        Self::Queue(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = ?self, code, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}

/// The body of every error response: `{"error": {"code": "…", "message": "…"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` object of an error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `not_found` (each response's description names its codes).
    #[schema(example = "not_found")]
    pub code: &'static str,
    /// Human-readable reason; for people, not for matching.
    pub message: String,
}
