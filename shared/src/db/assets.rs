//! The asset lifecycle's rows: soft delete and restore (`deleted_at`), purge (the row, its
//! derivative rows and share links, and which of its object keys no other row points at), the
//! sweeper's purge scan, and the dedup commit (a `ready` duplicate that shares an earlier
//! upload's objects).
//!
//! Called only by the lifecycle module (`crate::lifecycle::assets`), which pairs each change
//! with its storage work.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::owners::{Limits, QuotaOverride, Usage};
use super::uploads::{UPLOAD_COLUMNS, UploadRow};
use super::{Db, DbError, now, with_pool};
use crate::config::QuotaSettings;
use crate::domain::{OwnerId, Upload, UploadId, UploadState};
use crate::wire::QuotaDetail;

/// Whether any row points at object key `$1` (as an upload's final key or a derivative's key).
const REFERENCED: &str = "SELECT 1 FROM uploads WHERE final_key = $1 UNION ALL \
                          SELECT 1 FROM derivatives WHERE object_key = $1 LIMIT 1";

fn into_upload(row: Option<UploadRow>) -> Result<Option<Upload>, DbError> {
    row.map(Upload::try_from).transpose()
}

/// Soft-deletes the owner's upload: stamps `deleted_at` (and drops a held row out of the
/// admission window), leaving its state as it is. Returns the updated row, or `None` when there
/// is no such upload for the owner or it is already deleted.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn soft_delete(
    db: &Db,
    owner: &OwnerId,
    id: UploadId,
) -> Result<Option<Upload>, DbError> {
    let sql = format!(
        "UPDATE uploads SET deleted_at = $3, held = false, updated_at = $3 \
         WHERE id = $1 AND owner = $2 AND deleted_at IS NULL RETURNING {UPLOAD_COLUMNS}"
    );
    into_upload(with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(id.0)
        .bind(owner.as_str())
        .bind(now())
        .fetch_optional(p)
        .await)?)
}

/// What [`restore`] did.
#[derive(Debug)]
pub enum Restore {
    /// The upload is back, in the state it was deleted from (an `uploaded` row held again for
    /// admission).
    Restored(Box<Upload>),
    /// It was deleted at or before the retention cutoff.
    NotRestorable,
    /// It is not deleted (restored already): nothing changed.
    NotDeleted(Box<Upload>),
    /// Restoring would pass the owner's quota; nothing changed.
    Quota(QuotaDetail),
}

/// Restores the owner's upload deleted after `cutoff`, if it keeps the owner within their quota
/// (checked against `owner_usage` locked as in
/// [`super::owners::insert_pending_within_quota`]). Returns [`Restore`]; `None` when there is no
/// such upload for the owner.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn restore(
    db: &Db,
    owner: &OwnerId,
    id: UploadId,
    cutoff: DateTime<Utc>,
    defaults: &QuotaSettings,
) -> Result<Option<Restore>, DbError> {
    let lock = db.row_lock("FOR UPDATE");
    let select = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND owner = $2");
    let update = format!(
        "UPDATE uploads SET deleted_at = NULL, held = (state = 'uploaded'), updated_at = $3 \
         WHERE id = $1 AND owner = $2 AND deleted_at IS NOT NULL RETURNING {UPLOAD_COLUMNS}"
    );
    let usage_sql =
        format!("SELECT bytes, uploads, pending, waiting FROM owner_usage WHERE owner = $1 {lock}");
    let o = owner.as_str();
    let outcome: Option<Result<UploadRow, Restore>> = with_pool!(db, p => {
        let mut tx = super::begin_write(p).await?;
        sqlx::query("INSERT INTO owner_usage (owner) VALUES ($1) ON CONFLICT (owner) DO NOTHING")
            .bind(o)
            .execute(&mut *tx)
            .await?;
        let used: Option<(i64, i64, i64, i64)> = sqlx::query_as(AssertSqlSafe(usage_sql))
            .bind(o)
            .fetch_optional(&mut *tx)
            .await?;
        let limits: Option<(Option<i64>, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT max_bytes, max_uploads, max_pending FROM owners WHERE owner = $1",
        )
        .bind(o)
        .fetch_optional(&mut *tx)
        .await?;
        let row: Option<UploadRow> = sqlx::query_as(AssertSqlSafe(select))
            .bind(id.0)
            .bind(o)
            .fetch_optional(&mut *tx)
            .await?;
        let outcome = match row.map(Upload::try_from).transpose()? {
            None => None,
            Some(u) if u.deleted_at.is_none() => Some(Err(Restore::NotDeleted(Box::new(u)))),
            Some(u) if u.deleted_at.is_some_and(|at| at <= cutoff) => {
                Some(Err(Restore::NotRestorable))
            }
            Some(u) => match refusal(&u, used, limits, defaults) {
                Some(q) => Some(Err(Restore::Quota(q))),
                None => {
                    let row: Option<UploadRow> = sqlx::query_as(AssertSqlSafe(update))
                        .bind(id.0)
                        .bind(o)
                        .bind(now())
                        .fetch_optional(&mut *tx)
                        .await?;
                    // None: purged since it was read.
                    row.map(Ok)
                }
            },
        };
        tx.commit().await?;
        outcome
    });
    Ok(match outcome {
        None => None,
        Some(Ok(row)) => Some(Restore::Restored(Box::new(Upload::try_from(row)?))),
        Some(Err(r)) => Some(r),
    })
}

/// The quota a restore of `u` would pass, if any: a live upload counts against uploads and
/// bytes, a pending one against pending uploads too; a failed or expired one against nothing.
fn refusal(
    u: &Upload,
    used: Option<(i64, i64, i64, i64)>,
    limits: Option<(Option<i64>, Option<i64>, Option<i64>)>,
    defaults: &QuotaSettings,
) -> Option<QuotaDetail> {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let (bytes, uploads, pending, waiting) = used.unwrap_or_default();
    let usage = Usage {
        bytes: n(bytes),
        uploads: n(uploads),
        pending: n(pending),
        waiting: n(waiting),
    };
    let (b, up, pe) = limits.unwrap_or_default();
    let limits: Limits = QuotaOverride {
        max_bytes: b.map(n),
        max_uploads: up.map(n),
        max_pending: pe.map(n),
    }
    .apply(defaults);
    match u.state {
        UploadState::Failed | UploadState::Expired | UploadState::Deleted => None,
        UploadState::Pending => limits.refusal(&usage, n(u.byte_size)),
        UploadState::Uploaded | UploadState::Processing | UploadState::Ready => {
            // Not pending: only the uploads and bytes limits apply.
            let unlimited_pending = Limits {
                max_pending: u64::MAX,
                ..limits
            };
            unlimited_pending.refusal(&usage, n(u.byte_size))
        }
    }
}

/// What [`purge_row`] removed.
#[derive(Debug, Clone)]
pub struct Purged {
    /// The row as it was.
    pub upload: Upload,
    /// Its object keys (temp key, final key, derivative keys) that no remaining row points at:
    /// the caller deletes these objects.
    pub unreferenced: Vec<String>,
}

/// Deletes upload `id`'s row with its derivative rows and share links, in one transaction, and
/// returns which of its object keys no other row points at (a dedup sibling keeps shared
/// objects alive). With `due` (the deleted and failed cutoffs of [`due_for_purge`]), only while
/// the row is still due (a replay or restore since the scan keeps it). `None` when the row is
/// gone or no longer due.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn purge_row(
    db: &Db,
    id: UploadId,
    due: Option<(DateTime<Utc>, DateTime<Utc>)>,
) -> Result<Option<Purged>, DbError> {
    let select = format!(
        "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1 AND (CAST($2 AS TIMESTAMPTZ) IS NULL \
         OR (deleted_at IS NOT NULL AND deleted_at <= $2) \
         OR (deleted_at IS NULL AND state IN ('failed', 'expired') AND updated_at <= $3)) {}",
        db.row_lock("FOR UPDATE")
    );
    let purged: Option<Purged> = with_pool!(db, p => {
        let mut tx = super::begin_write(p).await?;
        let row: Option<UploadRow> = sqlx::query_as(AssertSqlSafe(select))
            .bind(id.0)
            .bind(due.map(|d| d.0))
            .bind(due.map(|d| d.1))
            .fetch_optional(&mut *tx)
            .await?;
        match row.map(Upload::try_from).transpose()? {
            None => {
                tx.rollback().await?;
                None
            }
            Some(upload) => {
                let mut keys: Vec<String> =
                    sqlx::query_scalar("SELECT object_key FROM derivatives WHERE upload_id = $1")
                        .bind(id.0)
                        .fetch_all(&mut *tx)
                        .await?;
                for q in [
                    "DELETE FROM shares WHERE upload_id = $1",
                    "DELETE FROM derivatives WHERE upload_id = $1",
                    "DELETE FROM uploads WHERE id = $1",
                ] {
                    sqlx::query(q).bind(id.0).execute(&mut *tx).await?;
                }
                keys.push(upload.temp_key.clone());
                keys.extend(upload.final_key.clone());
                let mut unreferenced = Vec::new();
                for key in keys {
                    let used: Option<i32> = sqlx::query_scalar(REFERENCED)
                    .bind(&key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if used.is_none() && !unreferenced.contains(&key) {
                        unreferenced.push(key);
                    }
                }
                tx.commit().await?;
                Some(Purged {
                    upload,
                    unreferenced,
                })
            }
        }
    });
    Ok(purged)
}

/// Which of `keys` a row other than `except` points at while not deleted (as its final key or
/// a derivative's key): objects a delete must leave in place for a dedup sibling.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn live_references(
    db: &Db,
    keys: &[String],
    except: UploadId,
) -> Result<BTreeSet<String>, DbError> {
    let mut used = BTreeSet::new();
    for key in keys {
        let hit: Option<i32> = with_pool!(db, p => sqlx::query_scalar(
            "SELECT 1 FROM uploads WHERE final_key = $1 AND id <> $2 AND deleted_at IS NULL \
             UNION ALL SELECT 1 FROM derivatives d JOIN uploads u ON u.id = d.upload_id \
             WHERE d.object_key = $1 AND u.id <> $2 AND u.deleted_at IS NULL LIMIT 1",
        )
        .bind(key)
        .bind(except.0)
        .fetch_optional(p)
        .await)?;
        if hit.is_some() {
            used.insert(key.clone());
        }
    }
    Ok(used)
}

/// Which of `keys` any row points at (as its final key or a derivative's key).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn any_references(db: &Db, keys: &[String]) -> Result<BTreeSet<String>, DbError> {
    let mut used = BTreeSet::new();
    for key in keys {
        let hit: Option<i32> = with_pool!(db, p => sqlx::query_scalar(REFERENCED)
        .bind(key)
        .fetch_optional(p)
        .await)?;
        if hit.is_some() {
            used.insert(key.clone());
        }
    }
    Ok(used)
}

/// Sweeper: up to `limit` uploads due for purge: deleted at or before `deleted_cutoff`, or
/// `failed` or `expired` (and not deleted) with no change since `failed_cutoff`; oldest first.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn due_for_purge(
    db: &Db,
    deleted_cutoff: DateTime<Utc>,
    failed_cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<UploadId>, DbError> {
    let ids: Vec<uuid::Uuid> = with_pool!(db, p => sqlx::query_scalar(
        "SELECT id FROM uploads WHERE (deleted_at IS NOT NULL AND deleted_at <= $1) \
         OR (deleted_at IS NULL AND state IN ('failed', 'expired') AND updated_at <= $2) \
         ORDER BY updated_at LIMIT $3",
    )
    .bind(deleted_cutoff)
    .bind(failed_cutoff)
    .bind(limit)
    .fetch_all(p)
    .await)?;
    Ok(ids.into_iter().map(UploadId).collect())
}

/// The dedup commit: when `owner` has a `ready`, not deleted upload other than `id` with
/// SHA-256 `sha256` and the same declared `content_type` (so the declared type was checked
/// against these very bytes once), commits `id` (`processing` under `attempt`) `ready` as its duplicate, in one
/// transaction: the same final key, metadata and derivative rows (so both rows point at the same
/// objects), `duplicate_of` set. Returns `Some((source, deleted))`, or `None`, changing nothing,
/// when there is no such upload or the row is no longer this attempt's. On Postgres the source
/// row is held `FOR SHARE` until the commit, so a concurrent purge of it waits and then sees
/// the new references.
///
/// # Errors
/// [`DbError`] on database failure.
pub async fn commit_duplicate(
    db: &Db,
    owner: &OwnerId,
    id: UploadId,
    attempt: i32,
    sha256: &str,
    content_type: &str,
) -> Result<Option<(UploadId, bool)>, DbError> {
    let find = format!(
        "SELECT id FROM uploads WHERE owner = $1 AND sha256 = $2 AND state = 'ready' \
         AND deleted_at IS NULL AND id <> $3 AND final_key IS NOT NULL AND content_type = $4 \
         ORDER BY ready_at, id LIMIT 1 {}",
        db.row_lock("FOR SHARE")
    );
    let done: Option<(uuid::Uuid, bool)> = with_pool!(db, p => {
        let mut tx = super::begin_write(p).await?;
        let source: Option<uuid::Uuid> = sqlx::query_scalar(AssertSqlSafe(find))
            .bind(owner.as_str())
            .bind(sha256)
            .bind(id.0)
            .bind(content_type)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(source) = source else {
            tx.rollback().await?;
            return Ok(None);
        };
        let updated: Option<Option<DateTime<Utc>>> = sqlx::query_scalar(
            "UPDATE uploads SET state = 'ready', \
             final_key = (SELECT final_key FROM uploads WHERE id = $2), \
             metadata = (SELECT metadata FROM uploads WHERE id = $2), \
             sha256 = $3, duplicate_of = $2, error_code = NULL, error_message = NULL, \
             error_detail = NULL, ready_at = $5, updated_at = $5 \
             WHERE id = $1 AND state = 'processing' AND attempts = $4 RETURNING deleted_at",
        )
        .bind(id.0)
        .bind(source)
        .bind(sha256)
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
        sqlx::query(
            "INSERT INTO derivatives (upload_id, rendition, object_key, format, width, height, \
             byte_size, recipe_version, recipe_hash, created_at) \
             SELECT $1, rendition, object_key, format, width, height, byte_size, \
             recipe_version, recipe_hash, $3 FROM derivatives WHERE upload_id = $2",
        )
        .bind(id.0)
        .bind(source)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Some((source, deleted_at.is_some()))
    });
    Ok(done.map(|(source, deleted)| (UploadId(source), deleted)))
}
