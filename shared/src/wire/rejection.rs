//! [`Rejection`]: why the server refuses a request body or query that parsed as JSON (or as a
//! query string) but breaks a constraint the document declares (a length, an allow-list, a
//! limit, a one-of, a filename rule). The API answers it with the code's status and
//! `{"error": …}` body.

use crate::domain::{Classify, ErrorCode};

/// A constraint a request broke. Its message names the field and the rule, for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 400 `invalid_request`: a field out of its declared range, length, pattern or enum, or
    /// a one-of broken (the message names the field and the rule).
    #[error("{0}")]
    Invalid(String),
    /// 413 `upload_too_large`: `byte_size` over `api.max_upload_bytes`.
    #[error("byte_size {size} is over the {max}-byte limit")]
    TooLarge {
        /// Declared size, in bytes.
        size: u64,
        /// Limit (`api.max_upload_bytes`), in bytes.
        max: u64,
    },
    /// 415 `unsupported_content_type`: `content_type` is not in `api.allowed_content_types`.
    #[error("content type {0:?} is not accepted")]
    UnsupportedContentType(String),
    /// 400 `invalid_filename`: `filename` is empty, too long, or holds a control or
    /// bidirectional formatting character ([`super::check_filename`]; the message says which).
    #[error("{0}")]
    InvalidFilename(String),
}

impl Rejection {
    /// A 400 `invalid_request` with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }
}

impl Classify for Rejection {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::InvalidRequest,
            Self::TooLarge { .. } => ErrorCode::UploadTooLarge,
            Self::UnsupportedContentType(_) => ErrorCode::UnsupportedContentType,
            Self::InvalidFilename(_) => ErrorCode::InvalidFilename,
        }
    }
}
