//! What a fleet run reads from Postgres: whether its uploads reached a final state, and their
//! `completed_at` / `ready_at`, the two timestamps throughput and complete→ready latency are
//! computed from.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// Polls Postgres (one query every 20 ms) until every upload in `ids` is `ready` or `failed`.
///
/// # Errors
/// When any upload failed (the worker logs are in `logs`), 10 minutes pass, or a query fails.
pub async fn wait_final(pool: &PgPool, ids: &[Uuid], logs: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (done, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state IN ('ready', 'failed')), \
                    count(*) FILTER (WHERE state = 'failed') \
             FROM uploads WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_one(pool)
        .await?;
        if failed > 0 {
            bail!(
                "{failed} upload(s) failed; see the worker logs in {}",
                logs.display()
            );
        }
        if done == ids.len() as i64 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} uploads not ready after 10 minutes",
                ids.len() as i64 - done,
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(completed_at, ready_at)` of each upload in `ids`.
///
/// # Errors
/// When one of them lacks either timestamp (not ready), or the query fails.
pub async fn times(
    pool: &PgPool,
    ids: &[Uuid],
) -> anyhow::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT completed_at, ready_at FROM uploads \
         WHERE id = ANY($1) AND completed_at IS NOT NULL AND ready_at IS NOT NULL",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    if rows.len() != ids.len() {
        bail!(
            "{} of {} uploads have no completed_at/ready_at",
            ids.len() - rows.len(),
            ids.len()
        );
    }
    Ok(rows)
}
