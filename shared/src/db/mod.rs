//! Postgres access: the pool, migrations, upload reads ([`uploads`]), upload state changes
//! ([`transitions`], called only by the lifecycle module) and derivative rows
//! ([`derivatives`]).

pub mod derivatives;
pub mod transitions;
pub mod uploads;

use std::time::Duration;

pub use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::config::DatabaseSettings;
use crate::domain::{Classify, ErrorCode};

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

impl Classify for DbError {
    /// A lost or refused connection, a timeout or a server-side outage is
    /// `database_unavailable` (transient). A row the code cannot read (a bug or a newer
    /// schema) and a statement Postgres rejects for its data or schema (SQLSTATE classes 22
    /// data exception, 23 integrity constraint, 42 syntax or access rule) are `internal`
    /// (permanent): the same call fails the same way again.
    fn code(&self) -> ErrorCode {
        match self {
            Self::Sqlx(e) => sqlx_code(e),
            Self::Migrate(sqlx::migrate::MigrateError::Execute(e)) => sqlx_code(e),
            Self::Migrate(_) | Self::CorruptRow(_) => ErrorCode::Internal,
        }
    }
}

fn sqlx_code(e: &sqlx::Error) -> ErrorCode {
    use sqlx::Error as E;
    match e {
        E::Database(db) => match db.code().as_deref().map(|c| c.get(..2).unwrap_or(c)) {
            Some("22" | "23" | "42") => ErrorCode::Internal,
            _ => ErrorCode::DatabaseUnavailable,
        },
        E::RowNotFound
        | E::TypeNotFound { .. }
        | E::ColumnIndexOutOfBounds { .. }
        | E::ColumnNotFound(_)
        | E::ColumnDecode { .. }
        | E::Decode(_)
        | E::Encode(_)
        | E::Configuration(_) => ErrorCode::Internal,
        _ => ErrorCode::DatabaseUnavailable,
    }
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
