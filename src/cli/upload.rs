//! `kiln upload FILE… [--method put|post]`: the reference client. For each file it authorizes
//! a direct upload, sends the bytes straight to S3 (presigned PUT or POST policy) with a
//! progress bar, retries failed transfers with exponential backoff, calls complete, waits until
//! the upload is `ready` or `failed`, and prints one JSON object per file on stdout.
//!
//! The HTTP side (requests, wire types, retries, errors) is the `kiln-client` library
//! ([`KilnClient`]); this module holds the command: arguments, files, progress bars,
//! concurrency and output.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kiln_client::KilnClient;
use kiln_shared::domain::{UploadMethod, UploadState};
use kiln_shared::wire::UploadView;
use serde::Serialize;

/// Arguments of `kiln upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Files to upload.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// `put` (presigned URL) or `post` (POST policy).
    #[arg(long, default_value = "put", value_parser = ["put", "post"])]
    method: String,
    /// API base URL (default: the running `kiln serve` of `--data-dir`, else
    /// `http://127.0.0.1:8080`).
    #[arg(long, env = "KILN_API")]
    api: Option<String>,
    /// Bearer token (see `kiln token`; with `--data-dir`, one is minted for owner `local`).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Seconds to wait for each upload to be processed.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Files uploaded at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

/// Uploads every file and prints the results. Exits non-zero if any file could not be uploaded
/// or did not reach a final state (`ready` or `failed`) in time; a `failed` upload is a result.
///
/// `standalone` is the API URL and a token for the `kiln serve` of `--data-dir`, used where
/// `--api` or `--token` is not given.
pub async fn run(args: UploadArgs, standalone: Option<(String, String)>) -> anyhow::Result<()> {
    let (default_api, default_token) = standalone.unzip();
    let api = args
        .api
        .clone()
        .or(default_api)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let token = args
        .token
        .clone()
        .or(default_token)
        .context("pass --token (or KILN_TOKEN), or --data-dir of a running `kiln serve`")?;
    let client = KilnClient::new(&api, &token)?;
    let method = UploadMethod::try_from(args.method.clone()).map_err(anyhow::Error::msg)?;
    let bars = MultiProgress::new();
    let results: Vec<Outcome> = futures::stream::iter(args.files.iter())
        .map(|file| {
            let (client, bars, timeout) = (&client, &bars, args.timeout);
            async move {
                let started = Instant::now();
                match upload_one(client, bars, method, file, timeout).await {
                    Ok(upload) => Outcome::Processed {
                        file: file.clone(),
                        client_ms: started.elapsed().as_millis() as u64,
                        upload: Box::new(upload),
                    },
                    Err(e) => Outcome::ClientError {
                        file: file.clone(),
                        state: "client_error",
                        error: OutcomeError {
                            code: "client_error",
                            message: format!("{e:#}"),
                        },
                    },
                }
            }
        })
        .buffered(args.parallel.max(1))
        .collect()
        .await;
    let mut all_final = true;
    for r in &results {
        all_final &= matches!(r, Outcome::Processed { upload, .. } if is_final(upload));
        println!("{}", serde_json::to_string(r)?);
    }
    if !all_final {
        bail!("some files were not uploaded or not processed in time");
    }
    Ok(())
}

/// One line of `kiln upload`'s output.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Outcome {
    /// The upload as the API shows it, with the file and the client's wall time (ms).
    Processed {
        file: PathBuf,
        client_ms: u64,
        #[serde(flatten)]
        upload: Box<UploadView>,
    },
    /// The client could not upload the file or see it processed in time.
    ClientError {
        file: PathBuf,
        state: &'static str,
        error: OutcomeError,
    },
}

/// `{"code": "client_error", "message": …}`, shaped like an upload's error.
#[derive(Debug, Serialize)]
struct OutcomeError {
    code: &'static str,
    message: String,
}

fn is_final(upload: &UploadView) -> bool {
    matches!(upload.state, UploadState::Ready | UploadState::Failed)
}

/// Uploads one file with `client`: authorize, send with a progress bar in `bars`, complete,
/// wait (`timeout` seconds at most, polling every 200 ms).
///
/// # Errors
/// The file cannot be read, or any step's [`kiln_client::ClientError`].
async fn upload_one(
    client: &KilnClient,
    bars: &MultiProgress,
    method: UploadMethod,
    file: &Path,
    timeout: u64,
) -> anyhow::Result<UploadView> {
    let bytes = Bytes::from(
        tokio::fs::read(file)
            .await
            .with_context(|| format!("while reading {}", file.display()))?,
    );
    let upload = kiln_client::describe(file, bytes.len() as u64, method);
    let bar = bars.add(ProgressBar::new(bytes.len() as u64));
    bar.set_style(
        ProgressStyle::with_template("{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(upload.filename.clone());
    let auth = client.authorize(&upload).await?;
    client
        .send(
            &auth,
            &upload,
            || progress_body(&bytes, &bar),
            |e, after| {
                bar.println(format!(
                    "{}: {}; retrying in {after:?}",
                    upload.filename,
                    e.report()
                ));
            },
        )
        .await?;
    bar.finish_and_clear();
    client.complete(auth.id).await?;
    Ok(client
        .wait_until_final(
            auth.id,
            Duration::from_secs(timeout),
            Duration::from_millis(200),
        )
        .await?)
}

/// A body of `bytes` that advances `bar` as hyper pulls 64 KiB chunks (from 0 at each
/// attempt).
fn progress_body(bytes: &Bytes, bar: &ProgressBar) -> reqwest::Body {
    bar.set_position(0);
    let chunks: Vec<Bytes> = (0..bytes.len())
        .step_by(64 * 1024)
        .map(|i| bytes.slice(i..(i + 64 * 1024).min(bytes.len())))
        .collect();
    let bar = bar.clone();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks).map(move |c| {
        bar.inc(c.len() as u64);
        Ok::<_, std::io::Error>(c)
    }))
}
