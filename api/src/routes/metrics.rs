//! `GET /metrics` (Prometheus text format) and the middleware that records HTTP metrics.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kiln_shared::metrics::CONTENT_TYPE as PROMETHEUS_TEXT;

use crate::routes::openapi::Timeout;
use crate::state::AppState;

/// How long the gauges read from Postgres and Redis are reused between scrapes.
const GAUGE_TTL: Duration = Duration::from_secs(5);

/// Records `kiln_http_requests_total` and `kiln_http_request_duration_seconds`, labelled by
/// the matched route template (never the raw path, so ids do not explode the label set).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    let m = &state.metrics;
    m.http_requests
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    m.http_duration
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Prometheus metrics.
///
/// Every metric of this process in the Prometheus text format (0.0.4), with
/// `kiln_uploads{state}` (one GROUP BY on Postgres) and `kiln_queue_jobs{queue,state}` (Redis
/// key sizes) refreshed at most every 5 s, by one scrape at a time (concurrent scrapes wait
/// for it and share its result).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format", content_type = PROMETHEUS_TEXT, body = String),
        (status = 408, response = Timeout),
    )
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    {
        // Held across the refresh: single flight.
        let mut last = state.gauges_refreshed.lock().await;
        if last.is_none_or(|t| t.elapsed() > GAUGE_TTL) {
            refresh_gauges(&state).await;
            *last = Some(Instant::now());
        }
    }
    ([(CONTENT_TYPE, PROMETHEUS_TEXT)], state.metrics.render())
}

async fn refresh_gauges(state: &AppState) {
    let m = &state.metrics;
    match kiln_shared::db::uploads::count_by_state(&state.pool).await {
        Ok(counts) => {
            for s in [
                "pending",
                "uploaded",
                "processing",
                "ready",
                "failed",
                "expired",
            ] {
                let n = counts.iter().find(|(st, _)| st == s).map_or(0, |(_, n)| *n);
                m.uploads.with_label_values(&[s]).set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot count uploads for /metrics"),
    }
    match kiln_shared::db::admission::count_held(&state.pool).await {
        Ok(n) => m.uploads_held.set(n),
        Err(e) => tracing::warn!(error = %e, "cannot count held uploads for /metrics"),
    }
    match state.lifecycle.queue().depth().await {
        Ok(d) => {
            let q = state.settings.redis.queue.as_str();
            for (s, n) in [
                ("scheduled", d.scheduled),
                ("active", d.active),
                ("inflight", d.inflight),
                ("dead", d.dead),
            ] {
                m.queue_jobs.with_label_values(&[q, s]).set(n as i64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read queue depth for /metrics"),
    }
}
