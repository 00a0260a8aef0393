//! Kiln's shared crate: domain types, configuration, database access, the S3 storage client,
//! auth tokens, the job payloads and telemetry, used by the API, the worker and the CLI.

pub mod auth;
pub mod config;
pub mod db;
pub mod dead_jobs;
pub mod domain;
pub mod metrics;
pub mod queue;
pub mod regenerate;
pub mod retry;
pub mod storage;
pub mod telemetry;
pub mod wire;

pub use config::Settings;
