//! `ProcessUpload`: fetch the original from its temp key, run the image pipeline, write the
//! derivatives, promote the original, commit, then delete the temp object.
//!
//! Crash-safe (docs/design.md "Promotion"): every step can repeat. The row is claimed through
//! the lifecycle (a conditional UPDATE fenced by the attempt); derivatives are PUT
//! (overwriting is harmless); the original is copied before the commit; the commit is
//! conditional on this attempt; the temp object is deleted last, and a failure there is left
//! to the sweeper. Every state change goes through [`kiln_shared::lifecycle::Lifecycle`].

use std::sync::Arc;
use std::time::Instant;

use apalis::prelude::{Attempt, BoxDynError, Data, TaskId};
use kiln_shared::domain::{Derivative, ErrorCode, Upload};
use kiln_shared::lifecycle::{Claim, Failure};
use kiln_shared::queue::{Job, ProcessUpload};
use sha2::{Digest, Sha256};

use super::runtime::{self, Decision, Ended, JobContext, Outcome};
use crate::imaging::{self, Accept, ImagingError, Limits};
use crate::jail::{Decoders, JobError};

/// apalis handler: one attempt at an upload, run by [`runtime::run`]. Permanent failures and
/// exhausted retries fail the upload and send the task to the dead set; a transient failure
/// puts the upload back to `uploaded` and queues the next generation's task with Kiln's
/// backoff.
///
/// # Errors
/// As [`runtime::run`].
pub async fn handle(
    job: ProcessUpload,
    ctx: Data<Arc<JobContext>>,
    decoders: Data<Decoders>,
    task_id: TaskId,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!(
        "job",
        upload_id = %job.upload_id,
        job_id = %task_id,
        attempt = attempt.current()
    );
    let queue = ProcessUpload::namespace(&ctx.settings.redis);
    let task = task_id.to_string();
    runtime::run(
        &ctx.metrics,
        &queue,
        span,
        attempt_once(&ctx, &decoders, job, &task, attempt.current() as u32),
    )
    .await
}

async fn attempt_once(
    ctx: &JobContext,
    decoders: &Decoders,
    job: ProcessUpload,
    task: &str,
    delivery: u32,
) -> Result<Outcome, Ended> {
    let lifecycle = &ctx.lifecycle;
    let policy = lifecycle.retry_policy();
    let upload = match lifecycle.claim(job.upload_id).await {
        Ok(Claim::Claimed(upload)) => {
            if upload.attempts == 1
                && upload.replays == 0
                && let Some(done) = upload.completed_at
            {
                let wait = (chrono::Utc::now() - done).to_std().unwrap_or_default();
                ctx.metrics
                    .observe_queue_wait(upload.owner.as_str(), wait.as_secs_f64());
            }
            upload
        }
        Ok(Claim::NotWaiting) => {
            tracing::info!("upload is not waiting for processing; acking without work");
            return Ok(Outcome::Skipped);
        }
        Ok(Claim::GaveUp(failure)) => return Err(Ended::Dead(failure)),
        Err(e) => {
            let failure = Failure::from_error(&e);
            if !failure.is_transient() {
                return Err(Ended::Dead(failure));
            }
            // Postgres is down, so no attempt can be counted in the row: queue this delivery
            // again with its own backoff. If Redis fails too, apalis and the sweeper retry.
            let delay = policy.delay(delivery);
            tracing::warn!(detail = %failure.detail, ?delay, "cannot claim; database unavailable, requeueing");
            return match lifecycle
                .redeliver_later(job.upload_id, task, delivery, delay)
                .await
            {
                Ok(()) => Ok(Outcome::Retried),
                Err(q) => Err(Ended::Unrecorded(Failure::from_error(&q))),
            };
        }
    };
    let attempt = upload.attempts as u32;
    let failure = match process(ctx, decoders, &upload).await {
        Ok(outcome) => return Ok(outcome),
        Err(failure) => failure,
    };
    match runtime::decide(&policy, attempt, failure) {
        Decision::Retry { delay, failure } => {
            tracing::warn!(code = %failure.code, detail = %failure.detail, attempt, ?delay, "transient failure; retrying");
            match lifecycle.retry_later(&upload, &failure, delay).await {
                Ok(_) => Ok(Outcome::Retried),
                Err(e) => Err(Ended::Unrecorded(Failure::from_error(&e))),
            }
        }
        Decision::Dead(failure) => fail(ctx, &upload, failure).await,
    }
}

/// Records a dead upload through the lifecycle and counts it in
/// `kiln_upload_failures_total{error_code}`. If the row moved on meanwhile (another attempt
/// holds or committed it), the task is acked instead.
async fn fail(ctx: &JobContext, upload: &Upload, failure: Failure) -> Result<Outcome, Ended> {
    match ctx.lifecycle.fail(upload, &failure).await {
        Ok(true) => {
            ctx.metrics
                .upload_failures
                .with_label_values(&[failure.code.as_str()])
                .inc();
            Err(Ended::Dead(failure))
        }
        Ok(false) => {
            tracing::info!("upload changed state meanwhile; acking");
            Ok(Outcome::Skipped)
        }
        Err(e) => Err(Ended::Unrecorded(Failure::from_error(&e))),
    }
}

/// One attempt at a claimed upload, its pipeline run by `decoders`.
///
/// # Errors
/// A [`Failure`], classified by the taxonomy.
pub async fn process(
    ctx: &JobContext,
    decoders: &Decoders,
    upload: &Upload,
) -> Result<Outcome, Failure> {
    let started = Instant::now();
    let storage = ctx.storage();
    let max = ctx.settings.worker.max_encoded_bytes;
    let fetch = async |key: &str| {
        storage.get(key, max).await.map_err(|e| {
            let f = Failure::from_error(&e);
            if f.code == ErrorCode::ImageTooLarge {
                f.with_facts(format!("the file is over {max} bytes"))
            } else {
                f
            }
        })
    };
    // A replayed upload's original was already moved to its final key when it failed.
    let mut source = upload.temp_key.clone();
    let mut object = fetch(&source).await?;
    if let (None, Some(final_key)) = (&object, &upload.final_key) {
        source = final_key.clone();
        object = fetch(&source).await?;
    }
    let Some(object) = object else {
        return Err(Failure::new(
            ErrorCode::ObjectMissing,
            format!("object {} is gone", upload.temp_key),
        ));
    };
    let bytes = object.bytes;
    ctx.stage("fetch", started.elapsed());
    ctx.metrics.processed_bytes.inc_by(bytes.len() as u64);
    let declared = upload.byte_size.max(0) as u64;
    if bytes.len() as u64 != declared {
        let facts = format!("declared {declared} bytes, stored {}", bytes.len());
        return Err(Failure::new(ErrorCode::SizeMismatch, facts.clone()).with_facts(facts));
    }

    // Dedup within the owner: the same bytes as one of their `ready` uploads are not decoded
    // or rendered again; the upload shares that upload's files.
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(original) = ctx
        .lifecycle
        .commit_duplicate(upload, &sha256)
        .await
        .map_err(|e| Failure::from_error(&e))?
    {
        ctx.metrics.duplicates.inc();
        tracing::info!(duplicate_of = %original, "same bytes as a ready upload of this owner; decode skipped");
        if let Err(e) = ctx.lifecycle.delete_if_unreferenced(&source).await {
            tracing::warn!(error = %e, "could not delete the duplicate's own copy; the sweeper will");
        }
        return Ok(Outcome::Succeeded);
    }

    let renditions = ctx.settings.worker.renditions.clone();
    let processed = run_pipeline(ctx, decoders, upload, bytes, renditions).await?;
    ctx.metrics
        .processed_pixels
        .inc_by(u64::from(processed.metadata.width) * u64::from(processed.metadata.height));
    let t = Instant::now();
    let derivatives = store_derivatives(ctx, upload, processed.derivatives).await?;
    ctx.stage("store", t.elapsed());
    let t = Instant::now();
    let final_key = storage
        .layout()
        .original(&upload.owner, upload.id, &upload.filename);
    if source != final_key {
        // Promote exactly the bytes that were processed (the client's URL may still be valid).
        storage
            .copy(&source, &final_key, object.etag.as_deref())
            .await
            .map_err(|e| Failure::from_error(&e))?;
    }
    ctx.stage("promote", t.elapsed());
    super::test_hook::hold_before_commit(upload.id).await;
    let t = Instant::now();
    let committed = ctx
        .lifecycle
        .commit_ready(upload, &final_key, &processed.metadata, &derivatives)
        .await
        .map_err(|e| Failure::from_error(&e))?;
    if !committed {
        tracing::info!("another attempt holds the upload now; acking");
        return Ok(Outcome::Skipped);
    }
    ctx.stage("commit", t.elapsed());
    if let Some(completed) = upload.completed_at {
        let latency = (chrono::Utc::now() - completed)
            .to_std()
            .unwrap_or_default();
        ctx.metrics.ready_latency.observe(latency.as_secs_f64());
    }
    if source != final_key
        && let Err(e) = storage.delete(&source).await
    {
        tracing::warn!(error = %e, "could not delete temp object; the sweeper will");
    }
    Ok(Outcome::Succeeded)
}

/// Runs the image pipeline on `bytes` (the original of `upload`) for `renditions` with this
/// worker's limits and the upload's declared content type checked against the sniffed format
/// ([`Accept`]: `api.allowed_content_types`), and records its decode, render and encode stage
/// times. With the jail on, a decoder child runs it ([`crate::jail::Pool::process`]: killed
/// past `worker.job_timeout_secs`); with it off, a blocking thread inside the job's span,
/// abandoned (not stopped) past the same timeout.
///
/// # Errors
/// The imaging [`Failure`] (permanent): the pipeline's own, `decode_timeout` past the timeout,
/// `corrupt_image` when a decoder panics or its child crashes, `image_too_large` when it runs
/// out of memory; `internal` when no decoder child can be started.
pub(crate) async fn run_pipeline(
    ctx: &JobContext,
    decoders: &Decoders,
    upload: &Upload,
    bytes: bytes::Bytes,
    renditions: Vec<kiln_shared::domain::Rendition>,
) -> Result<imaging::Processed, Failure> {
    let mut limits = Limits::from_settings(&ctx.settings.worker);
    limits.accept = Some(Accept::new(
        &upload.content_type,
        &ctx.settings.api.allowed_content_types,
    ));
    let processed = match decoders.pool() {
        Some(pool) => pool
            .process(&bytes, &renditions, &limits)
            .await
            .map_err(|e| match e {
                JobError::Failed(e) => imaging_failure(&e),
                JobError::Unavailable(e) => Failure::new(ErrorCode::Internal, e.to_string()),
            })?,
        None => {
            let timeout = decoders.timeout();
            let work = runtime::blocking(move || imaging::process(&bytes, &renditions, &limits));
            match tokio::time::timeout(timeout, work).await {
                Ok(result) => result?.map_err(|e| imaging_failure(&e))?,
                Err(_) => {
                    return Err(imaging_failure(&ImagingError::Timeout(format!(
                        "the pipeline ran past {} s (in process: its thread was abandoned)",
                        timeout.as_secs()
                    ))));
                }
            }
        }
    };
    ctx.stage("decode", processed.timings.decode);
    ctx.stage("render", processed.timings.render);
    ctx.stage("encode", processed.timings.encode);
    Ok(processed)
}

/// An imaging error as a [`Failure`]: its code, its message as detail, and, for a size limit,
/// the message as a safe fact too (it names the image's own dimensions and the limit).
pub(crate) fn imaging_failure(e: &imaging::ImagingError) -> Failure {
    let f = Failure::from_error(e);
    match e {
        imaging::ImagingError::TooLarge(m) => f.with_facts(m.clone()),
        _ => f,
    }
}

/// PUTs each rendered derivative to its key (`derivatives/{owner}/{id}/{rendition}.{ext}`) and
/// returns the rows to commit, with the recipe version and fingerprint each was rendered with.
/// Overwriting is harmless, so a repeated attempt simply writes the same keys again.
///
/// # Errors
/// The storage [`Failure`] of the first PUT that fails.
pub(crate) async fn store_derivatives(
    ctx: &JobContext,
    upload: &Upload,
    rendered: Vec<imaging::RenderedDerivative>,
) -> Result<Vec<Derivative>, Failure> {
    let storage = ctx.storage();
    let mut out = Vec::with_capacity(rendered.len());
    for d in rendered {
        let r = &d.rendition;
        let key =
            storage
                .layout()
                .derivative(&upload.owner, upload.id, &r.name, r.format.extension());
        let byte_size = d.bytes.len() as u64;
        storage
            .put(&key, d.bytes.into(), r.format.mime())
            .await
            .map_err(|e| Failure::from_error(&e))?;
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
