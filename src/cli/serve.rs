//! `kiln api`, `kiln worker` and `kiln migrate`.

use std::io::Write as _;

use anyhow::Context;
use kiln_shared::Settings;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}

/// Migrates, then serves the API until SIGINT/SIGTERM. Once the listener is bound it prints
/// `KILN_API_ADDR={addr}` on stdout ([`kiln_api::startup::LISTEN_ADDR_LINE`]), so a parent that
/// asked for port 0 learns the port.
pub async fn api(settings: Settings) -> anyhow::Result<()> {
    // Refuse a missing or weak token key before touching anything.
    kiln_shared::auth::Verifier::from_settings(&settings.auth)?;
    migrate(settings.clone()).await?;
    let app = kiln_api::Application::build(settings).await?;
    announce(kiln_api::startup::LISTEN_ADDR_LINE, app.local_addr());
    // `api.admin_listen`: `KILN_API_ADMIN_ADDR={addr}` ([`kiln_api::startup::ADMIN_ADDR_LINE`]).
    if let Some(addr) = app.admin_addr() {
        announce(kiln_api::startup::ADMIN_ADDR_LINE, addr);
    }
    app.run_until_stopped(shutdown_signal()).await
}

/// Runs a worker until SIGINT/SIGTERM. Once its metrics listener is bound it prints
/// `KILN_WORKER_METRICS_ADDR={addr}` on stdout ([`kiln_worker::startup::METRICS_ADDR_LINE`]),
/// so a parent that asked for port 0 (`worker.metrics_listen`) learns the port.
pub async fn worker(settings: Settings) -> anyhow::Result<()> {
    let worker = kiln_worker::Worker::build(settings).await?;
    announce(
        kiln_worker::startup::METRICS_ADDR_LINE,
        worker.metrics_addr(),
    );
    worker.run_until_stopped(shutdown_signal()).await
}

/// Prints `{prefix}{addr}` and a newline on stdout, flushed. A closed stdout is not an error:
/// nobody wanted the line.
pub(crate) fn announce(prefix: &str, addr: std::net::SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{prefix}{addr}").and_then(|()| out.flush());
}

/// Applies the upload store's migrations (and on SQLite the queue's).
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let db = kiln_shared::db::connect(&settings.database)?;
    kiln_shared::db::migrate(&db)
        .await
        .context("while migrating the database")?;
    if let kiln_shared::db::Db::Sqlite(_) = db {
        // The standalone queue has tables of its own; Redis has none.
        let conn =
            kiln_shared::queue::connect(&settings.redis, &db, &settings.database.url).await?;
        kiln_shared::queue::migrate(&conn)
            .await
            .context("while migrating the queue")?;
    }
    tracing::info!("migrations applied");
    Ok(())
}
