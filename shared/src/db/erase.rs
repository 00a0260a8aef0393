//! The rows `kiln owners erase` removes besides uploads: API keys, share links, the quota
//! override and the usage counters of one owner. Each call deletes what is left, so an
//! interrupted erase resumes by running again.

use super::{Db, DbError, with_pool};
use crate::domain::{OwnerId, UploadId};

async fn delete_where_owner(db: &Db, sql: &'static str, owner: &OwnerId) -> Result<u64, DbError> {
    Ok(with_pool!(db, p => sqlx::query(sql)
        .bind(owner.as_str())
        .execute(p)
        .await
        .map(|r| r.rows_affected()))?)
}

/// Deletes the owner's API keys; returns how many.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn delete_api_keys(db: &Db, owner: &OwnerId) -> Result<u64, DbError> {
    delete_where_owner(db, "DELETE FROM api_keys WHERE owner = $1", owner).await
}

/// Deletes the owner's share links; returns how many.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn delete_shares(db: &Db, owner: &OwnerId) -> Result<u64, DbError> {
    delete_where_owner(db, "DELETE FROM shares WHERE owner = $1", owner).await
}

/// Deletes the owner's quota override and usage counters (run after their uploads are gone,
/// since deleting an upload row updates the counters); returns how many rows.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn delete_owner_rows(db: &Db, owner: &OwnerId) -> Result<u64, DbError> {
    let overrides = delete_where_owner(db, "DELETE FROM owners WHERE owner = $1", owner).await?;
    let usage = delete_where_owner(db, "DELETE FROM owner_usage WHERE owner = $1", owner).await?;
    Ok(overrides + usage)
}

/// Up to `limit` ids of the owner's uploads, in id order.
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn upload_ids(db: &Db, owner: &OwnerId, limit: i64) -> Result<Vec<UploadId>, DbError> {
    let ids: Vec<uuid::Uuid> = with_pool!(db, p => sqlx::query_scalar(
        "SELECT id FROM uploads WHERE owner = $1 ORDER BY id LIMIT $2",
    )
    .bind(owner.as_str())
    .bind(limit)
    .fetch_all(p)
    .await)?;
    Ok(ids.into_iter().map(UploadId).collect())
}
