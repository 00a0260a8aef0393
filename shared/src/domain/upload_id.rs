//! `UploadId`: the server-chosen id of one upload, a UUIDv7 (time-ordered, RFC 9562).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Id of one upload: a UUIDv7, so ids sort roughly by creation time.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(example = "019a3c4e-7b2d-7c1e-9f3a-5b6c7d8e9f00")]
pub struct UploadId(pub Uuid);

impl UploadId {
    /// A fresh UUIDv7 from the current time.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for UploadId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}
