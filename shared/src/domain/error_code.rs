//! Kiln's one error taxonomy: every stable snake_case error code, with its transience, its HTTP
//! status and the message clients see, in one table ([`ErrorCode::spec`]).
//!
//! Codes appear in API error bodies, failed rows, dead jobs and metric labels, so a code is
//! never renamed. Every layer's error type implements [`Classify`] to name its code; whether a
//! failure is worth retrying is read from the code, never decided again by a caller. Client
//! messages are fixed per code (callers may append safe facts such as sizes); internal detail
//! (S3 operations, keys, hosts, SQL) goes to the logs only. See `docs/design.md` "Errors".

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stable error code; [`ErrorCode::as_str`] gives its wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The bytes are not a format Kiln decodes (sniffed from magic bytes).
    UnsupportedFormat,
    /// The format is known but the data is truncated or malformed.
    CorruptImage,
    /// Over the pixel, dimension, frame or encoded-size limit, or over the memory budget a
    /// decode would need (`worker.memory_budget_bytes`), or the decoder ran out of memory.
    ImageTooLarge,
    /// The decoder did not finish within `worker.job_timeout_secs` and was killed.
    DecodeTimeout,
    /// The sniffed format is not the declared `content_type`, or not one of
    /// `api.allowed_content_types`.
    ContentTypeMismatch,
    /// The temp object is not in the bucket.
    ObjectMissing,
    /// The stored object's size differs from the declared `byte_size`.
    SizeMismatch,
    /// S3 failed or timed out (transient).
    StorageUnavailable,
    /// S3 refused a request (4xx: credentials, permissions); permanent until fixed.
    StorageRejected,
    /// Postgres failed (transient).
    DatabaseUnavailable,
    /// Redis failed (transient).
    QueueUnavailable,
    /// Transient failures used up `worker.max_attempts`.
    RetriesExhausted,
    /// A bug or an unexpected state (a corrupt row, a signing failure); see the logs.
    Internal,
    /// No, malformed, bad or expired bearer token.
    Unauthorized,
    /// The token lacks the scope the route needs.
    Forbidden,
    /// No such upload for this owner.
    NotFound,
    /// No route matches the path.
    RouteNotFound,
    /// The path exists, but not with this method.
    MethodNotAllowed,
    /// A malformed body, path or query parameter, or a value out of range.
    InvalidRequest,
    /// The declared `byte_size` is over `api.max_upload_bytes`.
    UploadTooLarge,
    /// The declared content type is not in `api.allowed_content_types`.
    UnsupportedContentType,
    /// The filename has a NUL, control or bidirectional-override character, or is too long.
    InvalidFilename,
    /// The owner's quota (bytes, uploads or pending uploads) would be passed; the body's
    /// `quota` names the limit and the usage.
    QuotaExceeded,
    /// Too many requests from this owner (or, for failed authentications, this client IP);
    /// `Retry-After` says when to try again.
    RateLimited,
    /// No such share link, or it was revoked, or its upload was deleted.
    ShareNotFound,
    /// The share link expired or used up its downloads.
    ShareExpired,
    /// The upload has no such rendition or original yet (it is not `ready`).
    NotReady,
    /// Restore of a deleted upload whose retention period has passed.
    NotRestorable,
}

/// One row of the taxonomy table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeSpec {
    /// Wire form, e.g. `corrupt_image`.
    pub wire: &'static str,
    /// Whether a failure with this code may succeed on a later attempt.
    pub transient: bool,
    /// HTTP status (RFC 9110) when an API response carries this code.
    pub status: u16,
    /// The message clients see: written for them, with no internal detail.
    pub message: &'static str,
}

const fn spec(wire: &'static str, transient: bool, status: u16, message: &'static str) -> CodeSpec {
    CodeSpec {
        wire,
        transient,
        status,
        message,
    }
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 28] = [
        Self::UnsupportedFormat,
        Self::CorruptImage,
        Self::ImageTooLarge,
        Self::DecodeTimeout,
        Self::ContentTypeMismatch,
        Self::ObjectMissing,
        Self::SizeMismatch,
        Self::StorageUnavailable,
        Self::StorageRejected,
        Self::DatabaseUnavailable,
        Self::QueueUnavailable,
        Self::RetriesExhausted,
        Self::Internal,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::RouteNotFound,
        Self::MethodNotAllowed,
        Self::InvalidRequest,
        Self::UploadTooLarge,
        Self::UnsupportedContentType,
        Self::InvalidFilename,
        Self::QuotaExceeded,
        Self::RateLimited,
        Self::ShareNotFound,
        Self::ShareExpired,
        Self::NotReady,
        Self::NotRestorable,
    ];

    /// The codes an upload's processing can end with (a failed row, a dead job, the
    /// `kiln_upload_failures_total{code}` label): the first thirteen of [`ErrorCode::ALL`].
    pub const PROCESSING: &'static [ErrorCode] = Self::ALL.split_at(13).0;

    /// The code's row of the taxonomy: wire form, transience, HTTP status, client message.
    pub const fn spec(self) -> CodeSpec {
        match self {
            Self::UnsupportedFormat => spec(
                "unsupported_format",
                false,
                415,
                "The file is not an image format Kiln can read.",
            ),
            Self::CorruptImage => spec(
                "corrupt_image",
                false,
                422,
                "The image data is damaged or truncated.",
            ),
            Self::ImageTooLarge => spec(
                "image_too_large",
                false,
                413,
                "The image is over the pixel, dimension, frame or file size limit.",
            ),
            Self::DecodeTimeout => spec(
                "decode_timeout",
                false,
                422,
                "The image took too long to decode and was abandoned.",
            ),
            Self::ContentTypeMismatch => spec(
                "content_type_mismatch",
                false,
                415,
                "The file's real format is not its declared content type, or is not accepted.",
            ),
            Self::ObjectMissing => spec(
                "object_missing",
                false,
                409,
                "No object has been uploaded for this upload yet.",
            ),
            Self::SizeMismatch => spec(
                "size_mismatch",
                false,
                422,
                "The uploaded object's size is not the declared byte_size.",
            ),
            Self::StorageUnavailable => spec(
                "storage_unavailable",
                true,
                503,
                "Object storage is unavailable; try again later.",
            ),
            Self::StorageRejected => spec(
                "storage_rejected",
                false,
                502,
                "Object storage refused the request; an operator has been notified.",
            ),
            Self::DatabaseUnavailable => spec(
                "database_unavailable",
                true,
                503,
                "The database is unavailable; try again later.",
            ),
            Self::QueueUnavailable => spec(
                "queue_unavailable",
                true,
                503,
                "The job queue is unavailable; try again later.",
            ),
            Self::RetriesExhausted => spec(
                "retries_exhausted",
                false,
                503,
                "Processing kept failing on temporary errors; an operator can replay it.",
            ),
            Self::Internal => spec(
                "internal",
                false,
                500,
                "An internal error occurred; it has been logged.",
            ),
            Self::Unauthorized => spec(
                "unauthorized",
                false,
                401,
                "A valid bearer token is required.",
            ),
            Self::Forbidden => spec(
                "forbidden",
                false,
                403,
                "The token does not allow this route.",
            ),
            Self::NotFound => spec("not_found", false, 404, "No such upload."),
            Self::RouteNotFound => spec("route_not_found", false, 404, "No such route."),
            Self::MethodNotAllowed => spec(
                "method_not_allowed",
                false,
                405,
                "This method is not allowed on this path.",
            ),
            Self::InvalidRequest => {
                spec("invalid_request", false, 400, "The request is malformed.")
            }
            Self::UploadTooLarge => spec(
                "upload_too_large",
                false,
                413,
                "byte_size is over the upload limit.",
            ),
            Self::UnsupportedContentType => spec(
                "unsupported_content_type",
                false,
                415,
                "This content type is not accepted.",
            ),
            Self::InvalidFilename => spec(
                "invalid_filename",
                false,
                400,
                "The filename contains control or bidirectional-override characters.",
            ),
            Self::QuotaExceeded => spec(
                "quota_exceeded",
                false,
                403,
                "This upload would pass your quota; `quota` names the limit and your usage.",
            ),
            Self::RateLimited => spec(
                "rate_limited",
                false,
                429,
                "Too many requests; try again after the Retry-After delay.",
            ),
            Self::ShareNotFound => spec("share_not_found", false, 404, "No such share link."),
            Self::ShareExpired => spec(
                "share_expired",
                false,
                410,
                "This share link has expired or has no downloads left.",
            ),
            Self::NotReady => spec(
                "not_ready",
                false,
                409,
                "The upload has no such file yet: it is not ready.",
            ),
            Self::NotRestorable => spec(
                "not_restorable",
                false,
                409,
                "The upload's retention period has passed; it can no longer be restored.",
            ),
        }
    }

    /// The wire form, e.g. `corrupt_image`.
    pub const fn as_str(self) -> &'static str {
        self.spec().wire
    }

    /// Whether a failure with this code may succeed on a later attempt.
    pub const fn is_transient(self) -> bool {
        self.spec().transient
    }

    /// The HTTP status (RFC 9110) of an API response with this code.
    pub const fn http_status(self) -> u16 {
        self.spec().status
    }

    /// The fixed message clients see for this code.
    pub const fn client_message(self) -> &'static str {
        self.spec().message
    }

    /// The code whose wire form is `s`, if any (reads a stored `error_code` column).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that belongs to the taxonomy: it names its [`ErrorCode`], and its transience is
/// the code's. Implemented by every layer's error type (storage, database, queue, imaging,
/// lifecycle, jobs, API).
pub trait Classify {
    /// The stable code of this failure.
    fn code(&self) -> ErrorCode;

    /// Whether a later attempt may succeed (from the code's row of the table).
    fn is_transient(&self) -> bool {
        self.code().is_transient()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_matches_serde_and_parses_back() {
        for c in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
    }

    #[test]
    fn only_dependency_outages_are_transient_and_they_answer_503() {
        let transient: Vec<_> = ErrorCode::ALL
            .into_iter()
            .filter(|c| c.is_transient())
            .collect();
        assert_eq!(
            transient,
            [
                ErrorCode::StorageUnavailable,
                ErrorCode::DatabaseUnavailable,
                ErrorCode::QueueUnavailable
            ]
        );
        assert!(transient.iter().all(|c| c.http_status() == 503));
        assert!(
            ErrorCode::ALL
                .iter()
                .all(|c| (400..600).contains(&c.http_status()) && !c.client_message().is_empty())
        );
    }
}
