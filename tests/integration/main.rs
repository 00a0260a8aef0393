//! Kiln's integration tests, one binary (zero2prod style). Every test runs against real
//! Postgres, Redis and Garage, started by `scripts/services`.

mod api;
mod helpers;
mod metadata;
mod pipeline;
mod replay;
mod sweeper;
