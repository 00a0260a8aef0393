//! Per-owner quotas and usage: the `owners` overrides, the `owner_usage` counters (kept by a
//! trigger on `uploads` in the same statement as each row change, so they never drift), and
//! the quota-checked insert of a `pending` upload.
//!
//! Called by the lifecycle module (authorize) and by the usage and quota routes and commands.

use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use utoipa::ToSchema;

use super::transitions::NewUpload;
use super::uploads::{UPLOAD_COLUMNS, UploadRow};
use super::{Db, DbError, micros, now, with_pool};
use crate::config::QuotaSettings;
use crate::domain::{OwnerId, Upload};
use crate::wire::{QuotaDetail, QuotaLimit};

/// What one owner holds now (`owner_usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    /// Bytes of live uploads (pending, uploaded, processing, ready), by declared size.
    pub bytes: u64,
    /// Live uploads.
    pub uploads: u64,
    /// Authorized uploads not yet completed.
    pub pending: u64,
    /// Admitted jobs waiting in the queue, not yet claimed by a worker.
    pub waiting: u64,
}

/// An owner's effective limits: their overrides, else the configured defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    /// Bytes of live uploads (`quotas.max_bytes`).
    pub max_bytes: u64,
    /// Live uploads (`quotas.max_uploads`).
    pub max_uploads: u64,
    /// Pending uploads (`quotas.max_pending`).
    pub max_pending: u64,
}

/// An owner's overrides; `None` keeps the configured default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaOverride {
    /// Override of `quotas.max_bytes`, in bytes.
    pub max_bytes: Option<u64>,
    /// Override of `quotas.max_uploads`.
    pub max_uploads: Option<u64>,
    /// Override of `quotas.max_pending`.
    pub max_pending: Option<u64>,
}

impl QuotaOverride {
    /// The limits these overrides give over `defaults`.
    pub fn apply(self, defaults: &QuotaSettings) -> Limits {
        Limits {
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes),
            max_uploads: self.max_uploads.unwrap_or(defaults.max_uploads),
            max_pending: self.max_pending.unwrap_or(defaults.max_pending),
        }
    }
}

impl Limits {
    /// The first limit that adding one upload of `bytes` to `usage` would pass, if any
    /// (checked in the order pending, uploads, bytes).
    pub fn refusal(&self, usage: &Usage, bytes: u64) -> Option<QuotaDetail> {
        let checks = [
            (QuotaLimit::Pending, self.max_pending, usage.pending, 1),
            (QuotaLimit::Uploads, self.max_uploads, usage.uploads, 1),
            (QuotaLimit::Bytes, self.max_bytes, usage.bytes, bytes),
        ];
        checks
            .into_iter()
            .find(|&(_, max, used, add)| used.saturating_add(add) > max)
            .map(|(limit, max, used, requested)| QuotaDetail {
                limit,
                max,
                used,
                requested,
            })
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

type UsageRow = (i64, i64, i64, i64);

fn usage_of(r: Option<UsageRow>) -> Usage {
    r.map(|(bytes, uploads, pending, waiting)| Usage {
        bytes: to_u64(bytes),
        uploads: to_u64(uploads),
        pending: to_u64(pending),
        waiting: to_u64(waiting),
    })
    .unwrap_or_default()
}

type OverrideRow = (Option<i64>, Option<i64>, Option<i64>);

fn override_of(r: Option<OverrideRow>) -> QuotaOverride {
    r.map(|(b, u, p)| QuotaOverride {
        max_bytes: b.map(to_u64),
        max_uploads: u.map(to_u64),
        max_pending: p.map(to_u64),
    })
    .unwrap_or_default()
}

const USAGE_SQL: &str = "SELECT bytes, uploads, pending, waiting FROM owner_usage WHERE owner = $1";
const OVERRIDE_SQL: &str =
    "SELECT max_bytes, max_uploads, max_pending FROM owners WHERE owner = $1";

/// What `owner` holds now (zero for an owner with no uploads).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn usage(db: &Db, owner: &OwnerId) -> Result<Usage, DbError> {
    let row: Option<UsageRow> = with_pool!(db, p => sqlx::query_as(USAGE_SQL)
        .bind(owner.as_str())
        .fetch_optional(p)
        .await)?;
    Ok(usage_of(row))
}

/// `owner`'s overrides (all `None` when none were set).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn overrides(db: &Db, owner: &OwnerId) -> Result<QuotaOverride, DbError> {
    let row: Option<OverrideRow> = with_pool!(db, p => sqlx::query_as(OVERRIDE_SQL)
        .bind(owner.as_str())
        .fetch_optional(p)
        .await)?;
    Ok(override_of(row))
}

/// Sets `owner`'s overrides (replacing earlier ones; `None` restores the default).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure.
pub async fn set_overrides(db: &Db, owner: &OwnerId, q: QuotaOverride) -> Result<(), DbError> {
    with_pool!(db, p => sqlx::query(
        "INSERT INTO owners (owner, max_bytes, max_uploads, max_pending, updated_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (owner) DO UPDATE SET \
         max_bytes = excluded.max_bytes, max_uploads = excluded.max_uploads, \
         max_pending = excluded.max_pending, updated_at = excluded.updated_at",
    )
    .bind(owner.as_str())
    .bind(to_i64(q.max_bytes))
    .bind(to_i64(q.max_uploads))
    .bind(to_i64(q.max_pending))
    .bind(now())
    .execute(p)
    .await
    .map(|_| ()))?;
    Ok(())
}

/// Inserts a `pending` upload if it keeps its owner within their limits (overrides over
/// `defaults`). The owner's usage row is locked (`FOR UPDATE` on Postgres; SQLite's write
/// transaction holds the whole file) from the check to the insert, so concurrent
/// authorizations of one owner are counted one after another and can never pass a limit
/// together. Returns the new row, or the limit it would pass (nothing is written).
///
/// # Errors
/// [`DbError::Sqlx`] on database failure (the transaction is rolled back).
pub async fn insert_pending_within_quota(
    db: &Db,
    new: &NewUpload<'_>,
    defaults: &QuotaSettings,
) -> Result<Result<Upload, QuotaDetail>, DbError> {
    let lock = db.row_lock("FOR UPDATE");
    let owner = new.owner.as_str();
    let row: Result<UploadRow, QuotaDetail> = with_pool!(db, p => {
        let mut tx = super::begin_write(p).await?;
        sqlx::query("INSERT INTO owner_usage (owner) VALUES ($1) ON CONFLICT (owner) DO NOTHING")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        let used: Option<UsageRow> = sqlx::query_as(AssertSqlSafe(format!("{USAGE_SQL} {lock}")))
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?;
        let limits: Option<OverrideRow> = sqlx::query_as(OVERRIDE_SQL)
            .bind(owner)
            .fetch_optional(&mut *tx)
            .await?;
        let limits = override_of(limits).apply(defaults);
        if let Some(refusal) = limits.refusal(&usage_of(used), to_u64(new.byte_size)) {
            tx.rollback().await?;
            Err(refusal)
        } else {
            let row: UploadRow = sqlx::query_as(AssertSqlSafe(format!(
                "INSERT INTO uploads (id, owner, state, filename, content_type, byte_size, \
                 method, temp_key, expires_at, created_at, updated_at) \
                 VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $8, $9, $9) \
                 RETURNING {UPLOAD_COLUMNS}"
            )))
            .bind(new.id.0)
            .bind(owner)
            .bind(new.filename)
            .bind(new.content_type)
            .bind(new.byte_size)
            .bind(new.method.as_str())
            .bind(new.temp_key)
            .bind(micros(new.expires_at))
            .bind(now())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(row)
        }
    });
    match row {
        Ok(r) => Ok(Ok(Upload::try_from(r)?)),
        Err(refusal) => Ok(Err(refusal)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_the_first_limit_passed() {
        let limits = Limits {
            max_bytes: 100,
            max_uploads: 3,
            max_pending: 2,
        };
        let mut usage = Usage {
            bytes: 90,
            uploads: 2,
            pending: 1,
            waiting: 0,
        };
        assert_eq!(limits.refusal(&usage, 10), None);
        let r = limits.refusal(&usage, 11).unwrap();
        assert_eq!(
            (r.limit, r.max, r.used, r.requested),
            (QuotaLimit::Bytes, 100, 90, 11)
        );
        usage.pending = 2;
        assert_eq!(
            limits.refusal(&usage, 1).unwrap().limit,
            QuotaLimit::Pending
        );
        usage.pending = 0;
        usage.uploads = 3;
        assert_eq!(
            limits.refusal(&usage, 1).unwrap().limit,
            QuotaLimit::Uploads
        );
    }

    #[test]
    fn overrides_fall_back_to_defaults() {
        let d = QuotaSettings::default();
        let l = QuotaOverride {
            max_pending: Some(10),
            ..Default::default()
        }
        .apply(&d);
        assert_eq!((l.max_pending, l.max_bytes), (10, d.max_bytes));
    }
}
