//! Upload and derivative queries. Every state change is a conditional UPDATE
//! (`WHERE state = …`), so concurrent or duplicate callers cannot move a row backwards.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgPool, Postgres, Transaction};

use super::DbError;
use crate::domain::{
    Derivative, ErrorCode, ImageMetadata, OwnerId, Upload, UploadId, UploadMethod, UploadState,
};

const UPLOAD_COLUMNS: &str = "id, owner, state, filename, content_type, byte_size, method, \
     temp_key, final_key, metadata, error_code, error_message, attempts, expires_at, created_at, \
     updated_at, completed_at, ready_at, job_id, replays";

#[derive(sqlx::FromRow)]
struct UploadRow {
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
    attempts: i32,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    ready_at: Option<DateTime<Utc>>,
    job_id: Option<String>,
    replays: i32,
}

impl TryFrom<UploadRow> for Upload {
    type Error = DbError;
    fn try_from(r: UploadRow) -> Result<Self, DbError> {
        let error_code = match r.error_code {
            None => None,
            Some(code) => Some(
                serde_json::from_value::<ErrorCode>(serde_json::Value::String(code.clone()))
                    .map_err(|_| DbError::CorruptRow(format!("unknown error_code {code:?}")))?,
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
            attempts: r.attempts,
            expires_at: r.expires_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
            ready_at: r.ready_at,
            job_id: r.job_id,
            replays: r.replays,
        })
    }
}

/// Fields of a new `pending` upload.
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

/// Inserts a `pending` upload and returns it.
///
/// # Errors
/// [`DbError::Sqlx`] on any database failure (including a duplicate id or temp key).
pub async fn insert_pending(pool: &PgPool, new: &NewUpload<'_>) -> Result<Upload, DbError> {
    let sql = format!(
        "INSERT INTO uploads (id, owner, state, filename, content_type, byte_size, method, \
         temp_key, expires_at) VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8) \
         RETURNING {UPLOAD_COLUMNS}"
    );
    let row: UploadRow = sqlx::query_as(AssertSqlSafe(sql))
        .bind(new.id.0)
        .bind(new.owner.as_str())
        .bind(new.filename)
        .bind(new.content_type)
        .bind(new.byte_size)
        .bind(new.method.as_str())
        .bind(new.temp_key)
        .bind(new.expires_at)
        .fetch_one(pool)
        .await?;
    row.try_into()
}

/// The upload with `id`, whoever owns it.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn get(pool: &PgPool, id: UploadId) -> Result<Option<Upload>, DbError> {
    let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1");
    let row: Option<UploadRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    row.map(Upload::try_from).transpose()
}

/// The upload with `id` if `owner` owns it (so another owner's id looks like a missing one).
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn get_owned(
    pool: &PgPool,
    owner: &OwnerId,
    id: UploadId,
) -> Result<Option<Upload>, DbError> {
    let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND owner = $2");
    let row: Option<UploadRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .bind(owner.as_str())
        .fetch_optional(pool)
        .await?;
    row.map(Upload::try_from).transpose()
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

/// Up to `limit` of the owner's uploads, newest first, strictly after `cursor`.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn list_owned(
    pool: &PgPool,
    owner: &OwnerId,
    limit: i64,
    cursor: Option<Cursor>,
) -> Result<Vec<Upload>, DbError> {
    let sql = format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE owner = $1 \
         AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3)) \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    );
    let rows: Vec<UploadRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(owner.as_str())
        .bind(cursor.map(|c| c.created_at))
        .bind(cursor.map(|c| c.id.0))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// `pending` → `uploaded`. Returns the updated row, or `None` when another call already moved
/// it (so exactly one caller enqueues the job). Expiry is not checked here: S3 already refused
/// any upload sent after the URL or policy expired, and an object that is there was accepted.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn mark_uploaded(
    pool: &PgPool,
    owner: &OwnerId,
    id: UploadId,
) -> Result<Option<Upload>, DbError> {
    let sql = format!(
        "UPDATE uploads SET state = 'uploaded', completed_at = now(), updated_at = now() \
         WHERE id = $1 AND owner = $2 AND state = 'pending' RETURNING {UPLOAD_COLUMNS}"
    );
    let row: Option<UploadRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .bind(owner.as_str())
        .fetch_optional(pool)
        .await?;
    row.map(Upload::try_from).transpose()
}

/// Claims the upload for processing, incrementing `attempts`: `uploaded` → `processing`, or a
/// `processing` row whose claim is older than `lease` (its worker died; apalis re-delivered the
/// orphaned job). The returned `attempts` is the claim's fencing token: later transitions of
/// this attempt only apply while the row still carries it. `None` when the row is in any other
/// state or another live attempt holds it (a duplicate delivery: ack without work).
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn claim(
    pool: &PgPool,
    id: UploadId,
    lease: std::time::Duration,
) -> Result<Option<Upload>, DbError> {
    let sql = format!(
        "UPDATE uploads SET state = 'processing', attempts = attempts + 1, updated_at = now() \
         WHERE id = $1 AND (state = 'uploaded' OR (state = 'processing' AND \
         updated_at < now() - make_interval(secs => $2))) RETURNING {UPLOAD_COLUMNS}"
    );
    let row: Option<UploadRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .bind(lease.as_secs_f64())
        .fetch_optional(pool)
        .await?;
    row.map(Upload::try_from).transpose()
}

/// Commits a processed upload in one transaction: `processing` → `ready` with the final key,
/// metadata and derivative rows (replacing any from an earlier attempt). Returns `false`, and
/// changes nothing, when the row is no longer `processing` under this `attempt` (see
/// [`claim`]).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure (the transaction is rolled back).
pub async fn commit_ready(
    pool: &PgPool,
    id: UploadId,
    attempt: i32,
    final_key: &str,
    metadata: &ImageMetadata,
    derivatives: &[Derivative],
) -> Result<bool, DbError> {
    let mut tx: Transaction<'_, Postgres> = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE uploads SET state = 'ready', final_key = $2, metadata = $3, sha256 = $4, \
         error_code = NULL, error_message = NULL, ready_at = now(), updated_at = now() \
         WHERE id = $1 AND state = 'processing' AND attempts = $5",
    )
    .bind(id.0)
    .bind(final_key)
    .bind(Json(metadata))
    .bind(&metadata.sha256)
    .bind(attempt)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query("DELETE FROM derivatives WHERE upload_id = $1")
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
    for d in derivatives {
        sqlx::query(
            "INSERT INTO derivatives (upload_id, rendition, object_key, format, width, height, \
             byte_size, recipe_version, recipe_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// `processing` (under `attempt`) → `failed` with a code and message; with `attempt = None`,
/// from `uploaded` or `processing` whatever the attempt. Returns whether the row changed.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn mark_failed(
    pool: &PgPool,
    id: UploadId,
    attempt: Option<i32>,
    code: ErrorCode,
    message: &str,
) -> Result<bool, DbError> {
    let n = sqlx::query(
        "UPDATE uploads SET state = 'failed', error_code = $2, error_message = $3, \
         updated_at = now() WHERE id = $1 AND state IN ('uploaded', 'processing') \
         AND ($4::int IS NULL OR (state = 'processing' AND attempts = $4))",
    )
    .bind(id.0)
    .bind(code.as_str())
    .bind(message)
    .bind(attempt)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// `processing` (under `attempt`) → `uploaded` after a transient error, keeping the last
/// error so operators can see why it is retrying, and recording the retry's job id. Returns
/// whether the row changed.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn release_for_retry(
    pool: &PgPool,
    id: UploadId,
    attempt: i32,
    code: ErrorCode,
    message: &str,
) -> Result<bool, DbError> {
    let n = sqlx::query(
        "UPDATE uploads SET state = 'uploaded', error_code = $2, error_message = $3, \
         updated_at = now() WHERE id = $1 AND state = 'processing' AND attempts = $4",
    )
    .bind(id.0)
    .bind(code.as_str())
    .bind(message)
    .bind(attempt)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Records the apalis task id of the upload's latest job.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn set_job_id(pool: &PgPool, id: UploadId, job_id: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE uploads SET job_id = $2 WHERE id = $1")
        .bind(id.0)
        .bind(job_id)
        .execute(pool)
        .await?;
    Ok(())
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

/// Failed uploads matching `filter`, newest failure first.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn list_failed(pool: &PgPool, filter: &FailedFilter) -> Result<Vec<Upload>, DbError> {
    let sql = format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE state = 'failed' \
         AND ($1::text IS NULL OR error_code = $1) \
         AND ($2::timestamptz IS NULL OR updated_at >= $2) \
         AND ($3::text IS NULL OR owner = $3) \
         ORDER BY updated_at DESC, id DESC LIMIT $4"
    );
    let rows: Vec<UploadRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(filter.error_code.as_deref())
        .bind(filter.since)
        .bind(filter.owner.as_deref())
        .bind(filter.limit)
        .fetch_all(pool)
        .await?;
    rows.into_iter().map(Upload::try_from).collect()
}

/// Replay: `failed` → `uploaded`, resetting `attempts` and the error and counting the replay.
/// Returns the row as it was before (with its old `job_id`), or `None` when it was not
/// `failed` (already replayed, or never failed), which makes replay idempotent.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn mark_for_replay(pool: &PgPool, id: UploadId) -> Result<Option<Upload>, DbError> {
    let sql = format!(
        "UPDATE uploads u SET state = 'uploaded', attempts = 0, error_code = NULL, \
         error_message = NULL, replays = u.replays + 1, updated_at = now() \
         FROM (SELECT id, job_id AS old_job_id FROM uploads WHERE id = $1 FOR UPDATE) old \
         WHERE u.id = old.id AND u.state = 'failed' RETURNING {}",
        UPLOAD_COLUMNS
            .split(", ")
            .map(|c| if c == "job_id" {
                "old.old_job_id AS job_id".to_owned()
            } else {
                format!("u.{c}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let row: Option<UploadRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(pool)
        .await?;
    row.map(Upload::try_from).transpose()
}

/// The derivatives of an upload, ordered by rendition name.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn derivatives(pool: &PgPool, id: UploadId) -> Result<Vec<Derivative>, DbError> {
    type Row = (String, String, String, i32, i32, i64, i32, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT rendition, object_key, format, width, height, byte_size, recipe_version, \
         recipe_hash FROM derivatives WHERE upload_id = $1 ORDER BY rendition",
    )
    .bind(id.0)
    .fetch_all(pool)
    .await?;
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

/// `uploaded` → `pending`, when enqueueing the job after `complete` failed, so the client's
/// retry of `complete` enqueues it. Returns whether the row changed.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn revert_to_pending(pool: &PgPool, id: UploadId) -> Result<bool, DbError> {
    let n = sqlx::query(
        "UPDATE uploads SET state = 'pending', completed_at = NULL, updated_at = now() \
         WHERE id = $1 AND state = 'uploaded'",
    )
    .bind(id.0)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Records where the original now lives (set when a failed upload's original is preserved).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn set_final_key(pool: &PgPool, id: UploadId, final_key: &str) -> Result<(), DbError> {
    sqlx::query("UPDATE uploads SET final_key = $2, updated_at = now() WHERE id = $1")
        .bind(id.0)
        .bind(final_key)
        .execute(pool)
        .await?;
    Ok(())
}

/// Sweeper: `pending` rows more than `grace` past `expires_at` → `expired`. Returns the expired
/// uploads' `(id, temp_key)`.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn expire_pending(
    pool: &PgPool,
    grace: std::time::Duration,
) -> Result<Vec<(UploadId, String)>, DbError> {
    let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as(
        "UPDATE uploads SET state = 'expired', updated_at = now() WHERE state = 'pending' \
         AND expires_at < now() - make_interval(secs => $1) RETURNING id, temp_key",
    )
    .bind(grace.as_secs_f64())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, key)| (UploadId(id), key))
        .collect())
}

/// Sweeper: rows in `state` not updated for `older_than`, with their job id and last update.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn stale_in_state(
    pool: &PgPool,
    state: UploadState,
    older_than: std::time::Duration,
) -> Result<Vec<(UploadId, Option<String>, DateTime<Utc>)>, DbError> {
    let rows: Vec<(uuid::Uuid, Option<String>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, job_id, updated_at FROM uploads WHERE state = $1 \
         AND updated_at < now() - make_interval(secs => $2) ORDER BY updated_at LIMIT 10000",
    )
    .bind(state.as_str())
    .bind(older_than.as_secs_f64())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, job, at)| (UploadId(id), job, at))
        .collect())
}

/// Number of uploads in each state (states with none are absent).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn count_by_state(pool: &PgPool) -> Result<Vec<(String, i64)>, DbError> {
    Ok(
        sqlx::query_as("SELECT state, count(*) FROM uploads GROUP BY state")
            .fetch_all(pool)
            .await?,
    )
}
