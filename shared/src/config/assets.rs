//! `[retention]` and `[shares]`: how long deleted and failed uploads are kept before the sweeper
//! purges them, and the limits of share links (docs/ARCHITECTURE.md "Asset lifecycle").

use serde::{Deserialize, Serialize};

/// How long the sweeper keeps uploads that are no longer live (`[retention]`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetentionSettings {
    /// A deleted upload can be restored for this long after `DELETE`; then the sweeper purges
    /// it (original, derivatives, share links and rows). Default 7 days.
    pub deleted_secs: u64,
    /// A `failed` or `expired` upload is purged this long after its last change. Default 30
    /// days.
    pub failed_secs: u64,
    /// Uploads purged per sweep at most (the rest wait for the next sweep). Default 500.
    pub purge_batch: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            deleted_secs: 7 * 24 * 3600,
            failed_secs: 30 * 24 * 3600,
            purge_batch: 500,
        }
    }
}

/// Share links (`[shares]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShareSettings {
    /// The public base URL of the API that share links start with, e.g.
    /// `https://media.example.com` (no trailing slash). Unset: the `Host` of the request that
    /// created the link, over `http`.
    pub public_url: Option<String>,
    /// The longest `expires_in` a share link may ask for, in seconds. Default 30 days.
    pub max_expires_in_secs: u64,
    /// Lifetime of the presigned GET URL a share link (or `GET /v1/uploads/{id}/original`)
    /// redirects to, in seconds. Default 60.
    pub redirect_url_secs: u64,
}

impl Default for ShareSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            max_expires_in_secs: 30 * 24 * 3600,
            redirect_url_secs: 60,
        }
    }
}
