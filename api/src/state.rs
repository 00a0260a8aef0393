//! `AppState`: what every handler shares (settings, the upload lifecycle, the Postgres pool and
//! S3 client for reads, metrics, the readiness cache).

use std::sync::Arc;
use std::time::Instant;

use kiln_shared::Settings;
use kiln_shared::db::Db;
use kiln_shared::lifecycle::Lifecycle;
use kiln_shared::metrics::Metrics;
use kiln_shared::storage::Storage;

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Loaded settings.
    pub settings: Arc<Settings>,
    /// Verifies bearer tokens (`auth.*`: the HS256 secret or the public keys, `iss`, `aud`,
    /// the longest lifetime).
    pub verifier: Arc<kiln_shared::auth::Verifier>,
    /// The upload lifecycle: every state change and its queue work goes through it.
    pub lifecycle: Lifecycle,
    /// Postgres pool, for reads (the lifecycle's).
    pub pool: Db,
    /// S3 bucket client, for download URLs (the lifecycle's).
    pub storage: Storage,
    /// This process's rate limiters (`[rate_limits]`).
    pub limits: Arc<crate::rate_limit::RateLimits>,
    /// This process's metrics.
    pub metrics: Arc<Metrics>,
    /// When the Postgres/Redis gauges of `/metrics` were last read; the lock is held across a
    /// refresh, so concurrent scrapes share one.
    pub gauges_refreshed: Arc<tokio::sync::Mutex<Option<Instant>>>,
    /// The cached, single-flight readiness answer of `/readyz`.
    pub readiness: Arc<crate::routes::health::Readiness>,
}
