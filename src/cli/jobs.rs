//! `kiln jobs failed|show|replay`: inspect and replay dead jobs (failed uploads).

use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use kiln_shared::Settings;
use kiln_shared::db::uploads::FailedFilter;
use kiln_shared::dead_jobs::{self, DeadJob};
use kiln_shared::domain::UploadId;
use kiln_shared::lifecycle::Lifecycle;

/// `kiln jobs …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// List dead jobs, newest first.
    Failed {
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead job by upload id.
    Show {
        /// Upload id.
        id: UploadId,
    },
    /// Replay dead jobs: by upload id, or every one matching the filters with `--all`.
    Replay {
        /// Upload ids.
        ids: Vec<UploadId>,
        /// Replay every dead job matching the filters.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
        /// Say what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Filters over dead jobs.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only this error code (e.g. `corrupt_image`).
    #[arg(long)]
    error_code: Option<String>,
    /// Only failures since this time: RFC 3339 (`2026-11-21T10:00:00Z`) or an age (`2h`, `30m`).
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// Only this owner's uploads.
    #[arg(long)]
    owner: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    limit: i64,
}

impl FilterArgs {
    fn to_filter(&self) -> FailedFilter {
        FailedFilter {
            error_code: self.error_code.clone(),
            since: self.since,
            owner: self.owner.clone(),
            limit: self.limit,
        }
    }
}

/// Parses `--since`: an RFC 3339 time, or an age such as `90s`, `2h`, `1day` (humantime).
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = humantime::parse_duration(s).map_err(|e| format!("not a time or an age: {e}"))?;
    Ok(Utc::now() - chrono::Duration::from_std(age).map_err(|e| e.to_string())?)
}

fn print_table(jobs: &[DeadJob]) {
    println!(
        "{:<36}  {:<16}  {:<18}  {:>3}  {:<20}  MESSAGE",
        "UPLOAD", "OWNER", "CODE", "ATT", "FAILED AT"
    );
    for j in jobs {
        println!(
            "{:<36}  {:<16}  {:<18}  {:>3}  {:<20}  {}",
            j.upload_id,
            j.owner,
            j.error_code.as_deref().unwrap_or("-"),
            j.attempts,
            j.failed_at.format("%Y-%m-%d %H:%M:%S"),
            j.message.as_deref().unwrap_or("")
        );
    }
}

/// Runs a `kiln jobs` subcommand.
pub async fn run(settings: &Settings, cmd: JobsCommand) -> anyhow::Result<()> {
    let pool = kiln_shared::db::connect(&settings.database)?;
    match cmd {
        JobsCommand::Failed { filter, json } => {
            let jobs = dead_jobs::list(&pool, &filter.to_filter()).await?;
            if json {
                for j in &jobs {
                    println!("{}", serde_json::to_string(j)?);
                }
            } else {
                print_table(&jobs);
            }
        }
        JobsCommand::Show { id } => {
            let job = dead_jobs::show(&pool, id)
                .await?
                .with_context(|| format!("no dead job for upload {id}"))?;
            println!("{}", serde_json::to_string_pretty(&job)?);
        }
        JobsCommand::Replay {
            ids,
            all,
            filter,
            dry_run,
        } => {
            if ids.is_empty() && !all {
                bail!("name upload ids, or pass --all (with optional filters)");
            }
            let storage = kiln_shared::storage::Storage::new(&settings.storage);
            let lifecycle = Lifecycle::connect(Arc::new(settings.clone()), pool, storage).await?;
            let report = if all {
                lifecycle
                    .replay_matching(&filter.to_filter(), dry_run)
                    .await?
            } else {
                lifecycle.replay(&ids, dry_run).await?
            };
            println!("{}", serde_json::to_string(&report)?);
        }
    }
    Ok(())
}
