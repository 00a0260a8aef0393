//! The upload lifecycle: the one place that changes an upload's state, together with the queue
//! and storage work each change implies. API handlers, jobs, the sweeper and the CLI call it;
//! none of them sequences database and queue calls itself.
//!
//! | transition | state change | queue work |
//! | --- | --- | --- |
//! | [`Lifecycle::authorize`] | → `pending`, within the owner's quota | — (presigns the temp key) |
//! | [`Lifecycle::complete`] | `pending` → `uploaded` (held), then admit | — |
//! | [`Lifecycle::admit`] | held → admitted, generation + 1, while the owner's window has room | push ProcessUpload |
//! | [`Lifecycle::claim`] | `uploaded` → `processing`, attempts + 1, then admit | — |
//! | [`Lifecycle::commit_ready`] | `processing` → `ready` | — |
//! | [`Lifecycle::retry_later`] | `processing` → `uploaded`, generation + 1 | push, delayed |
//! | [`Lifecycle::fail`] | `processing` → `failed` | — (original kept at its final key) |
//! | [`Lifecycle::replay`] | `failed` → `uploaded` (held), then admit | drop the dead task |
//! | [`Lifecycle::requeue_if_lost`] | generation + 1 (sweeper) | push |
//! | [`Lifecycle::expire_pending`] | `pending` → `expired` | — (temp object deleted) |
//! | [`regenerate::regenerate`] | — | push RenderRenditions |
//! | [`Lifecycle::admit_held`] | admit for every owner with held uploads (sweeper) | push |
//! | [`Lifecycle::commit_duplicate`] | `processing` → `ready`, sharing a sibling's objects | — |
//! | [`Lifecycle::delete`] | `deleted_at` set (state kept) | — (objects to `trash/`) |
//! | [`Lifecycle::restore`] | `deleted_at` cleared, an `uploaded` row held again, then admit | push (if uploaded) |
//! | [`Lifecycle::purge`] | row, derivatives and shares deleted | — (unreferenced objects deleted) |
//! | [`Lifecycle::purge_due`] | purge past retention (sweeper) | forget finished tasks |
//! | [`Lifecycle::erase_owner`] | every row of an owner deleted | forget finished tasks |
//!
//! **Fair scheduling.** A completed upload is first *held* in the upload store; admission
//! queues an owner's oldest held uploads while fewer than `scheduling.max_waiting_per_owner`
//! of their jobs wait unclaimed ([`admission`]), so another owner's job never waits behind
//! more than that many of theirs.
//!
//! **Task ids are derived, never written back.** Every transition that queues work increments
//! the row's `job_generation` in its conditional UPDATE, and the pushed task's id is
//! `queue::task_id::process_upload(upload_id, generation)`. So the row alone names its current
//! task: the sweeper checks that task's liveness and replay removes it from the dead set
//! without any id column. A crash between the UPDATE and the push leaves a row whose task is
//! not live; the sweeper then starts the next generation.

mod admission;
mod assets;
mod erase;
mod failure;
mod processing;
pub mod regenerate;
mod repair;
mod shares;
mod uploads;

use std::sync::Arc;

use crate::Settings;
use crate::db::{Db, DbError};
use crate::domain::{Classify, ErrorCode};
use crate::queue::{self, JobQueue, QueueError, RenditionQueue};
use crate::retry::RetryPolicy;
use crate::storage::{Storage, StorageError};

pub use admission::Admitted;
pub use assets::PurgeReport;
pub use erase::EraseReport;
pub use failure::{Failure, client_message};
pub use processing::Claim;
pub use repair::ReplayReport;
pub use shares::{Download, NewShareLink, ShareLink};
pub use uploads::{Authorization, UploadRequest};

/// Why a lifecycle call failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No such upload for this owner (`not_found`).
    #[error("upload not found")]
    NotFound,
    /// Restore of an upload past its retention (`not_restorable`).
    #[error("the upload's retention period has passed; it can no longer be restored")]
    NotRestorable,
    /// The upload has no such file yet (`not_ready`): it is not `ready`, or has no such
    /// rendition.
    #[error("{0}")]
    NotReady(String),
    /// No such share link, or it is revoked, or its upload is deleted (`share_not_found`).
    #[error("no such share link")]
    ShareNotFound,
    /// The share link expired or used up its downloads (`share_expired`).
    #[error("the share link has expired or has no downloads left")]
    ShareExpired,
    /// `complete` found nothing at the temp key (`object_missing`).
    #[error("no object has been uploaded for this upload yet")]
    ObjectMissing,
    /// `authorize` would pass the owner's quota (`quota_exceeded`); nothing was stored.
    #[error(
        "this upload would pass your {} quota: {} allowed, {} used, {} requested",
        quota_name(.0.limit), .0.max, .0.used, .0.requested
    )]
    QuotaExceeded(crate::wire::QuotaDetail),
    /// `complete` found an object of another size (`size_mismatch`); it was deleted.
    #[error("uploaded {actual} bytes but declared {declared}")]
    SizeMismatch {
        /// Declared size, in bytes.
        declared: u64,
        /// Stored size, in bytes.
        actual: u64,
    },
    /// A fault of this process (`internal`), e.g. the OS has no randomness.
    #[error("{0}")]
    Internal(String),
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// S3 failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Redis failed; the row is left where the sweeper (or the client's retry) picks it up.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

fn quota_name(limit: crate::wire::QuotaLimit) -> &'static str {
    match limit {
        crate::wire::QuotaLimit::Bytes => "bytes (quotas.max_bytes)",
        crate::wire::QuotaLimit::Uploads => "uploads (quotas.max_uploads)",
        crate::wire::QuotaLimit::Pending => "pending uploads (quotas.max_pending)",
    }
}

impl Classify for LifecycleError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound => ErrorCode::NotFound,
            Self::NotRestorable => ErrorCode::NotRestorable,
            Self::NotReady(_) => ErrorCode::NotReady,
            Self::ShareNotFound => ErrorCode::ShareNotFound,
            Self::ShareExpired => ErrorCode::ShareExpired,
            Self::Internal(_) => ErrorCode::Internal,
            Self::ObjectMissing => ErrorCode::ObjectMissing,
            Self::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Self::SizeMismatch { .. } => ErrorCode::SizeMismatch,
            Self::Db(e) => e.code(),
            Self::Storage(e) => e.code(),
            Self::Queue(e) => e.code(),
        }
    }
}

/// The lifecycle's handles: Postgres, the bucket, both queues and the settings. Cheap to
/// clone; one per process.
#[derive(Clone)]
pub struct Lifecycle {
    pool: Db,
    storage: Storage,
    uploads: JobQueue,
    renditions: RenditionQueue,
    settings: Arc<Settings>,
}

impl Lifecycle {
    /// Connects both queues (one connection) to the queue backend that goes with `pool`
    /// ([`queue::connect`]: Redis beside Postgres, apalis-sqlite beside SQLite) around an
    /// existing pool and bucket.
    ///
    /// # Errors
    /// [`QueueError`] when Redis does not answer or the queue file's URL does not parse.
    pub async fn connect(
        settings: Arc<Settings>,
        pool: Db,
        storage: Storage,
    ) -> Result<Self, QueueError> {
        let conn = queue::connect(&settings.redis, &pool, &settings.database.url).await?;
        Ok(Self::on(settings, pool, storage, &conn))
    }

    /// The lifecycle on an open queue connection (no I/O).
    pub fn on(
        settings: Arc<Settings>,
        pool: Db,
        storage: Storage,
        conn: &queue::QueueConnection,
    ) -> Self {
        Self {
            uploads: JobQueue::on(conn, &settings.redis),
            renditions: RenditionQueue::on(conn, &settings.redis),
            pool,
            storage,
            settings,
        }
    }

    /// The Postgres pool (for reads).
    pub fn pool(&self) -> &Db {
        &self.pool
    }

    /// The bucket.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The ProcessUpload queue (for depth, liveness and locks; pushes go through `self`).
    pub fn queue(&self) -> &JobQueue {
        &self.uploads
    }

    /// The RenderRenditions queue.
    pub fn renditions_queue(&self) -> &RenditionQueue {
        &self.renditions
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The retry policy (`worker.max_attempts` and the backoff).
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::from_settings(&self.settings.worker)
    }
}
