//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: Postgres, Redis and S3
//! all answer) probes. A readiness answer is reused for [`READINESS_TTL`], and concurrent
//! requests share one probe ([`Readiness`]), so a flood of `/readyz` costs the dependencies at
//! most one round of checks a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use kiln_shared::wire::{Dependency, Health, HealthStatus};

use crate::extract::Json;
use crate::routes::openapi::Timeout;
use crate::state::AppState;

/// Liveness probe.
///
/// 200 `{"status":"ok"}` while the process is up.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process is up", body = Health),
        (status = 408, response = Timeout),
    )
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: HealthStatus::Ok,
        failed: Vec::new(),
    })
}

/// How long a readiness answer is reused.
pub const READINESS_TTL: Duration = Duration::from_secs(1);

/// The last readiness answer and when it was probed, behind an async mutex held across the
/// probe: a request that finds the answer stale probes while the others wait, then they all
/// read the fresh answer (single flight).
#[derive(Debug, Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, Vec<Dependency>)>>,
    probes: AtomicU64,
}

impl Readiness {
    /// The dependencies that did not answer (empty when ready), probed now unless the last
    /// probe is younger than [`READINESS_TTL`].
    pub async fn failed(&self, state: &AppState) -> Vec<Dependency> {
        let mut last = self.last.lock().await;
        if let Some((at, failed)) = last.as_ref()
            && at.elapsed() < READINESS_TTL
        {
            return failed.clone();
        }
        let failed = probe(state).await;
        self.probes.fetch_add(1, Ordering::Relaxed);
        if !failed.is_empty() {
            tracing::warn!(?failed, "not ready");
        }
        *last = Some((Instant::now(), failed.clone()));
        failed
    }

    /// How many probes this process has run (each one checks Postgres, Redis and S3 once).
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }
}

/// Checks Postgres (`SELECT 1`), Redis (`PING`) and S3 (HeadBucket) at once; returns the ones
/// that failed.
async fn probe(state: &AppState) -> Vec<Dependency> {
    let (db, redis, s3) = tokio::join!(
        kiln_shared::db::ping(&state.pool),
        state.lifecycle.queue().ping(),
        state.storage.check()
    );
    [
        (Dependency::Postgres, db.is_ok()),
        (Dependency::Redis, redis.is_ok()),
        (Dependency::S3, s3.is_ok()),
    ]
    .into_iter()
    .filter_map(|(name, ok)| (!ok).then_some(name))
    .collect()
}

/// Readiness probe.
///
/// 200 when Postgres (`SELECT 1`), Redis (`PING`) and S3 (HeadBucket) all answer; otherwise
/// 503 naming the ones that did not. The answer is at most 1 s old (concurrent requests share
/// one probe).
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Postgres, Redis and S3 all answer", body = Health),
        (status = 408, response = Timeout),
        (status = 503, description = "`failed` names the dependencies that did not answer", body = Health),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let failed = state.readiness.failed(&state).await;
    if failed.is_empty() {
        (
            StatusCode::OK,
            Json(Health {
                status: HealthStatus::Ok,
                failed,
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: HealthStatus::Unavailable,
                failed,
            }),
        )
    }
}
