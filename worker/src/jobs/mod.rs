//! Job handlers, one file per job.

pub mod process_upload;
pub mod render_renditions;
pub mod sweep;
