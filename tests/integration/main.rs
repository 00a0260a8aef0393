//! Kiln's integration tests, one binary (zero2prod style). The tests run against real
//! Postgres, Redis and Garage, started by `scripts/services`, except `quality`, which needs
//! only `vipsthumbnail` (`scripts/deps`).

mod api;
mod chaos;
mod faults;
mod helpers;
mod metadata;
mod metrics;
mod pipeline;
mod quality;
mod recovery;
mod replay;
mod sweeper;
