//! `kiln`: the one binary. Subcommands run all of Kiln in one process on embedded parts
//! (`kiln serve`, the standalone default), the API (`kiln api`), a worker (`kiln worker`),
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
    /// Standalone data directory: where `kiln serve` keeps its store, queue, objects and
    /// secrets (default `./kiln-data`); other commands given it talk to that instance.
    #[arg(long, global = true, env = "KILN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all of Kiln in one process on embedded parts (SQLite, apalis-sqlite, an embedded S3
    /// endpoint) with one data directory: the standalone default.
    Serve(cli::standalone::ServeArgs),
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
    /// Copy a standalone instance (`--from DATA_DIR`) into a fleet: rows and objects, same ids.
    Transfer(cli::transfer::TransferArgs),
    /// Re-render derivatives after a rendition recipe changed.
    #[command(subcommand)]
    Renditions(cli::renditions::RenditionsCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let settings = kiln_shared::Settings::load(args.config.as_deref())?;
    kiln_shared::telemetry::init(&settings.telemetry);
    let data_dir = args.data_dir.as_deref();
    // `--data-dir` points every other command at that standalone instance.
    let (settings, standalone_api) = match (data_dir, &args.command) {
        (Some(dir), Command::Token(_)) => {
            let secrets = kiln_shared::config::standalone::DataDir::new(dir).secrets()?;
            let mut settings = settings;
            settings.auth.jwt_secret = secrets.jwt_secret;
            (settings, None)
        }
        (Some(dir), c) if !matches!(c, Command::Serve(_) | Command::Transfer(_)) => {
            let (settings, api) = cli::standalone::attach(settings, dir)?;
            (settings, Some(api))
        }
        _ => (settings, None),
    };
    match args.command {
        Command::Serve(a) => {
            let dir = data_dir.unwrap_or(std::path::Path::new(cli::standalone::DEFAULT_DATA_DIR));
            cli::standalone::serve(settings, dir, &a).await
        }
        Command::Api => cli::serve::api(settings).await,
        Command::Worker => cli::serve::worker(settings).await,
        Command::Migrate => cli::serve::migrate(settings).await,
        Command::Upload(a) => {
            let standalone = match standalone_api {
                Some(api) => Some((api, cli::token::mint_local(&settings)?)),
                None => None,
            };
            cli::upload::run(a, standalone).await
        }
        Command::Token(a) => cli::token::run(&settings, &a),
        Command::Transfer(a) => cli::transfer::run(settings, &a).await,
        Command::Jobs(cmd) => cli::jobs::run(&settings, cmd).await,
        Command::Renditions(cmd) => cli::renditions::run(&settings, cmd).await,
    }
}
