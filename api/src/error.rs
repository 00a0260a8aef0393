//! `ApiError`: every failure an endpoint can return. Its stable code, HTTP status and client
//! message come from the one taxonomy table ([`ErrorCode::spec`]); bodies are
//! `{"error": {"code": "…", "message": "…"}}` ([`ErrorBody`]). Internal causes (S3 operations,
//! keys, SQL) are logged with the request's span, never sent to the client.

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_shared::db::DbError;
use kiln_shared::domain::{Classify, ErrorCode};
use kiln_shared::lifecycle::LifecycleError;
use kiln_shared::queue::QueueError;
use kiln_shared::storage::StorageError;
use kiln_shared::wire::Rejection;
pub use kiln_shared::wire::{ErrorBody, ErrorDetail};

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401 `unauthorized`: no, malformed, bad or expired bearer token (the reason is the
    /// client's own token's, so it is shown).
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
    /// 400 `invalid_request`: a malformed body or parameter (the message names the field).
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
    /// S3 failed: 503 `storage_unavailable`, 502 `storage_rejected` or 500 `internal` (a
    /// presign or request-building fault), per [`StorageError`]'s code.
    #[error("object storage failed: {0}")]
    Storage(#[source] StorageError),
    /// Postgres failed: 503 `database_unavailable`, or 500 `internal` for a corrupt row or a
    /// rejected statement.
    #[error("the database failed: {0}")]
    Database(#[source] DbError),
    /// 503 `queue_unavailable`.
    #[error("the job queue failed: {0}")]
    Queue(#[source] QueueError),
}

impl Classify for ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden => ErrorCode::Forbidden,
            Self::NotFound => ErrorCode::NotFound,
            Self::RouteNotFound { .. } => ErrorCode::RouteNotFound,
            Self::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::TooLarge { .. } => ErrorCode::UploadTooLarge,
            Self::UnsupportedContentType(_) => ErrorCode::UnsupportedContentType,
            Self::ObjectMissing => ErrorCode::ObjectMissing,
            Self::SizeMismatch { .. } => ErrorCode::SizeMismatch,
            Self::Storage(e) => e.code(),
            Self::Database(e) => e.code(),
            Self::Queue(e) => e.code(),
        }
    }
}

impl ApiError {
    /// Status and stable code, both from the taxonomy table.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        let code = self.code();
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, code.as_str())
    }

    /// The message the client sees: the failure's own text where it is about the client's
    /// request (a field, a size, a path), the code's fixed message where the cause is internal.
    pub fn client_message(&self) -> String {
        match self {
            Self::Storage(_) | Self::Database(_) | Self::Queue(_) => {
                self.code().client_message().to_owned()
            }
            other => other.to_string(),
        }
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound => Self::NotFound,
            LifecycleError::ObjectMissing => Self::ObjectMissing,
            LifecycleError::SizeMismatch { declared, actual } => {
                Self::SizeMismatch { declared, actual }
            }
            LifecycleError::Db(e) => Self::Database(e),
            LifecycleError::Storage(e) => Self::Storage(e),
            LifecycleError::Queue(e) => Self::Queue(e),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(e: Rejection) -> Self {
        match e {
            Rejection::Invalid(message) => Self::InvalidRequest(message),
            Rejection::TooLarge { size, max } => Self::TooLarge { size, max },
            Rejection::UnsupportedContentType(t) => Self::UnsupportedContentType(t),
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
        let (status, _) = self.status_and_code();
        let code = self.code();
        if status.is_server_error() {
            tracing::error!(error = %self, code = code.as_str(), "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.client_message(),
            },
        };
        (status, Json(body)).into_response()
    }
}
