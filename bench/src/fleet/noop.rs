//! The queue alone: no-op jobs pushed through apalis-redis (as the API pushes) and run by an
//! in-process apalis worker built like Kiln's (the worker's Redis settings: poll interval,
//! fetch batch = concurrency) whose handler does nothing. Also the clean-up of every Redis key
//! the benchmark's queues made.

use std::time::{Duration, Instant};

use anyhow::bail;
use apalis::prelude::*;
use apalis_redis::RedisStorage;
use futures::TryStreamExt;
use kiln_shared::Settings;
use kiln_shared::queue;
use serde::{Deserialize, Serialize};

/// One no-op queue run.
#[derive(Debug, Clone, Copy)]
pub struct NoopRun {
    /// Jobs pushed and processed.
    pub jobs: u32,
    /// Concurrency of the no-op worker.
    pub concurrency: u16,
    /// Jobs pushed per second, one push at a time.
    pub pushed_per_sec: f64,
    /// Jobs processed per second, from the worker's start to the last job done.
    pub processed_per_sec: f64,
}

/// A no-op job: the payload is only there so jobs differ.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {
    n: u32,
}

async fn noop(_job: Noop) -> Result<(), BoxDynError> {
    Ok(())
}

/// Pushes `jobs` no-op jobs one at a time onto `queue_name`, then runs them on one in-process
/// worker with `concurrency`, timing both.
///
/// # Errors
/// When Redis is unreachable, a push fails, or the jobs do not all run within 10 minutes.
pub async fn run(
    settings: &Settings,
    queue_name: &str,
    jobs: u32,
    concurrency: u16,
) -> anyhow::Result<NoopRun> {
    eprintln!("queue alone: {jobs} no-op jobs, worker concurrency {concurrency}");
    let mut redis_settings = settings.redis.clone();
    redis_settings.queue = queue_name.to_owned();
    let conn = queue::connect_redis(&redis_settings).await?;
    let config = queue::namespace_config(&redis_settings, queue_name, usize::from(concurrency));
    let done_set = config.done_jobs_set();
    let mut storage: RedisStorage<Noop> = RedisStorage::new(conn.clone()).with_config(config);

    let started = Instant::now();
    for n in 0..jobs {
        storage
            .push(Noop { n })
            .await
            .map_err(|e| anyhow::anyhow!("push: {e}"))?;
    }
    let pushed_per_sec = f64::from(jobs) / started.elapsed().as_secs_f64();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = WorkerBuilder::new(format!("kiln-bench-noop-{}", ulid::Ulid::generate()))
        .backend(
            storage
                .clone()
                .poll_with_interval(Duration::from_millis(settings.redis.poll_interval_ms)),
        )
        .concurrency(usize::from(concurrency))
        .parallelize(tokio::spawn)
        .build(noop);
    let started = Instant::now();
    let handle = tokio::spawn(worker.run_until(async move {
        let _ = stop_rx.await;
        Ok::<(), std::io::Error>(())
    }));
    let mut redis = conn;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: u64 = redis::AsyncCommands::scard(&mut redis, &done_set).await?;
        if done >= u64::from(jobs) {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {jobs} no-op jobs ran in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let processed_per_sec = f64::from(jobs) / started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
    Ok(NoopRun {
        jobs,
        concurrency,
        pushed_per_sec,
        processed_per_sec,
    })
}

/// Deletes every Redis key of the given queues (`{q}` and `{q}:*`, found with SCAN).
///
/// # Errors
/// When Redis is unreachable or a command fails.
pub async fn delete_queues(settings: &Settings, queues: &[String]) -> anyhow::Result<()> {
    let mut conn = queue::connect_redis(&settings.redis).await?;
    for q in queues {
        for pattern in [q.clone(), format!("{q}:*")] {
            let keys: Vec<String> = {
                let iter: redis::AsyncIter<String> =
                    redis::AsyncCommands::scan_match(&mut conn, &pattern).await?;
                iter.try_collect().await?
            };
            if !keys.is_empty() {
                let _: () = redis::AsyncCommands::del(&mut conn, keys).await?;
            }
        }
    }
    Ok(())
}
