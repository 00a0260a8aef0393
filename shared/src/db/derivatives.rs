//! Derivative-row queries for re-rendering: the recipes stored with each ready upload's
//! derivatives (to find stale ones), and replacing some of an upload's derivative rows without
//! touching the upload row or its other derivatives.

use std::collections::HashMap;

use sqlx::{PgPool, Postgres, Transaction};

use super::DbError;
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

/// One page of `ready` uploads in id order (UUIDv7, so roughly oldest first), strictly after
/// `after`, at most `limit` of them, each with its stored recipes. Keyset pagination: pass the
/// last id of a page to get the next; an empty page is the end.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn ready_page(
    pool: &PgPool,
    after: Option<UploadId>,
    limit: i64,
) -> Result<Vec<ReadyUpload>, DbError> {
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM uploads WHERE state = 'ready' AND ($1::uuid IS NULL OR id > $1) \
         ORDER BY id LIMIT $2",
    )
    .bind(after.map(|a| a.0))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(uuid::Uuid, String, i32, Option<String>)> = sqlx::query_as(
        "SELECT upload_id, rendition, recipe_version, recipe_hash FROM derivatives \
         WHERE upload_id = ANY($1) ORDER BY upload_id, rendition",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut page: Vec<ReadyUpload> = ids
        .iter()
        .map(|&id| ReadyUpload {
            id: UploadId(id),
            derivatives: Vec::new(),
        })
        .collect();
    let index: HashMap<uuid::Uuid, usize> = ids.into_iter().zip(0..).collect();
    for (upload_id, rendition, version, hash) in rows {
        if let Some(&i) = index.get(&upload_id) {
            page[i].derivatives.push(StoredRecipe {
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
    pool: &PgPool,
    id: UploadId,
    derivatives: &[Derivative],
) -> Result<Option<Vec<String>>, DbError> {
    let mut tx: Transaction<'_, Postgres> = pool.begin().await?;
    // FOR SHARE holds the upload in `ready` until the commit without writing to it.
    let ready: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM uploads WHERE id = $1 AND state = 'ready' FOR SHARE")
            .bind(id.0)
            .fetch_optional(&mut *tx)
            .await?;
    if ready.is_none() {
        tx.rollback().await?;
        return Ok(None);
    }
    let names: Vec<&str> = derivatives.iter().map(|d| d.rendition.as_str()).collect();
    let old: Vec<(String, String)> = sqlx::query_as(
        "SELECT rendition, object_key FROM derivatives WHERE upload_id = $1 \
         AND rendition = ANY($2) FOR UPDATE",
    )
    .bind(id.0)
    .bind(&names)
    .fetch_all(&mut *tx)
    .await?;
    for d in derivatives {
        insert(&mut tx, id, d).await?;
    }
    tx.commit().await?;
    let orphaned = old
        .into_iter()
        .map(|(_, key)| key)
        .filter(|key| !derivatives.iter().any(|d| &d.object_key == key))
        .collect();
    Ok(Some(orphaned))
}

/// Inserts derivative row `d` of upload `id`, or updates the row of the same rendition (key,
/// format, size, byte size, recipe version and hash), inside the caller's transaction.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub(super) async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    id: UploadId,
    d: &Derivative,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO derivatives (upload_id, rendition, object_key, format, width, height, \
         byte_size, recipe_version, recipe_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (upload_id, rendition) DO UPDATE SET object_key = EXCLUDED.object_key, \
         format = EXCLUDED.format, width = EXCLUDED.width, height = EXCLUDED.height, \
         byte_size = EXCLUDED.byte_size, recipe_version = EXCLUDED.recipe_version, \
         recipe_hash = EXCLUDED.recipe_hash",
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
    .execute(&mut **tx)
    .await?;
    Ok(())
}
