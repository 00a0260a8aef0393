//! The queue port: the apalis queues Kiln's jobs travel on, one generic [`Queue`] per payload
//! type ([`Job`]). Two backends, chosen once in [`connect`] by the upload store's engine:
//! apalis-redis 1.0 beside Postgres (the fleet, [`redis`]) and apalis-sqlite 1.0 beside SQLite
//! (standalone `kiln serve`, [`sqlite`]). Both take caller-chosen (derived) task ids, delays,
//! and the same dead set and replay.
//!
//! Only the lifecycle module (`crate::lifecycle`) pushes; everything else reads.

mod jobs;
pub mod redis;
pub mod sqlite;
pub mod task_id;

use std::time::Duration;

use apalis_redis::ConnectionManager;
use serde::Serialize;
use sqlx::SqlitePool;

use crate::config::RedisSettings;
use crate::db::Db;
use crate::domain::{Classify, ErrorCode};

pub use self::redis::{apalis_config, connect_redis, namespace_config};

pub use jobs::{Job, ProcessUpload, RenderRenditions};

/// The ProcessUpload queue (`redis.queue`).
pub type JobQueue = Queue<ProcessUpload>;
/// The RenderRenditions queue (`{redis.queue}:renditions`).
pub type RenditionQueue = Queue<RenderRenditions>;

/// Errors from the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis refused or dropped the connection, or timed out.
    #[error("redis error: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The SQLite queue file could not be read or written (or stayed busy).
    #[error("queue database error: {0}")]
    Sqlite(#[from] sqlx::Error),
    /// apalis failed to push or read a task.
    #[error("queue error: {0}")]
    Apalis(String),
}

impl Classify for QueueError {
    /// Always `queue_unavailable` (transient): Redis or the queue file is down, slow, busy or
    /// refused the command.
    fn code(&self) -> ErrorCode {
        ErrorCode::QueueUnavailable
    }
}

/// Job counts by state, read straight from the backend (apalis' own stat APIs are broken for
/// Redis).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// Pushed, waiting for their run time or first fetch (`{q}:scheduled`).
    pub scheduled: u64,
    /// Ready to fetch (`{q}:active`).
    pub active: u64,
    /// Fetched by a worker, not yet acked (sum of `{q}:inflight:*`).
    pub inflight: u64,
    /// Dead: aborted as permanent or out of attempts (`{q}:dead`).
    pub dead: u64,
    /// Finished (`{q}:done`).
    pub done: u64,
}

impl QueueDepth {
    /// Jobs still to run or running: scheduled + active + in flight.
    pub fn pending(&self) -> u64 {
        self.scheduled + self.active + self.inflight
    }
}

/// Whether [`Queue::push`] queued a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// A task with that id is now waiting.
    Enqueued,
    /// A task with that id was already waiting or running; nothing was pushed.
    AlreadyQueued,
}

/// An open connection to the queue backend, shared by every [`Queue`] of a process.
#[derive(Clone)]
pub enum QueueConnection {
    /// apalis-redis (the fleet).
    Redis(ConnectionManager),
    /// apalis-sqlite (standalone), on the queue file beside the upload store.
    Sqlite(SqlitePool),
}

impl std::fmt::Debug for QueueConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Redis(_) => "QueueConnection::Redis",
            Self::Sqlite(_) => "QueueConnection::Sqlite",
        })
    }
}

/// Connects to the queue that goes with upload store `db`: Redis at `redis.url` beside
/// Postgres, the apalis-sqlite file beside a SQLite store ([`sqlite::queue_url`]). This is the
/// one place the queue backend is chosen.
///
/// # Errors
/// [`QueueError`] when Redis does not answer or the queue file's URL does not parse.
pub async fn connect(
    settings: &RedisSettings,
    db: &Db,
    database_url: &str,
) -> Result<QueueConnection, QueueError> {
    match db {
        Db::Postgres(_) => Ok(QueueConnection::Redis(connect_redis(settings).await?)),
        Db::Sqlite(_) => Ok(QueueConnection::Sqlite(sqlite::connect(database_url)?)),
    }
}

/// Creates or updates the queue's own tables (apalis-sqlite's migrations; Redis has none).
///
/// # Errors
/// [`QueueError`] when a migration fails.
pub async fn migrate(conn: &QueueConnection) -> Result<(), QueueError> {
    match conn {
        QueueConnection::Redis(_) => Ok(()),
        QueueConnection::Sqlite(pool) => sqlite::migrate(pool).await,
    }
}

/// One queue carrying `J`, on either backend. Cheap to clone.
pub enum Queue<J: Job> {
    /// On Redis (boxed: its connection manager and config dwarf the SQLite pool handle).
    Redis(Box<self::redis::RedisQueue<J>>),
    /// On the SQLite queue file.
    Sqlite(sqlite::SqliteQueue<J>),
}

impl<J: Job> Clone for Queue<J> {
    fn clone(&self) -> Self {
        match self {
            Self::Redis(q) => Self::Redis(q.clone()),
            Self::Sqlite(q) => Self::Sqlite(q.clone()),
        }
    }
}

macro_rules! dispatch {
    ($self:expr, $q:ident => $body:expr) => {
        match $self {
            Queue::Redis($q) => $body,
            Queue::Sqlite($q) => $body,
        }
    };
}

impl<J: Job> Queue<J> {
    /// `J`'s queue on an open connection (no I/O).
    pub fn on(conn: &QueueConnection, settings: &RedisSettings) -> Self {
        match conn {
            QueueConnection::Redis(c) => {
                Self::Redis(Box::new(self::redis::RedisQueue::on(c.clone(), settings)))
            }
            QueueConnection::Sqlite(p) => {
                Self::Sqlite(sqlite::SqliteQueue::on(p.clone(), settings))
            }
        }
    }

    /// Pushes `job` under task id `id`, runnable after `delay` (whole seconds), unless a task
    /// with that id is still waiting or running. A finished task with that id (done or dead)
    /// is cleared first, so the same id can be queued again. Two concurrent callers push at
    /// most one task.
    ///
    /// # Errors
    /// [`QueueError`] when the backend refuses or does not answer.
    pub async fn push(
        &self,
        job: J,
        id: ulid::Ulid,
        delay: Duration,
    ) -> Result<Pushed, QueueError> {
        dispatch!(self, q => q.push(job, id, delay).await)
    }

    /// Whether task `task_id` is still waiting or running. A flushed Redis or an unknown id
    /// reads as not live.
    ///
    /// # Errors
    /// [`QueueError`] when the backend does not answer.
    pub async fn is_live(&self, task_id: &str) -> Result<bool, QueueError> {
        dispatch!(self, q => q.is_live(task_id).await)
    }

    /// Removes the dead task `task_id` (after a replay queued the next generation's task).
    ///
    /// # Errors
    /// [`QueueError`] when the backend does not answer.
    pub async fn forget_dead(&self, task_id: &str) -> Result<(), QueueError> {
        dispatch!(self, q => q.forget_dead(task_id).await)
    }

    /// Removes every finished task (done or dead) whose payload names one of `uploads`, with
    /// its stored payload and state, and returns how many it removed (`kiln owners erase`).
    /// Tasks still waiting or running are left: they find no row and finish without work, and
    /// the next erase run removes them.
    ///
    /// # Errors
    /// [`QueueError`] when the backend does not answer.
    pub async fn forget_finished_of(
        &self,
        uploads: &[crate::domain::UploadId],
    ) -> Result<u64, QueueError> {
        if uploads.is_empty() {
            return Ok(0);
        }
        dispatch!(self, q => q.forget_finished_of(uploads).await)
    }

    /// A round trip to the backend, for readiness probes.
    ///
    /// # Errors
    /// [`QueueError`] when the backend does not answer.
    pub async fn ping(&self) -> Result<(), QueueError> {
        dispatch!(self, q => q.ping().await)
    }

    /// Job counts by state.
    ///
    /// # Errors
    /// [`QueueError`] when the backend does not answer.
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        dispatch!(self, q => q.depth().await)
    }

    /// Takes the lock `name` for `ttl` so that one process in the fleet does a periodic chore
    /// (the sweeper): `true` when this caller got it. A standalone instance is one process, so
    /// on SQLite the answer is always `true`.
    ///
    /// # Errors
    /// [`QueueError`] when Redis does not answer.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<bool, QueueError> {
        match self {
            Self::Redis(q) => q.try_lock(name, ttl).await,
            Self::Sqlite(_) => Ok(true),
        }
    }

    /// The Redis connection, on the Redis backend (for tests and inspection).
    pub fn redis_connection(&self) -> Option<ConnectionManager> {
        match self {
            Self::Redis(q) => Some(q.connection()),
            Self::Sqlite(_) => None,
        }
    }
}
