//! Kiln's integration tests, one binary (zero2prod style). Every test runs against real
//! Postgres, Redis and Garage, started by `scripts/services`.

mod api;
mod chaos;
mod faults;
mod helpers;
mod imaging;
mod logs;
mod metadata;
mod metrics;
mod pipeline;
mod prometheus;
mod recovery;
mod renditions;
mod replay;
mod sweeper;
