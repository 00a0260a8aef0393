//! `[quotas]`, `[rate_limits]` and `[scheduling]`: what one owner may hold, how fast they may
//! ask, and how many of their jobs may wait in the queue at once (docs/ARCHITECTURE.md
//! "Tenancy").

use serde::{Deserialize, Serialize};

/// Default per-owner quotas (`[quotas]`), checked at authorize. An owner's row in `owners`
/// (set by `kiln owners set-quota` or `PUT /v1/admin/owners/{owner}/quota`) overrides each
/// limit it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuotaSettings {
    /// Bytes an owner may hold in live uploads (pending, uploaded, processing, ready; the
    /// declared `byte_size` is reserved at authorize). Default 10 GiB.
    pub max_bytes: u64,
    /// Live uploads an owner may hold. Default 100,000.
    pub max_uploads: u64,
    /// Authorized uploads not yet completed an owner may hold. Default 1,000.
    pub max_pending: u64,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024 * 1024,
            max_uploads: 100_000,
            max_pending: 1_000,
        }
    }
}

/// Per-owner request rates (`[rate_limits]`), enforced by each API process with the GCRA of
/// the `governor` crate (not shared across API processes: see docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Authorize calls (`POST /v1/uploads`) one owner may make per second, sustained.
    /// 0 turns the limit off.
    pub authorize_per_second: u32,
    /// Complete calls (`POST /v1/uploads/{id}/complete`) per owner per second, sustained.
    /// 0 turns the limit off.
    pub complete_per_second: u32,
    /// Calls one owner may make at once above the sustained rate, per route.
    pub burst: u32,
    /// Failed authentications (401) one client IP may cause per minute before its requests
    /// are answered 429 without looking at the token. 0 turns the limit off.
    pub auth_failures_per_minute: u32,
    /// Failed authentications one client IP may cause at once above that rate.
    pub auth_failures_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            authorize_per_second: 20,
            complete_per_second: 20,
            burst: 200,
            auth_failures_per_minute: 60,
            auth_failures_burst: 20,
        }
    }
}

/// The fair scheduler (`[scheduling]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchedulingSettings {
    /// ProcessUpload jobs of one owner that may wait in the queue, not yet claimed by a worker,
    /// at once. Further completed uploads are held in the upload store and admitted, oldest
    /// first, as the owner's jobs are claimed, so another owner's job waits behind at most
    /// this many of theirs. Jobs already running do not count, so one owner alone still keeps
    /// every worker busy. Must be ≥ 1.
    pub max_waiting_per_owner: u32,
    /// Label the per-owner metrics (`kiln_owner_queue_wait_seconds`, quota refusals, 429s)
    /// with `owner`. Off by default: one series per owner is unbounded.
    pub owner_metrics: bool,
}

impl Default for SchedulingSettings {
    fn default() -> Self {
        Self {
            max_waiting_per_owner: 1,
            owner_metrics: false,
        }
    }
}
