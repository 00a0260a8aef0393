//! The `api_keys` table: create, list, revoke, and verify a presented key (with the
//! once-a-minute `last_used_at` write). Every statement runs on both engines (`with_pool!`),
//! with times bound from the process (`db::now`).

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::{
    KEY_TAG, KeyError, NewKey, Scopes, TOUCH_INTERVAL, generate, hash_secret, parse, secret_matches,
};
use crate::auth::Principal;
use crate::db::{Db, DbError, now, with_pool};
use crate::domain::OwnerId;
use crate::wire::{CreatedKey, KeyView};

/// The columns [`KeyRow`] reads, in order.
const KEY_COLUMNS: &str = "prefix, secret_hash, owner, scopes, name, created_at, expires_at, \
                           revoked_at, last_used_at";

/// One `api_keys` row as stored.
#[derive(sqlx::FromRow)]
struct KeyRow {
    prefix: String,
    secret_hash: String,
    owner: String,
    scopes: String,
    name: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

impl KeyRow {
    fn owner(&self) -> Result<OwnerId, DbError> {
        OwnerId::parse(&self.owner).map_err(|e| DbError::CorruptRow(format!("api_keys: {e}")))
    }

    fn scopes(&self) -> Result<Scopes, DbError> {
        self.scopes
            .parse()
            .map_err(|e| DbError::CorruptRow(format!("api_keys.scopes: {e}")))
    }

    /// The metadata operators see (no hash).
    fn view(self) -> Result<KeyView, DbError> {
        Ok(KeyView {
            scopes: self.scopes()?,
            owner: self.owner()?.to_string(),
            prefix: self.prefix,
            name: self.name,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_used_at: self.last_used_at,
        })
    }
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Creates a key and returns it whole, with its metadata: the only time the secret exists
/// outside the caller's hands. A prefix that is already taken (48 random bits: rare) is
/// drawn again, up to three times.
///
/// # Errors
/// [`KeyError::Db`] on database failure.
pub async fn create(db: &Db, new: &NewKey) -> Result<CreatedKey, KeyError> {
    let sql = format!(
        "INSERT INTO api_keys (prefix, secret_hash, owner, scopes, name, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLUMNS}"
    );
    let created_at = now();
    // `NewKey::new` bounds the lifetime to 10 years, so this cannot overflow.
    let expires_at = new
        .lifetime
        .map(|t| created_at + chrono::TimeDelta::seconds(t.as_secs() as i64));
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (prefix, secret) = generate();
        let inserted: Result<KeyRow, sqlx::Error> = with_pool!(db, p => sqlx::query_as(
            AssertSqlSafe(sql.as_str()))
            .bind(&prefix)
            .bind(hash_secret(&secret))
            .bind(new.owner.as_str())
            .bind(new.scopes.to_string())
            .bind(new.name.as_deref())
            .bind(created_at)
            .bind(expires_at)
            .fetch_one(p)
            .await);
        match inserted {
            Ok(row) => {
                return Ok(CreatedKey {
                    key: format!("{KEY_TAG}{prefix}_{secret}"),
                    api_key: row.view()?,
                });
            }
            Err(e) if attempt < 3 && unique_violation(&e) => continue,
            Err(e) => return Err(DbError::from(e).into()),
        }
    }
}

/// Every key of `owner`, or every key when `owner` is `None`, revoked and expired ones
/// included, oldest first.
///
/// # Errors
/// [`KeyError::Db`] on database failure or a corrupt row.
pub async fn list(db: &Db, owner: Option<&OwnerId>) -> Result<Vec<KeyView>, KeyError> {
    let rows: Vec<KeyRow> = match owner {
        Some(owner) => {
            let sql = format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE owner = $1 ORDER BY created_at, prefix"
            );
            with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(owner.as_str())
                .fetch_all(p)
                .await)
        }
        None => {
            let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, prefix");
            with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .fetch_all(p)
                .await)
        }
    }
    .map_err(DbError::from)?;
    Ok(rows
        .into_iter()
        .map(KeyRow::view)
        .collect::<Result<_, _>>()?)
}

/// Revokes the key with `prefix` from the next request on, and returns it. Idempotent: a
/// revoked key keeps its first `revoked_at`.
///
/// # Errors
/// [`KeyError::NotFound`] when no key has `prefix`; [`KeyError::Db`] on database failure.
pub async fn revoke(db: &Db, prefix: &str) -> Result<KeyView, KeyError> {
    let sql = format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE prefix = $1 \
         RETURNING {KEY_COLUMNS}"
    );
    let row: Option<KeyRow> = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql.as_str()))
        .bind(prefix)
        .bind(now())
        .fetch_optional(p)
        .await)
    .map_err(DbError::from)?;
    row.ok_or_else(|| KeyError::NotFound(prefix.to_owned()))?
        .view()
        .map_err(KeyError::from)
}

/// Checks a presented `kiln_…` key against its row and returns its principal: the key's owner
/// and scopes. Records the use in `last_used_at` when that is unset or older than
/// [`TOUCH_INTERVAL`]; a failure to record it is logged, not returned.
///
/// # Errors
/// [`KeyError::Malformed`] for a token of the wrong shape; [`KeyError::Unknown`] when no key
/// has its prefix or the secret does not match; [`KeyError::Revoked`], [`KeyError::Expired`];
/// [`KeyError::Db`] on database failure or a corrupt row.
pub async fn verify(db: &Db, token: &str) -> Result<Principal, KeyError> {
    let key = parse(token).ok_or(KeyError::Malformed)?;
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = $1");
    let row: Option<KeyRow> = with_pool!(db, p => sqlx::query_as(AssertSqlSafe(sql.as_str()))
        .bind(key.prefix)
        .fetch_optional(p)
        .await)
    .map_err(DbError::from)?;
    let row = row
        .filter(|r| secret_matches(key.secret, &r.secret_hash))
        .ok_or(KeyError::Unknown)?;
    let at = now();
    if let Some(revoked) = row.revoked_at {
        return Err(KeyError::Revoked {
            prefix: row.prefix,
            at: revoked,
        });
    }
    if let Some(expiry) = row.expires_at
        && expiry <= at
    {
        return Err(KeyError::Expired {
            prefix: row.prefix,
            at: expiry,
        });
    }
    let stale = at - chrono::TimeDelta::from_std(TOUCH_INTERVAL).unwrap_or_default();
    if row.last_used_at.is_none_or(|t| t < stale)
        && let Err(e) = touch(db, &row.prefix, at, stale).await
    {
        tracing::warn!(error = %e, prefix = %row.prefix, "could not record the API key's use");
    }
    Ok(Principal {
        owner: row.owner()?,
        scopes: row.scopes()?,
        key: Some(row.prefix),
    })
}

/// Sets `last_used_at = at` unless another request set it after `stale` (one write a minute
/// per key, however many API processes race). Returns whether the row changed.
async fn touch(
    db: &Db,
    prefix: &str,
    at: DateTime<Utc>,
    stale: DateTime<Utc>,
) -> Result<bool, DbError> {
    let done = with_pool!(db, p => sqlx::query(
        "UPDATE api_keys SET last_used_at = $2 \
         WHERE prefix = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(prefix)
    .bind(at)
    .bind(stale)
    .execute(p)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(done > 0)
}
