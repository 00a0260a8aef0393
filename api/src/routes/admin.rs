//! Admin routes (token scope `admin`): list and replay dead jobs.

use axum::extract::State;
use kiln_shared::dead_jobs::{self, DeadJobError, ReplayReport};
use kiln_shared::wire::{JobList, ListJobsQuery, ReplayRequest};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::{Json, Query};
use crate::routes::openapi::{
    ContentTooLarge, Forbidden, Internal, InvalidRequest, Timeout, Unauthorized, Unavailable,
};
use crate::state::AppState;

impl From<DeadJobError> for ApiError {
    fn from(e: DeadJobError) -> Self {
        match e {
            DeadJobError::Db(e) => ApiError::Database(e),
        }
    }
}

/// Lists dead jobs.
///
/// Failed uploads whose job ended in the dead set, newest failure first, filtered by error
/// code, time and owner.
///
/// # Errors
/// 400 for a state other than `dead`, an error code that is not a processing code, a malformed
/// owner or a bad limit; 401/403 without an admin token; 500 on an internal fault; 503 when
/// Postgres is down.
#[utoipa::path(
    get,
    path = "/v1/admin/jobs",
    operation_id = "list_dead_jobs",
    tag = "admin",
    security(("bearer" = [])),
    params(ListJobsQuery),
    responses(
        (status = 200, description = "The matching dead jobs", body = JobList),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = Timeout),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Admin(_): Admin,
    Query(q): Query<ListJobsQuery>,
) -> Result<Json<JobList>, ApiError> {
    // `state` is an enum of the one listed state, `dead`: serde refuses any other (400).
    let items = dead_jobs::list(&state.pool, &q.filter().to_filter()?).await?;
    Ok(Json(JobList { items }))
}

/// Replays dead jobs.
///
/// Moves each matching failed upload back to `uploaded` and enqueues a fresh job
/// (idempotent: replaying twice enqueues once).
///
/// # Errors
/// 400 for a malformed body, unless exactly one of `ids` (1 to `api.max_replay_ids`, default
/// 1000) and `filter` is given, or for a bad filter; 401/403 without an admin token; 413 for a
/// body over `api.max_body_bytes`; 500 on an internal fault; 503 when Postgres or Redis is
/// down.
#[utoipa::path(
    post,
    path = "/v1/admin/jobs/replay",
    operation_id = "replay_dead_jobs",
    tag = "admin",
    security(("bearer" = [])),
    request_body = ReplayRequest,
    responses(
        (status = 200, description = "What was replayed (or, with `dry_run`, would be)", body = ReplayReport),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = Timeout),
        (status = 413, response = ContentTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn replay(
    State(state): State<AppState>,
    Admin(_): Admin,
    Json(req): Json<ReplayRequest>,
) -> Result<Json<ReplayReport>, ApiError> {
    req.validate(state.settings.api.max_replay_ids)?;
    let report = match (&req.ids, &req.filter) {
        (Some(ids), None) => state.lifecycle.replay(ids, req.dry_run).await?,
        (None, Some(f)) => {
            state
                .lifecycle
                .replay_matching(&f.to_filter()?, req.dry_run)
                .await?
        }
        _ => {
            return Err(ApiError::invalid("give exactly one of ids and filter"));
        }
    };
    Ok(Json(report))
}
