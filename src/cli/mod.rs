//! Subcommand implementations.

pub mod jobs;
pub mod renditions;
pub mod serve;
pub mod token;
pub mod upload;
