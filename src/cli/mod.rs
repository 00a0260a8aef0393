//! Subcommand implementations.

pub mod bench;
pub mod jobs;
pub mod renditions;
pub mod serve;
pub mod token;
pub mod upload;
