//! Upload state changes, one conditional UPDATE each (`WHERE state = …`, and for a claimed row
//! `AND attempts = …`), so concurrent or duplicate callers can never move a row backwards.
//! Every transition that queues work increments `job_generation` in the same statement and
//! returns it: the task id is derived from it (`crate::queue::task_id`), never written back.
//!
//! Called only by the lifecycle module (`crate::lifecycle`), which pairs each change with its
//! queue work.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::uploads::{UPLOAD_COLUMNS, UploadRow};
use super::{Db, DbError, ago, now, with_pool};
use crate::domain::{
    Derivative, ErrorCode, ImageMetadata, OwnerId, Upload, UploadId, UploadMethod, UploadState,
};

/// Fields of a new `pending` upload (inserted with its quota check by
/// [`super::owners::insert_pending_within_quota`]).
#[derive(Debug, Clone)]
pub struct NewUpload<'a> {
    /// Server-chosen id.
    pub id: UploadId,
    /// Authenticated owner.
    pub owner: &'a OwnerId,
    /// Client filename.
    pub filename: &'a str,
    /// Declared content type.
    pub content_type: &'a str,
    /// Declared size, in bytes.
    pub byte_size: i64,
    /// Upload method.
    pub method: UploadMethod,
    /// Temp key.
    pub temp_key: &'a str,
    /// End of the upload window.
    pub expires_at: DateTime<Utc>,
}

/// A failure as recorded on the row: the stable code, the client message and the internal
/// detail.
#[derive(Debug, Clone, Copy)]
pub struct RecordedError<'a> {
    /// Stable code.
    pub code: ErrorCode,
    /// What clients see.
    pub message: &'a str,
    /// What operators see.
    pub detail: &'a str,
}

fn into_upload(row: Option<UploadRow>) -> Result<Option<Upload>, DbError> {
    row.map(Upload::try_from).transpose()
}

/// `pending` → `uploaded`, *held* for its owner's admission window ([`super::admission`]).
/// Returns the updated row, or `None` when another call already moved it (so exactly one
/// caller admits it). Expiry is not checked here: S3 already refused any upload sent after the
/// URL or policy expired.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn mark_uploaded(
    db: &Db,
    owner: &OwnerId,
    id: UploadId,
) -> Result<Option<Upload>, DbError> {
    let sql = format!(
        "UPDATE uploads SET state = 'uploaded', held = true, completed_at = $3, \
         updated_at = $3 WHERE id = $1 AND owner = $2 AND state = 'pending' \
         AND deleted_at IS NULL RETURNING {UPLOAD_COLUMNS}"
    );
    into_upload(with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .bind(owner.as_str())
        .bind(now())
        .fetch_optional(p)
        .await)?)
}

/// `uploaded` → `pending` at job generation `generation`, when queueing the job after
/// `complete` failed, so the client's retry of `complete` queues it (the admission is undone:
/// the row is no longer held or waiting). Returns whether the row changed.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn revert_to_pending(db: &Db, id: UploadId, generation: i32) -> Result<bool, DbError> {
    let n = with_pool!(db, p => sqlx::query(
        "UPDATE uploads SET state = 'pending', held = false, completed_at = NULL, \
         updated_at = $3 WHERE id = $1 AND state = 'uploaded' AND job_generation = $2",
    )
    .bind(id.0)
    .bind(generation)
    .bind(now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Claims the upload for processing, incrementing `attempts`: `uploaded` → `processing`, or a
/// `processing` row whose claim is older than `lease` (its worker died; apalis re-delivered the
/// orphaned job); never a row held for its owner's admission window (a stale duplicate task
/// of it is acked without work), never a deleted row. The returned `attempts` is the claim's fencing token: later transitions of
/// this attempt only apply while the row still carries it. `None` when the row is in any other
/// state or another live attempt holds it (a duplicate delivery: ack without work).
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn claim(
    db: &Db,
    id: UploadId,
    lease: std::time::Duration,
) -> Result<Option<Upload>, DbError> {
    let sql = format!(
        "UPDATE uploads SET state = 'processing', attempts = attempts + 1, updated_at = $3 \
         WHERE id = $1 AND deleted_at IS NULL AND ((state = 'uploaded' AND NOT held) OR \
         (state = 'processing' AND updated_at < $2)) RETURNING {UPLOAD_COLUMNS}"
    );
    into_upload(with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .bind(ago(lease))
        .bind(now())
        .fetch_optional(p)
        .await)?)
}

/// Commits a processed upload in one transaction: `processing` → `ready` with the final key,
/// metadata and derivative rows (replacing any from an earlier attempt). Returns `None`, and
/// changes nothing, when the row is no longer `processing` under this `attempt` (see
/// [`claim`]), or is gone (purged); else `Some(deleted)`: whether its owner deleted it while it
/// was processing (it is committed all the same, and stays deleted).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure (the transaction is rolled back).
pub async fn commit_ready(
    db: &Db,
    id: UploadId,
    attempt: i32,
    final_key: &str,
    metadata: &ImageMetadata,
    derivatives: &[Derivative],
) -> Result<Option<bool>, DbError> {
    let deleted = with_pool!(db, p => {
        let mut tx = super::begin_write(p).await?;
        let updated: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            "UPDATE uploads SET state = 'ready', final_key = $2, metadata = $3, sha256 = $4, \
             error_code = NULL, error_message = NULL, error_detail = NULL, ready_at = $6, \
             updated_at = $6 WHERE id = $1 AND state = 'processing' AND attempts = $5 \
             RETURNING deleted_at",
        )
        .bind(id.0)
        .bind(final_key)
        .bind(Json(metadata))
        .bind(&metadata.sha256)
        .bind(attempt)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(deleted_at) = updated else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query("DELETE FROM derivatives WHERE upload_id = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        for d in derivatives {
            super::derivatives::insert_query(id, d).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        deleted_at.is_some()
    });
    Ok(Some(deleted))
}

/// `processing` (under `attempt`) → `failed` with the error; with `attempt = None`, from
/// `uploaded` (not held) or `processing` whatever the attempt. Returns whether the row changed.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn mark_failed(
    db: &Db,
    id: UploadId,
    attempt: Option<i32>,
    error: RecordedError<'_>,
) -> Result<bool, DbError> {
    let n = with_pool!(db, p => sqlx::query(
        "UPDATE uploads SET state = 'failed', error_code = $2, error_message = $3, \
         error_detail = $4, updated_at = $6 WHERE id = $1 \
         AND state IN ('uploaded', 'processing') AND NOT held \
         AND (CAST($5 AS INTEGER) IS NULL OR (state = 'processing' AND attempts = $5))",
    )
    .bind(id.0)
    .bind(error.code.as_str())
    .bind(error.message)
    .bind(error.detail)
    .bind(attempt)
    .bind(now())
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// `processing` (under `attempt`) → `uploaded` after a transient error, keeping the last error
/// so operators can see why it is retrying, and starting the next job generation. Returns the
/// new generation, or `None` when the row had moved on.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn release_for_retry(
    db: &Db,
    id: UploadId,
    attempt: i32,
    error: RecordedError<'_>,
) -> Result<Option<i32>, DbError> {
    Ok(with_pool!(db, p => sqlx::query_scalar(
        "UPDATE uploads SET state = 'uploaded', error_code = $2, error_message = $3, \
         error_detail = $4, updated_at = $6, job_generation = job_generation + 1 \
         WHERE id = $1 AND state = 'processing' AND attempts = $5 RETURNING job_generation",
    )
    .bind(id.0)
    .bind(error.code.as_str())
    .bind(error.message)
    .bind(error.detail)
    .bind(attempt)
    .bind(now())
    .fetch_optional(p)
    .await)?)
}

/// Replay: `failed` → `uploaded`, *held* for the owner's admission window, resetting
/// `attempts` and the error and counting the replay (the dead task is the current
/// generation's; admission starts the next). Returns the updated row, or `None` when it was
/// not `failed` (already replayed, or never failed) or is deleted, which makes replay
/// idempotent.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn mark_for_replay(db: &Db, id: UploadId) -> Result<Option<Upload>, DbError> {
    let sql = format!(
        "UPDATE uploads SET state = 'uploaded', held = true, attempts = 0, error_code = NULL, \
         error_message = NULL, error_detail = NULL, replays = replays + 1, updated_at = $2 \
         WHERE id = $1 AND state = 'failed' AND deleted_at IS NULL RETURNING {UPLOAD_COLUMNS}"
    );
    into_upload(with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .bind(now())
        .fetch_optional(p)
        .await)?)
}

/// Sweeper: starts the next job generation of an upload still in `state` at generation `seen`
/// (its task was found lost), leaving `updated_at` alone so a processing row's lease is not
/// extended. Returns the new generation, or `None` when the row moved on meanwhile.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn next_generation(
    db: &Db,
    id: UploadId,
    state: UploadState,
    seen: i32,
) -> Result<Option<i32>, DbError> {
    Ok(with_pool!(db, p => sqlx::query_scalar(
        "UPDATE uploads SET job_generation = job_generation + 1 \
         WHERE id = $1 AND state = $2 AND job_generation = $3 RETURNING job_generation",
    )
    .bind(id.0)
    .bind(state.as_str())
    .bind(seen)
    .fetch_optional(p)
    .await)?)
}

/// Records where the original now lives (set when a failed upload's original is preserved).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn set_final_key(db: &Db, id: UploadId, final_key: &str) -> Result<(), DbError> {
    with_pool!(db, p => sqlx::query("UPDATE uploads SET final_key = $2, updated_at = $3 WHERE id = $1")
        .bind(id.0)
        .bind(final_key)
        .bind(now())
        .execute(p)
        .await
        .map(|_| ()))?;
    Ok(())
}

/// Sweeper: `pending` rows more than `grace` past `expires_at` → `expired`. Returns the expired
/// uploads' `(id, temp_key)`.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn expire_pending(
    db: &Db,
    grace: std::time::Duration,
) -> Result<Vec<(UploadId, String)>, DbError> {
    let rows: Vec<(uuid::Uuid, String)> = with_pool!(db, p => sqlx::query_as(
        "UPDATE uploads SET state = 'expired', updated_at = $2 WHERE state = 'pending' \
         AND expires_at < $1 RETURNING id, temp_key",
    )
    .bind(ago(grace))
    .bind(now())
    .fetch_all(p)
    .await)?;
    Ok(rows
        .into_iter()
        .map(|(id, key)| (UploadId(id), key))
        .collect())
}
