//! The operators' and the sweeper's side of the lifecycle: replay dead jobs, requeue uploads
//! whose task was lost, expire abandoned uploads.

use std::time::Duration;

use super::{Lifecycle, LifecycleError};
use crate::db::transitions;
use crate::db::uploads::{self as reads, FailedFilter};
use crate::domain::{UploadId, UploadState};
use crate::queue::{ProcessUpload, task_id};

pub use crate::dead_jobs::ReplayReport;

impl Lifecycle {
    /// Replays the dead jobs of `ids`: each `failed` upload goes back to `uploaded` (held for
    /// its owner's window, [`Lifecycle::admit`]) with its attempts and error reset, and its dead
    /// task is removed from the dead set; admission queues the next generation's task. Idempotent: the transition is one
    /// conditional UPDATE, so replaying twice queues once. With `dry_run`, only reports.
    ///
    /// # Errors
    /// The first database or queue failure; uploads already moved stay `uploaded`, and the
    /// sweeper queues any whose push was lost.
    pub async fn replay(
        &self,
        ids: &[UploadId],
        dry_run: bool,
    ) -> Result<ReplayReport, LifecycleError> {
        let mut report = ReplayReport {
            dry_run,
            ..Default::default()
        };
        for &id in ids {
            if dry_run {
                let failed = reads::get(&self.pool, id)
                    .await?
                    .is_some_and(|u| u.state == UploadState::Failed);
                if failed {
                    report.replayed.push(id);
                } else {
                    report.skipped.push(id);
                }
                continue;
            }
            let Some(upload) = transitions::mark_for_replay(&self.pool, id).await? else {
                report.skipped.push(id);
                continue;
            };
            // The dead task is the current generation's; admission starts the next.
            let dead = task_id::process_upload(id, upload.job_generation);
            self.uploads.forget_dead(&dead.to_string()).await?;
            // Another upload's failed push is left to the sweeper; only this one's is an error.
            let admitted = self.admit(&upload.owner).await?;
            if let Some((_, _, e)) = admitted.unqueued.into_iter().find(|(u, ..)| *u == id) {
                return Err(e.into());
            }
            tracing::info!(upload_id = %id, "dead job replayed");
            report.replayed.push(id);
        }
        Ok(report)
    }

    /// Replays every dead job matching `filter` (see [`Lifecycle::replay`]).
    ///
    /// # Errors
    /// As [`Lifecycle::replay`].
    pub async fn replay_matching(
        &self,
        filter: &FailedFilter,
        dry_run: bool,
    ) -> Result<ReplayReport, LifecycleError> {
        let ids: Vec<UploadId> = reads::list_failed(&self.pool, filter)
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
        self.replay(&ids, dry_run).await
    }

    /// Sweeper: when the task of upload `id` (in `state`, at job generation `seen`) is no
    /// longer waiting or running, or `force` is set (a `processing` row past
    /// `sweeper.processing_timeout_secs`), starts the next generation and queues its task.
    /// Returns whether a task was queued.
    ///
    /// # Errors
    /// The first database or queue failure; the next sweep tries again.
    pub async fn requeue_if_lost(
        &self,
        id: UploadId,
        state: UploadState,
        seen: i32,
        force: bool,
    ) -> Result<bool, LifecycleError> {
        if !force && seen > 0 {
            let current = task_id::process_upload(id, seen).to_string();
            if self.uploads.is_live(&current).await? {
                return Ok(false);
            }
        }
        let Some(generation) = transitions::next_generation(&self.pool, id, state, seen).await?
        else {
            return Ok(false);
        };
        let task = task_id::process_upload(id, generation);
        self.uploads
            .push(ProcessUpload { upload_id: id }, task, Duration::ZERO)
            .await?;
        tracing::info!(upload_id = %id, job_id = %task, "sweeper re-queued upload");
        Ok(true)
    }

    /// Sweeper: `pending` uploads more than `grace` past their expiry → `expired`, deleting
    /// their temp objects. Returns how many expired.
    ///
    /// # Errors
    /// The first database or S3 failure; rows already expired have their objects deleted by
    /// the sweeper's temp cleanup.
    pub async fn expire_pending(&self, grace: Duration) -> Result<u64, LifecycleError> {
        let mut n = 0;
        for (_, temp_key) in transitions::expire_pending(&self.pool, grace).await? {
            self.storage.delete(&temp_key).await?;
            n += 1;
        }
        Ok(n)
    }
}
