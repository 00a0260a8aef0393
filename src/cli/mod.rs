//! Subcommand implementations.

pub mod serve;
pub mod token;
pub mod upload;
