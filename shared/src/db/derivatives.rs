//! Derivative-row queries for re-rendering: the recipes stored with each ready upload's
//! derivatives (to find stale ones), and replacing some of an upload's derivative rows without
//! touching the upload row or its other derivatives.

use sqlx::AssertSqlSafe;

use super::{Db, DbError, with_pool};
use crate::domain::{Derivative, UploadId};

/// The recipe one stored derivative was rendered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecipe {
    /// Rendition name.
    pub rendition: String,
    /// `derivatives.recipe_version`.
    pub recipe_version: u32,
    /// `derivatives.recipe_hash` (`None` for rows from before fingerprints were stored).
    pub recipe_hash: Option<String>,
}

/// A ready upload with the recipes of its stored derivatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyUpload {
    /// The upload.
    pub id: UploadId,
    /// Its derivatives, ordered by rendition name.
    pub derivatives: Vec<StoredRecipe>,
}

/// One page of `ready`, not deleted uploads in id order (UUIDv7, so roughly oldest first), strictly after
/// `after`, at most `limit` of them, each with its stored recipes. Keyset pagination: pass the
/// last id of a page to get the next; an empty page is the end. One statement (the page of ids
/// left-joined to their derivatives), so the page and its recipes are one snapshot.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn ready_page(
    db: &Db,
    after: Option<UploadId>,
    limit: i64,
) -> Result<Vec<ReadyUpload>, DbError> {
    type Row = (uuid::Uuid, Option<String>, Option<i32>, Option<String>);
    let rows: Vec<Row> = with_pool!(db, p => sqlx::query_as(
        "SELECT u.id, d.rendition, d.recipe_version, d.recipe_hash FROM \
         (SELECT id FROM uploads WHERE state = 'ready' AND deleted_at IS NULL \
          AND (CAST($1 AS UUID) IS NULL OR id > $1) \
          ORDER BY id LIMIT $2) u \
         LEFT JOIN derivatives d ON d.upload_id = u.id ORDER BY u.id, d.rendition",
    )
    .bind(after.map(|a| a.0))
    .bind(limit)
    .fetch_all(p)
    .await)?;
    let mut page: Vec<ReadyUpload> = Vec::new();
    for (id, rendition, version, hash) in rows {
        if page.last().is_none_or(|last| last.id.0 != id) {
            page.push(ReadyUpload {
                id: UploadId(id),
                derivatives: Vec::new(),
            });
        }
        if let (Some(rendition), Some(version), Some(last)) = (rendition, version, page.last_mut())
        {
            last.derivatives.push(StoredRecipe {
                rendition,
                recipe_version: version.max(0) as u32,
                recipe_hash: hash,
            });
        }
    }
    Ok(page)
}

/// Replaces the rows of `derivatives` (matched by rendition name) of upload `id`, in one
/// transaction and only while the upload is `ready`: inserts missing ones and updates the key,
/// format, size, byte size, recipe version and hash of existing ones. The upload row (state,
/// metadata, `updated_at`) and the upload's other derivatives are not touched.
///
/// Returns `None`, changing nothing, when the upload is not `ready` (or is gone). Otherwise
/// returns the object keys the replaced rows pointed at that no row points at any more (a
/// recipe whose format changed moves `preview.webp` to `preview.jpg`), for the caller to delete.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure (the transaction is rolled back).
pub async fn replace(
    db: &Db,
    id: UploadId,
    derivatives: &[Derivative],
) -> Result<Option<Vec<String>>, DbError> {
    // On Postgres, FOR SHARE holds the upload in `ready` until the commit without writing to
    // it and FOR UPDATE locks the rows being replaced; SQLite's write transaction holds all.
    let ready_sql = format!(
        "SELECT 1 FROM uploads WHERE id = $1 AND state = 'ready' AND deleted_at IS NULL {}",
        db.row_lock("FOR SHARE")
    );
    let old_sql = format!(
        "SELECT rendition, object_key FROM derivatives WHERE upload_id = $1 {}",
        db.row_lock("FOR UPDATE")
    );
    let old: Vec<(String, String)> = with_pool!(db, p => {
        let mut tx = super::begin_write(p).await?;
        let ready: Option<i32> = sqlx::query_scalar(AssertSqlSafe(ready_sql))
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
        if ready.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        let old: Vec<(String, String)> = sqlx::query_as(AssertSqlSafe(old_sql))
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await?;
        for d in derivatives {
            insert_query(id, d).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        old
    });
    let orphaned = old
        .into_iter()
        .filter(|(rendition, _)| derivatives.iter().any(|d| &d.rendition == rendition))
        .map(|(_, key)| key)
        .filter(|key| !derivatives.iter().any(|d| &d.object_key == key))
        .collect();
    Ok(Some(orphaned))
}

/// The statement that inserts derivative row `d` of upload `id`, or updates the row of the same
/// rendition (key, format, size, byte size, recipe version and hash), for either engine; the
/// caller runs it inside its transaction.
pub(super) fn insert_query<'q, DB>(
    id: UploadId,
    d: &'q Derivative,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    DB: sqlx::Database,
    uuid::Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i32: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO derivatives (upload_id, rendition, object_key, format, width, height, \
         byte_size, recipe_version, recipe_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (upload_id, rendition) DO UPDATE SET object_key = EXCLUDED.object_key, \
         format = EXCLUDED.format, width = EXCLUDED.width, height = EXCLUDED.height, \
         byte_size = EXCLUDED.byte_size, recipe_version = EXCLUDED.recipe_version, \
         recipe_hash = EXCLUDED.recipe_hash",
    )
    .bind(id.0)
    .bind(d.rendition.as_str())
    .bind(d.object_key.as_str())
    .bind(d.format.as_str())
    .bind(i32::try_from(d.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(d.height).unwrap_or(i32::MAX))
    .bind(i64::try_from(d.byte_size).unwrap_or(i64::MAX))
    .bind(i32::try_from(d.recipe_version).unwrap_or(i32::MAX))
    .bind(d.recipe_hash.as_deref())
}
