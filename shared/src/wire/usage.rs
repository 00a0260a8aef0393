//! Bodies of the usage and quota routes: `GET /v1/usage` (an owner's own) and
//! `/v1/admin/owners/{owner}…` (any owner's, and their quota overrides).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::owners::{Limits, QuotaOverride, Usage};

/// An owner's usage and the limits that apply to them (`GET /v1/usage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UsageView {
    /// The owner (the token's `sub`, or the key's owner).
    pub owner: String,
    /// What they hold now.
    pub usage: Usage,
    /// Their limits: overrides where set, else the configured defaults.
    pub limits: Limits,
}

/// [`UsageView`] plus the owner's overrides (`GET`/`PUT /v1/admin/owners/{owner}…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OwnerView {
    /// The owner.
    pub owner: String,
    /// What they hold now.
    pub usage: Usage,
    /// Their effective limits.
    pub limits: Limits,
    /// Their overrides (`null`: the configured default applies).
    pub overrides: QuotaOverride,
}

/// Body of `PUT /v1/admin/owners/{owner}/quota`: each limit to override, in bytes or a count;
/// an absent or `null` limit restores the configured default. Replaces all three overrides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SetQuota {
    /// Bytes of live uploads (0 ..= 2^63 − 1).
    #[serde(default, deserialize_with = "super::de::optional_integer")]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub max_bytes: Option<u64>,
    /// Live uploads.
    #[serde(default, deserialize_with = "super::de::optional_integer")]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub max_uploads: Option<u64>,
    /// Authorized uploads not yet completed.
    #[serde(default, deserialize_with = "super::de::optional_integer")]
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub max_pending: Option<u64>,
}

impl From<SetQuota> for QuotaOverride {
    fn from(q: SetQuota) -> Self {
        Self {
            max_bytes: q.max_bytes,
            max_uploads: q.max_uploads,
            max_pending: q.max_pending,
        }
    }
}
