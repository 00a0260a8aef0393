//! The fleet's queue backend: apalis-redis 1.0, with the settings `docs/dependencies.md`
//! explains (raised Redis response timeout, heartbeats and orphan timeout, fetch batch ≈
//! concurrency).
//!
//! Key layout of each queue `{q}` (apalis-redis 1.0): `{q}:scheduled` ZSET (new pushes),
//! `{q}:active` LIST, `{q}:inflight:{worker}` SET, `{q}:done` and `{q}:dead` SETs, `{q}:data`
//! HASH (payloads), `{q}:meta:{task_id}` HASH, `{q}:workers` ZSET.

use std::marker::PhantomData;
use std::sync::LazyLock;
use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId, TaskSink};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use redis::AsyncCommands;
use redis::aio::ConnectionManagerConfig;

use super::{Job, Pushed, QueueDepth, QueueError};
use crate::config::RedisSettings;

/// apalis-redis settings for `J`'s queue: namespace, heartbeat and orphan timeout, and a fetch
/// batch of `batch_size` (keep it ≈ worker concurrency: prefetched jobs belong to the fetching
/// worker).
pub fn apalis_config<J: Job>(settings: &RedisSettings, batch_size: usize) -> Config {
    namespace_config(settings, &J::namespace(settings), batch_size)
}

/// [`apalis_config`] for the queue `namespace` (for payloads that are not Kiln jobs, such as
/// the benchmark's no-op job).
pub fn namespace_config(settings: &RedisSettings, namespace: &str, batch_size: usize) -> Config {
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

/// One apalis-redis queue carrying `J`: pushes under caller-chosen (derived) task ids, and
/// reads task state and depth.
pub struct RedisQueue<J: Job> {
    storage: RedisStorage<J>,
    conn: ConnectionManager,
    config: Config,
    namespace: String,
    _job: PhantomData<fn() -> J>,
}

impl<J: Job> Clone for RedisQueue<J> {
    fn clone(&self) -> Self {
        Self {
            storage: self.storage.clone(),
            conn: self.conn.clone(),
            config: self.config.clone(),
            namespace: self.namespace.clone(),
            _job: PhantomData,
        }
    }
}

impl<J: Job> RedisQueue<J> {
    /// The queue on an existing connection (no I/O).
    pub fn on(conn: ConnectionManager, settings: &RedisSettings) -> Self {
        let config = apalis_config::<J>(settings, 1);
        let storage = RedisStorage::new(conn.clone()).with_config(config.clone());
        Self {
            storage,
            conn,
            config,
            namespace: J::namespace(settings),
            _job: PhantomData,
        }
    }

    /// The apalis config (key names).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Redis namespace, also the `queue` label of job metrics.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A raw connection, for inspection and locks.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Pushes `job` under task id `id`, runnable after `delay` (whole seconds; apalis scores
    /// scheduled jobs in Unix seconds), unless a task with that id is still waiting or running.
    /// A finished task with that id (done or dead) is cleared first, so the same id can be
    /// queued again. Two concurrent callers push at most one task: apalis-redis stores a
    /// payload only if its id is new (`HSETNX`).
    ///
    /// # Errors
    /// [`QueueError`] when Redis refuses or does not answer.
    pub async fn push(
        &self,
        job: J,
        id: ulid::Ulid,
        delay: Duration,
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
        let mut builder = TaskBuilder::new(job).task_id(TaskId::from_ulid(id));
        if !delay.is_zero() {
            builder = builder.run_after(delay);
        }
        let mut storage = self.storage.clone();
        storage
            .push_task(builder.build())
            .await
            .map_err(|e| QueueError::Apalis(e.to_string()))?;
        Ok(Pushed::Enqueued)
    }

    /// Whether task `task_id` is still waiting or running: its meta hash exists with a status
    /// other than `Done` or `Killed`. A flushed Redis or an unknown id reads as not live.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn is_live(&self, task_id: &str) -> Result<bool, QueueError> {
        let mut c = self.conn.clone();
        let status: Option<String> = c
            .hget(
                format!("{}:{task_id}", self.config.job_meta_hash()),
                "status",
            )
            .await?;
        Ok(matches!(status.as_deref(), Some(s) if s != "Done" && s != "Killed"))
    }

    /// Removes task `task_id` from the dead set and deletes its stored payload and meta hash
    /// (after a replay queued the next generation's task for the same upload).
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn forget_dead(&self, task_id: &str) -> Result<(), QueueError> {
        let mut c = self.conn.clone();
        let cfg = &self.config;
        redis::pipe()
            .atomic()
            .srem(cfg.dead_jobs_set(), task_id)
            .hdel(cfg.job_data_hash(), task_id)
            .del(format!("{}:{task_id}", cfg.job_meta_hash()))
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    /// Removes the finished tasks (meta `status` `Done` or `Killed`, or no meta left) whose
    /// JSON payload names one of `uploads`: scans the payload hash (`HSCAN`), then drops each
    /// from the done and dead sets with its payload and meta hash. Returns how many.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn forget_finished_of(
        &self,
        uploads: &[crate::domain::UploadId],
    ) -> Result<u64, QueueError> {
        let cfg = &self.config;
        let mut c = self.conn.clone();
        let needles: Vec<String> = uploads.iter().map(|u| u.to_string()).collect();
        let mut matching = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, Vec<(String, String)>) = redis::cmd("HSCAN")
                .arg(cfg.job_data_hash())
                .arg(cursor)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut c)
                .await?;
            matching.extend(
                page.into_iter()
                    .filter(|(_, payload)| needles.iter().any(|n| payload.contains(n.as_str())))
                    .map(|(task, _)| task),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut removed = 0;
        for task in matching {
            let meta = format!("{}:{task}", cfg.job_meta_hash());
            let status: Option<String> = c.hget(&meta, "status").await?;
            if matches!(status.as_deref(), Some(s) if s != "Done" && s != "Killed") {
                continue;
            }
            redis::pipe()
                .atomic()
                .srem(cfg.done_jobs_set(), &task)
                .srem(cfg.dead_jobs_set(), &task)
                .hdel(cfg.job_data_hash(), &task)
                .del(&meta)
                .query_async::<()>(&mut c)
                .await?;
            removed += 1;
        }
        Ok(removed)
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
        let (mut c, cfg) = (self.conn.clone(), &self.config);
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
}

impl<J: Job> RedisQueue<J> {
    /// Takes the fleet-wide lock `{namespace}:{name}` for `ttl` (`SET NX PX`): `true` when this
    /// caller got it, `false` when another process holds it.
    ///
    /// # Errors
    /// [`QueueError::Redis`] when Redis does not answer.
    pub async fn try_lock(&self, name: &str, ttl: Duration) -> Result<bool, QueueError> {
        let mut conn = self.conn.clone();
        let opts = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::PX(ttl.as_millis() as u64));
        let got: Option<String> = conn
            .set_options(format!("{}:{name}", self.namespace), "1", opts)
            .await?;
        Ok(got.is_some())
    }
}
