//! Admin routes (token scope `admin`): list and replay dead jobs.

use axum::extract::State;
use chrono::{DateTime, Utc};
use kiln_shared::db::uploads::FailedFilter;
use kiln_shared::dead_jobs::{self, DeadJob, DeadJobError, ReplayReport};
use kiln_shared::domain::UploadId;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::{Json, Query};
use crate::routes::openapi::{Forbidden, InvalidRequest, Unauthorized, Unavailable};
use crate::state::AppState;

/// Filters shared by listing and replay.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct JobFilter {
    /// Only this error code.
    pub error_code: Option<String>,
    /// Only failures at or after this RFC 3339 time.
    pub since: Option<DateTime<Utc>>,
    /// Only this owner's uploads.
    pub owner: Option<String>,
    /// At most this many (1–1000, default 100).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

impl JobFilter {
    fn to_filter(&self) -> Result<FailedFilter, ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::InvalidRequest("limit must be 1-1000".into()));
        }
        Ok(FailedFilter {
            error_code: self.error_code.clone(),
            since: self.since,
            owner: self.owner.clone(),
            limit,
        })
    }
}

/// Query of `GET /v1/admin/jobs` (fields spelled out: `serde(flatten)` breaks numbers in
/// query strings).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListJobsQuery {
    /// Job state; only `dead` is listed.
    #[param(example = "dead")]
    pub state: String,
    /// Only this error code.
    pub error_code: Option<String>,
    /// Only failures at or after this RFC 3339 time.
    pub since: Option<DateTime<Utc>>,
    /// Only this owner's uploads.
    pub owner: Option<String>,
    /// At most this many (1–1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// A page of dead jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Dead jobs, newest failure first.
    pub items: Vec<DeadJob>,
}

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
/// 400 for a state other than `dead` or a bad limit; 401/403 without an admin token; 503 when
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
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Admin(_): Admin,
    Query(q): Query<ListJobsQuery>,
) -> Result<Json<JobList>, ApiError> {
    if q.state != "dead" {
        return Err(ApiError::InvalidRequest("only state=dead is listed".into()));
    }
    let filter = JobFilter {
        error_code: q.error_code,
        since: q.since,
        owner: q.owner,
        limit: q.limit,
    };
    let items = dead_jobs::list(&state.pool, &filter.to_filter()?).await?;
    Ok(Json(JobList { items }))
}

/// Body of `POST /v1/admin/jobs/replay`: either `ids` or `filter`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReplayRequest {
    /// Upload ids to replay.
    pub ids: Option<Vec<UploadId>>,
    /// Replay every dead job matching this filter.
    pub filter: Option<JobFilter>,
    /// Report what would be replayed without changing anything.
    #[serde(default)]
    #[schema(default = false)]
    pub dry_run: bool,
}

/// Replays dead jobs.
///
/// Moves each matching failed upload back to `uploaded` and enqueues a fresh job
/// (idempotent: replaying twice enqueues once).
///
/// # Errors
/// 400 for a malformed body or unless exactly one of `ids` and `filter` is given; 401/403
/// without an admin token; 503 when Postgres or Redis is down.
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
        (status = 503, response = Unavailable),
    )
)]
pub async fn replay(
    State(state): State<AppState>,
    Admin(_): Admin,
    Json(req): Json<ReplayRequest>,
) -> Result<Json<ReplayReport>, ApiError> {
    let report = match (&req.ids, &req.filter) {
        (Some(ids), None) => state.lifecycle.replay(ids, req.dry_run).await?,
        (None, Some(f)) => {
            state
                .lifecycle
                .replay_matching(&f.to_filter()?, req.dry_run)
                .await?
        }
        _ => {
            return Err(ApiError::InvalidRequest(
                "give exactly one of ids and filter".into(),
            ));
        }
    };
    Ok(Json(report))
}
