//! `ApiError`: every failure an endpoint can return. Its stable code, HTTP status and client
//! message come from the one taxonomy table ([`ErrorCode::spec`]); bodies are
//! `{"error": {"code": "…", "message": "…"}}` ([`ErrorBody`]).
//!
//! The message rule: a 4xx is about the client's own request, so its message is the failure's
//! text (the field and rule broken, the declared and stored sizes, the path); a 5xx message is
//! the code's fixed one. Internal causes (S3 operations, keys, SQL) are logged with the
//! request's span, never sent to the client.

use axum::Json;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_shared::api_keys::{KeyError, MissingScope};
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
    /// 403 `forbidden`: the credential lacks the scope the route needs (named in the message).
    #[error(transparent)]
    Forbidden(#[from] MissingScope),
    /// An API key refused: 401 `unauthorized` (malformed, unknown, revoked, expired), 400
    /// `invalid_request` (a bad key request), 404 `not_found` (revoking an unknown prefix), or
    /// the database's code.
    #[error(transparent)]
    Key(#[from] KeyError),
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
    /// 400 `invalid_request` or `invalid_filename`, 413 `upload_too_large` or 415
    /// `unsupported_content_type`: the request broke a constraint the OpenAPI document declares.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// 413 Content Too Large (RFC 9110 §15.5.14) with code `invalid_request`: the request body
    /// is over `api.max_body_bytes`. The one status that is not its code's: the body is
    /// malformed for this server (`invalid_request`), and 413 tells HTTP clients and proxies
    /// not to retry it unchanged.
    #[error("the request body is over the {max}-byte limit (api.max_body_bytes)")]
    BodyTooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// A lifecycle call failed: 404 `not_found`, 409 `object_missing`, 422 `size_mismatch`, or
    /// a dependency's code.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// S3 failed on a read path (download URLs): 503 `storage_unavailable`, 502
    /// `storage_rejected` or 500 `internal`, per [`StorageError`]'s code.
    #[error("object storage failed: {0}")]
    Storage(#[from] StorageError),
    /// Postgres failed on a read path: 503 `database_unavailable`, or 500 `internal` for a
    /// corrupt row or a rejected statement.
    #[error("the database failed: {0}")]
    Database(#[from] DbError),
    /// Redis failed on a read path: 503 `queue_unavailable`.
    #[error("the job queue failed: {0}")]
    Queue(#[from] QueueError),
    /// 429 `rate_limited`: the caller is over a rate limit. The response carries
    /// `Retry-After` (RFC 9110 §10.2.3, whole seconds) and the `RateLimit-Policy` and
    /// `RateLimit` fields of draft-ietf-httpapi-ratelimit-headers-10.
    #[error("too many {} requests; try again in {} s", .0.policy, .0.retry_after_secs())]
    RateLimited(RateLimitInfo),
}

/// What a 429 tells the client (see [`ApiError::RateLimited`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitInfo {
    /// The policy's name (`authorize`, `complete`, `auth_failures`), quoted in both fields.
    pub policy: &'static str,
    /// Requests the policy allows per window (`q`).
    pub quota: u32,
    /// The window, in seconds (`w`).
    pub window_secs: u64,
    /// Time until the next request would be allowed.
    pub retry_after: std::time::Duration,
}

impl RateLimitInfo {
    /// `retry_after` rounded up to whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }

    /// The headers of the 429: `Retry-After: N`, `RateLimit-Policy: "p";q=Q;w=W` and
    /// `RateLimit: "p";r=0;t=N`.
    pub fn headers(&self) -> [(axum::http::HeaderName, String); 3] {
        let t = self.retry_after_secs();
        [
            (axum::http::header::RETRY_AFTER, t.to_string()),
            (
                axum::http::HeaderName::from_static("ratelimit-policy"),
                format!(
                    "\"{}\";q={};w={}",
                    self.policy, self.quota, self.window_secs
                ),
            ),
            (
                axum::http::HeaderName::from_static("ratelimit"),
                format!("\"{}\";r=0;t={t}", self.policy),
            ),
        ]
    }
}

impl ApiError {
    /// 400 `invalid_request` with `message` (which names the field and the rule).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Rejected(Rejection::invalid(message))
    }

    /// Status and stable code, both from the taxonomy table (but for [`Self::BodyTooLarge`],
    /// 413 with `invalid_request`).
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        let code = self.code();
        let status = match self {
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::from_u16(code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        };
        (status, code.as_str())
    }

    /// The message the client sees: the failure's own text for a 4xx, the code's fixed message
    /// for a 5xx.
    pub fn client_message(&self) -> String {
        let code = self.code();
        if self.status_and_code().0.is_server_error() {
            code.client_message().to_owned()
        } else {
            self.to_string()
        }
    }
}

impl Classify for ApiError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(e) => e.code(),
            Self::Key(e) => e.code(),
            Self::NotFound => ErrorCode::NotFound,
            Self::RouteNotFound { .. } => ErrorCode::RouteNotFound,
            Self::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Self::Rejected(e) => e.code(),
            Self::BodyTooLarge { .. } => ErrorCode::InvalidRequest,
            Self::Lifecycle(e) => e.code(),
            Self::Storage(e) => e.code(),
            Self::Database(e) => e.code(),
            Self::Queue(e) => e.code(),
            Self::RateLimited(_) => ErrorCode::RateLimited,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        let code = self.code();
        if status.is_server_error() {
            tracing::error!(error = %self, code = code.as_str(), "request failed");
        }
        let mut detail = ErrorDetail::new(code, self.client_message());
        if let Self::Lifecycle(LifecycleError::QuotaExceeded(q)) = &self {
            detail.quota = Some(*q);
        }
        let headers = match &self {
            Self::RateLimited(info) => {
                detail.retry_after_secs = Some(info.retry_after_secs());
                info.headers().to_vec()
            }
            _ => Vec::new(),
        };
        let mut response = (status, Json(ErrorBody { error: detail })).into_response();
        for (name, value) in headers {
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}
