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
//! job writes the same objects and rows again. Errors are classified by the one taxonomy and
//! decided by the one job runtime, as for ProcessUpload:
//! permanent ones (original gone, image no longer decodes) end the task in the dead set at
//! once; transient ones (S3, Postgres) queue a fresh task with Kiln's backoff, counted in
//! [`RenderRenditions::retries`], up to `worker.max_attempts`. Either way the existing
//! derivatives stay as they were, and a later `regenerate --stale-only` finds them again.

use std::sync::Arc;
use std::time::Instant;

use apalis::prelude::{BoxDynError, Data, TaskId};
use kiln_shared::db::uploads as db;
use kiln_shared::domain::{ErrorCode, Rendition, UploadState};
use kiln_shared::lifecycle::Failure;
use kiln_shared::queue::{Job, RenderRenditions, task_id};

use super::process_upload::{run_pipeline, store_derivatives};
use super::runtime::{self, Decision, Ended, JobContext, Outcome};
use crate::jail::Decoders;

/// apalis handler: one attempt, run by [`runtime::run`]. A permanent failure, or a transient
/// one after `worker.max_attempts` attempts, ends the task in the dead set; a transient one
/// before that queues the next task (its id derived from this one's and the retry count)
/// delayed per the retry policy, and acks this one.
///
/// # Errors
/// As [`runtime::run`].
pub async fn handle(
    job: RenderRenditions,
    ctx: Data<Arc<JobContext>>,
    decoders: Data<Decoders>,
    task_id: TaskId,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "job",
        upload_id = %job.upload_id,
        job_id = %task_id,
        renditions = ?job.renditions,
        retries = job.retries
    );
    let queue = RenderRenditions::namespace(&ctx.settings.redis);
    let task = task_id.to_string();
    runtime::run(
        &ctx.metrics,
        &queue,
        span,
        attempt_once(&ctx, &decoders, job, &task),
    )
    .await
}

async fn attempt_once(
    ctx: &JobContext,
    decoders: &Decoders,
    job: RenderRenditions,
    task: &str,
) -> Result<Outcome, Ended> {
    let attempt = job.retries + 1;
    let failure = match render(ctx, decoders, &job).await {
        Ok(outcome) => return Ok(outcome),
        Err(f) => f,
    };
    match runtime::decide(&ctx.lifecycle.retry_policy(), attempt, failure) {
        Decision::Retry { delay, failure } => {
            let next = task_id::retry_of(job.upload_id, task, attempt);
            let retry = RenderRenditions {
                retries: attempt,
                ..job
            };
            tracing::warn!(code = %failure.code, detail = %failure.detail, attempt, ?delay, next_job_id = %next, "transient failure; retrying");
            match ctx
                .lifecycle
                .renditions_queue()
                .push(retry, next, delay)
                .await
            {
                Ok(_) => Ok(Outcome::Retried),
                Err(e) => Err(Ended::Unrecorded(Failure::from_error(&e))),
            }
        }
        Decision::Dead(failure) => {
            tracing::warn!("re-render failed; the stored derivatives are unchanged");
            Err(Ended::Dead(failure))
        }
    }
}

/// One attempt: re-render `job.renditions` of the upload (the pipeline run by `decoders`) and
/// commit only those derivatives.
///
/// # Errors
/// A [`Failure`], classified by the taxonomy.
pub async fn render(
    ctx: &JobContext,
    decoders: &Decoders,
    job: &RenderRenditions,
) -> Result<Outcome, Failure> {
    let pool = ctx.lifecycle.pool();
    let Some(upload) = db::get(pool, job.upload_id)
        .await
        .map_err(|e| Failure::from_error(&e))?
    else {
        tracing::info!("upload does not exist; acking without work");
        return Ok(Outcome::Skipped);
    };
    if upload.state != UploadState::Ready || upload.deleted_at.is_some() {
        tracing::info!(
            state = upload.visible_state().as_str(),
            "upload is not ready (or deleted); acking without work"
        );
        return Ok(Outcome::Skipped);
    }
    let selected = select(&ctx.settings.worker.renditions, &job.renditions);
    if selected.is_empty() {
        tracing::info!("no named rendition is configured on this worker; acking without work");
        return Ok(Outcome::Skipped);
    }
    let Some(final_key) = upload.final_key.clone() else {
        return Err(Failure::new(
            ErrorCode::ObjectMissing,
            "the ready upload has no final key",
        ));
    };

    let t = Instant::now();
    let Some(object) = ctx
        .storage()
        .get(&final_key, ctx.settings.worker.max_encoded_bytes)
        .await
        .map_err(|e| Failure::from_error(&e))?
    else {
        return Err(Failure::new(
            ErrorCode::ObjectMissing,
            format!("original {final_key} is gone"),
        ));
    };
    ctx.stage("fetch", t.elapsed());
    let processed = run_pipeline(ctx, decoders, &upload, object.bytes, selected).await?;

    let t = Instant::now();
    let stored = store_derivatives(ctx, &upload, processed.derivatives).await?;
    ctx.stage("store", t.elapsed());
    let t = Instant::now();
    let Some(orphaned) = ctx
        .lifecycle
        .replace_derivatives(upload.id, &stored)
        .await
        .map_err(|e| Failure::from_error(&e))?
    else {
        // Deleted, purged or replayed meanwhile: what this job stored is not to be served.
        let written: Vec<String> = stored.iter().map(|d| d.object_key.clone()).collect();
        if let Err(e) = ctx.lifecycle.discard_written(upload.id, &written).await {
            tracing::warn!(error = %e, "could not clean up after an upload that left ready");
        }
        tracing::info!("upload left ready meanwhile; acking without committing");
        return Ok(Outcome::Skipped);
    };
    ctx.stage("commit", t.elapsed());
    // A recipe whose format changed wrote a new key (`preview.jpg` for `preview.webp`).
    for key in orphaned {
        if let Err(e) = ctx.storage().delete(&key).await {
            tracing::warn!(error = %e, %key, "could not delete the replaced derivative object");
        }
    }
    tracing::info!(
        renditions = ?stored.iter().map(|d| d.rendition.as_str()).collect::<Vec<_>>(),
        "derivatives re-rendered"
    );
    Ok(Outcome::Succeeded)
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
