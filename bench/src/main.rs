//! `kiln-bench`: Kiln's benchmarks, run on this machine. A separate binary of the workspace, so
//! none of it (nor its dependencies) ships in `kiln`.
//!
//! `kiln-bench images PATH…` runs Kiln's image pipeline beside libvips' `vipsthumbnail` on the
//! same files in the same run, and prints time, peak memory and thumbnail throughput
//! (`docs/benchmarks.md`, "Image pipeline"). The hidden `render-one` and `measure` subcommands
//! are the processes it spawns (this same executable). `kiln-bench fleet` pushes uploads through
//! the whole path (API, S3, queue, 1 then 2 `kiln worker` processes) and the queue alone, and
//! prints throughput and complete→ready latency (`docs/benchmarks.md`, "Fleet"); it spawns the
//! `kiln` binary found next to this one (or named by `--kiln` / `KILN_BIN`).

mod fleet;
mod images;
mod machine;
mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Kiln's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "kiln-bench", version, about)]
struct Args {
    /// Optional TOML config file (layered over defaults, under `KILN__…` env vars), as for
    /// `kiln`.
    #[arg(long, global = true, env = "KILN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// `kiln-bench` subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Kiln's pipeline beside `vipsthumbnail` on the same images (the configured renditions):
    /// per-image time, CPU time and peak RSS for each, plus thumb-only throughput.
    Images(images::ImagesArgs),
    /// The whole upload path with 1, then 2 `kiln worker` processes (uploads/s, complete→ready
    /// p50/p95/p99, the ratio), and the queue alone (no-op jobs/s through apalis-redis).
    /// Needs the services up (`scripts/bench-fleet` starts them) and a built `kiln`.
    Fleet(fleet::FleetArgs),
    /// Runs Kiln's pipeline once on one file with the configured renditions and prints one JSON
    /// line (size and in-process timings). Spawned by `images`, one fresh process per run.
    #[command(hide = true)]
    RenderOne(images::render_one::RenderOneArgs),
    /// Runs a command, waits for it, and prints one JSON line with its wall time, CPU time and
    /// peak RSS (`getrusage(RUSAGE_CHILDREN)` of this fresh process). Spawned by `images`.
    #[command(hide = true)]
    Measure(images::measure::MeasureArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = args.config.as_deref();
    let settings = kiln_shared::Settings::load(config)?;
    kiln_shared::telemetry::init(&settings.telemetry);
    match args.command {
        // Blocking: it waits on child processes one after another.
        Command::Images(a) => tokio::task::block_in_place(|| images::run(&settings, config, &a)),
        Command::Fleet(a) => fleet::run(&settings, &a).await,
        Command::RenderOne(a) => images::render_one::run(&settings, &a),
        Command::Measure(a) => images::measure::run(&a),
    }
}
