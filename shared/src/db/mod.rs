//! Postgres access: the pool, migrations, the upload queries and the derivative-row queries
//! used when re-rendering.

pub mod derivatives;
pub mod uploads;

use std::time::Duration;

pub use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::DatabaseSettings;

/// Errors from the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Postgres refused or failed the query, or the connection dropped.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row holds a value the code does not know (a bug or a newer schema).
    #[error("corrupt row: {0}")]
    CorruptRow(String),
}

/// The migrations in `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens a pool. Connections are made lazily, so this succeeds while Postgres is down; the
/// first query then fails with [`DbError::Sqlx`].
///
/// # Errors
/// [`DbError::Sqlx`] when the URL does not parse.
pub fn connect(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(&settings.url)?)
}

/// Applies pending migrations.
///
/// # Errors
/// [`DbError::Migrate`] when Postgres is unreachable or a migration fails.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// `SELECT 1`, for readiness probes.
///
/// # Errors
/// [`DbError::Sqlx`] when Postgres does not answer.
pub async fn ping(pool: &PgPool) -> Result<(), DbError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
