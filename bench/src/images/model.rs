//! The results of `kiln-bench images`, one per image: what the run produces and the report
//! formats. Plain data in a module of its own, so imports go one way: the run ([`super`])
//! imports this and the report, the report ([`super::report`]) imports only this.

use std::path::PathBuf;
use std::time::Duration;

/// Median wall and CPU time and the largest peak RSS of one tool on one image.
#[derive(Debug, Clone)]
pub struct ToolResult {
    /// Median wall time of a run (all of the tool's processes for the image).
    pub wall: Duration,
    /// Median CPU time (user + system) of a run.
    pub cpu: Duration,
    /// Largest peak RSS of any of its processes over all runs, in KiB.
    pub max_rss_kib: u64,
    /// Median wall time of each of its processes in a run, in the order they run (vips: one
    /// per rendition; Kiln: one).
    pub per_process: Vec<Duration>,
}

/// One image's results.
#[derive(Debug, Clone)]
pub struct ImageResult {
    /// The file, as found.
    pub file: PathBuf,
    /// Width as displayed, in pixels.
    pub width: u32,
    /// Height as displayed, in pixels.
    pub height: u32,
    /// Kiln, whole process.
    pub kiln: ToolResult,
    /// Median of Kiln's in-process `imaging::process` time.
    pub kiln_pipeline: Duration,
    /// With `--jail`: median time of the same pipeline through a prespawned decoder child
    /// (request sent to response read), as a worker pays it per image.
    pub kiln_jailed: Option<Duration>,
    /// `vipsthumbnail`, all its processes for the image.
    pub vips: ToolResult,
}
