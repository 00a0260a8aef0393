//! The fair scheduler's side of the lifecycle: admit an owner's held uploads into the job
//! queue while fewer than `scheduling.max_waiting_per_owner` of their jobs wait unclaimed
//! (docs/ARCHITECTURE.md "Fair scheduling"). Called after `complete` and `replay` hold an
//! upload, after every claim (which frees a place in the owner's window), and by the sweeper
//! (which repairs a release lost to a crash).

use std::time::Duration;

use super::{Lifecycle, LifecycleError};
use crate::db::admission;
use crate::domain::{OwnerId, UploadId};
use crate::queue::{ProcessUpload, QueueError, task_id};

/// Uploads one [`Lifecycle::admit`] call queued, and those whose push failed.
#[derive(Debug, Default)]
pub struct Admitted {
    /// Admitted and queued, oldest hold first.
    pub queued: Vec<UploadId>,
    /// Admitted (next generation started) but not queued, with that generation and the push
    /// error. The sweeper queues them once their task is found missing.
    pub unqueued: Vec<(UploadId, i32, QueueError)>,
}

impl Lifecycle {
    /// Admits `owner`'s oldest held uploads into the queue while their window has room, and
    /// pushes each one's task. A failed push leaves that upload admitted without a task (the
    /// sweeper's lost-task repair queues it); the other pushes are still tried.
    ///
    /// # Errors
    /// [`LifecycleError::Db`] when the admission itself fails (nothing was admitted).
    pub async fn admit(&self, owner: &OwnerId) -> Result<Admitted, LifecycleError> {
        let window = self.settings.scheduling.max_waiting_per_owner;
        let mut out = Admitted::default();
        for (id, generation) in admission::admit(&self.pool, owner, window).await? {
            let task = task_id::process_upload(id, generation);
            match self
                .uploads
                .push(ProcessUpload { upload_id: id }, task, Duration::ZERO)
                .await
            {
                Ok(_) => {
                    tracing::info!(upload_id = %id, job_id = %task, %owner, "upload admitted; job queued");
                    out.queued.push(id);
                }
                Err(e) => {
                    tracing::warn!(upload_id = %id, error = %e, "admitted upload not queued; the sweeper will queue it");
                    out.unqueued.push((id, generation, e));
                }
            }
        }
        Ok(out)
    }

    /// [`Lifecycle::admit`] when `owner` has held uploads (one indexed read otherwise), for the
    /// hot path after a claim. Failures are logged, not returned: the sweeper admits later.
    pub async fn admit_if_held(&self, owner: &OwnerId) {
        match admission::has_held(&self.pool, owner).await {
            Ok(false) => {}
            Ok(true) => {
                if let Err(e) = self.admit(owner).await {
                    tracing::warn!(%owner, error = %e, "admission failed; the sweeper will retry");
                }
            }
            Err(e) => tracing::warn!(%owner, error = %e, "admission check failed"),
        }
    }

    /// Sweeper: admits for every owner with held uploads. Returns how many were queued.
    ///
    /// # Errors
    /// The first database failure; the next sweep tries again.
    pub async fn admit_held(&self) -> Result<u64, LifecycleError> {
        let mut n = 0;
        for owner in admission::owners_with_held(&self.pool).await? {
            n += self.admit(&owner).await?.queued.len() as u64;
        }
        Ok(n)
    }
}
