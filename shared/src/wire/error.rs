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
}
