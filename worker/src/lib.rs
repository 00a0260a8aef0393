//! Kiln's worker: consumes ProcessUpload jobs from Redis (apalis), runs the image pipeline in
//! jailed decoder children ([`jail`]), stores derivatives, promotes originals and commits the
//! result to Postgres.

pub mod imaging;
pub mod jail;
pub mod jobs;
pub mod startup;

pub use startup::{Worker, run};
