//! Dead jobs: inspection, shared by `kiln jobs …` and the admin API. Replay is a lifecycle
//! transition (`crate::lifecycle::Lifecycle::replay`).
//!
//! A dead job is a failed upload (Postgres is the source of truth) plus the apalis task that
//! ended in `{q}:dead`, whose id is derived from the upload's id and job generation.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::db::DbError;
use crate::db::uploads::{self as db, FailedFilter};
use crate::domain::{Upload, UploadId};

/// One dead job as operators see it.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct DeadJob {
    /// The failed upload.
    pub upload_id: UploadId,
    /// Its owner.
    pub owner: String,
    /// The apalis task id of its last job (derived from the upload id and job generation).
    pub job_id: Option<String>,
    /// Stable error code, e.g. `corrupt_image`.
    pub error_code: Option<String>,
    /// The message the upload's owner sees.
    pub message: Option<String>,
    /// Internal detail of the failure (S3 operation, key, transport error), for operators.
    pub detail: Option<String>,
    /// Attempts made.
    pub attempts: i32,
    /// Times it was replayed before.
    pub replays: i32,
    /// When it failed.
    pub failed_at: DateTime<Utc>,
    /// Client filename.
    pub filename: String,
}

impl From<Upload> for DeadJob {
    fn from(u: Upload) -> Self {
        Self {
            upload_id: u.id,
            owner: u.owner.to_string(),
            job_id: u.task_id(),
            error_code: u.error_code.map(|c| c.as_str().to_owned()),
            message: u.error_code.map(|c| {
                u.error_message
                    .clone()
                    .unwrap_or_else(|| c.client_message().into())
            }),
            detail: u.error_detail,
            attempts: u.attempts,
            replays: u.replays,
            failed_at: u.updated_at,
            filename: u.filename,
        }
    }
}

/// Errors from inspection.
#[derive(Debug, thiserror::Error)]
pub enum DeadJobError {
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Dead jobs matching `filter`, newest first.
///
/// # Errors
/// [`DeadJobError::Db`] on database failure.
pub async fn list(pool: &PgPool, filter: &FailedFilter) -> Result<Vec<DeadJob>, DeadJobError> {
    Ok(db::list_failed(pool, filter)
        .await?
        .into_iter()
        .map(DeadJob::from)
        .collect())
}

/// The dead job of upload `id`, if that upload is failed.
///
/// # Errors
/// [`DeadJobError::Db`] on database failure.
pub async fn show(pool: &PgPool, id: UploadId) -> Result<Option<DeadJob>, DeadJobError> {
    Ok(db::get(pool, id)
        .await?
        .filter(|u| u.state == crate::domain::UploadState::Failed)
        .map(DeadJob::from))
}

/// What a replay did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize, PartialEq, ToSchema)]
pub struct ReplayReport {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Uploads moved back to `uploaded` with a fresh job (or that would be).
    pub replayed: Vec<UploadId>,
    /// Ids that were not failed (already replayed, unknown, or never failed).
    pub skipped: Vec<UploadId>,
}
