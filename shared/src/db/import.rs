//! Copying rows between upload stores as they are (`kiln transfer`, standalone → fleet): a
//! keyset walk over every upload, and inserts that keep every column, ids and states included,
//! and skip rows the target already has. Not a state change: the lifecycle never calls it.

use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::uploads::{UPLOAD_COLUMNS, UploadRow};
use super::{Db, DbError, with_pool};
use crate::domain::{Derivative, Upload, UploadId};

/// Up to `limit` uploads in id order (UUIDv7: creation order), strictly after `after`, in any
/// state.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn uploads_after(
    db: &Db,
    after: Option<UploadId>,
    limit: i64,
) -> Result<Vec<Upload>, DbError> {
    let sql = format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE (CAST($1 AS UUID) IS NULL OR id > $1) \
         ORDER BY id LIMIT $2"
    );
    let rows: Vec<UploadRow> = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(after.map(|a| a.0))
        .bind(limit)
        .fetch_all(p)
        .await)?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// Inserts `u` with every column as it is, unless a row with its id exists; an `uploaded` row is
/// held for its owner's admission window (the sweeper admits it). Returns whether it inserted.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure (including another row with the same temp key).
pub async fn insert_upload(db: &Db, u: &Upload) -> Result<bool, DbError> {
    let n = with_pool!(db, p => sqlx::query(
        "INSERT INTO uploads (id, owner, state, filename, content_type, byte_size, method, \
         temp_key, final_key, sha256, metadata, error_code, error_message, error_detail, \
         attempts, expires_at, created_at, updated_at, completed_at, ready_at, job_generation, \
         replays, held, deleted_at, duplicate_of) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(u.id.0)
    .bind(u.owner.as_str())
    .bind(u.state.as_str())
    .bind(&u.filename)
    .bind(&u.content_type)
    .bind(u.byte_size)
    .bind(u.method.as_str())
    .bind(&u.temp_key)
    .bind(u.final_key.as_deref())
    .bind(u.metadata.as_ref().map(|m| m.sha256.clone()))
    .bind(u.metadata.as_ref().map(Json))
    .bind(u.error_code.map(|c| c.as_str()))
    .bind(u.error_message.as_deref())
    .bind(u.error_detail.as_deref())
    .bind(u.attempts)
    .bind(u.expires_at)
    .bind(u.created_at)
    .bind(u.updated_at)
    .bind(u.completed_at)
    .bind(u.ready_at)
    .bind(u.job_generation)
    .bind(u.replays)
    // An `uploaded` row has no task on the target: it waits for its owner's admission window
    // (unless it is deleted: a deleted row is never held).
    .bind(u.state == crate::domain::UploadState::Uploaded && u.deleted_at.is_none())
    .bind(u.deleted_at)
    .bind(u.duplicate_of.map(|d| d.0))
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Inserts the derivative rows of upload `id` the target lacks (matched by rendition name),
/// leaving existing ones as they are. Returns how many it inserted.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn insert_derivatives(
    db: &Db,
    id: UploadId,
    derivatives: &[Derivative],
) -> Result<u64, DbError> {
    let mut inserted = 0;
    for d in derivatives {
        inserted += with_pool!(db, p => sqlx::query(
            "INSERT INTO derivatives (upload_id, rendition, object_key, format, width, height, \
             byte_size, recipe_version, recipe_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (upload_id, rendition) DO NOTHING",
        )
        .bind(id.0)
        .bind(&d.rendition)
        .bind(&d.object_key)
        .bind(&d.format)
        .bind(i32::try_from(d.width).unwrap_or(i32::MAX))
        .bind(i32::try_from(d.height).unwrap_or(i32::MAX))
        .bind(i64::try_from(d.byte_size).unwrap_or(i64::MAX))
        .bind(i32::try_from(d.recipe_version).unwrap_or(i32::MAX))
        .bind(d.recipe_hash.as_deref())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?;
    }
    Ok(inserted)
}
