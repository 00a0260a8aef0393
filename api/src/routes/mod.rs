//! HTTP routes: `/v1/uploads…` for owners, `/v1/admin/…` for operators, `/healthz` and `/readyz` for orchestration.

pub mod admin;
pub mod health;
pub mod metrics;
pub mod uploads;

use axum::Router;
use axum::routing::{get, post};

use crate::state::AppState;

/// The API's router (without middleware), for [`crate::startup`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/uploads", post(uploads::create).get(uploads::list))
        .route("/v1/uploads/{id}", get(uploads::show))
        .route("/v1/uploads/{id}/complete", post(uploads::complete))
        .route("/v1/admin/jobs", get(admin::list))
        .route("/v1/admin/jobs/replay", post(admin::replay))
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
}
