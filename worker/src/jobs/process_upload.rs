//! `ProcessUpload`: fetch the original from its temp key, run the image pipeline, write the
//! derivatives, promote the original, commit, then delete the temp object.
//!
//! Crash-safe per DESIGN.md "Promotion": every step can repeat. The row is claimed with a
//! conditional UPDATE; derivatives are PUT (overwriting is harmless); the original is copied
//! before the commit; the commit is conditional on `processing`; the temp object is deleted
//! last, and a failure there is left to the sweeper.

use std::sync::Arc;
use std::time::Instant;

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskId};
use kiln_shared::Settings;
use kiln_shared::db::{DbError, PgPool, uploads as db};
use kiln_shared::domain::{Derivative, ErrorCode, Upload, UploadId};
use kiln_shared::queue::ProcessUpload;
use kiln_shared::storage::{Storage, StorageError};
use tracing::Instrument;

use crate::imaging::{self, ImagingError, Limits};

/// What every job shares.
pub struct JobContext {
    /// Settings (renditions, limits, retry policy).
    pub settings: Arc<Settings>,
    /// Postgres pool.
    pub pool: PgPool,
    /// S3 bucket.
    pub storage: Storage,
}

impl JobContext {
    fn limits(&self) -> Limits {
        let w = &self.settings.worker;
        Limits {
            max_pixels: w.max_pixels,
            max_dimension: w.max_dimension,
            max_encoded_bytes: w.max_encoded_bytes,
        }
    }
}

/// A failed attempt, classified.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The same input fails the same way again: fail the upload now.
    #[error("{code}: {message}")]
    Permanent {
        /// Stable code.
        code: ErrorCode,
        /// Reason.
        message: String,
    },
    /// May succeed later (S3, Postgres or Redis trouble).
    #[error("{code}: {message}")]
    Transient {
        /// Stable code.
        code: ErrorCode,
        /// Reason.
        message: String,
    },
}

impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        JobError::Transient {
            code: ErrorCode::DatabaseUnavailable,
            message: e.to_string(),
        }
    }
}

impl From<StorageError> for JobError {
    fn from(e: StorageError) -> Self {
        if e.is_transient() {
            JobError::Transient {
                code: ErrorCode::StorageUnavailable,
                message: e.to_string(),
            }
        } else {
            JobError::Permanent {
                code: ErrorCode::StorageUnavailable,
                message: e.to_string(),
            }
        }
    }
}

impl From<ImagingError> for JobError {
    fn from(e: ImagingError) -> Self {
        JobError::Permanent {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

/// How an attempt ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upload is now `ready`.
    Ready,
    /// Nothing to do: the row was already terminal or another attempt committed it (a late
    /// duplicate delivery), so the job is acked without work.
    Skipped,
}

/// apalis handler. Permanent failures and exhausted retries mark the upload `failed` and end
/// the task with [`AbortError`] (it goes to the dead set at once); transient failures put the
/// upload back to `uploaded` and return a plain error, so apalis runs the task again.
///
/// # Errors
/// [`AbortError`] for a dead job; a plain error for a retry.
pub async fn handle(
    job: ProcessUpload,
    ctx: Data<Arc<JobContext>>,
    task_id: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "job",
        upload_id = %job.upload_id,
        job_id = %task_id,
        attempt = attempt.current()
    );
    async move {
        let started = Instant::now();
        match process(&ctx, job.upload_id).await {
            Ok(outcome) => {
                tracing::info!(
                    ?outcome,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "job done"
                );
                Ok(())
            }
            Err(JobError::Permanent { code, message }) => {
                tracing::warn!(%code, %message, "permanent failure");
                preserve_original(&ctx, job.upload_id).await?;
                db::mark_failed(&ctx.pool, job.upload_id, code, &message).await?;
                Err(AbortError::new(format!("{code}: {message}")).into())
            }
            Err(JobError::Transient { code, message }) => {
                let upload = db::get(&ctx.pool, job.upload_id).await?;
                let attempts = upload.map(|u| u.attempts).unwrap_or(0);
                if attempts >= ctx.settings.worker.max_attempts as i32 {
                    let message = format!("{attempts} attempts; last: {code}: {message}");
                    tracing::warn!(%message, "retries exhausted");
                    preserve_original(&ctx, job.upload_id).await?;
                    db::mark_failed(
                        &ctx.pool,
                        job.upload_id,
                        ErrorCode::RetriesExhausted,
                        &message,
                    )
                    .await?;
                    return Err(AbortError::new(message).into());
                }
                tracing::warn!(%code, %message, attempts, "transient failure; will retry");
                db::release_for_retry(&ctx.pool, job.upload_id, code, &message).await?;
                Err(format!("{code}: {message}").into())
            }
        }
    }
    .instrument(span)
    .await
}

/// One attempt at an upload.
///
/// # Errors
/// [`JobError`], classified as permanent or transient.
pub async fn process(ctx: &JobContext, id: UploadId) -> Result<Outcome, JobError> {
    let Some(upload) = db::claim(&ctx.pool, id).await? else {
        tracing::info!("upload is not waiting for processing; acking without work");
        return Ok(Outcome::Skipped);
    };
    let max = ctx.settings.worker.max_encoded_bytes;
    // A replayed upload's original was already moved to its final key when it failed.
    let source = if ctx.storage.head(&upload.temp_key).await?.is_none() {
        upload
            .final_key
            .clone()
            .unwrap_or_else(|| upload.temp_key.clone())
    } else {
        upload.temp_key.clone()
    };
    let bytes = match ctx.storage.get(&source, max).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return Err(JobError::Permanent {
                code: ErrorCode::ObjectMissing,
                message: format!("temp object {} is gone", upload.temp_key),
            });
        }
        Err(StorageError::Rejected(m)) if m.contains("limit") => {
            return Err(JobError::Permanent {
                code: ErrorCode::ImageTooLarge,
                message: m,
            });
        }
        Err(e) => return Err(e.into()),
    };
    if bytes.len() as u64 != upload.byte_size.max(0) as u64 {
        return Err(JobError::Permanent {
            code: ErrorCode::SizeMismatch,
            message: format!(
                "temp object has {} bytes, {} declared",
                bytes.len(),
                upload.byte_size
            ),
        });
    }

    let renditions = ctx.settings.worker.renditions.clone();
    let limits = ctx.limits();
    let processed =
        tokio::task::spawn_blocking(move || imaging::process(&bytes, &renditions, &limits))
            .await
            .map_err(|e| JobError::Permanent {
                code: ErrorCode::CorruptImage,
                message: format!("decoder panicked: {e}"),
            })??;

    let derivatives = store_derivatives(ctx, &upload, processed.derivatives).await?;
    let final_key = ctx
        .storage
        .layout()
        .original(&upload.owner, upload.id, &upload.filename);
    if source != final_key {
        ctx.storage.copy(&source, &final_key).await?;
    }
    if !db::commit_ready(&ctx.pool, id, &final_key, &processed.metadata, &derivatives).await? {
        tracing::info!("another attempt committed first; acking");
        return Ok(Outcome::Skipped);
    }
    if let Err(e) = ctx.storage.delete(&upload.temp_key).await {
        tracing::warn!(error = %e, "could not delete temp object; the sweeper will");
    }
    Ok(Outcome::Ready)
}

/// Keeps a failed upload's original: copies the temp object to the final original key, records
/// it, then deletes the temp object, so nothing is lost, nothing is left under `tmp/`, and a
/// replay can process it from the final key. A missing temp object is not an error.
async fn preserve_original(ctx: &JobContext, id: UploadId) -> Result<(), BoxDynError> {
    let Some(upload) = db::get(&ctx.pool, id).await? else {
        return Ok(());
    };
    if ctx.storage.head(&upload.temp_key).await?.is_none() {
        return Ok(());
    }
    let final_key = ctx
        .storage
        .layout()
        .original(&upload.owner, upload.id, &upload.filename);
    ctx.storage.copy(&upload.temp_key, &final_key).await?;
    db::set_final_key(&ctx.pool, id, &final_key).await?;
    ctx.storage.delete(&upload.temp_key).await?;
    Ok(())
}

async fn store_derivatives(
    ctx: &JobContext,
    upload: &Upload,
    rendered: Vec<imaging::RenderedDerivative>,
) -> Result<Vec<Derivative>, JobError> {
    let mut out = Vec::with_capacity(rendered.len());
    for d in rendered {
        let r = &d.rendition;
        let key = ctx.storage.layout().derivative(
            &upload.owner,
            upload.id,
            &r.name,
            r.format.extension(),
        );
        let byte_size = d.bytes.len() as u64;
        ctx.storage
            .put(&key, d.bytes.into(), r.format.mime())
            .await?;
        out.push(Derivative {
            rendition: r.name.clone(),
            object_key: key,
            format: r.format.as_str().to_owned(),
            width: d.width,
            height: d.height,
            byte_size,
            recipe_version: r.version,
        });
    }
    Ok(out)
}
