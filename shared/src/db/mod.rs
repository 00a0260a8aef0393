//! The upload store: the database port. [`Db`] is either PostgreSQL (the fleet) or SQLite
//! (standalone `kiln serve`); the backend is chosen once, by the scheme of `database.url`, in
//! [`connect`]. Every query is written once in the SQL both engines accept (bound timestamps
//! instead of `now()`, `CAST(… AS …)` instead of `::`, no arrays) and runs on either pool
//! through [`with_pool!`]; the two schemas live in `migrations/postgres` and
//! `migrations/sqlite`. Holds the pool, migrations, upload reads ([`uploads`]), upload state
//! changes ([`transitions`], called only by the lifecycle module) and derivative rows
//! ([`derivatives`]).

pub mod admission;
pub mod assets;
pub mod derivatives;
pub mod erase;
pub mod import;
pub mod owners;
pub mod shares;
pub mod transitions;
pub mod uploads;

use std::str::FromStr;
use std::time::Duration;

pub use sqlx::PgPool;
pub use sqlx::SqlitePool;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::config::DatabaseSettings;
use crate::domain::{Classify, ErrorCode};

/// Runs `$body` with `$p` bound to the pool of whichever backend `$db` (a `&Db`) is. The body is
/// compiled once per backend, so the same query text and binds serve both.
macro_rules! with_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($p) => $body,
            $crate::db::Db::Sqlite($p) => $body,
        }
    };
}
pub(crate) use with_pool;

/// The upload store's connection pool: PostgreSQL for the fleet, SQLite (WAL) for standalone.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub enum Db {
    /// A PostgreSQL pool (`postgres://…` URLs).
    Postgres(PgPool),
    /// A SQLite pool (`sqlite://…` URLs): one file, WAL journal, 10 s busy timeout.
    Sqlite(SqlitePool),
}

impl Db {
    /// The row-lock suffix `clause` (`FOR SHARE`, `FOR UPDATE`) on Postgres; empty on SQLite,
    /// whose write transactions ([`Db::begin_write`]) already hold the whole database.
    pub(crate) fn row_lock(&self, clause: &'static str) -> &'static str {
        match self {
            Self::Postgres(_) => clause,
            Self::Sqlite(_) => "",
        }
    }

    /// The Postgres pool, on the fleet backend (for tools and tests that query it directly).
    pub fn as_postgres(&self) -> Option<&PgPool> {
        match self {
            Self::Postgres(p) => Some(p),
            Self::Sqlite(_) => None,
        }
    }

    /// Which engine this is: `postgres` or `sqlite` (for logs and readiness).
    pub fn engine(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }
}

/// Errors from the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database refused or failed the query, or the connection dropped.
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
    /// A lost or refused connection, a timeout, a busy SQLite file or a server-side outage is
    /// `database_unavailable` (transient). A row the code cannot read (a bug or a newer
    /// schema) and a statement the database rejects for its data or schema (a constraint
    /// violation; on Postgres also SQLSTATE classes 22 data exception and 42 syntax or access
    /// rule) are `internal` (permanent): the same call fails the same way again.
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
    use sqlx::error::ErrorKind;
    match e {
        E::Database(db) => {
            let constraint = !matches!(db.kind(), ErrorKind::Other);
            let class = db.code().map(|c| c.get(..2).unwrap_or(&c).to_owned());
            let pg_permanent = db
                .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
                && matches!(class.as_deref(), Some("22" | "23" | "42"));
            if constraint || pg_permanent {
                ErrorCode::Internal
            } else {
                ErrorCode::DatabaseUnavailable
            }
        }
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

/// The Postgres migrations in `migrations/postgres/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");
/// The SQLite migrations in `migrations/sqlite/` (the same schema), embedded at build time.
pub static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Opens a pool on `database.url`: `postgres://…` (or `postgresql://…`) selects PostgreSQL,
/// `sqlite://PATH` selects SQLite (the file is created if missing; WAL journal, `synchronous =
/// NORMAL`, foreign keys on, 10 s busy timeout). Connections are made lazily, so this succeeds
/// while the server is down; the first query then fails with [`DbError::Sqlx`].
///
/// # Errors
/// [`DbError::Sqlx`] when the URL does not parse or names another scheme.
pub fn connect(settings: &DatabaseSettings) -> Result<Db, DbError> {
    let url = settings.url.as_str();
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        return Ok(Db::Sqlite(
            SqlitePoolOptions::new()
                .max_connections(settings.max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_lazy_with(options),
        ));
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(DbError::Sqlx(sqlx::Error::Configuration(
            format!("database.url must start with postgres:// or sqlite://, got {url:?}").into(),
        )));
    }
    Ok(Db::Postgres(
        PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(url)?,
    ))
}

/// Applies pending migrations of the pool's engine.
///
/// # Errors
/// [`DbError::Migrate`] when the database is unreachable or a migration fails.
pub async fn migrate(db: &Db) -> Result<(), DbError> {
    match db {
        Db::Postgres(p) => MIGRATOR.run(p).await?,
        Db::Sqlite(p) => SQLITE_MIGRATOR.run(p).await?,
    }
    Ok(())
}

/// `SELECT 1`, for readiness probes.
///
/// # Errors
/// [`DbError::Sqlx`] when the database does not answer.
pub async fn ping(db: &Db) -> Result<(), DbError> {
    with_pool!(db, p => sqlx::query("SELECT 1").execute(p).await.map(|_| ()))?;
    Ok(())
}

/// The current time, bound into every statement that stamps or compares a time, so both engines
/// use one clock (the process's; hosts of a fleet keep theirs in sync). Truncated to
/// microseconds, Postgres' `timestamptz` precision, so SQLite stores the same instant and a
/// row copied between them (`kiln transfer`) keeps it exactly.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    micros(chrono::Utc::now())
}

/// `t` truncated to whole microseconds.
pub(crate) fn micros(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound as _;
    t.trunc_subsecs(6)
}

/// `now() - d`, for "older than `d`" comparisons.
pub(crate) fn ago(d: Duration) -> chrono::DateTime<chrono::Utc> {
    let d = chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
    now()
        .checked_sub_signed(d)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC)
}

/// Begins a write transaction: `BEGIN` on Postgres, `BEGIN IMMEDIATE` on SQLite (takes the
/// write lock up front, so a transaction that reads before it writes cannot fail to upgrade
/// with `SQLITE_BUSY` halfway).
pub(crate) async fn begin_write<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    if DB::NAME == <sqlx::Sqlite as sqlx::Database>::NAME {
        pool.begin_with("BEGIN IMMEDIATE").await
    } else {
        pool.begin().await
    }
}
