//! `[api]`: the HTTP API's listeners, upload authorization limits and request bounds.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// HTTP API settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    /// Listen address (`KILN__API__LISTEN`), e.g. `127.0.0.1:8080`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// A second listener for `/metrics`, `/readyz` and `/healthz` only
    /// (`KILN__API__ADMIN_LISTEN`). When set, those routes leave the public listener, so the
    /// public port can be exposed without them. Unset (the default) keeps them on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    /// Lifetime of a presigned PUT URL or POST policy, in seconds.
    pub upload_expiry_secs: u64,
    /// Content types a client may declare. The worker sniffs the real format and refuses one
    /// that differs from the declared type or is not in this list (`content_type_mismatch`),
    /// before any decoder runs.
    pub allowed_content_types: Vec<String>,
    /// Largest request body any route accepts, in bytes (JSON bodies only: image bytes go
    /// straight to S3). Larger bodies get 413 `invalid_request`.
    pub max_body_bytes: usize,
    /// Most ids one `POST /v1/admin/jobs/replay` may name.
    pub max_replay_ids: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: None,
            max_upload_bytes: 100 * 1024 * 1024,
            upload_expiry_secs: 900,
            allowed_content_types: [
                "image/jpeg",
                "image/png",
                "image/gif",
                "image/webp",
                "image/tiff",
                "image/heic",
                "image/heif",
                "image/avif",
            ]
            .map(String::from)
            .to_vec(),
            max_body_bytes: 64 * 1024,
            max_replay_ids: 1_000,
        }
    }
}
