//! The fair scheduler's admission window in the upload store: completed (or replayed) uploads
//! are first *held* (`uploads.held`, state `uploaded`, no task queued), and each owner's
//! oldest held uploads are *admitted* while fewer than `scheduling.max_waiting_per_owner` of
//! their jobs wait in the queue unclaimed (`owner_usage.waiting`, kept by the usage trigger).
//! Admission starts the row's next job generation, whose task the lifecycle then queues.
//!
//! Called only by the lifecycle module (`crate::lifecycle`).

use chrono::{DateTime, Utc};

use super::{Db, DbError, with_pool};
use crate::domain::{OwnerId, UploadId};

/// Admits up to `window − waiting` of `owner`'s held uploads, oldest hold first, each with its
/// next job generation. The owner's usage row is locked from the count to the update, so
/// concurrent admissions of one owner never pass the window together. Returns the admitted
/// uploads with their new generations, oldest completion first (empty when the window is full or nothing
/// is held).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure (the transaction is rolled back).
pub async fn admit(db: &Db, owner: &OwnerId, window: u32) -> Result<Vec<(UploadId, i32)>, DbError> {
    let lock = db.row_lock("FOR UPDATE");
    let mut admitted: Vec<(uuid::Uuid, i32, Option<DateTime<Utc>>)> = with_pool!(db, p => {
        let mut tx = super::begin_write(p).await?;
        let waiting: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT waiting FROM owner_usage WHERE owner = $1 {lock}"
        )))
        .bind(owner.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let free = i64::from(window) - waiting.unwrap_or(0);
        if free <= 0 {
            tx.rollback().await?;
            Vec::new()
        } else {
            // `updated_at` moves to the admission, so the sweeper's lost-task check gives the
            // push its usual grace (the rows are picked by hold time before it changes).
            let rows = sqlx::query_as(
                "UPDATE uploads SET held = false, job_generation = job_generation + 1, \
                 updated_at = $3 WHERE held AND id IN (SELECT id FROM uploads WHERE owner = $1 \
                 AND held ORDER BY updated_at, id LIMIT $2) \
                 RETURNING id, job_generation, completed_at",
            )
            .bind(owner.as_str())
            .bind(free)
            .bind(super::now())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            rows
        }
    });
    admitted.sort_by_key(|&(id, _, at)| (at, id));
    Ok(admitted
        .into_iter()
        .map(|(id, generation, _)| (UploadId(id), generation))
        .collect())
}

/// Whether `owner` has held uploads (one indexed probe; lets the hot path skip the locking
/// [`admit`] when nothing waits).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn has_held(db: &Db, owner: &OwnerId) -> Result<bool, DbError> {
    let row: Option<i32> = with_pool!(db, p => sqlx::query_scalar(
        "SELECT 1 FROM uploads WHERE owner = $1 AND held LIMIT 1",
    )
    .bind(owner.as_str())
    .fetch_optional(p)
    .await)?;
    Ok(row.is_some())
}

/// Owners with held uploads (for the sweeper, which admits for them in case a release was
/// lost), longest-waiting first, at most 10,000.
///
/// # Errors
/// [`DbError`] on database failure or a stored owner id that does not parse.
pub async fn owners_with_held(db: &Db) -> Result<Vec<OwnerId>, DbError> {
    let rows: Vec<String> = with_pool!(db, p => sqlx::query_scalar(
        "SELECT owner FROM uploads WHERE held GROUP BY owner ORDER BY min(updated_at) \
         LIMIT 10000",
    )
    .fetch_all(p)
    .await)?;
    rows.iter()
        .map(|o| OwnerId::parse(o).map_err(|e| DbError::CorruptRow(e.to_string())))
        .collect()
}

/// Held uploads of every owner (the `kiln_uploads_held` gauge).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn count_held(db: &Db) -> Result<i64, DbError> {
    Ok(
        with_pool!(db, p => sqlx::query_scalar("SELECT count(*) FROM uploads WHERE held")
        .fetch_one(p)
        .await)?,
    )
}
