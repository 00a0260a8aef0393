//! The standalone queue backend: apalis-sqlite 1.0 in its own SQLite file beside the upload
//! store (`kiln-queue.db`; apalis keeps its own migration history, which must not share a file
//! with Kiln's). Same job types, task ids, retry policy, dead set and replay as the Redis
//! backend; only the storage differs.
//!
//! Table `Jobs` (apalis-sqlite 1.0): `id` (the ULID task id, primary key across all queues),
//! `job_type` (the queue name), `status` (`Pending`, `Queued`, `Running`, `Done`, `Failed`,
//! `Killed`), `attempts`, `max_attempts`, `run_at` (Unix seconds), `lock_by` (worker name).
//! A task is dead when `Killed`, or `Failed` with no attempts left.

use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use apalis::prelude::{TaskBuilder, TaskId};
use apalis_sqlite::{Config, SqliteStorage, SqliteTask};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{Job, Pushed, QueueDepth, QueueError};
use crate::config::RedisSettings;

/// apalis-sqlite's own delivery retries (a handler error that is not an abort). Kiln schedules
/// its retries itself; this only bounds deliveries whose outcome could not be recorded.
const MAX_DELIVERIES: usize = 5;

/// SQL: the task is dead.
const DEAD: &str = "(status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts))";

/// The queue file for the upload store at `database_url` (`sqlite://DIR/kiln.db` →
/// `sqlite://DIR/kiln-queue.db`).
pub fn queue_url(database_url: &str) -> String {
    match database_url.strip_suffix(".db") {
        Some(stem) => format!("{stem}-queue.db"),
        None => format!("{database_url}-queue"),
    }
}

/// Opens the queue file (created if missing; WAL, `synchronous = NORMAL`, 10 s busy timeout).
/// Lazy: nothing is opened until the first query.
///
/// # Errors
/// [`QueueError::Sqlite`] when the URL does not parse.
pub fn connect(database_url: &str) -> Result<SqlitePool, QueueError> {
    let options = SqliteConnectOptions::from_str(&queue_url(database_url))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    Ok(SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options))
}

/// Creates or updates apalis-sqlite's tables (its bundled migrations).
///
/// # Errors
/// [`QueueError::Sqlite`] when the file cannot be opened or a migration fails.
pub async fn migrate(pool: &SqlitePool) -> Result<(), QueueError> {
    SqliteStorage::<()>::migrations()
        .run(pool)
        .await
        .map_err(sqlx::Error::from)?;
    Ok(())
}

/// apalis-sqlite settings for `J`'s queue: the queue name, the fetch batch (≈ concurrency) and
/// the worker heartbeat and orphan timeout (`redis.heartbeat_secs` × `redis.missed_heartbeats`,
/// shared with the Redis backend).
pub fn apalis_config<J: Job>(settings: &RedisSettings, batch_size: usize) -> Config {
    Config::default()
        .queue(J::namespace(settings))
        .batch_size(batch_size.max(1))
        .heartbeat_interval(Duration::from_secs(settings.heartbeat_secs))
        .missed_heartbeats(settings.missed_heartbeats as usize)
}

/// One apalis-sqlite queue carrying `J`.
pub struct SqliteQueue<J: Job> {
    pool: SqlitePool,
    namespace: String,
    _job: PhantomData<fn() -> J>,
}

impl<J: Job> Clone for SqliteQueue<J> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            namespace: self.namespace.clone(),
            _job: PhantomData,
        }
    }
}

impl<J: Job> SqliteQueue<J> {
    /// The queue on an open pool (no I/O).
    pub fn on(pool: SqlitePool, settings: &RedisSettings) -> Self {
        Self {
            pool,
            namespace: J::namespace(settings),
            _job: PhantomData,
        }
    }

    /// The queue's pool.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The worker-side storage for `J`, fetching `batch_size` at a time.
    pub fn storage(&self, settings: &RedisSettings, batch_size: usize) -> SqliteStorage<J> {
        SqliteStorage::new(&self.pool).with_config(apalis_config::<J>(settings, batch_size))
    }

    /// As the Redis backend's `push`: in one `BEGIN IMMEDIATE` transaction, deletes a finished
    /// (done or dead) task with id `id`, then inserts `job` runnable after `delay` (whole
    /// seconds) unless a task with that id is still waiting or running.
    ///
    /// # Errors
    /// [`QueueError`] when the file is busy past the timeout or the payload does not serialise.
    pub async fn push(
        &self,
        job: J,
        id: ulid::Ulid,
        delay: Duration,
    ) -> Result<Pushed, QueueError> {
        let payload = serde_json::to_vec(&job).map_err(|e| QueueError::Apalis(e.to_string()))?;
        let mut builder = TaskBuilder::new(payload)
            .task_id(TaskId::from_ulid(id))
            .idempotency_key(id.to_string())
            .max_attempts(MAX_DELIVERIES);
        if !delay.is_zero() {
            builder = builder.run_after(delay);
        }
        let task: SqliteTask = builder.build();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let finished = format!("DELETE FROM Jobs WHERE id = ?1 AND (status = 'Done' OR {DEAD})");
        sqlx::query(sqlx::AssertSqlSafe(finished))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let live: Option<i64> = sqlx::query_scalar("SELECT 1 FROM Jobs WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        if live.is_some() {
            tx.rollback().await?;
            return Ok(Pushed::AlreadyQueued);
        }
        apalis_sqlite::queries::push_tasks(&mut *tx, &self.namespace, &[task])
            .await
            .map_err(|e| QueueError::Apalis(e.to_string()))?;
        tx.commit().await?;
        Ok(Pushed::Enqueued)
    }

    /// Whether task `task_id` is still waiting, running or due for another delivery.
    ///
    /// # Errors
    /// [`QueueError::Sqlite`] when the file cannot be read.
    pub async fn is_live(&self, task_id: &str) -> Result<bool, QueueError> {
        let sql = format!("SELECT 1 FROM Jobs WHERE id = ?1 AND status <> 'Done' AND NOT {DEAD}");
        let live: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(live.is_some())
    }

    /// Deletes the dead task `task_id` (after a replay queued the next generation's task).
    ///
    /// # Errors
    /// [`QueueError::Sqlite`] when the file cannot be written.
    pub async fn forget_dead(&self, task_id: &str) -> Result<(), QueueError> {
        let sql = format!("DELETE FROM Jobs WHERE id = ?1 AND {DEAD}");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(task_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes this queue's finished tasks (done or dead) whose JSON payload names one of
    /// `uploads`. Returns how many.
    ///
    /// # Errors
    /// [`QueueError::Sqlite`] when the file cannot be written.
    pub async fn forget_finished_of(
        &self,
        uploads: &[crate::domain::UploadId],
    ) -> Result<u64, QueueError> {
        let sql = format!(
            "DELETE FROM Jobs WHERE job_type = ?1 AND (status = 'Done' OR {DEAD}) \
             AND instr(CAST(job AS TEXT), ?2) > 0"
        );
        let mut removed = 0;
        for upload in uploads {
            removed += sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(&self.namespace)
                .bind(upload.to_string())
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(removed)
    }

    /// `SELECT 1`, for readiness probes.
    ///
    /// # Errors
    /// [`QueueError::Sqlite`] when the file cannot be read.
    pub async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Job counts by state: scheduled (pending, not yet due), active (due, or failed with
    /// deliveries left), in flight (queued or running), dead and done.
    ///
    /// # Errors
    /// [`QueueError::Sqlite`] when the file cannot be read.
    pub async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let sql = format!(
            "SELECT \
             COALESCE(SUM(status = 'Pending' AND run_at > unixepoch()), 0), \
             COALESCE(SUM((status = 'Pending' AND run_at <= unixepoch()) \
                 OR (status = 'Failed' AND attempts < max_attempts)), 0), \
             COALESCE(SUM(status IN ('Queued', 'Running')), 0), \
             COALESCE(SUM({DEAD}), 0), \
             COALESCE(SUM(status = 'Done'), 0) \
             FROM Jobs WHERE job_type = ?1"
        );
        let (scheduled, active, inflight, dead, done): (i64, i64, i64, i64, i64) =
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(&self.namespace)
                .fetch_one(&self.pool)
                .await?;
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(QueueDepth {
            scheduled: n(scheduled),
            active: n(active),
            inflight: n(inflight),
            dead: n(dead),
            done: n(done),
        })
    }
}
