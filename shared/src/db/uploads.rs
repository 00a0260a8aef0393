//! Upload and derivative reads, and the row type they share with [`super::transitions`] (the
//! writes). Only the lifecycle module (`crate::lifecycle`) writes.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;
use sqlx::types::Json;

use super::{Db, DbError, ago, with_pool};
use crate::domain::{
    Derivative, ErrorCode, ImageMetadata, OwnerId, Upload, UploadId, UploadMethod, UploadState,
};

/// The columns [`UploadRow`] reads, in order.
pub(super) const UPLOAD_COLUMNS: &str = "id, owner, state, filename, content_type, byte_size, \
     method, temp_key, final_key, metadata, error_code, error_message, error_detail, attempts, \
     expires_at, created_at, updated_at, completed_at, ready_at, job_generation, replays, \
     deleted_at, duplicate_of";

/// One `uploads` row as stored; [`Upload`] is its validated form.
#[derive(sqlx::FromRow)]
pub(super) struct UploadRow {
    id: uuid::Uuid,
    owner: String,
    state: String,
    filename: String,
    content_type: String,
    byte_size: i64,
    method: String,
    temp_key: String,
    final_key: Option<String>,
    metadata: Option<Json<ImageMetadata>>,
    error_code: Option<String>,
    error_message: Option<String>,
    error_detail: Option<String>,
    attempts: i32,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    ready_at: Option<DateTime<Utc>>,
    job_generation: i32,
    replays: i32,
    deleted_at: Option<DateTime<Utc>>,
    duplicate_of: Option<uuid::Uuid>,
}

impl TryFrom<UploadRow> for Upload {
    type Error = DbError;
    fn try_from(r: UploadRow) -> Result<Self, DbError> {
        let error_code = match r.error_code {
            None => None,
            Some(code) => Some(
                ErrorCode::parse(&code)
                    .ok_or_else(|| DbError::CorruptRow(format!("unknown error_code {code:?}")))?,
            ),
        };
        Ok(Upload {
            id: UploadId(r.id),
            owner: OwnerId::parse(&r.owner).map_err(|e| DbError::CorruptRow(e.to_string()))?,
            state: UploadState::try_from(r.state).map_err(DbError::CorruptRow)?,
            filename: r.filename,
            content_type: r.content_type,
            byte_size: r.byte_size,
            method: UploadMethod::try_from(r.method).map_err(DbError::CorruptRow)?,
            temp_key: r.temp_key,
            final_key: r.final_key,
            metadata: r.metadata.map(|m| m.0),
            error_code,
            error_message: r.error_message,
            error_detail: r.error_detail,
            attempts: r.attempts,
            expires_at: r.expires_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
            ready_at: r.ready_at,
            job_generation: r.job_generation,
            replays: r.replays,
            deleted_at: r.deleted_at,
            duplicate_of: r.duplicate_of.map(UploadId),
        })
    }
}

/// The upload with `id`, whoever owns it.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn get(db: &Db, id: UploadId) -> Result<Option<Upload>, DbError> {
    let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1");
    let row: Option<UploadRow> = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(p)
        .await)?;
    row.map(Upload::try_from).transpose()
}

/// The upload with `id` if `owner` owns it (so another owner's id looks like a missing one).
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn get_owned(db: &Db, owner: &OwnerId, id: UploadId) -> Result<Option<Upload>, DbError> {
    let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND owner = $2");
    let row: Option<UploadRow> = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .bind(owner.as_str())
        .fetch_optional(p)
        .await)?;
    row.map(Upload::try_from).transpose()
}

/// The uploads with ids in `ids` that exist, in no particular order (one query).
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn get_many(db: &Db, ids: &[UploadId]) -> Result<Vec<Upload>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let head = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id IN (");
    let rows: Vec<UploadRow> = with_pool!(db, p => {
        let mut q = sqlx::QueryBuilder::new(head);
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id.0);
        }
        q.push(")");
        q.build_query_as().fetch_all(p).await
    })?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// Keyset cursor for [`list_owned`]: the `(created_at, id)` of the last row of the previous
/// page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// `created_at` of the last row seen.
    pub created_at: DateTime<Utc>,
    /// `id` of the last row seen (tie-breaker).
    pub id: UploadId,
}

/// Up to `limit` of the owner's uploads that are not deleted, newest first, strictly after
/// `cursor`.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn list_owned(
    db: &Db,
    owner: &OwnerId,
    limit: i64,
    cursor: Option<Cursor>,
) -> Result<Vec<Upload>, DbError> {
    let sql = format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE owner = $1 AND deleted_at IS NULL \
         AND (CAST($2 AS TIMESTAMPTZ) IS NULL OR (created_at, id) < ($2, $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    );
    let rows: Vec<UploadRow> = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(owner.as_str())
        .bind(cursor.map(|c| c.created_at))
        .bind(cursor.map(|c| c.id.0))
        .bind(limit)
        .fetch_all(p)
        .await)?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// Filter over failed uploads (dead jobs).
#[derive(Debug, Clone, Default)]
pub struct FailedFilter {
    /// Only this error code.
    pub error_code: Option<String>,
    /// Only failures at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only this owner's uploads.
    pub owner: Option<String>,
    /// At most this many, newest first.
    pub limit: i64,
}

/// Failed uploads matching `filter` (not deleted), newest failure first.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn list_failed(db: &Db, filter: &FailedFilter) -> Result<Vec<Upload>, DbError> {
    let sql = format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE state = 'failed' AND deleted_at IS NULL \
         AND (CAST($1 AS TEXT) IS NULL OR error_code = $1) \
         AND (CAST($2 AS TIMESTAMPTZ) IS NULL OR updated_at >= $2) \
         AND (CAST($3 AS TEXT) IS NULL OR owner = $3) \
         ORDER BY updated_at DESC, id DESC LIMIT $4"
    );
    let rows: Vec<UploadRow> = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(filter.error_code.as_deref())
        .bind(filter.since)
        .bind(filter.owner.as_deref())
        .bind(filter.limit)
        .fetch_all(p)
        .await)?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// The derivatives of an upload, ordered by rendition name.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn derivatives(db: &Db, id: UploadId) -> Result<Vec<Derivative>, DbError> {
    type Row = (String, String, String, i32, i32, i64, i32, Option<String>);
    let rows: Vec<Row> = with_pool!(db, p => sqlx::query_as(
        "SELECT rendition, object_key, format, width, height, byte_size, recipe_version, \
         recipe_hash FROM derivatives WHERE upload_id = $1 ORDER BY rendition",
    )
    .bind(id.0)
    .fetch_all(p)
    .await)?;
    Ok(rows
        .into_iter()
        .map(
            |(rendition, object_key, format, w, h, bytes, version, hash)| Derivative {
                rendition,
                object_key,
                format,
                width: w.max(0) as u32,
                height: h.max(0) as u32,
                byte_size: bytes.max(0) as u64,
                recipe_version: version.max(0) as u32,
                recipe_hash: hash,
            },
        )
        .collect())
}

/// Sweeper: rows in `state` not updated for `older_than`, not held for admission (a held
/// row has no task to lose) and not deleted (a deleted row is not processed), with their job generation and last update, oldest first (at most
/// 10,000).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn stale_in_state(
    db: &Db,
    state: UploadState,
    older_than: std::time::Duration,
) -> Result<Vec<(UploadId, i32, DateTime<Utc>)>, DbError> {
    let rows: Vec<(uuid::Uuid, i32, DateTime<Utc>)> = with_pool!(db, p => sqlx::query_as(
        "SELECT id, job_generation, updated_at FROM uploads WHERE state = $1 \
         AND NOT held AND deleted_at IS NULL AND updated_at < $2 ORDER BY updated_at LIMIT 10000",
    )
    .bind(state.as_str())
    .bind(ago(older_than))
    .fetch_all(p)
    .await)?;
    Ok(rows
        .into_iter()
        .map(|(id, job, at)| (UploadId(id), job, at))
        .collect())
}

/// Number of uploads in each state (states with none are absent).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn count_by_state(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    Ok(
        with_pool!(db, p => sqlx::query_as("SELECT state, count(*) FROM uploads GROUP BY state")
        .fetch_all(p)
        .await)?,
    )
}
