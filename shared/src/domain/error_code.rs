//! Stable snake_case error codes (docs/design.md "Errors"): they appear in API error bodies, failed
//! rows, dead jobs and metric labels, so a code is never renamed.

use serde::{Deserialize, Serialize};

/// A stable error code; [`ErrorCode::as_str`] gives its wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The bytes are not a format Kiln decodes (sniffed from magic bytes).
    UnsupportedFormat,
    /// The format is known but the data is truncated or malformed.
    CorruptImage,
    /// Over the pixel, dimension, frame or encoded-size limit.
    ImageTooLarge,
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
    /// A bug or an unexpected state; see the logs.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 11] = [
        Self::UnsupportedFormat,
        Self::CorruptImage,
        Self::ImageTooLarge,
        Self::ObjectMissing,
        Self::SizeMismatch,
        Self::StorageUnavailable,
        Self::StorageRejected,
        Self::DatabaseUnavailable,
        Self::QueueUnavailable,
        Self::RetriesExhausted,
        Self::Internal,
    ];

    /// The wire form, e.g. `corrupt_image`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnsupportedFormat => "unsupported_format",
            Self::CorruptImage => "corrupt_image",
            Self::ImageTooLarge => "image_too_large",
            Self::ObjectMissing => "object_missing",
            Self::SizeMismatch => "size_mismatch",
            Self::StorageUnavailable => "storage_unavailable",
            Self::StorageRejected => "storage_rejected",
            Self::DatabaseUnavailable => "database_unavailable",
            Self::QueueUnavailable => "queue_unavailable",
            Self::RetriesExhausted => "retries_exhausted",
            Self::Internal => "internal",
        }
    }

    /// Whether a failure with this code may succeed on a later attempt.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Self::StorageUnavailable | Self::DatabaseUnavailable | Self::QueueUnavailable
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_matches_serde() {
        for c in [
            ErrorCode::CorruptImage,
            ErrorCode::ImageTooLarge,
            ErrorCode::RetriesExhausted,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
