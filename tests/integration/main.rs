//! Kiln's integration tests, one binary (zero2prod style). Every test runs against real
//! Postgres, Redis and Garage, started by `scripts/services`.

mod api;
mod chaos;
mod faults;
mod helpers;
mod metadata;
mod metrics;
mod openapi;
mod pipeline;
mod recovery;
mod replay;
mod sweeper;
