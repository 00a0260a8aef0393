//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: Postgres, Redis and S3
//! all answer) probes.

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

/// Readiness probe.
///
/// 200 when Postgres (`SELECT 1`), Redis (`PING`) and S3 (HeadBucket) all answer; otherwise
/// 503 naming the ones that did not.
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
    let (db, redis, s3) = tokio::join!(
        kiln_shared::db::ping(&state.pool),
        state.lifecycle.queue().ping(),
        state.storage.check()
    );
    let mut failed = Vec::new();
    for (name, ok) in [
        (Dependency::Postgres, db.is_ok()),
        (Dependency::Redis, redis.is_ok()),
        (Dependency::S3, s3.is_ok()),
    ] {
        if !ok {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        (
            StatusCode::OK,
            Json(Health {
                status: HealthStatus::Ok,
                failed,
            }),
        )
    } else {
        tracing::warn!(?failed, "not ready");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: HealthStatus::Unavailable,
                failed,
            }),
        )
    }
}
