//! `RenderRenditions`: re-render some renditions of a `ready` upload from its final original
//! (queued by `kiln renditions regenerate` after a recipe changed).
//!
//! The job touches only the derivatives it names: it GETs the promoted original (never the temp
//! key), renders the named renditions with this worker's recipes, PUTs them to the same keys
//! ProcessUpload uses, and upserts only their rows (recipe version and fingerprint, size, byte
//! size) in one transaction that requires the upload to still be `ready`. The upload row, its
//! metadata and its other derivatives are left as they are.
//!
//! Safe to repeat: PUTs overwrite and the upsert is idempotent, so a duplicate or re-delivered
//! job writes the same objects and rows again. Errors are classified as for ProcessUpload:
//! permanent ones (original gone, image no longer decodes) end the task in the dead set at
//! once; transient ones (S3, Postgres) queue a fresh task with Kiln's backoff, counted in
//! [`RenderRenditions::retries`], up to `worker.max_attempts`. Either way the existing
//! derivatives stay as they were, and a later `regenerate --stale-only` finds them again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::{AbortError, BoxDynError, Data, TaskId};
use kiln_shared::db::derivatives;
use kiln_shared::db::uploads as db;
use kiln_shared::domain::{ErrorCode, Rendition, UploadState};
use kiln_shared::queue::{RenderRenditions, RenditionQueue};
use kiln_shared::retry::RetryPolicy;
use tracing::Instrument;

use super::process_upload::{JobContext, JobError, store_derivatives};
use crate::imaging::{self, Limits};

/// What a RenderRenditions task needs: the shared job context and its own queue (for retries).
pub struct RenderContext {
    /// Settings, pool, storage and metrics shared with ProcessUpload.
    pub jobs: Arc<JobContext>,
    /// The RenderRenditions queue.
    pub queue: RenditionQueue,
}

/// How a task ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The named derivatives were re-rendered and committed.
    Rendered,
    /// Nothing to do: the upload is missing or not `ready`, or no named rendition is configured
    /// on this worker. Acked without work.
    Skipped,
    /// A transient failure; a delayed retry task was queued.
    Retried,
}

/// apalis handler. A permanent failure, or a transient one after `worker.max_attempts`
/// attempts, ends the task with [`AbortError`] (dead set); a transient one before that queues
/// a fresh task delayed per [`RetryPolicy`] and ends this one normally.
///
/// # Errors
/// [`AbortError`] for a dead task; a plain error only when the retry could not be queued
/// (Redis down), which leaves it to apalis.
pub async fn handle(
    job: RenderRenditions,
    ctx: Data<Arc<RenderContext>>,
    task_id: TaskId,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "job",
        upload_id = %job.upload_id,
        job_id = %task_id,
        renditions = ?job.renditions,
        retries = job.retries
    );
    let metrics = ctx.jobs.metrics.clone();
    let queue = ctx.jobs.settings.redis.renditions_queue();
    let started = Instant::now();
    let result: Result<Outcome, BoxDynError> = async {
        let policy = RetryPolicy::from_settings(&ctx.jobs.settings.worker);
        let attempt_no = job.retries + 1;
        match render(&ctx.jobs, &job).await {
            Ok(outcome) => {
                tracing::info!(?outcome, elapsed_ms = started.elapsed().as_millis() as u64, "job done");
                Ok(outcome)
            }
            Err(JobError::Transient { code, message }) if policy.may_retry(attempt_no) => {
                let delay = policy.delay(attempt_no);
                let retry = RenderRenditions {
                    retries: attempt_no,
                    ..job.clone()
                };
                let next = ctx.queue.push_after(retry, delay).await?;
                tracing::warn!(%code, %message, attempt_no, ?delay, next_job_id = %next, "transient failure; retrying");
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
                tracing::warn!(%code, %message, "re-render failed; the stored derivatives are unchanged");
                Err(AbortError::new(format!("{code}: {message}")).into())
            }
        }
    }
    .instrument(span)
    .await;
    let outcome = match &result {
        Ok(Outcome::Rendered) => "succeeded",
        Ok(Outcome::Skipped) => "skipped",
        Ok(Outcome::Retried) => "retried",
        Err(e) if e.downcast_ref::<AbortError>().is_some() => "failed",
        Err(_) => "error",
    };
    metrics.record_job(&queue, outcome, started.elapsed());
    result.map(|_| ())
}

/// One attempt: re-render `job.renditions` of the upload and commit only those derivatives.
///
/// # Errors
/// [`JobError`], classified as permanent or transient.
pub async fn render(ctx: &JobContext, job: &RenderRenditions) -> Result<Outcome, JobError> {
    let Some(upload) = db::get(&ctx.pool, job.upload_id).await? else {
        tracing::info!("upload does not exist; acking without work");
        return Ok(Outcome::Skipped);
    };
    if upload.state != UploadState::Ready {
        tracing::info!(
            state = upload.state.as_str(),
            "upload is not ready; acking without work"
        );
        return Ok(Outcome::Skipped);
    }
    let selected = select(&ctx.settings.worker.renditions, &job.renditions);
    if selected.is_empty() {
        tracing::info!("no named rendition is configured on this worker; acking without work");
        return Ok(Outcome::Skipped);
    }
    let Some(final_key) = upload.final_key.clone() else {
        return Err(JobError::Permanent {
            code: ErrorCode::ObjectMissing,
            message: "the ready upload has no final key".into(),
        });
    };

    let m = &ctx.metrics;
    let stage = |name: &str, d: Duration| {
        m.stage_duration
            .with_label_values(&[name])
            .observe(d.as_secs_f64())
    };
    let t = Instant::now();
    let Some(object) = ctx
        .storage
        .get(&final_key, ctx.settings.worker.max_encoded_bytes)
        .await?
    else {
        return Err(JobError::Permanent {
            code: ErrorCode::ObjectMissing,
            message: format!("original {final_key} is gone"),
        });
    };
    stage("fetch", t.elapsed());
    let bytes = object.bytes;
    let limits = Limits::from_settings(&ctx.settings.worker);
    let renditions = selected.clone();
    let processed =
        tokio::task::spawn_blocking(move || imaging::process(&bytes, &renditions, &limits))
            .await
            .map_err(|e| JobError::Permanent {
                code: ErrorCode::CorruptImage,
                message: format!("decoder panicked: {e}"),
            })??;
    stage("decode", processed.timings.decode);
    stage("render", processed.timings.render);
    stage("encode", processed.timings.encode);

    let t = Instant::now();
    let stored = store_derivatives(ctx, &upload, processed.derivatives).await?;
    stage("store", t.elapsed());
    let t = Instant::now();
    let Some(orphaned) = derivatives::replace(&ctx.pool, upload.id, &stored).await? else {
        tracing::info!("upload left ready meanwhile; acking without committing");
        return Ok(Outcome::Skipped);
    };
    stage("commit", t.elapsed());
    // A recipe whose format changed wrote a new key (`preview.jpg` for `preview.webp`).
    for key in orphaned {
        if let Err(e) = ctx.storage.delete(&key).await {
            tracing::warn!(error = %e, %key, "could not delete the replaced derivative object");
        }
    }
    tracing::info!(
        renditions = ?stored.iter().map(|d| d.rendition.as_str()).collect::<Vec<_>>(),
        "derivatives re-rendered"
    );
    Ok(Outcome::Rendered)
}

/// This worker's recipes for `names`, in configuration order, each once. Names this worker
/// does not configure are logged and skipped (a fleet mid-deploy may disagree about them).
fn select(configured: &[Rendition], names: &[String]) -> Vec<Rendition> {
    for name in names {
        if !configured.iter().any(|r| &r.name == name) {
            tracing::warn!(rendition = %name, "rendition is not configured on this worker; skipping it");
        }
    }
    configured
        .iter()
        .filter(|r| names.contains(&r.name))
        .cloned()
        .collect()
}
