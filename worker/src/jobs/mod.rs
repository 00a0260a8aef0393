//! Job handlers, one file per job, and the one runtime they all run in ([`runtime`]).

pub mod process_upload;
pub mod render_renditions;
pub mod runtime;
pub mod sweep;
pub mod test_hook;
