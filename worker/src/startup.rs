//! Worker startup: wires the ProcessUpload and RenderRenditions handlers into an apalis
//! [`Monitor`], each on its own queue with its own concurrency, with the settings from
//! `docs/dependencies.md` (unique worker names, a poll interval, bounded
//! concurrency and prefetch, a raised Redis response timeout), runs the sweeper beside it, and
//! reconnects with backoff when Redis goes away. [`Worker::build`] binds the metrics listener
//! before anything runs (port 0 works; [`Worker::metrics_addr`] reports the port), like the
//! API's `Application::build`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use apalis::prelude::*;
use apalis_redis::RedisStorage;
use kiln_shared::Settings;
use kiln_shared::db::Db;
use kiln_shared::lifecycle::Lifecycle;
use kiln_shared::metrics::{self, Metrics};
use kiln_shared::queue::sqlite::SqliteQueue;
use kiln_shared::queue::{self, ProcessUpload, QueueConnection, RenderRenditions};
use kiln_shared::storage::Storage;
use tokio::sync::watch;

use crate::jail::Decoders;
use crate::jobs::runtime::JobContext;
use crate::jobs::{process_upload, render_renditions, sweep};

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The line prefix `kiln worker` prints on stdout, once, as soon as its metrics listener is
/// bound: `KILN_WORKER_METRICS_ADDR=127.0.0.1:41234` (then a newline). The rest of the line is
/// [`Worker::metrics_addr`] as `SocketAddr` displays it. Logs go to stderr, so this is the only
/// line on stdout; whoever starts a worker process with `worker.metrics_listen` on port 0 (tests,
/// `kiln-bench fleet`) reads its metrics address from it.
pub const METRICS_ADDR_LINE: &str = "KILN_WORKER_METRICS_ADDR=";

/// A worker whose metrics listener is bound but which is not yet consuming jobs
/// ([`Worker::build`], then [`Worker::run_until_stopped`]). With `worker.metrics_listen` on
/// port 0 the system picks a free port; [`Worker::metrics_addr`] says which.
pub struct Worker {
    settings: Arc<Settings>,
    pool: Db,
    storage: Storage,
    metrics: Arc<Metrics>,
    listener: tokio::net::TcpListener,
    decoders: Decoders,
}

impl Worker {
    /// Prepares the database pool (lazily: nothing connects yet) and the S3 client, binds
    /// `worker.metrics_listen`, and starts the decoder jail (`worker.jail`: every child
    /// spawned and confined before this returns; see [`crate::jail`]).
    ///
    /// # Errors
    /// When the database URL is malformed, the metrics address cannot be bound, or the jail
    /// is enabled but cannot start its children (the error says why).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let pool = kiln_shared::db::connect(&settings.database)?;
        let storage = Storage::new(&settings.storage);
        let metrics = Arc::new(Metrics::with_owner_labels(
            settings.scheduling.owner_metrics,
        ));
        metrics.init_worker_series(&settings.redis.queue);
        let listener = tokio::net::TcpListener::bind(settings.worker.metrics_listen)
            .await
            .with_context(|| format!("while binding {}", settings.worker.metrics_listen))?;
        let decoders = Decoders::start(&settings.worker)
            .await
            .context("while starting the decoder jail (worker.jail)")?;
        Ok(Self {
            settings,
            pool,
            storage,
            metrics,
            listener,
            decoders,
        })
    }

    /// The address `/metrics` is served on: the bound one, so the real port when
    /// `worker.metrics_listen` asked for port 0.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves `/metrics` and consumes jobs until `shutdown` resolves, then stops fetching, lets
    /// in-flight jobs finish (up to `worker.shutdown_timeout_secs`) and returns.
    ///
    /// apalis ends a worker whose Redis connection drops, and its monitor then returns as if
    /// all were well (`docs/dependencies.md`). So the monitor runs in a loop
    /// here: when it ends without a shutdown request, or Redis cannot be reached, the worker
    /// waits with exponential backoff (1 s doubling to 30 s) and starts again under a fresh
    /// worker name. It never spins and never returns while broken; only a shutdown request
    /// ends it.
    ///
    /// # Errors
    /// None today: every failure is logged and retried. The `Result` leaves room for fatal ones.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.metrics_addr();
        let Self {
            settings,
            pool,
            storage,
            metrics,
            listener,
            decoders,
        } = self;
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });

        tracing::info!(%addr, "worker metrics listening");
        let metrics_server = tokio::spawn(serve_metrics(listener, metrics.clone(), stop.clone()));

        let mut sweeper = None;
        let mut backoff = Duration::from_secs(1);
        while !*stop.borrow() {
            let started = Instant::now();
            let deps = (&pool, &storage, &metrics, &decoders);
            match run_monitor(&settings, deps, stop.clone(), &mut sweeper).await {
                Ok(()) if *stop.borrow() => break,
                Ok(()) => tracing::error!("worker lost its queue connection"),
                Err(e) => tracing::error!(error = format!("{e:#}"), "worker cannot run"),
            }
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            tracing::warn!(?backoff, "restarting the worker after a pause");
            let mut stop_wait = stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop_wait.wait_for(|s| *s) => break,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        if let Some(task) = sweeper {
            let _ = task.await;
        }
        let _ = metrics_server.await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Runs a worker until `shutdown` resolves: [`Worker::build`] then
/// [`Worker::run_until_stopped`], for callers that do not need the metrics address.
///
/// # Errors
/// As [`Worker::build`].
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Worker::build(settings)
        .await?
        .run_until_stopped(shutdown)
        .await
}

/// Registers the ProcessUpload and RenderRenditions workers on backends `$uploads` and
/// `$renditions` (both polled every `$poll`), the same way whichever queue backend they are on.
macro_rules! monitor {
    ($name:expr, $ctx:expr, $decoders:expr, $poll:expr, $uploads:expr, $renditions:expr, $settings:expr, $failed:expr) => {{
        let (name, ctx, decoders, poll) = ($name, $ctx, $decoders, $poll);
        let render_decoders = decoders.clone();
        let (backend, renditions_backend) = ($uploads, $renditions);
        let render_ctx = ctx.clone();
        let concurrency = $settings.worker.concurrency;
        let renditions_concurrency = $settings.worker.renditions_concurrency;
        let renditions_name = format!("{name}-renditions");
        let failed_flag = $failed;
        Monitor::new()
            .register(move |restarts| {
                WorkerBuilder::new(format!("{name}-{restarts}"))
                    .backend(backend.clone().poll_with_interval(poll))
                    .concurrency(concurrency)
                    .data(ctx.clone())
                    .data(decoders.clone())
                    .catch_panic()
                    .parallelize(tokio::spawn)
                    .build(process_upload::handle)
            })
            .register(move |restarts| {
                WorkerBuilder::new(format!("{renditions_name}-{restarts}"))
                    .backend(renditions_backend.clone().poll_with_interval(poll))
                    .concurrency(renditions_concurrency)
                    .data(render_ctx.clone())
                    .data(render_decoders.clone())
                    .catch_panic()
                    .parallelize(tokio::spawn)
                    .build(render_renditions::handle)
            })
            .should_restart(move |ctx, err| {
                // Restart from our loop instead, with backoff and a fresh connection.
                tracing::error!(worker = %ctx.name(), error = %err, "worker failed");
                failed_flag.store(true, Ordering::SeqCst);
                false
            })
            .shutdown_timeout(Duration::from_secs($settings.worker.shutdown_timeout_secs))
    }};
}

/// Connects to the queue backend ([`queue::connect`]) and runs one apalis monitor until
/// shutdown or a worker failure. Starts the sweeper the first time the queue is reachable.
async fn run_monitor(
    settings: &Arc<Settings>,
    (pool, storage, metrics, decoders): (&Db, &Storage, &Arc<Metrics>, &Decoders),
    stop: watch::Receiver<bool>,
    sweeper: &mut Option<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<()> {
    let conn = queue::connect(&settings.redis, pool, &settings.database.url)
        .await
        .context("while connecting to the queue")?;
    let lifecycle = Lifecycle::on(settings.clone(), pool.clone(), storage.clone(), &conn);
    let ctx = Arc::new(JobContext {
        settings: settings.clone(),
        lifecycle,
        metrics: metrics.clone(),
    });
    if sweeper.is_none() {
        *sweeper = Some(tokio::spawn(sweep::run_periodically(
            ctx.clone(),
            stop.clone(),
        )));
    }
    let poll = Duration::from_millis(settings.redis.poll_interval_ms);
    // Unique per process and per restart (apalis#504: a reused name blocks orphan recovery).
    let name = format!("kiln-worker-{}-{}", hostname(), ulid::Ulid::generate());
    let failed = Arc::new(AtomicBool::new(false));
    let (concurrency, renditions_concurrency) = (
        settings.worker.concurrency,
        settings.worker.renditions_concurrency,
    );
    let monitor = match &conn {
        QueueConnection::Redis(conn) => {
            let uploads: RedisStorage<ProcessUpload> = RedisStorage::new(conn.clone()).with_config(
                queue::apalis_config::<ProcessUpload>(&settings.redis, concurrency),
            );
            let renditions: RedisStorage<RenderRenditions> = RedisStorage::new(conn.clone())
                .with_config(queue::apalis_config::<RenderRenditions>(
                    &settings.redis,
                    renditions_concurrency,
                ));
            monitor!(
                name,
                ctx,
                decoders.clone(),
                poll,
                uploads,
                renditions,
                settings,
                failed.clone()
            )
        }
        QueueConnection::Sqlite(pool) => {
            let uploads = SqliteQueue::<ProcessUpload>::on(pool.clone(), &settings.redis)
                .storage(&settings.redis, concurrency);
            let renditions = SqliteQueue::<RenderRenditions>::on(pool.clone(), &settings.redis)
                .storage(&settings.redis, renditions_concurrency);
            monitor!(
                name,
                ctx,
                decoders.clone(),
                poll,
                uploads,
                renditions,
                settings,
                failed.clone()
            )
        }
    };
    tracing::info!(
        backend = ?conn,
        queue = %settings.redis.queue,
        concurrency,
        renditions_queue = %settings.redis.renditions_queue(),
        renditions_concurrency,
        "worker started"
    );
    let mut stop_wait = stop.clone();
    monitor
        .run_with_signal(async move {
            let _ = stop_wait.wait_for(|s| *s).await;
            Ok(())
        })
        .await?;
    if failed.load(Ordering::SeqCst) && !*stop.borrow() {
        anyhow::bail!("a worker ended with an error");
    }
    Ok(())
}

/// Serves `GET /metrics` (Prometheus text format) until `stop` fires.
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
                    metrics.render(),
                )
            }
        }),
    );
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "metrics server failed");
    }
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
