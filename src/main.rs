//! `kiln`: the one binary. Subcommands run the API (`kiln api`), a worker (`kiln worker`),
//! migrations (`kiln migrate`), the upload client (`kiln upload FILE…`) and token minting
//! (`kiln token`), dead-job inspection and replay (`kiln jobs`), and re-rendering derivatives
//! after a recipe changed (`kiln renditions regenerate`). Thin: parse arguments, load settings,
//! call into the crates. The benchmarks are a separate binary of the workspace, `kiln-bench`
//! (`bench/`), so they do not ship in this one.

mod cli;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Kiln: direct-to-S3 upload processing.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about)]
struct Args {
    /// Optional TOML config file (layered over defaults, under `KILN__…` env vars).
    #[arg(long, global = true, env = "KILN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API on `api.listen`.
    Api,
    /// Run a worker that processes uploads.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Upload files through the API, wait for processing, print one JSON object per file.
    Upload(cli::upload::UploadArgs),
    /// Inspect and replay dead jobs.
    #[command(subcommand)]
    Jobs(cli::jobs::JobsCommand),
    /// Mint a development JWT from the configured secret.
    Token(cli::token::TokenArgs),
    /// Re-render derivatives after a rendition recipe changed.
    #[command(subcommand)]
    Renditions(cli::renditions::RenditionsCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = kiln_shared::Settings::load(args.config.as_deref())?;
    kiln_shared::telemetry::init(&settings.telemetry);
    match args.command {
        Command::Api => cli::serve::api(settings).await,
        Command::Worker => cli::serve::worker(settings).await,
        Command::Migrate => cli::serve::migrate(settings).await,
        Command::Upload(a) => cli::upload::run(a).await,
        Command::Token(a) => cli::token::run(&settings, &a),
        Command::Jobs(cmd) => cli::jobs::run(&settings, cmd).await,
        Command::Renditions(cmd) => cli::renditions::run(&settings, cmd).await,
    }
}
