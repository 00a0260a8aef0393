//! The job payloads (ProcessUpload, RenderRenditions) and the Redis-backed queues (apalis-redis
//! 1.0) that carry them: `redis.queue` for ProcessUpload and `{redis.queue}:renditions` for
//! RenderRenditions. See `docs/dependencies.md` for the settings applied here
//! and why.
//!
//! Key layout of each queue `{q}` (apalis-redis 1.0): `{q}:scheduled` ZSET (new pushes),
//! `{q}:active` LIST, `{q}:inflight:{worker}` SET, `{q}:done` and `{q}:dead` SETs, `{q}:data`
//! HASH (payloads), `{q}:meta:{task_id}` HASH, `{q}:workers` ZSET.

use std::sync::LazyLock;
use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use redis::AsyncCommands;
use redis::aio::ConnectionManagerConfig;
use serde::{Deserialize, Serialize};

use crate::config::RedisSettings;
use crate::domain::UploadId;

/// Job: process one completed upload (sniff, decode, render, extract metadata, promote).
/// The upload row in Postgres is the source of truth; the job carries only its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUpload {
    /// The upload to process.
    pub upload_id: UploadId,
}

/// Job: re-render some renditions of a `ready` upload from its final original, replacing only
/// those derivatives (objects and rows). Queued by `kiln renditions regenerate`; the recipes
/// are the worker's configured ones, looked up by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderRenditions {
    /// The upload whose derivatives to re-render.
    pub upload_id: UploadId,
    /// Names of the renditions to re-render.
    pub renditions: Vec<String>,
    /// Earlier tasks for this same work that failed transiently (0 when queued by
    /// `regenerate`). Kiln counts retries itself, as for ProcessUpload, so apalis' built-in
    /// reschedule never runs.
    #[serde(default)]
    pub retries: u32,
}

/// Errors from the queue.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis refused or dropped the connection, or timed out.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// apalis failed to push or read a task.
    #[error("queue error: {0}")]
    Apalis(String),
}

/// Job counts by state, read straight from Redis (apalis' own stat APIs are broken for Redis).
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

/// apalis-redis settings from [`RedisSettings`]: namespace, heartbeat and orphan timeout, and a
/// fetch batch of `batch_size` (keep it ≈ worker concurrency: prefetched jobs belong to the
/// fetching worker).
pub fn apalis_config(settings: &RedisSettings, batch_size: usize) -> Config {
    config_for(settings, &settings.queue, batch_size)
}

/// [`apalis_config`] for the RenderRenditions queue (`{redis.queue}:renditions`).
pub fn renditions_apalis_config(settings: &RedisSettings, batch_size: usize) -> Config {
    config_for(settings, &settings.renditions_queue(), batch_size)
}

fn config_for(settings: &RedisSettings, namespace: &str, batch_size: usize) -> Config {
    Config::default()
        .queue(namespace)
        .batch_size(batch_size)
        .heartbeat_interval(Duration::from_secs(settings.heartbeat_secs))
        .missed_heartbeats(settings.missed_heartbeats as usize)
}

/// Opens a Redis connection manager with the configured response timeout (the 500 ms default
/// turns a slow reply into a fatal worker error, apalis-redis#76).
///
/// # Errors
/// [`QueueError::Redis`] when the URL is malformed or Redis does not answer.
pub async fn connect_redis(settings: &RedisSettings) -> Result<ConnectionManager, QueueError> {
    let timeout = Duration::from_millis(settings.response_timeout_ms);
    let cfg = ConnectionManagerConfig::new()
        .set_response_timeout(Some(timeout))
        .set_connection_timeout(Some(timeout));
    Ok(
        ConnectionManager::new_with_config(redis::Client::open(settings.url.as_str())?, cfg)
            .await?,
    )
}

/// The ProcessUpload queue: pushes jobs and reads its depth.
#[derive(Clone)]
pub struct JobQueue {
    storage: RedisStorage<ProcessUpload>,
    conn: ConnectionManager,
    config: Config,
}

impl JobQueue {
    /// Connects to Redis.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, QueueError> {
        let conn = connect_redis(settings).await?;
        let config = apalis_config(settings, 1);
        let storage = RedisStorage::new(conn.clone()).with_config(config.clone());
        Ok(Self {
            storage,
            conn,
            config,
        })
    }

    /// The apalis config (key names).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A raw connection, for inspection.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Pushes one ProcessUpload job, runnable now, and returns its task id (a fresh ULID).
    ///
    /// # Errors
    /// [`QueueError`] when Redis refuses or does not answer.
    pub async fn push_process_upload(&self, upload_id: UploadId) -> Result<String, QueueError> {
        self.push_process_upload_after(upload_id, Duration::ZERO)
            .await
    }

    /// Pushes one ProcessUpload job that becomes runnable after `delay` (whole seconds; apalis
    /// scores scheduled jobs in Unix seconds) and returns its task id.
    ///
    /// # Errors
    /// [`QueueError`] when Redis refuses or does not answer.
    pub async fn push_process_upload_after(
        &self,
        upload_id: UploadId,
        delay: Duration,
    ) -> Result<String, QueueError> {
        let id = TaskId::from_ulid(ulid::Ulid::generate());
        let mut builder = TaskBuilder::new(ProcessUpload { upload_id }).task_id(id.clone());
        if !delay.is_zero() {
            builder = builder.run_after(delay);
        }
        let mut storage = self.storage.clone();
        storage
            .push_task(builder.build())
            .await
            .map_err(|e| QueueError::Apalis(e.to_string()))?;
        Ok(id.to_string())
    }

    /// Whether task `job_id` is still waiting or running: its meta hash exists with a status
    /// other than `Done` or `Killed`. A flushed Redis or an unknown id reads as not live.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn is_live(&self, job_id: &str) -> Result<bool, QueueError> {
        let mut c = self.conn.clone();
        let status: Option<String> = c
            .hget(
                format!("{}:{job_id}", self.config.job_meta_hash()),
                "status",
            )
            .await?;
        Ok(matches!(status.as_deref(), Some(s) if s != "Done" && s != "Killed"))
    }

    /// Removes task `job_id` from the dead set and deletes its stored payload and meta hash
    /// (after a replay enqueued a fresh task for the same upload).
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn forget_dead(&self, job_id: &str) -> Result<(), QueueError> {
        let mut c = self.conn.clone();
        let cfg = &self.config;
        redis::pipe()
            .atomic()
            .srem(cfg.dead_jobs_set(), job_id)
            .hdel(cfg.job_data_hash(), job_id)
            .del(format!("{}:{job_id}", cfg.job_meta_hash()))
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// `PING`, for readiness probes.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Job counts by state.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        read_depth(self.conn.clone(), &self.config).await
    }
}

/// Job counts by state of the queue `cfg` names.
async fn read_depth(mut c: ConnectionManager, cfg: &Config) -> Result<QueueDepth, QueueError> {
    let workers: Vec<String> = c.zrange(cfg.workers_set(), 0, -1).await?;
    let mut inflight = 0u64;
    for w in &workers {
        inflight += c
            .scard::<_, u64>(format!("{}:{w}", cfg.inflight_jobs_set()))
            .await?;
    }
    Ok(QueueDepth {
        scheduled: c.zcard(cfg.scheduled_jobs_set()).await?,
        active: c.llen(cfg.active_jobs_list()).await?,
        inflight,
        dead: c.scard(cfg.dead_jobs_set()).await?,
        done: c.scard(cfg.done_jobs_set()).await?,
    })
}

/// Whether [`RenditionQueue::push_once`] queued a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// A task with that id is now waiting.
    Enqueued,
    /// A task with that id was already waiting or running; nothing was pushed.
    AlreadyQueued,
}

/// Atomically readies a task id for a new push: when the task with that id has finished (meta
/// `status` `Done` or `Killed`), removes it from the done and dead sets and deletes its payload
/// and meta hash, so the push that follows is not a no-op (apalis-redis' push is `HSETNX` on the
/// payload). Returns 1 when the task is still waiting or running, else 0.
///
/// KEYS: meta hash of the task, done set, dead set, data hash. ARGV: task id.
static RESET_FINISHED: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
    return 0
end
if status == 'Done' or status == 'Killed' then
    redis.call('SREM', KEYS[2], ARGV[1])
    redis.call('SREM', KEYS[3], ARGV[1])
    redis.call('HDEL', KEYS[4], ARGV[1])
    redis.call('DEL', KEYS[1])
    return 0
end
return 1
",
    )
});

/// The RenderRenditions queue (`{redis.queue}:renditions`): pushes jobs and reads its depth.
#[derive(Clone)]
pub struct RenditionQueue {
    storage: RedisStorage<RenderRenditions>,
    conn: ConnectionManager,
    config: Config,
}

impl RenditionQueue {
    /// Connects to Redis.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn connect(settings: &RedisSettings) -> Result<Self, QueueError> {
        let conn = connect_redis(settings).await?;
        let config = renditions_apalis_config(settings, 1);
        let storage = RedisStorage::new(conn.clone()).with_config(config.clone());
        Ok(Self {
            storage,
            conn,
            config,
        })
    }

    /// The apalis config (key names).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Pushes `job` under the caller's deterministic task id `id`, runnable now, unless a task
    /// with that id is still waiting or running. A finished task with that id (done or dead)
    /// is cleared first, so the same work can be queued again later. Two concurrent callers
    /// push at most one task: apalis-redis stores a payload only if its id is new (`HSETNX`).
    ///
    /// # Errors
    /// [`QueueError`] when Redis refuses or does not answer.
    pub async fn push_once(
        &self,
        job: RenderRenditions,
        id: ulid::Ulid,
    ) -> Result<Pushed, QueueError> {
        let task_id = id.to_string();
        let cfg = &self.config;
        let mut c = self.conn.clone();
        let live: i32 = RESET_FINISHED
            .key(format!("{}:{task_id}", cfg.job_meta_hash()))
            .key(cfg.done_jobs_set())
            .key(cfg.dead_jobs_set())
            .key(cfg.job_data_hash())
            .arg(&task_id)
            .invoke_async(&mut c)
            .await?;
        if live == 1 {
            return Ok(Pushed::AlreadyQueued);
        }
        let task = TaskBuilder::new(job).task_id(TaskId::from_ulid(id)).build();
        let mut storage = self.storage.clone();
        storage
            .push_task(task)
            .await
            .map_err(|e| QueueError::Apalis(e.to_string()))?;
        Ok(Pushed::Enqueued)
    }

    /// Pushes `job` under a fresh task id, runnable after `delay` (whole seconds), and returns
    /// the id. Used for retries after a transient failure.
    ///
    /// # Errors
    /// [`QueueError`] when Redis refuses or does not answer.
    pub async fn push_after(
        &self,
        job: RenderRenditions,
        delay: Duration,
    ) -> Result<String, QueueError> {
        let id = TaskId::from_ulid(ulid::Ulid::generate());
        let mut builder = TaskBuilder::new(job).task_id(id.clone());
        if !delay.is_zero() {
            builder = builder.run_after(delay);
        }
        let mut storage = self.storage.clone();
        storage
            .push_task(builder.build())
            .await
            .map_err(|e| QueueError::Apalis(e.to_string()))?;
        Ok(id.to_string())
    }

    /// Job counts by state.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        read_depth(self.conn.clone(), &self.config).await
    }
}
