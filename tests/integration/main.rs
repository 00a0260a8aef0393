//! Kiln's integration tests, one binary (zero2prod style). The tests run against real
//! Postgres, Redis and Garage, started by `scripts/services`, except `quality`, which needs
//! only `vipsthumbnail` (`scripts/deps`).

mod api;
mod api_keys;
mod asset_race;
mod assets;
mod bounded;
mod chaos;
mod fairness;
mod faults;
mod helpers;
mod hostile;
mod imaging;
mod jail;
mod keys;
mod logs;
mod metadata;
mod metrics;
mod openapi;
mod pipeline;
mod prometheus;
mod quality;
mod rate_limits;
mod recovery;
mod renditions;
mod replay;
mod schemathesis;
mod standalone;
mod sweeper;
mod taxonomy;
mod tenancy;
