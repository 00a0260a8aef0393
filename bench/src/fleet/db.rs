//! What a run reads from the upload store (Postgres for the fleet, the standalone instance's
//! SQLite file for `--standalone`, read beside it): whether its uploads reached a final state,
//! and their `completed_at` / `ready_at`, the two timestamps throughput and complete→ready
//! latency are computed from.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use chrono::{DateTime, Utc};
use kiln_shared::db::Db;
use kiln_shared::db::uploads::get_many;
use kiln_shared::domain::{UploadId, UploadState};
use uuid::Uuid;

fn upload_ids(ids: &[Uuid]) -> Vec<UploadId> {
    ids.iter().map(|&id| UploadId(id)).collect()
}

/// Polls the store (one query every 20 ms) until every upload in `ids` is `ready` or `failed`.
///
/// # Errors
/// When any upload failed (the worker logs are in `logs`), 10 minutes pass, or a query fails.
pub async fn wait_final(db: &Db, ids: &[Uuid], logs: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let ids = upload_ids(ids);
    loop {
        let uploads = get_many(db, &ids).await?;
        let failed = uploads
            .iter()
            .filter(|u| u.state == UploadState::Failed)
            .count();
        let done = uploads
            .iter()
            .filter(|u| matches!(u.state, UploadState::Ready | UploadState::Failed))
            .count();
        if failed > 0 {
            bail!(
                "{failed} upload(s) failed; see the worker logs in {}",
                logs.display()
            );
        }
        if done == ids.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {} uploads not ready after 10 minutes",
                ids.len() - done,
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
pub async fn times(db: &Db, ids: &[Uuid]) -> anyhow::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> = get_many(db, &upload_ids(ids))
        .await?
        .into_iter()
        .filter_map(|u| Some((u.completed_at?, u.ready_at?)))
        .collect();
    if rows.len() != ids.len() {
        bail!(
            "{} of {} uploads have no completed_at/ready_at",
            ids.len() - rows.len(),
            ids.len()
        );
    }
    Ok(rows)
}
