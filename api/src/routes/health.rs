//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: Postgres, Redis and S3
//! all answer) probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// `GET /healthz`: 200 `{"status":"ok"}` while the process is up.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when Postgres (`SELECT 1`), Redis (`PING`) and S3 (HeadBucket) all
/// answer; otherwise 503 with `{"status":"unavailable","failed":["redis", …]}`.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (db, redis, s3) = tokio::join!(
        kiln_shared::db::ping(&state.pool),
        state.queue.ping(),
        state.storage.check()
    );
    let mut failed = Vec::new();
    for (name, ok) in [
        ("postgres", db.is_ok()),
        ("redis", redis.is_ok()),
        ("s3", s3.is_ok()),
    ] {
        if !ok {
            failed.push(name);
        }
    }
    if failed.is_empty() {
        (StatusCode::OK, Json(json!({"status": "ok"})))
    } else {
        tracing::warn!(?failed, "not ready");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "failed": failed})),
        )
    }
}
