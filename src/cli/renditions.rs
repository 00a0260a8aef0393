//! `kiln renditions regenerate [--rendition NAME] [--stale-only] [--dry-run]`: queue re-renders
//! of derivatives after a recipe changed (`kiln_shared::lifecycle::regenerate`).

use std::sync::Arc;

use kiln_shared::Settings;
use kiln_shared::lifecycle::Lifecycle;
use kiln_shared::lifecycle::regenerate::{RegenerateOptions, RegenerateReport};

/// `kiln renditions …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RenditionsCommand {
    /// Queue one RenderRenditions job per ready upload whose derivatives need re-rendering with
    /// the configured recipes (`worker.renditions`). Running it again before the workers catch
    /// up queues nothing twice.
    Regenerate {
        /// Only this rendition.
        #[arg(long)]
        rendition: Option<String>,
        /// Only derivatives that are missing or whose stored recipe version or fingerprint
        /// differs from the configured recipe's.
        #[arg(long)]
        stale_only: bool,
        /// Count what would be queued; queue nothing.
        #[arg(long)]
        dry_run: bool,
        /// Ready uploads read per database query.
        #[arg(long, default_value_t = 500)]
        page_size: i64,
        /// Print the report as one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn print_report(r: &RegenerateReport) {
    let what = if r.stale_only {
        "stale or missing derivatives"
    } else {
        "derivatives"
    };
    println!("ready uploads examined: {}", r.ready_uploads);
    println!("uploads to re-render:   {}", r.uploads);
    println!("{what} per rendition:");
    for (name, n) in &r.derivatives {
        println!("  {name:<32} {n}");
    }
    if r.dry_run {
        println!("dry run: queued nothing");
    } else {
        println!(
            "jobs queued: {} (already queued, skipped: {})",
            r.enqueued, r.already_queued
        );
    }
}

/// Runs a `kiln renditions` subcommand.
pub async fn run(settings: &Settings, cmd: RenditionsCommand) -> anyhow::Result<()> {
    match cmd {
        RenditionsCommand::Regenerate {
            rendition,
            stale_only,
            dry_run,
            page_size,
            json,
        } => {
            let pool = kiln_shared::db::connect(&settings.database)?;
            let storage = kiln_shared::storage::Storage::new(&settings.storage);
            let lifecycle = Lifecycle::connect(Arc::new(settings.clone()), pool, storage).await?;
            let opts = RegenerateOptions {
                rendition,
                stale_only,
                dry_run,
                page_size,
            };
            let report = lifecycle
                .regenerate(&settings.worker.renditions, &opts)
                .await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print_report(&report);
            }
        }
    }
    Ok(())
}
