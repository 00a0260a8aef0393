//! The one job runtime every job type runs in: the shared [`JobContext`], the job's span
//! (kept across [`blocking`] threads), the retry-or-dead decision ([`decide`]), and the
//! outcome metric with typed labels ([`run`]).
//!
//! A job's attempt returns `Ok(`[`Outcome`]`)` or `Err(`[`Ended`]`)`; [`run`] turns that into
//! what apalis expects: `Ok(())` acks the task, [`AbortError`] sends it to the dead set at once
//! (apalis-redis' own reschedule, a hard-coded 25 attempts, never runs), and a plain error
//! leaves an unrecordable outcome to apalis and the sweeper.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apalis::prelude::{AbortError, BoxDynError};
use kiln_shared::Settings;
use kiln_shared::domain::ErrorCode;
use kiln_shared::lifecycle::{Failure, Lifecycle};
use kiln_shared::metrics::{JobOutcome, Metrics};
use kiln_shared::retry::RetryPolicy;
use kiln_shared::storage::Storage;
use tracing::{Instrument, Span};

/// What every job shares.
pub struct JobContext {
    /// Settings (renditions, limits, retry policy).
    pub settings: Arc<Settings>,
    /// The upload lifecycle: every state change and the queue work it implies.
    pub lifecycle: Lifecycle,
    /// This process's metrics.
    pub metrics: Arc<Metrics>,
}

impl JobContext {
    /// The bucket.
    pub fn storage(&self) -> &Storage {
        self.lifecycle.storage()
    }

    /// Records `d` (seconds) as the duration of pipeline stage `name`
    /// (`kiln_job_stage_duration_seconds{stage}`).
    pub fn stage(&self, name: &str, d: Duration) {
        self.metrics
            .stage_duration
            .with_label_values(&[name])
            .observe(d.as_secs_f64());
    }
}

/// How an attempt ended when its task is acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The work was done.
    Succeeded,
    /// Nothing to do (the row was terminal, or another attempt holds or committed it).
    Skipped,
    /// A transient failure; the next task was queued with a delay.
    Retried,
}

impl Outcome {
    fn metric(self) -> JobOutcome {
        match self {
            Self::Succeeded => JobOutcome::Succeeded,
            Self::Skipped => JobOutcome::Skipped,
            Self::Retried => JobOutcome::Retried,
        }
    }
}

/// How an attempt ended when its task is not simply acked.
#[derive(Debug)]
pub enum Ended {
    /// Permanent, or out of attempts, and recorded: the task goes to the dead set.
    Dead(Failure),
    /// The outcome could not be recorded (Postgres or Redis down): apalis and the sweeper
    /// retry.
    Unrecorded(Failure),
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Queue the next attempt after `delay`, recording `failure` as the reason.
    Retry {
        /// How long the next attempt waits.
        delay: Duration,
        /// The transient failure, kept on the row for operators.
        failure: Failure,
    },
    /// Give up: the failure as recorded (permanent, or `retries_exhausted`).
    Dead(Failure),
}

/// The retry decision for attempt `attempt` (1-based) that failed with `failure`: a transient
/// failure is retried with [`RetryPolicy::delay`] while [`RetryPolicy::may_retry`] allows;
/// after that it becomes `retries_exhausted`; a permanent one is dead at once.
pub fn decide(policy: &RetryPolicy, attempt: u32, failure: Failure) -> Decision {
    if !failure.is_transient() {
        Decision::Dead(failure)
    } else if policy.may_retry(attempt) {
        Decision::Retry {
            delay: policy.delay(attempt),
            failure,
        }
    } else {
        Decision::Dead(failure.exhausted(attempt))
    }
}

/// Runs one attempt inside `span`, records `kiln_jobs_total{queue,outcome}` and
/// `kiln_job_duration_seconds{queue}`, logs its end (`job done` with `elapsed_ms`, or the
/// failure with its code and internal detail), and maps it for apalis.
///
/// # Errors
/// [`AbortError`] for [`Ended::Dead`]; the [`Failure`] itself for [`Ended::Unrecorded`].
pub async fn run(
    metrics: &Metrics,
    queue: &str,
    span: Span,
    attempt: impl Future<Output = Result<Outcome, Ended>>,
) -> Result<(), BoxDynError> {
    let started = Instant::now();
    let result = attempt.instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let _entered = span.enter();
    let elapsed_ms = elapsed.as_millis() as u64;
    match result {
        Ok(outcome) => {
            metrics.record_job(queue, outcome.metric(), elapsed);
            tracing::info!(?outcome, elapsed_ms, "job done");
            Ok(())
        }
        Err(Ended::Dead(f)) => {
            metrics.record_job(queue, JobOutcome::Failed, elapsed);
            tracing::warn!(code = %f.code, detail = %f.detail, elapsed_ms, "job dead");
            Err(AbortError::new(f.to_string()).into())
        }
        Err(Ended::Unrecorded(f)) => {
            metrics.record_job(queue, JobOutcome::Error, elapsed);
            tracing::error!(code = %f.code, detail = %f.detail, elapsed_ms, "job outcome not recorded; apalis and the sweeper retry");
            Err(Box::new(f))
        }
    }
}

/// Runs CPU-bound `f` on a blocking thread inside the caller's span (so its logs carry the
/// job's `upload_id`, `job_id` and `attempt`).
///
/// # Errors
/// A permanent `corrupt_image` [`Failure`] when `f` panics (a decoder bug on hostile input).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    let span = Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| Failure::new(ErrorCode::CorruptImage, format!("decoder panicked: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_millis(100),
        }
    }

    #[test]
    fn transient_failures_retry_until_the_last_attempt_then_are_exhausted() {
        let f = Failure::new(ErrorCode::StorageUnavailable, "GetObject: timeout");
        assert!(matches!(
            decide(&policy(), 2, f.clone()),
            Decision::Retry { .. }
        ));
        match decide(&policy(), 3, f) {
            Decision::Dead(d) => assert_eq!(d.code, ErrorCode::RetriesExhausted),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn permanent_failures_are_dead_at_once() {
        let f = Failure::new(ErrorCode::StorageRejected, "403");
        assert_eq!(decide(&policy(), 1, f.clone()), Decision::Dead(f));
    }
}
