//! The worker's side of the lifecycle: claim an upload, then commit it `ready`, retry it later
//! or fail it.

use std::time::Duration;

use super::{Failure, Lifecycle, LifecycleError};
use crate::db::assets as assets_rows;
use crate::db::transitions::{self, RecordedError};
use crate::db::uploads as reads;
use crate::domain::{Classify, Derivative, ErrorCode, ImageMetadata, Upload, UploadId};
use crate::queue::{ProcessUpload, QueueError, task_id};

/// What [`Lifecycle::claim`] found.
#[derive(Debug, Clone)]
pub enum Claim {
    /// The row is now `processing` under this attempt (`upload.attempts` is the fencing
    /// token of every later transition of the attempt).
    Claimed(Box<Upload>),
    /// The upload is not waiting for processing (terminal, or another live attempt holds
    /// it): a duplicate or late delivery, to ack without work.
    NotWaiting,
    /// The upload was claimed more than `worker.max_attempts` times without finishing (a job
    /// that keeps killing its worker): it is now `failed` with `retries_exhausted`.
    GaveUp(Failure),
}

impl Failure {
    fn recorded(&self) -> (String, &str) {
        (self.client_message(), &self.detail)
    }
}

impl Lifecycle {
    /// Claims upload `id` for processing (`uploaded` → `processing`, or a `processing` row
    /// whose lease `redis.claim_lease()` ran out), counting the attempt, then admits the
    /// owner's next held upload into the place the claim freed ([`Lifecycle::admit_if_held`]).
    ///
    /// # Errors
    /// A transient [`LifecycleError::Db`] when Postgres is down (nothing changed). A permanent
    /// one when the row cannot be read back (a bug or a newer schema): the row is then failed
    /// with `internal` by id, so the job ends dead instead of retrying.
    pub async fn claim(&self, id: UploadId) -> Result<Claim, LifecycleError> {
        let lease = self.settings.redis.claim_lease();
        let upload = match transitions::claim(&self.pool, id, lease).await {
            Ok(Some(upload)) => upload,
            Ok(None) => return Ok(Claim::NotWaiting),
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                let failure = Failure::from_error(&e);
                let (message, detail) = failure.recorded();
                let error = RecordedError {
                    code: failure.code,
                    message: &message,
                    detail,
                };
                transitions::mark_failed(&self.pool, id, None, error).await?;
                return Err(e.into());
            }
        };
        // The claim freed a place in the owner's admission window.
        self.admit_if_held(&upload.owner).await;
        let max = self.retry_policy().max_attempts;
        if upload.attempts as u32 > max {
            let failure = Failure::new(
                ErrorCode::RetriesExhausted,
                format!("claimed {} times without finishing", upload.attempts),
            )
            .with_facts(format!("{} attempts", upload.attempts));
            self.fail(&upload, &failure).await?;
            return Ok(Claim::GaveUp(failure));
        }
        Ok(Claim::Claimed(Box::new(upload)))
    }

    /// Commits a processed upload: `processing` (under this attempt) → `ready` with its final
    /// key, metadata and derivative rows, in one transaction. If its owner deleted it meanwhile
    /// it is committed all the same and stays deleted (its objects then move under `trash/`).
    /// Returns `false`, changing nothing, when another attempt holds the row now; when the row
    /// is gone (purged while this attempt ran), it also deletes `final_key` and the
    /// derivatives' objects this attempt wrote, unless a row points at them.
    ///
    /// # Errors
    /// [`LifecycleError::Db`] on database failure; [`LifecycleError::Storage`] when the
    /// objects of a deleted or purged upload cannot be moved or deleted.
    pub async fn commit_ready(
        &self,
        upload: &Upload,
        final_key: &str,
        metadata: &ImageMetadata,
        derivatives: &[Derivative],
    ) -> Result<bool, LifecycleError> {
        let committed = transitions::commit_ready(
            &self.pool,
            upload.id,
            upload.attempts,
            final_key,
            metadata,
            derivatives,
        )
        .await?;
        match committed {
            Some(false) => Ok(true),
            Some(true) => {
                self.hide(upload.id).await?;
                tracing::info!("upload was deleted while processing; committed and kept deleted");
                Ok(true)
            }
            None => {
                let mut written: Vec<String> =
                    derivatives.iter().map(|d| d.object_key.clone()).collect();
                written.push(final_key.to_owned());
                self.discard_written(upload.id, &written).await?;
                Ok(false)
            }
        }
    }

    /// After a job's commit was refused (the row moved on while it ran): if the upload is gone
    /// (purged), deletes the objects `written` that no row points at; if it is deleted, moves
    /// its objects under `trash/` (the job may have rewritten them at their normal keys);
    /// otherwise leaves them to the attempt that holds the row.
    ///
    /// # Errors
    /// [`LifecycleError`] when a read, move or delete fails.
    pub async fn discard_written(
        &self,
        id: UploadId,
        written: &[String],
    ) -> Result<(), LifecycleError> {
        match reads::get(&self.pool, id).await? {
            None => {
                let kept = assets_rows::any_references(&self.pool, written).await?;
                let doomed: std::collections::BTreeSet<String> = written
                    .iter()
                    .filter(|k| !kept.contains(*k))
                    .cloned()
                    .collect();
                let n = self.delete_objects(&doomed).await?;
                tracing::info!(
                    objects = n,
                    "upload was purged while a job ran; deleted what it wrote"
                );
            }
            Some(row) if row.deleted_at.is_some() => self.hide(id).await?,
            Some(_) => {}
        }
        Ok(())
    }

    /// Dedup: when the owner already has a `ready`, not deleted upload with the same bytes
    /// (SHA-256 `sha256`, hex) declared with the same content type, commits this claimed upload `ready` as its duplicate without
    /// processing it: the same final key, metadata and derivative rows (the objects are
    /// stored once and shared; purge keeps them while any row points at them), `duplicate_of`
    /// set. Never across owners. Returns the upload it duplicates, or `None` (nothing changed:
    /// no such upload, or another attempt holds the row) to process it normally.
    ///
    /// After the commit, deletes what an earlier attempt of this upload left under its own
    /// prefixes (nothing points at it any more; best effort, logged).
    ///
    /// # Errors
    /// [`LifecycleError::Db`] on database failure.
    pub async fn commit_duplicate(
        &self,
        upload: &Upload,
        sha256: &str,
    ) -> Result<Option<UploadId>, LifecycleError> {
        let Some((source, deleted)) = assets_rows::commit_duplicate(
            &self.pool,
            &upload.owner,
            upload.id,
            upload.attempts,
            sha256,
            &upload.content_type,
        )
        .await?
        else {
            return Ok(None);
        };
        // An earlier attempt may have written this upload's own derivatives or promoted its
        // original before it died; nothing points at them now.
        if let Err(e) = self.delete_own_leftovers(upload).await {
            tracing::warn!(error = %e, "could not delete an earlier attempt's objects; a purge will");
        }
        if deleted {
            self.hide(upload.id).await?;
        }
        Ok(Some(source))
    }

    /// Deletes the objects under `upload`'s own original and derivative prefixes that no row
    /// points at.
    async fn delete_own_leftovers(&self, upload: &Upload) -> Result<(), LifecycleError> {
        let [originals, derivatives, ..] = self
            .storage
            .layout()
            .upload_prefixes(&upload.owner, upload.id);
        let mut own = self.storage.list(&originals).await?;
        own.extend(self.storage.list(&derivatives).await?);
        let kept = assets_rows::any_references(&self.pool, &own).await?;
        let doomed: std::collections::BTreeSet<String> =
            own.into_iter().filter(|k| !kept.contains(k)).collect();
        self.delete_objects(&doomed).await?;
        Ok(())
    }

    /// Deletes `key` (an object this upload no longer needs, such as its own original after it
    /// became a duplicate) unless a row points at it.
    ///
    /// # Errors
    /// [`LifecycleError`] when the check or the delete fails.
    pub async fn delete_if_unreferenced(&self, key: &str) -> Result<(), LifecycleError> {
        let keys = [key.to_owned()];
        if assets_rows::any_references(&self.pool, &keys)
            .await?
            .is_empty()
        {
            self.storage.delete(key).await?;
        }
        Ok(())
    }

    /// Commits re-rendered derivatives of a `ready` upload (RenderRenditions): replaces only
    /// the rows of `derivatives`' renditions, while the upload stays `ready`. Returns `None`,
    /// changing nothing, when it is not `ready` any more; otherwise the object keys no row
    /// points at now (a dedup sibling may still point at a replaced key), for the caller to
    /// delete.
    ///
    /// # Errors
    /// [`LifecycleError::Db`] on database failure.
    pub async fn replace_derivatives(
        &self,
        id: UploadId,
        derivatives: &[Derivative],
    ) -> Result<Option<Vec<String>>, LifecycleError> {
        let Some(orphaned) = crate::db::derivatives::replace(&self.pool, id, derivatives).await?
        else {
            return Ok(None);
        };
        let kept = assets_rows::any_references(&self.pool, &orphaned).await?;
        Ok(Some(
            orphaned.into_iter().filter(|k| !kept.contains(k)).collect(),
        ))
    }

    /// After a transient `failure`: `processing` (under this attempt) → `uploaded` with the
    /// error kept for operators, and the next generation's task queued, runnable after
    /// `delay`. Returns `false`, queueing nothing, when another attempt holds the row now.
    ///
    /// # Errors
    /// [`LifecycleError::Db`] when the row cannot be released; [`LifecycleError::Queue`] when
    /// the task cannot be queued (the row is `uploaded` with no live task, which the sweeper
    /// repairs).
    pub async fn retry_later(
        &self,
        upload: &Upload,
        failure: &Failure,
        delay: Duration,
    ) -> Result<bool, LifecycleError> {
        let (message, detail) = failure.recorded();
        let error = RecordedError {
            code: failure.code,
            message: &message,
            detail,
        };
        let Some(generation) =
            transitions::release_for_retry(&self.pool, upload.id, upload.attempts, error).await?
        else {
            return Ok(false);
        };
        let task = task_id::process_upload(upload.id, generation);
        self.uploads
            .push(
                ProcessUpload {
                    upload_id: upload.id,
                },
                task,
                delay,
            )
            .await?;
        tracing::info!(next_job_id = %task, ?delay, "retry queued");
        Ok(true)
    }

    /// When a delivery of task `parent` could not even claim its row (Postgres down, so no
    /// attempt can be counted): queues the same work again after `delay` under a task id
    /// derived from `parent` and this delivery's `attempt`. The row is unchanged; if this push
    /// is lost too, the sweeper requeues the row.
    ///
    /// # Errors
    /// [`QueueError`] when Redis fails too.
    pub async fn redeliver_later(
        &self,
        id: UploadId,
        parent: &str,
        attempt: u32,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let task = task_id::retry_of(id, parent, attempt);
        self.uploads
            .push(ProcessUpload { upload_id: id }, task, delay)
            .await?;
        Ok(())
    }

    /// Fails a claimed upload: `processing` (under this attempt) → `failed` with the code, the
    /// client message and the internal detail; then keeps the original at its final key (best
    /// effort: on failure the sweeper does it). Returns `false`, changing nothing, when another
    /// attempt holds the row now.
    ///
    /// # Errors
    /// [`LifecycleError::Db`] when the row cannot be written.
    pub async fn fail(&self, upload: &Upload, failure: &Failure) -> Result<bool, LifecycleError> {
        let (message, detail) = failure.recorded();
        let error = RecordedError {
            code: failure.code,
            message: &message,
            detail,
        };
        if !transitions::mark_failed(&self.pool, upload.id, Some(upload.attempts), error).await? {
            return Ok(false);
        }
        if let Err(e) = self.preserve_original(upload).await {
            tracing::warn!(error = %e, "could not move the failed original to its final key; the sweeper will");
        }
        Ok(true)
    }

    /// Keeps a failed upload's original: copies the temp object to the final original key,
    /// records it, then deletes the temp object, so nothing is lost, nothing is left under
    /// `tmp/`, and a replay can process it from the final key. A missing temp object is not
    /// an error.
    ///
    /// # Errors
    /// [`LifecycleError::Storage`] or [`LifecycleError::Db`] on the first failing step.
    pub async fn preserve_original(&self, upload: &Upload) -> Result<(), LifecycleError> {
        if self.storage.head(&upload.temp_key).await?.is_none() {
            return Ok(());
        }
        let final_key = self
            .storage
            .layout()
            .original(&upload.owner, upload.id, &upload.filename);
        self.storage
            .copy(&upload.temp_key, &final_key, None)
            .await?;
        transitions::set_final_key(&self.pool, upload.id, &final_key).await?;
        self.storage.delete(&upload.temp_key).await?;
        Ok(())
    }
}
