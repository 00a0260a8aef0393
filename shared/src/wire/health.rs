//! Body of the probes `/healthz` and `/readyz`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Body of both probes: `{"status":"ok"}`, or `{"status":"unavailable","failed":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when a dependency does not answer.
    pub status: HealthStatus,
    /// The dependencies that did not answer; absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Dependency>,
}

/// Outcome of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Everything checked answered.
    Ok,
    /// Something checked did not answer.
    Unavailable,
}

/// A dependency `/readyz` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dependency {
    /// Postgres (`SELECT 1`).
    Postgres,
    /// Redis (`PING`).
    Redis,
    /// S3 (HeadBucket).
    S3,
}
