//! The error body every API failure returns: `{"error": {"code": "…", "message": "…"}}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::ErrorCode;

/// The body of every error response: `{"error": {"code": "…", "message": "…"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` object of an error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code from Kiln's error taxonomy (each response's description names
    /// the codes it can carry).
    #[schema(example = "not_found")]
    pub code: ErrorCode,
    /// A message written for people, with no internal detail; not for matching.
    pub message: String,
    /// With `quota_exceeded` only: the limit that would be passed and the owner's usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaDetail>,
    /// With `rate_limited` only: whole seconds to wait, as in the `Retry-After` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl ErrorDetail {
    /// A detail with only a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            quota: None,
            retry_after_secs: None,
        }
    }
}

/// Which per-owner quota an authorization would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaLimit {
    /// Bytes held in live uploads (`quotas.max_bytes`).
    Bytes,
    /// Live uploads (`quotas.max_uploads`).
    Uploads,
    /// Authorized, not yet completed uploads (`quotas.max_pending`).
    Pending,
}

/// The `quota` object of a `quota_exceeded` error: which limit, its value, what the owner holds
/// now and what the refused request asked for (bytes for `bytes`, 1 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaDetail {
    /// The limit that would be passed.
    pub limit: QuotaLimit,
    /// The limit's value (bytes, or a count).
    pub max: u64,
    /// What the owner holds now, in the same unit.
    pub used: u64,
    /// What the refused request would have added.
    pub requested: u64,
}
