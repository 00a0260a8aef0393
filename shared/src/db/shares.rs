//! Share link rows (`shares`): created, listed and revoked by the upload's owner, opened by
//! anyone holding the token. Only the SHA-256 of a token is stored. Purge and erase delete them
//! with their upload.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::{Db, DbError, now, with_pool};
use crate::domain::{OwnerId, UploadId};

/// One share link as stored (without its token, which is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// Public id (`shr_` and 24 hex digits), for lists and revocation.
    pub id: String,
    /// The shared upload.
    pub upload_id: UploadId,
    /// Its owner.
    pub owner: OwnerId,
    /// A rendition name, or `original`.
    pub rendition: String,
    /// After this the link answers 410.
    pub expires_at: DateTime<Utc>,
    /// After this many downloads the link answers 410; `None` for no limit.
    pub max_downloads: Option<u64>,
    /// Downloads so far (redirects handed out).
    pub downloads: u64,
    /// When it was revoked (it then answers 404).
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, upload_id, owner, rendition, expires_at, max_downloads, downloads, \
                       revoked_at, created_at";

type Row = (
    String,
    uuid::Uuid,
    String,
    String,
    DateTime<Utc>,
    Option<i64>,
    i64,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

fn share(r: Row) -> Result<Share, DbError> {
    let (id, upload_id, owner, rendition, expires_at, max, downloads, revoked_at, created_at) = r;
    Ok(Share {
        id,
        upload_id: UploadId(upload_id),
        owner: OwnerId::parse(&owner).map_err(|e| DbError::CorruptRow(e.to_string()))?,
        rendition,
        expires_at,
        max_downloads: max.map(|m| u64::try_from(m).unwrap_or(0)),
        downloads: u64::try_from(downloads).unwrap_or(0),
        revoked_at,
        created_at,
    })
}

/// A share link to insert.
#[derive(Debug, Clone)]
pub struct NewShare<'a> {
    /// Public id.
    pub id: &'a str,
    /// Hex SHA-256 of the token.
    pub token_hash: &'a str,
    /// The shared upload.
    pub upload_id: UploadId,
    /// Its owner.
    pub owner: &'a OwnerId,
    /// A rendition name, or `original`.
    pub rendition: &'a str,
    /// End of validity.
    pub expires_at: DateTime<Utc>,
    /// Download limit, if any.
    pub max_downloads: Option<u64>,
}

/// Inserts a share link and returns it.
///
/// # Errors
/// [`DbError`] on database failure (the upload row must exist).
pub async fn insert(db: &Db, new: &NewShare<'_>) -> Result<Share, DbError> {
    let sql = format!(
        "INSERT INTO shares (id, token_hash, upload_id, owner, rendition, expires_at, \
         max_downloads, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    );
    let row: Row = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(new.id)
        .bind(new.token_hash)
        .bind(new.upload_id.0)
        .bind(new.owner.as_str())
        .bind(new.rendition)
        .bind(super::micros(new.expires_at))
        .bind(new.max_downloads.map(|m| i64::try_from(m).unwrap_or(i64::MAX)))
        .bind(now())
        .fetch_one(p)
        .await)?;
    share(row)
}

/// The share links of the owner's upload `upload_id`, oldest first (revoked ones included).
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn list(db: &Db, owner: &OwnerId, upload_id: UploadId) -> Result<Vec<Share>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM shares WHERE upload_id = $1 AND owner = $2 \
         ORDER BY created_at, id"
    );
    let rows: Vec<Row> = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(upload_id.0)
        .bind(owner.as_str())
        .fetch_all(p)
        .await)?;
    rows.into_iter().map(share).collect()
}

/// Revokes the owner's share `id` of upload `upload_id` (idempotent: an earlier revocation
/// time is kept). Returns the share, or `None` when there is no such share.
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn revoke(
    db: &Db,
    owner: &OwnerId,
    upload_id: UploadId,
    id: &str,
) -> Result<Option<Share>, DbError> {
    let sql = format!(
        "UPDATE shares SET revoked_at = COALESCE(revoked_at, $4) WHERE id = $1 \
         AND upload_id = $2 AND owner = $3 RETURNING {COLUMNS}"
    );
    let row: Option<Row> = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql))
        .bind(id)
        .bind(upload_id.0)
        .bind(owner.as_str())
        .bind(now())
        .fetch_optional(p)
        .await)?;
    row.map(share).transpose()
}

/// What opening a share link found.
#[derive(Debug, Clone)]
pub enum Opened {
    /// Valid: one download was counted. Serve this share.
    Granted(Share),
    /// No such token, revoked, or its upload is deleted (404).
    NotFound,
    /// Expired, or every allowed download was used (410).
    Gone,
}

/// Opens the share link whose token hashes to `token_hash`: counts one download if it is valid
/// (the count and the limit are checked in one conditional UPDATE, so concurrent opens never
/// pass `max_downloads`).
///
/// # Errors
/// [`DbError`] on database failure or a corrupt row.
pub async fn open(db: &Db, token_hash: &str) -> Result<Opened, DbError> {
    let find = "SELECT s.id, s.revoked_at IS NOT NULL OR u.deleted_at IS NOT NULL \
                FROM shares s JOIN uploads u ON u.id = s.upload_id WHERE s.token_hash = $1";
    let count = format!(
        "UPDATE shares SET downloads = downloads + 1 WHERE id = $1 AND expires_at > $2 \
         AND revoked_at IS NULL \
         AND (max_downloads IS NULL OR downloads < max_downloads) RETURNING {COLUMNS}"
    );
    let found: Option<(String, bool)> = with_pool!(db, p => sqlx::query_as(find)
        .bind(token_hash)
        .fetch_optional(p)
        .await)?;
    let Some((id, hidden)) = found else {
        return Ok(Opened::NotFound);
    };
    if hidden {
        return Ok(Opened::NotFound);
    }
    let row: Option<Row> = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(count))
        .bind(&id)
        .bind(now())
        .fetch_optional(p)
        .await)?;
    match row {
        Some(r) => Ok(Opened::Granted(share(r)?)),
        None => Ok(Opened::Gone),
    }
}
