//! Subcommand implementations.

pub mod decode_child;
pub mod jobs;
pub mod keys;
pub mod owners;
pub mod renditions;
pub mod serve;
pub mod standalone;
pub mod token;
pub mod transfer;
pub mod upload;
