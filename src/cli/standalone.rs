//! `kiln serve`: the whole of Kiln in one process on embedded parts, with one data directory
//! (`--data-dir`, default `./kiln-data`): the API, a worker pool, the sweeper, the SQLite
//! upload store with its apalis-sqlite queue, and the embedded S3 endpoint
//! ([`kiln_shared::storage::embedded`]). On first start it generates its token key and S3 credentials into
//! the data directory (mode 0600). `--data-dir` on other commands (`kiln token`, `kiln upload`,
//! `kiln jobs`, `kiln renditions`) points them at the same instance.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use kiln_shared::Settings;
use kiln_shared::config::standalone::{DataDir, Endpoints};
use secrecy::ExposeSecret as _;
use tokio::sync::watch;

use super::serve::{announce, migrate, shutdown_signal};
use kiln_shared::storage::embedded::EmbeddedS3;

/// The line prefix `kiln serve` prints on stdout once the embedded S3 endpoint is bound:
/// `KILN_S3_ADDR=127.0.0.1:9000`.
pub const S3_ADDR_LINE: &str = "KILN_S3_ADDR=";

/// The data directory `kiln serve` uses when `--data-dir` is not given.
pub const DEFAULT_DATA_DIR: &str = "kiln-data";

/// Arguments of `kiln serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Listen address of the embedded S3 endpoint (presigned URLs point here, so clients must
    /// reach it). Port 0 picks a free port.
    #[arg(long, env = "KILN_S3_LISTEN", default_value = "127.0.0.1:9000")]
    s3_listen: SocketAddr,
}

/// Runs the standalone instance in `data_dir` until SIGINT/SIGTERM. Prints `KILN_S3_ADDR=…`,
/// `KILN_API_ADDR=…` and `KILN_WORKER_METRICS_ADDR=…` on stdout as each listener is bound, and
/// records the API and S3 addresses in `endpoints.toml`. On shutdown the API stops taking
/// requests and the worker finishes its jobs before the S3 endpoint closes.
///
/// # Errors
/// When the data directory cannot be prepared, a listener cannot be bound, or a migration fails.
pub async fn serve(settings: Settings, data_dir: &Path, args: &ServeArgs) -> anyhow::Result<()> {
    let data = DataDir::new(data_dir);
    data.create()?;
    let secrets = data.secrets_or_create()?;
    let s3 = EmbeddedS3::bind(
        args.s3_listen,
        &data.objects(),
        &secrets.s3_access_key_id,
        secrets.s3_secret_access_key.expose_secret(),
        settings.api.max_upload_bytes,
    )
    .await?;
    let s3_addr = s3.local_addr();
    announce(S3_ADDR_LINE, s3_addr);
    let s3_url = format!("http://{s3_addr}");
    let settings = data.apply(settings, &secrets, &s3_url);
    let (s3_stop_tx, s3_stop) = watch::channel(false);
    let s3_task = tokio::spawn(s3.run_until_stopped(s3_stop));

    migrate(settings.clone()).await?;
    let app = kiln_api::Application::build(settings.clone()).await?;
    let worker = kiln_worker::Worker::build(settings).await?;
    data.write_endpoints(&Endpoints {
        api: format!("http://{}", app.local_addr()),
        s3: s3_url,
    })?;
    announce(kiln_api::startup::LISTEN_ADDR_LINE, app.local_addr());
    announce(
        kiln_worker::startup::METRICS_ADDR_LINE,
        worker.metrics_addr(),
    );
    tracing::info!(data_dir = %data_dir.display(), %s3_addr, api = %app.local_addr(), "kiln serve: standalone instance running");

    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let until = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let (api, worker) = tokio::join!(
        app.run_until_stopped(until(stop.clone())),
        worker.run_until_stopped(until(stop))
    );
    let _ = s3_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), s3_task).await;
    api.context("the API failed")?;
    worker.context("the worker failed")
}

/// `settings` pointed at the running `kiln serve` of `data_dir` (its store, queue, S3 endpoint
/// and token key), plus its API URL, for the commands that run beside it.
///
/// # Errors
/// When the data directory has no secrets or no `endpoints.toml` (no `kiln serve` has started
/// there).
pub fn attach(settings: Settings, data_dir: &Path) -> anyhow::Result<(Settings, String)> {
    let data = DataDir::new(data_dir);
    let secrets = data
        .secrets()
        .with_context(|| format!("no standalone instance in {}", data_dir.display()))?;
    let endpoints = data
        .endpoints()
        .with_context(|| format!("start `kiln serve --data-dir {}` first", data_dir.display()))?;
    Ok((data.apply(settings, &secrets, &endpoints.s3), endpoints.api))
}
