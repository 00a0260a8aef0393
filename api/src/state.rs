//! `AppState`: what every handler shares (settings, the upload lifecycle, the Postgres pool and
//! S3 client for reads, metrics).

use std::sync::{Arc, Mutex};
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
    /// The upload lifecycle: every state change and its queue work goes through it.
    pub lifecycle: Lifecycle,
    /// Postgres pool, for reads (the lifecycle's).
    pub pool: Db,
    /// S3 bucket client, for download URLs (the lifecycle's).
    pub storage: Storage,
    /// This process's metrics.
    pub metrics: Arc<Metrics>,
    /// When the Postgres/Redis gauges were last read.
    pub gauges_refreshed: Arc<Mutex<Option<Instant>>>,
}
