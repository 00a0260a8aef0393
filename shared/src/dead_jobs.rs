//! Dead jobs: inspection, shared by `kiln jobs …` and the admin API. Replay is a lifecycle
//! transition (`crate::lifecycle::Lifecycle::replay`).
//!
//! A dead job is a failed upload (Postgres is the source of truth) plus the apalis task that
//! ended in `{q}:dead`, whose id is derived from the upload's id and job generation.

use crate::db::Db;

use crate::db::DbError;
use crate::db::uploads::{self as db, FailedFilter};
use crate::domain::{Upload, UploadId};
pub use crate::wire::{DeadJob, ReplayReport};

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
pub async fn list(pool: &Db, filter: &FailedFilter) -> Result<Vec<DeadJob>, DeadJobError> {
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
pub async fn show(pool: &Db, id: UploadId) -> Result<Option<DeadJob>, DeadJobError> {
    Ok(db::get(pool, id)
        .await?
        .filter(|u| u.state == crate::domain::UploadState::Failed)
        .map(DeadJob::from))
}
