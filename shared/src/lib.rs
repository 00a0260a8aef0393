//! Kiln's shared crate: domain types and the error taxonomy, configuration, the upload
//! lifecycle (every state change with its queue work), database access, the S3 storage
//! client, the queues and job payloads, auth tokens and API keys, wire types and telemetry,
//! used by the API, the worker and the CLI.

pub mod api_keys;
pub mod auth;
pub mod config;
pub mod db;
pub mod dead_jobs;
pub mod domain;
pub mod lifecycle;
pub mod metrics;
pub mod queue;
pub mod retry;
pub mod storage;
pub mod telemetry;
pub mod wire;

pub use config::Settings;
