//! `ProcessUpload`: fetch the original from its temp key, run the image pipeline, write the
//! derivatives, promote the original, commit, then delete the temp object.
//!
//! Crash-safe per docs/design.md "Promotion": every step can repeat. The row is claimed with a
//! conditional UPDATE; derivatives are PUT (overwriting is harmless); the original is copied
//! before the commit; the commit is conditional on `processing`; the temp object is deleted
//! last, and a failure there is left to the sweeper.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::{AbortError, Attempt, BoxDynError, Data, TaskId};
use kiln_shared::Settings;
use kiln_shared::db::{DbError, PgPool, uploads as db};
use kiln_shared::domain::{Derivative, ErrorCode, Upload};
use kiln_shared::metrics::Metrics;
use kiln_shared::queue::{JobQueue, ProcessUpload};
use kiln_shared::retry::RetryPolicy;
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
    /// The queue, for pushing delayed retries.
    pub queue: JobQueue,
    /// This process's metrics.
    pub metrics: Arc<Metrics>,
}

impl JobContext {
    fn limits(&self) -> Limits {
        Limits::from_settings(&self.settings.worker)
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
    /// A transient failure; a delayed retry job was enqueued.
    Retried,
}

/// apalis handler. Permanent failures and exhausted retries mark the upload `failed` and end
/// the task with [`AbortError`] (it goes to the dead set at once). A transient failure puts the
/// upload back to `uploaded` and enqueues a fresh, delayed task per [`RetryPolicy`]; this task
/// then ends normally, so apalis' own reschedule (25 hard-coded attempts) never runs.
///
/// # Errors
/// [`AbortError`] for a dead job; a plain error only when Kiln could not record the outcome
/// (Postgres or Redis down), which leaves the retry to apalis and the sweeper.
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
    let metrics = ctx.metrics.clone();
    let queue = ctx.settings.redis.queue.clone();
    let started = Instant::now();
    let result = async move {
        let id = job.upload_id;
        let policy = RetryPolicy::from_settings(&ctx.settings.worker);
        let claimed = match db::claim(&ctx.pool, id, ctx.settings.redis.claim_lease()).await {
            Ok(Some(upload)) => upload,
            Ok(None) => {
                tracing::info!("upload is not waiting for processing; acking without work");
                return Ok(Outcome::Skipped);
            }
            Err(e) => {
                // Postgres is down, so attempts cannot be counted in the row: requeue with the
                // backoff of this delivery's attempt instead of apalis' own reschedule. If
                // Redis fails too, the plain error leaves it to apalis and the sweeper.
                let delay = policy.delay(attempt.current() as u32);
                tracing::warn!(error = %e, ?delay, "cannot claim; database unavailable, requeueing");
                ctx.queue.push_process_upload_after(id, delay).await?;
                return Ok(Outcome::Retried);
            }
        };
        let attempt_no = claimed.attempts;
        // A job that keeps killing its worker (OOM, a crash in a C decoder) is re-delivered as
        // an orphan and re-claimed; stop it here rather than crash forever.
        let result = if attempt_no as u32 > policy.max_attempts {
            Err(JobError::Permanent {
                code: ErrorCode::RetriesExhausted,
                message: format!("claimed {attempt_no} times without finishing"),
            })
        } else {
            process(&ctx, &claimed).await
        };
        match result {
            Ok(outcome) => {
                tracing::info!(?outcome, elapsed_ms = started.elapsed().as_millis() as u64, "job done");
                Ok(outcome)
            }
            Err(JobError::Transient { code, message }) if policy.may_retry(attempt_no as u32) => {
                let delay = policy.delay(attempt_no as u32);
                tracing::warn!(%code, %message, attempt_no, ?delay, "transient failure; retrying");
                if db::release_for_retry(&ctx.pool, id, attempt_no, code, &message).await? {
                    let next = ctx.queue.push_process_upload_after(id, delay).await?;
                    db::set_job_id(&ctx.pool, id, &next).await?;
                }
                Ok(Outcome::Retried)
            }
            Err(err) => {
                let (code, message) = match err {
                    JobError::Permanent { code, message } => (code, message),
                    JobError::Transient { code, message } => (
                        ErrorCode::RetriesExhausted,
                        format!("{attempt_no} attempts; last: {code}: {message}"),
                    ),
                };
                fail(&ctx, &claimed, code, &message).await.map(|()| Outcome::Skipped)
            }
        }
    }
    .instrument(span)
    .await;
    let outcome = match &result {
        Ok(Outcome::Ready) => "succeeded",
        Ok(Outcome::Skipped) => "skipped",
        Ok(Outcome::Retried) => "retried",
        Err(e) if e.downcast_ref::<AbortError>().is_some() => "failed",
        Err(_) => "error",
    };
    metrics.record_job(&queue, outcome, started.elapsed());
    result.map(|_| ())
}

/// Ends an attempt as failed: records the code and message (fenced by the attempt), keeps the
/// original (best effort), and returns the [`AbortError`] that sends the task to the dead set.
/// If the row moved on meanwhile (another attempt committed it), the task is acked instead.
async fn fail(
    ctx: &JobContext,
    upload: &Upload,
    code: ErrorCode,
    message: &str,
) -> Result<(), BoxDynError> {
    tracing::warn!(%code, %message, "upload failed");
    if !db::mark_failed(&ctx.pool, upload.id, Some(upload.attempts), code, message).await? {
        tracing::info!("upload changed state meanwhile; acking");
        return Ok(());
    }
    ctx.metrics
        .upload_failures
        .with_label_values(&[code.as_str()])
        .inc();
    if let Err(e) = preserve_original(ctx, upload).await {
        tracing::warn!(error = %e, "could not move the failed original to its final key; the sweeper will");
    }
    Err(AbortError::new(format!("{code}: {message}")).into())
}

/// One attempt at a claimed upload.
///
/// # Errors
/// [`JobError`], classified as permanent or transient.
pub async fn process(ctx: &JobContext, upload: &Upload) -> Result<Outcome, JobError> {
    let started = Instant::now();
    let max = ctx.settings.worker.max_encoded_bytes;
    // A replayed upload's original was already moved to its final key when it failed.
    let mut source = upload.temp_key.clone();
    let mut object = ctx.storage.get(&source, max).await?;
    if let (None, Some(final_key)) = (&object, &upload.final_key) {
        source = final_key.clone();
        object = ctx.storage.get(&source, max).await?;
    }
    let Some(object) = object else {
        return Err(JobError::Permanent {
            code: ErrorCode::ObjectMissing,
            message: format!("object {} is gone", upload.temp_key),
        });
    };
    let bytes = object.bytes;
    let m = &ctx.metrics;
    let stage = |name: &str, d: Duration| {
        m.stage_duration
            .with_label_values(&[name])
            .observe(d.as_secs_f64())
    };
    stage("fetch", started.elapsed());
    m.processed_bytes.inc_by(bytes.len() as u64);
    if bytes.len() as u64 != upload.byte_size.max(0) as u64 {
        return Err(JobError::Permanent {
            code: ErrorCode::SizeMismatch,
            message: format!(
                "object has {} bytes, {} declared",
                bytes.len(),
                upload.byte_size
            ),
        });
    }

    let renditions = ctx.settings.worker.renditions.clone();
    let limits = ctx.limits();
    // The blocking thread logs inside the job's span (upload_id, job_id, attempt) too.
    let span = tracing::Span::current();
    let processed = tokio::task::spawn_blocking(move || {
        span.in_scope(|| imaging::process(&bytes, &renditions, &limits))
    })
    .await
    .map_err(|e| JobError::Permanent {
        code: ErrorCode::CorruptImage,
        message: format!("decoder panicked: {e}"),
    })??;

    stage("decode", processed.timings.decode);
    stage("render", processed.timings.render);
    stage("encode", processed.timings.encode);
    m.processed_pixels
        .inc_by(u64::from(processed.metadata.width) * u64::from(processed.metadata.height));
    let t = Instant::now();
    let derivatives = store_derivatives(ctx, upload, processed.derivatives).await?;
    stage("store", t.elapsed());
    let t = Instant::now();
    let final_key = ctx
        .storage
        .layout()
        .original(&upload.owner, upload.id, &upload.filename);
    if source != final_key {
        // Promote exactly the bytes that were processed (the client's URL may still be valid).
        ctx.storage
            .copy(&source, &final_key, object.etag.as_deref())
            .await?;
    }
    stage("promote", t.elapsed());
    let t = Instant::now();
    if !db::commit_ready(
        &ctx.pool,
        upload.id,
        upload.attempts,
        &final_key,
        &processed.metadata,
        &derivatives,
    )
    .await?
    {
        tracing::info!("another attempt holds the upload now; acking");
        return Ok(Outcome::Skipped);
    }
    stage("commit", t.elapsed());
    if let Some(completed) = upload.completed_at {
        let latency = (chrono::Utc::now() - completed)
            .to_std()
            .unwrap_or_default();
        m.ready_latency.observe(latency.as_secs_f64());
    }
    if source != final_key
        && let Err(e) = ctx.storage.delete(&source).await
    {
        tracing::warn!(error = %e, "could not delete temp object; the sweeper will");
    }
    Ok(Outcome::Ready)
}

/// Keeps a failed upload's original: copies the temp object to the final original key, records
/// it, then deletes the temp object, so nothing is lost, nothing is left under `tmp/`, and a
/// replay can process it from the final key. A missing temp object is not an error.
async fn preserve_original(ctx: &JobContext, upload: &Upload) -> Result<(), BoxDynError> {
    if ctx.storage.head(&upload.temp_key).await?.is_none() {
        return Ok(());
    }
    let final_key = ctx
        .storage
        .layout()
        .original(&upload.owner, upload.id, &upload.filename);
    ctx.storage.copy(&upload.temp_key, &final_key, None).await?;
    db::set_final_key(&ctx.pool, upload.id, &final_key).await?;
    ctx.storage.delete(&upload.temp_key).await?;
    Ok(())
}

/// PUTs each rendered derivative to its key (`derivatives/{owner}/{id}/{rendition}.{ext}`) and
/// returns the rows to commit, with the recipe version and fingerprint each was rendered with.
/// Overwriting is harmless, so a repeated attempt simply writes the same keys again.
pub(crate) async fn store_derivatives(
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
            recipe_hash: Some(r.fingerprint()),
        });
    }
    Ok(out)
}
