//! `kiln transfer --from DATA_DIR [--to FLEET_CONFIG]`: copies a standalone instance into a
//! fleet: every upload row, derivative row and object, under the same ids and keys. Resumable
//! and idempotent: objects already in the fleet's bucket with the same size are skipped, and
//! rows the fleet already has are left as they are, so a second run copies nothing. For each
//! upload it copies the objects first and the rows last, so the fleet never holds a row whose
//! objects are missing. The fleet's sweeper then re-queues any upload that was still waiting
//! or processing.
//!
//! Run it with `kiln serve` stopped: it serves the data directory's objects itself, on a
//! private embedded S3 endpoint.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use kiln_shared::Settings;
use kiln_shared::config::standalone::DataDir;
use kiln_shared::db::{self, Db, import};
use kiln_shared::storage::Storage;
use secrecy::ExposeSecret as _;
use serde::Serialize;
use tokio::sync::watch;

use kiln_shared::storage::embedded::EmbeddedS3;

/// Uploads read per page.
const PAGE: i64 = 200;

/// Arguments of `kiln transfer`.
#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// The standalone data directory to copy from (its `kiln serve` must be stopped).
    #[arg(long)]
    from: PathBuf,
    /// The fleet's config file (TOML, under `KILN__…` env vars); default: this command's own
    /// configuration (`--config` and env).
    #[arg(long)]
    to: Option<PathBuf>,
}

/// What a run copied, printed as one JSON object.
#[derive(Debug, Default, Serialize)]
struct Report {
    uploads_seen: u64,
    uploads_copied: u64,
    derivatives_copied: u64,
    objects_copied: u64,
    bytes_copied: u64,
}

/// Runs the transfer and prints its report.
///
/// # Errors
/// When either side cannot be opened, the target is not PostgreSQL, or a copy fails (a rerun
/// resumes where it stopped).
pub async fn run(settings: Settings, args: &TransferArgs) -> anyhow::Result<()> {
    let target_settings = match &args.to {
        Some(file) => Settings::load(Some(file))?,
        None => settings,
    };
    let target_db = db::connect(&target_settings.database)?;
    if !matches!(target_db, Db::Postgres(_)) {
        bail!("the target's database.url must be a postgres:// URL");
    }
    db::migrate(&target_db)
        .await
        .context("while migrating the target database")?;
    let target = Storage::new(&target_settings.storage);

    let data = DataDir::new(&args.from);
    let secrets = data
        .secrets()
        .with_context(|| format!("no standalone instance in {}", args.from.display()))?;
    let s3 = EmbeddedS3::bind(
        "127.0.0.1:0".parse()?,
        &data.objects(),
        &secrets.s3_access_key_id,
        secrets.s3_secret_access_key.expose_secret(),
        0,
    )
    .await?;
    let source_settings = data.apply(
        Settings::default(),
        &secrets,
        &format!("http://{}", s3.local_addr()),
    );
    let (stop_tx, stop) = watch::channel(false);
    let server = tokio::spawn(s3.run_until_stopped(stop));
    let source_db = db::connect(&source_settings.database)?;
    let source = Storage::new(&source_settings.storage);

    let result = copy_all(&source_db, &source, &target_db, &target).await;
    let _ = stop_tx.send(true);
    let _ = server.await;
    let report = result?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn copy_all(
    source_db: &Db,
    source: &Storage,
    target_db: &Db,
    target: &Storage,
) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut after = None;
    loop {
        let page = import::uploads_after(source_db, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for upload in &page {
            report.uploads_seen += 1;
            let derivatives = db::uploads::derivatives(source_db, upload.id).await?;
            let keys = std::iter::once(upload.temp_key.as_str())
                .chain(upload.final_key.as_deref())
                .chain(derivatives.iter().map(|d| d.object_key.as_str()));
            for key in keys {
                if let Some(bytes) = copy_object(source, target, key).await? {
                    report.objects_copied += 1;
                    report.bytes_copied += bytes;
                }
            }
            if import::insert_upload(target_db, upload).await? {
                report.uploads_copied += 1;
            }
            report.derivatives_copied +=
                import::insert_derivatives(target_db, upload.id, &derivatives).await?;
        }
    }
    Ok(report)
}

/// Copies object `key` unless the source lacks it or the target has it at the same size.
/// Returns the bytes copied, or `None` when nothing was.
async fn copy_object(source: &Storage, target: &Storage, key: &str) -> anyhow::Result<Option<u64>> {
    let Some(head) = source.head(key).await? else {
        return Ok(None);
    };
    if target.head(key).await?.is_some_and(|t| t.size == head.size) {
        return Ok(None);
    }
    let object = source
        .get(key, head.size.max(1))
        .await?
        .with_context(|| format!("{key} vanished from the source"))?;
    let content_type = head
        .content_type
        .unwrap_or_else(|| "application/octet-stream".into());
    target.put(key, object.bytes, &content_type).await?;
    Ok(Some(head.size))
}
