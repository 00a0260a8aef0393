//! `kiln bench …`: benchmarks of Kiln against its peers, run on this machine.
//!
//! `kiln bench images PATH…` runs Kiln's image pipeline beside libvips' `vipsthumbnail` on the
//! same files in the same run, and prints time, peak memory and thumbnail throughput
//! (`docs/benchmarks.md`, "Image pipeline"). The hidden `render-one` and `measure` subcommands
//! are the processes it spawns. `kiln bench fleet` pushes uploads through the whole path (API,
//! S3, queue, 1 then 2 worker processes) and the queue alone, and prints throughput and
//! complete→ready latency (`docs/benchmarks.md`, "Fleet").

mod fleet;
mod images;
mod measure;
mod render_one;
mod report;
mod table;
mod throughput;

use std::path::Path;

use kiln_shared::Settings;

pub use fleet::FleetArgs;
pub use images::ImagesArgs;
pub use measure::MeasureArgs;
pub use render_one::RenderOneArgs;

/// `kiln bench …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Kiln's pipeline beside `vipsthumbnail` on the same images (the configured renditions):
    /// per-image time, CPU time and peak RSS for each, plus thumb-only throughput.
    Images(ImagesArgs),
    /// The whole upload path with 1, then 2 worker processes (uploads/s, complete→ready
    /// p50/p95/p99, the ratio), and the queue alone (no-op jobs/s through apalis-redis).
    /// Needs the services up (`scripts/bench-fleet` starts them).
    Fleet(FleetArgs),
    /// Runs Kiln's pipeline once on one file with the configured renditions and prints one JSON
    /// line (size and in-process timings). Spawned by `images`, one fresh process per run.
    #[command(hide = true)]
    RenderOne(RenderOneArgs),
    /// Runs a command, waits for it, and prints one JSON line with its wall time, CPU time and
    /// peak RSS (`getrusage(RUSAGE_CHILDREN)` of this fresh process). Spawned by `images`.
    #[command(hide = true)]
    Measure(MeasureArgs),
}

/// Runs a `kiln bench` subcommand. `config` is the `--config` file given to this process, if
/// any; spawned `kiln` processes get it too, so both sides use the same settings.
///
/// # Errors
/// Whatever the subcommand fails with: an unreadable input, a failed child process, an image
/// the pipeline rejects, an unreachable service.
pub async fn run(
    settings: &Settings,
    config: Option<&Path>,
    cmd: BenchCommand,
) -> anyhow::Result<()> {
    match cmd {
        // Blocking: it waits on child processes one after another.
        BenchCommand::Images(args) => {
            tokio::task::block_in_place(|| images::run(settings, config, &args))
        }
        BenchCommand::Fleet(args) => fleet::run(settings, config, &args).await,
        BenchCommand::RenderOne(args) => render_one::run(settings, &args),
        BenchCommand::Measure(args) => measure::run(&args),
    }
}
