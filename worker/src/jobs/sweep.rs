//! `SweepUploads`: the periodic repair pass that makes Postgres, Redis and S3 agree again.
//!
//! Postgres is the source of truth, so losing every key in Redis loses no upload: the sweeper
//! rebuilds the queue from the rows. Each run:
//! 1. admits held uploads of owners whose admission window has room (a release lost to a
//!    crash between a claim and its admission);
//! 2. expires `pending` uploads past `expires_at` (plus a grace) and deletes their temp objects;
//! 3. re-enqueues `uploaded` uploads whose job is not live (e.g. the enqueue after the commit
//!    failed, or Redis lost its data);
//! 4. re-enqueues `processing` uploads past the orphan timeout whose job is not live, and any
//!    past `sweeper.processing_timeout_secs`;
//! 5. deletes temp objects of finished uploads (a failed delete after promotion), moving a
//!    failed upload's original to its final key first, and temp objects older than
//!    `sweeper.orphan_temp_ttl_secs` that have no row;
//! 6. purges uploads past their retention: deleted ones after `retention.deleted_secs`, failed
//!    and expired ones after `retention.failed_secs` (rows, objects, share links, finished
//!    tasks), at most `retention.purge_batch` per run.
//!
//! Every worker runs [`run_periodically`]; a Redis lock (`SET NX PX`) lets one run start per
//! interval across the fleet.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kiln_shared::db::uploads as db;
use kiln_shared::domain::UploadState;
use serde::Serialize;

use super::runtime::JobContext;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// `pending` → `expired`.
    pub expired: u64,
    /// `uploaded` rows re-enqueued.
    pub requeued_uploaded: u64,
    /// `processing` rows re-enqueued.
    pub requeued_processing: u64,
    /// Held uploads admitted and queued.
    pub admitted: u64,
    /// Temp objects deleted (finished uploads' leftovers and orphans).
    pub temps_deleted: u64,
    /// Uploads purged past their retention.
    pub purged: u64,
}

/// The sweep job.
pub struct SweepUploads;

impl SweepUploads {
    /// Runs one sweep now (no lock). Every state change goes through the lifecycle.
    ///
    /// # Errors
    /// The first Postgres, Redis or S3 failure; the next run starts over.
    pub async fn run(ctx: &JobContext) -> anyhow::Result<SweepReport> {
        let cfg = &ctx.settings.sweeper;
        let lifecycle = &ctx.lifecycle;
        let pool = lifecycle.pool();
        // First, so that an S3 outage failing the steps after it cannot hold back admissions.
        let admitted = lifecycle.admit_held().await?;
        let mut report = SweepReport {
            admitted,
            expired: lifecycle
                .expire_pending(Duration::from_secs(cfg.expiry_grace_secs))
                .await?,
            ..Default::default()
        };

        let stale = Duration::from_secs(cfg.uploaded_stale_secs);
        for (id, generation, _) in db::stale_in_state(pool, UploadState::Uploaded, stale).await? {
            if lifecycle
                .requeue_if_lost(id, UploadState::Uploaded, generation, false)
                .await?
            {
                report.requeued_uploaded += 1;
            }
        }

        let lease = ctx.settings.redis.claim_lease();
        let timeout = Duration::from_secs(cfg.processing_timeout_secs);
        for (id, generation, updated_at) in
            db::stale_in_state(pool, UploadState::Processing, lease).await?
        {
            let overdue = (Utc::now() - updated_at).to_std().unwrap_or_default() > timeout;
            if lifecycle
                .requeue_if_lost(id, UploadState::Processing, generation, overdue)
                .await?
            {
                report.requeued_processing += 1;
            }
        }

        report.temps_deleted = Self::clean_temps(ctx).await?;
        report.purged = lifecycle.purge_due().await?.uploads;
        Ok(report)
    }

    async fn clean_temps(ctx: &JobContext) -> anyhow::Result<u64> {
        let ttl = chrono::Duration::seconds(ctx.settings.sweeper.orphan_temp_ttl_secs as i64);
        let storage = ctx.storage();
        let mut deleted = 0;
        for object in storage.list_objects(&storage.layout().temp_root()).await? {
            let id = object.key.rsplit('/').next().and_then(|s| s.parse().ok());
            let row = match id {
                Some(id) => db::get(ctx.lifecycle.pool(), id).await?,
                None => None,
            };
            let remove = match &row {
                // A deleted upload's objects wait for its restore or purge.
                Some(u) if u.temp_key != object.key || u.deleted_at.is_some() => false,
                Some(u) => match u.state {
                    UploadState::Ready | UploadState::Expired => true,
                    UploadState::Failed => {
                        // Keeps the original at its final key and deletes the temp object.
                        ctx.lifecycle.preserve_original(u).await?;
                        deleted += 1;
                        false
                    }
                    UploadState::Pending
                    | UploadState::Uploaded
                    | UploadState::Processing
                    | UploadState::Deleted => false,
                },
                None => object.last_modified.is_some_and(|t| Utc::now() - t > ttl),
            };
            if remove {
                storage.delete(&object.key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// Runs [`SweepUploads`] every `sweeper.interval_secs` until `stop` fires. Each tick takes a
/// fleet-wide lock (`Queue::try_lock`: on Redis `{queue}:sweeper:lock`, `SET NX PX interval`),
/// so one run starts per interval however many workers there are. Also puts the `tmp/` lifecycle rule on the bucket
/// once, when allowed.
pub async fn run_periodically(ctx: Arc<JobContext>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let cfg = ctx.settings.sweeper.clone();
    if !cfg.enabled {
        return;
    }
    if cfg.lifecycle_rule {
        match ctx.storage().ensure_temp_lifecycle(1).await {
            Ok(()) => tracing::info!("lifecycle rule: tmp/ expires after 1 day"),
            Err(e) => tracing::warn!(error = %e, "could not set the tmp/ lifecycle rule"),
        }
    }
    let interval = Duration::from_secs(cfg.interval_secs.max(1));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match ctx
            .lifecycle
            .queue()
            .try_lock("sweeper:lock", interval)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue, // another worker swept this interval
            Err(e) => {
                tracing::warn!(error = %e, "sweeper lock unavailable");
                continue;
            }
        }
        match SweepUploads::run(&ctx).await {
            Ok(report) => {
                let m = &ctx.metrics;
                m.sweeper_runs.with_label_values(&["ok"]).inc();
                m.sweeper_last_success.set(Utc::now().timestamp());
                for (action, n) in [
                    ("expired", report.expired),
                    ("requeued_uploaded", report.requeued_uploaded),
                    ("admitted", report.admitted),
                    ("requeued_processing", report.requeued_processing),
                    ("temps_deleted", report.temps_deleted),
                    ("purged", report.purged),
                ] {
                    m.sweeper_actions.with_label_values(&[action]).inc_by(n);
                }
                if report != SweepReport::default() {
                    tracing::info!(?report, "sweep done");
                }
            }
            Err(e) => {
                ctx.metrics.sweeper_runs.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "sweep failed; will retry next interval");
            }
        }
    }
}
