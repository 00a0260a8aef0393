//! The worker's side of the jail: a pool of prespawned decoder children, one image at a time
//! each, with a wall-clock timeout per image and replacement of every child that fails.
//!
//! A job takes a slot (at most `size` images in flight), then an idle child (or starts one
//! if none is ready), sends its [`Request`] and waits for the
//! [`Response`](super::protocol::Response) for at most the job timeout. Then:
//! - an answer: the child's log events are replayed in the job's span and the child goes
//!   back to the idle list, or is retired (it panicked, or served `max_jobs` images) and a
//!   replacement is started in the background;
//! - the timeout: the child is killed (`SIGKILL`), the job fails `decode_timeout`
//!   ([`ImagingError::Timeout`]), a replacement is started;
//! - the child died or broke the protocol: the job fails with what [`classify`] makes of its
//!   exit and the last lines of its stderr (`corrupt_image`, `image_too_large`,
//!   `decode_timeout` for `SIGXCPU`), a replacement is started.
//!
//! Either way only that job fails; other jobs and the worker carry on. Dropping the pool
//! kills its idle children; a busy child belongs to its job's future and is killed if that
//! is dropped.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_shared::domain::Rendition;
use tokio::sync::Semaphore;

use super::protocol::{self, Request};
use super::supervise::{Child, ChildSpec, EXIT_GRACE, classify};
use super::{ChildOptions, JailError, logs};
use crate::imaging::{ImagingError, Limits, Processed};

/// Why a job given to the pool did not produce a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// The image failed: the pipeline's own error, or the child's death, timeout or crash as
    /// classified (all permanent codes).
    #[error(transparent)]
    Failed(#[from] ImagingError),
    /// No child could be started to run it (an operational fault, not the image's).
    #[error(transparent)]
    Unavailable(#[from] JailError),
}

struct Inner {
    spec: ChildSpec,
    size: usize,
    timeout: Duration,
    slots: Semaphore,
    idle: Mutex<Vec<Child>>,
}

impl Inner {
    fn take_idle(&self) -> Option<Child> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keeps `child` for the next job, unless `size` children are idle already (it is then
    /// dropped, which kills it).
    fn put_back(&self, child: Child) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.size {
            idle.push(child);
        }
    }

    async fn spawn(&self) -> Result<Child, JailError> {
        let (child, _) = Child::spawn(&self.spec).await?;
        Ok(child)
    }

    /// Starts a child in the background and adds it to the idle list.
    fn replace(self: &Arc<Self>) {
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            match inner.spawn().await {
                Ok(child) => inner.put_back(child),
                Err(e) => tracing::error!(error = %e, "cannot replace a decoder child"),
            }
        });
    }
}

/// The pool of decoder children (see the module docs). Cheap to clone: clones share it.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// Largest response a child may send for `renditions`, in bytes: each rendition's box as
/// RGBA (no encoder makes more) plus 1 MiB, plus 16 MiB for metadata and log records.
fn response_limit(renditions: &[Rendition]) -> usize {
    let derivatives: u64 = renditions
        .iter()
        .map(|r| u64::from(r.max_width) * u64::from(r.max_height) * 4 + (1 << 20))
        .sum();
    usize::try_from(derivatives + (16 << 20)).unwrap_or(protocol::MAX_FRAME)
}

impl Pool {
    /// Starts `size` children of `spec` and waits until every one is confined and ready.
    /// Logs what the jail enforces (a warning when Landlock is not fully enforced).
    ///
    /// # Errors
    /// [`JailError::Spawn`] when a child cannot be started or does not get ready (the error
    /// quotes its stderr, e.g. why seccomp could not be installed).
    pub async fn start(spec: ChildSpec, size: usize, timeout: Duration) -> Result<Self, JailError> {
        let inner = Arc::new(Inner {
            spec,
            size,
            timeout,
            slots: Semaphore::new(size),
            idle: Mutex::new(Vec::with_capacity(size)),
        });
        let mut starting = tokio::task::JoinSet::new();
        for _ in 0..size {
            let spec = inner.spec.clone();
            starting.spawn(async move { Child::spawn(&spec).await });
        }
        let mut landlock = String::new();
        while let Some(started) = starting.join_next().await {
            let (child, hello) = started
                .map_err(|e| JailError::Spawn(format!("the spawning task failed: {e}")))??;
            landlock = hello.landlock;
            inner.put_back(child);
        }
        if landlock == "fully enforced" {
            tracing::info!(children = size, seccomp = true, %landlock, "decoder jail ready");
        } else {
            tracing::warn!(children = size, seccomp = true, %landlock, "decoder jail ready, but Landlock is not fully enforced");
        }
        Ok(Self { inner })
    }

    /// The options children run with.
    pub fn options(&self) -> &ChildOptions {
        self.inner.spec.options()
    }

    /// Process ids of the idle children (for measuring their CPU time in benchmarks).
    pub fn idle_pids(&self) -> Vec<u32> {
        let idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.iter().map(|c| c.pid).collect()
    }

    /// Runs `imaging::process(bytes, renditions, limits)` in a child, within the pool's
    /// timeout (which starts when the request is sent: waiting for a free child does not
    /// count). Called inside a job's span, so the child's log events land in it.
    ///
    /// # Errors
    /// [`JobError::Failed`] with the pipeline's error, or [`ImagingError::Timeout`] past the
    /// timeout, or what [`classify`] makes of a child that died; [`JobError::Unavailable`]
    /// when no child was ready and none could be started.
    pub async fn process(
        &self,
        bytes: &[u8],
        renditions: &[Rendition],
        limits: &Limits,
    ) -> Result<Processed, JobError> {
        let frame = protocol::encode(&Request {
            renditions: Cow::Borrowed(renditions),
            limits: *limits,
            bytes: Cow::Borrowed(bytes),
        })
        .map_err(|e| ImagingError::TooLarge(e.to_string()))?;
        let inner = &self.inner;
        let _slot = inner.slots.acquire().await;
        let mut child = match inner.take_idle() {
            Some(child) => child,
            None => inner.spawn().await?,
        };
        let pid = child.pid;
        let exchange = child.exchange(&frame, response_limit(renditions));
        match tokio::time::timeout(inner.timeout, exchange).await {
            Ok(Ok(response)) => {
                for record in &response.logs {
                    logs::replay(record, pid);
                }
                child.jobs += 1;
                if response.retire || child.jobs >= inner.spec.options().max_jobs {
                    tracing::debug!(
                        decoder_pid = pid,
                        jobs = child.jobs,
                        "retiring a decoder child"
                    );
                    drop(child);
                    inner.replace();
                } else {
                    inner.put_back(child);
                }
                Ok(response.result.map_err(JobError::Failed)?.into())
            }
            Ok(Err(e)) => {
                let death = child.reap(EXIT_GRACE).await;
                inner.replace();
                let error = classify(&death, inner.spec.options().address_space_bytes);
                tracing::warn!(decoder_pid = pid, pipe = %e, ?death, %error, "a decoder child failed; replacing it");
                Err(error.into())
            }
            Err(_) => {
                let death = child.reap(Duration::ZERO).await;
                inner.replace();
                tracing::warn!(
                    decoder_pid = pid,
                    ?death,
                    "a decoder child ran past the job timeout; killed it"
                );
                Err(ImagingError::Timeout(format!(
                    "the pipeline ran past {} s; its decoder process was killed",
                    inner.timeout.as_secs()
                ))
                .into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_limit_covers_every_rendition_as_rgba() {
        let limit = response_limit(&Rendition::defaults());
        assert!(limit > 1280 * 1280 * 4 + 256 * 256 * 4, "{limit}");
        assert!(limit < 64 << 20, "{limit}");
    }
}
