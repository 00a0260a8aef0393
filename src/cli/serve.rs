//! `kiln api`, `kiln worker` and `kiln migrate`.

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

/// Migrates, then serves the API until SIGINT/SIGTERM.
pub async fn api(settings: Settings) -> anyhow::Result<()> {
    migrate(settings.clone()).await?;
    let app = kiln_api::Application::build(settings).await?;
    app.run_until_stopped(shutdown_signal()).await
}

/// Runs a worker until SIGINT/SIGTERM.
pub async fn worker(settings: Settings) -> anyhow::Result<()> {
    kiln_worker::run(settings, shutdown_signal()).await
}

/// Applies migrations.
pub async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let pool = kiln_shared::db::connect(&settings.database)?;
    kiln_shared::db::migrate(&pool)
        .await
        .context("while migrating the database")?;
    tracing::info!("migrations applied");
    Ok(())
}
