//! Dead jobs: inspection and replay, shared by `kiln jobs …` and the admin API.
//!
//! A dead job is a failed upload (Postgres is the source of truth) plus the apalis task that
//! ended in `{q}:dead`. Replay moves the upload back to `uploaded`, enqueues a fresh task and
//! removes the dead one. It is idempotent: the `failed` → `uploaded` transition is one
//! conditional UPDATE, so replaying the same job twice enqueues it once.

use sqlx::PgPool;

use crate::db::DbError;
use crate::db::uploads::{self as db, FailedFilter};
use crate::domain::{Upload, UploadId};
use crate::queue::{JobQueue, QueueError};
pub use crate::wire::{DeadJob, ReplayReport};

impl From<Upload> for DeadJob {
    fn from(u: Upload) -> Self {
        Self {
            upload_id: u.id,
            owner: u.owner.to_string(),
            job_id: u.job_id,
            error_code: u.error_code.map(|c| c.as_str().to_owned()),
            message: u.error_message,
            attempts: u.attempts,
            replays: u.replays,
            failed_at: u.updated_at,
            filename: u.filename,
        }
    }
}

/// Errors from inspection and replay.
#[derive(Debug, thiserror::Error)]
pub enum DeadJobError {
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Redis failed while enqueueing; the upload stays `uploaded` and the sweeper re-enqueues it.
    #[error(transparent)]
    Queue(#[from] QueueError),
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

/// Replays the dead jobs of `ids`.
///
/// # Errors
/// [`DeadJobError`] on the first database or queue failure; uploads already moved stay
/// `uploaded` and the sweeper enqueues them.
pub async fn replay(
    pool: &PgPool,
    queue: &JobQueue,
    ids: &[UploadId],
    dry_run: bool,
) -> Result<ReplayReport, DeadJobError> {
    let mut report = ReplayReport {
        dry_run,
        ..Default::default()
    };
    for &id in ids {
        if dry_run {
            match show(pool, id).await? {
                Some(_) => report.replayed.push(id),
                None => report.skipped.push(id),
            }
            continue;
        }
        let Some(before) = db::mark_for_replay(pool, id).await? else {
            report.skipped.push(id);
            continue;
        };
        let job_id = queue.push_process_upload(id).await?;
        db::set_job_id(pool, id, &job_id).await?;
        if let Some(old) = before.job_id {
            queue.forget_dead(&old).await?;
        }
        tracing::info!(upload_id = %id, %job_id, "dead job replayed");
        report.replayed.push(id);
    }
    Ok(report)
}

/// Replays every dead job matching `filter`.
///
/// # Errors
/// As [`replay`].
pub async fn replay_matching(
    pool: &PgPool,
    queue: &JobQueue,
    filter: &FailedFilter,
    dry_run: bool,
) -> Result<ReplayReport, DeadJobError> {
    let ids: Vec<UploadId> = list(pool, filter)
        .await?
        .into_iter()
        .map(|j| j.upload_id)
        .collect();
    replay(pool, queue, &ids, dry_run).await
}
