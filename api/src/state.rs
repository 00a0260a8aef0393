//! `AppState`: what every handler shares (settings, Postgres pool, S3 client, job queue).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use kiln_shared::Settings;
use kiln_shared::db::PgPool;
use kiln_shared::metrics::Metrics;
use kiln_shared::queue::JobQueue;
use kiln_shared::storage::Storage;

/// Shared handler state; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Loaded settings.
    pub settings: Arc<Settings>,
    /// Postgres pool.
    pub pool: PgPool,
    /// S3 bucket client.
    pub storage: Storage,
    /// ProcessUpload queue (Redis).
    pub queue: JobQueue,
    /// This process's metrics.
    pub metrics: Arc<Metrics>,
    /// When the Postgres/Redis gauges were last read.
    pub gauges_refreshed: Arc<Mutex<Option<Instant>>>,
}
