//! Subcommand implementations.

pub mod jobs;
pub mod serve;
pub mod token;
pub mod upload;
