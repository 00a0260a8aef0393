//! Worker startup: wires the ProcessUpload handler into an apalis [`Monitor`] with the
//! settings from `../shared/notes/apalis-redis-1.0.md` (unique worker names, a poll interval,
//! bounded concurrency and prefetch, a raised Redis response timeout).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use apalis::prelude::*;
use apalis_redis::RedisStorage;
use kiln_shared::Settings;
use kiln_shared::queue::{self, ProcessUpload};
use kiln_shared::storage::Storage;

use crate::jobs::process_upload::{self, JobContext};
use crate::jobs::sweep;

/// Runs a worker until `shutdown` resolves, then stops fetching, lets in-flight jobs finish
/// (up to `worker.shutdown_timeout_secs`) and returns.
///
/// # Errors
/// When Redis cannot be reached at start, or the monitor fails.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let pool = kiln_shared::db::connect(&settings.database)?;
    let storage = Storage::new(&settings.storage);
    let conn = queue::connect_redis(&settings.redis)
        .await
        .context("while connecting to Redis")?;
    let job_queue = queue::JobQueue::connect(&settings.redis)
        .await
        .context("while connecting to Redis")?;
    let concurrency = settings.worker.concurrency;
    let backend: RedisStorage<ProcessUpload> =
        RedisStorage::new(conn).with_config(queue::apalis_config(&settings.redis, concurrency));
    let ctx = Arc::new(JobContext {
        settings: settings.clone(),
        pool,
        storage,
        queue: job_queue,
    });
    let sweep_ctx = ctx.clone();
    let poll = Duration::from_millis(settings.redis.poll_interval_ms);
    // Unique per process and per restart (apalis#504: a reused name blocks orphan recovery).
    let base = format!("kiln-worker-{}-{}", hostname(), ulid::Ulid::generate());

    let monitor = Monitor::new()
        .register(move |restarts| {
            WorkerBuilder::new(format!("{base}-{restarts}"))
                .backend(backend.clone().poll_with_interval(poll))
                .concurrency(concurrency)
                .data(ctx.clone())
                .catch_panic()
                .parallelize(tokio::spawn)
                .build(process_upload::handle)
        })
        .should_restart(|ctx, err| {
            tracing::error!(worker = %ctx.name(), error = %err, "worker failed; restarting");
            true
        })
        .shutdown_timeout(Duration::from_secs(settings.worker.shutdown_timeout_secs));
    tracing::info!(queue = %settings.redis.queue, concurrency, "worker started");
    let (stop_sweeper, sweeper_stopped) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(sweep::run_periodically(sweep_ctx, sweeper_stopped));
    let result = monitor
        .run_with_signal(async move {
            shutdown.await;
            let _ = stop_sweeper.send(true);
            Ok(())
        })
        .await;
    let _ = sweeper.await;
    result?;
    tracing::info!("worker stopped");
    Ok(())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".into())
}
