//! Kiln's HTTP API (axum): authorizes direct uploads to S3 with presigned PUT URLs or POST
//! policies, verifies and completes them, enqueues processing, and serves upload state and its
//! own OpenAPI document (`/openapi.json`).

pub mod auth;
pub mod error;
pub mod extract;
pub mod rate_limit;
pub mod routes;
pub mod startup;
pub mod state;

pub use startup::Application;
