//! `kiln`: the one binary. Subcommands run all of Kiln in one process on embedded parts
//! (`kiln serve`, the standalone default), the API (`kiln api`), a worker (`kiln worker`),
//! migrations (`kiln migrate`), the upload client (`kiln upload FILE…`) and token minting
//! (`kiln token`), API keys (`kiln keys`), dead-job inspection and replay (`kiln jobs`), and
//! re-rendering derivatives after a recipe changed (`kiln renditions regenerate`), plus the
//! hidden `kiln decode-child` that workers start as their jailed decoders
//! (`kiln_worker::jail`). Thin: parse arguments, load settings, call into the crates. The
//! benchmarks are a separate binary of the workspace, `kiln-bench` (`bench/`), so they do not
//! ship in this one.

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
    /// Read an owner's usage and limits; set their quota overrides.
    #[command(subcommand)]
    Owners(cli::owners::OwnersCommand),
    /// Mint a development JWT from the configured secret.
    Token(cli::token::TokenArgs),
    /// Create, list and revoke API keys (`kiln_…` bearer credentials with scopes).
    #[command(subcommand)]
    Keys(cli::keys::KeysCommand),
    /// Copy a standalone instance (`--from DATA_DIR`) into a fleet: rows and objects, same ids.
    Transfer(cli::transfer::TransferArgs),
    /// Re-render derivatives after a rendition recipe changed.
    #[command(subcommand)]
    Renditions(cli::renditions::RenditionsCommand),
    /// A worker's jailed decoder child (started by the worker; see `kiln_worker::jail`).
    #[command(hide = true, name = "decode-child")]
    DecodeChild(cli::decode_child::DecodeChildArgs),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Command::DecodeChild(a) = &args.command {
        // A decoder child reads no settings, sets up no logging (its events go back to the
        // worker) and starts no async runtime: it confines itself and serves its pipes.
        return cli::decode_child::run(a);
    }
    // Workers started from this process (`kiln worker`, `kiln serve`) run this executable as
    // their decoder children.
    kiln_worker::jail::this_executable_serves_children();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
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
    let settings = if matches!(args.command, Command::Worker) {
        worker_settings(settings)?
    } else {
        settings
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
        Command::Keys(cmd) => cli::keys::run(&settings, cmd).await,
        Command::Owners(cmd) => cli::owners::run(&settings, cmd).await,
        Command::Renditions(cmd) => cli::renditions::run(&settings, cmd).await,
        Command::DecodeChild(_) => unreachable!("handled before the runtime starts"),
    }
}

/// A worker's settings without the token signing key: workers never verify tokens, so they
/// must not hold one. A configured key is still checked, so a weak key in a configuration
/// shared with the API is refused by every process that reads it.
///
/// # Errors
/// The [`kiln_shared::config::KeyError`] of a short, published or guessable `auth.jwt_secret`.
fn worker_settings(mut settings: kiln_shared::Settings) -> anyhow::Result<kiln_shared::Settings> {
    use secrecy::ExposeSecret as _;
    let secret = settings.auth.jwt_secret.expose_secret();
    if !secret.is_empty() {
        kiln_shared::config::auth_check_secret(secret)?;
        tracing::info!("auth.jwt_secret is set but workers never verify tokens; dropping it");
    }
    settings.auth.jwt_secret = String::new().into();
    Ok(settings)
}
