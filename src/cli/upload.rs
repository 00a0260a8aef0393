//! `kiln upload FILE… [--method put|post]`: the reference client. For each file it authorizes
//! a direct upload, sends the bytes straight to S3 (presigned PUT or POST policy) with a
//! progress bar, retries failed transfers with exponential backoff, calls complete, waits until
//! the upload is `ready` or `failed`, and prints one JSON object per file on stdout.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use kiln_shared::domain::{UploadMethod, UploadState};
use kiln_shared::wire::{CreateUpload, UploadAuthorization, UploadView};
use reqwest::{Client, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Arguments of `kiln upload`.
#[derive(Debug, clap::Args)]
pub struct UploadArgs {
    /// Files to upload.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// `put` (presigned URL) or `post` (POST policy).
    #[arg(long, default_value = "put", value_parser = ["put", "post"])]
    method: String,
    /// API base URL.
    #[arg(long, env = "KILN_API", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// Bearer token (see `kiln token`).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
    token: String,
    /// Seconds to wait for each upload to be processed.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Files uploaded at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

/// Uploads every file and prints the results. Exits non-zero if any file could not be uploaded
/// or did not reach a final state (`ready` or `failed`) in time; a `failed` upload is a result.
pub async fn run(args: UploadArgs) -> anyhow::Result<()> {
    let client = Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let bars = MultiProgress::new();
    let api = args.api.trim_end_matches('/').to_owned();
    let results: Vec<Outcome> = futures::stream::iter(args.files.iter())
        .map(|file| {
            let (client, bars, api) = (client.clone(), bars.clone(), api.clone());
            let (method, token, timeout) = (args.method.clone(), args.token.clone(), args.timeout);
            async move {
                let started = Instant::now();
                match upload_one(&client, &bars, &api, &token, &method, file, timeout).await {
                    Ok(upload) => Outcome::Processed {
                        file: file.clone(),
                        client_ms: started.elapsed().as_millis() as u64,
                        upload: Box::new(upload),
                    },
                    Err(e) => Outcome::ClientError {
                        file: file.clone(),
                        state: "client_error",
                        error: ClientError {
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
        error: ClientError,
    },
}

/// `{"code": "client_error", "message": …}`, shaped like an upload's error.
#[derive(Debug, Serialize)]
struct ClientError {
    code: &'static str,
    message: String,
}

fn is_final(upload: &UploadView) -> bool {
    matches!(upload.state, UploadState::Ready | UploadState::Failed)
}

/// The body of a 2xx API response as `T`.
///
/// # Errors
/// A non-2xx status (the API's error body in the message), or a body that is not a `T`.
async fn api_json<T: DeserializeOwned>(resp: reqwest::Response, what: &str) -> anyhow::Result<T> {
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .with_context(|| format!("{what}: reading the response"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&body));
    }
    serde_json::from_slice(&body).with_context(|| format!("{what}: unexpected response body"))
}

async fn upload_one(
    client: &Client,
    bars: &MultiProgress,
    api: &str,
    token: &str,
    method: &str,
    file: &Path,
    timeout: u64,
) -> anyhow::Result<UploadView> {
    let bytes = Bytes::from(
        tokio::fs::read(file)
            .await
            .with_context(|| format!("while reading {}", file.display()))?,
    );
    let filename = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("upload")
        .to_owned();
    let bar = bars.add(ProgressBar::new(bytes.len() as u64));
    bar.set_style(
        ProgressStyle::with_template("{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(filename.clone());
    let original = Original {
        filename: &filename,
        content_type: kiln_shared::domain::content_type::for_path(file),
        bytes: &bytes,
    };
    let id = send_original(client, api, token, method, &original, &bar).await?;
    bar.finish_and_clear();
    complete(client, api, token, &id).await?;

    let deadline = Instant::now() + Duration::from_secs(timeout);
    loop {
        let upload: UploadView = api_json(
            client
                .get(format!("{api}/v1/uploads/{id}"))
                .bearer_auth(token)
                .send()
                .await?,
            "status",
        )
        .await?;
        if is_final(&upload) {
            return Ok(upload);
        }
        if Instant::now() > deadline {
            bail!(
                "upload {id} still {} after {timeout} s",
                upload.state.as_str()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A file to upload: its name, MIME type and bytes.
pub(crate) struct Original<'a> {
    /// File name sent to the API (`filename`).
    pub filename: &'a str,
    /// MIME type declared to the API and to S3.
    pub content_type: &'a str,
    /// The whole file.
    pub bytes: &'a Bytes,
}

/// Authorizes a direct upload (`POST /v1/uploads`) and sends the bytes straight to S3 through
/// the presigned PUT URL or POST policy (`method`: `put` or `post`), retrying 5xx, 429 and
/// transport errors with exponential backoff (4 retries from 200 ms). Advances `bar` as bytes
/// go out. Returns the upload id; the upload is still `pending` until [`complete`].
///
/// # Errors
/// The API refused the authorization (its JSON error in the message), or S3 refused the bytes
/// or stayed unreachable after the retries.
pub(crate) async fn send_original(
    client: &Client,
    api: &str,
    token: &str,
    method: &str,
    original: &Original<'_>,
    bar: &ProgressBar,
) -> anyhow::Result<String> {
    let method = UploadMethod::try_from(method.to_owned()).map_err(anyhow::Error::msg)?;
    let body = CreateUpload {
        filename: original.filename.to_owned(),
        content_type: original.content_type.to_owned(),
        byte_size: original.bytes.len() as u64,
        method,
    };
    let auth: UploadAuthorization = api_json(
        client
            .post(format!("{api}/v1/uploads"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await?,
        "authorize",
    )
    .await?;
    let id = auth.id.to_string();
    let send = || async {
        transfer(
            client,
            &auth,
            original.bytes,
            original.content_type,
            original.filename,
            bar,
        )
        .await
    };
    send.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_times(4),
    )
    .when(|e: &TransferError| e.retryable)
    .notify(|e, after| bar.println(format!("{}: {e}; retrying in {after:?}", original.filename)))
    .await
    .map_err(|e| anyhow::anyhow!(e.message))?;
    Ok(id)
}

/// Calls `POST /v1/uploads/{id}/complete`: the API checks the object in S3 and queues its
/// processing. Returns the upload as the API shows it.
///
/// # Errors
/// The API's error (e.g. `object_missing`, `size_mismatch`) or a transport error.
pub(crate) async fn complete(
    client: &Client,
    api: &str,
    token: &str,
    id: &str,
) -> anyhow::Result<UploadView> {
    api_json(
        client
            .post(format!("{api}/v1/uploads/{id}/complete"))
            .bearer_auth(token)
            .send()
            .await?,
        "complete",
    )
    .await
}

#[derive(Debug)]
struct TransferError {
    message: String,
    retryable: bool,
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A body that advances `bar` as hyper pulls 64 KiB chunks.
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

async fn transfer(
    client: &Client,
    auth: &UploadAuthorization,
    bytes: &Bytes,
    content_type: &str,
    filename: &str,
    bar: &ProgressBar,
) -> Result<(), TransferError> {
    let url = auth.url.as_str();
    let request = if auth.method == UploadMethod::Post {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in auth.fields.iter().flatten() {
            form = form.text(k.clone(), v.clone());
        }
        let part = reqwest::multipart::Part::stream_with_length(
            progress_body(bytes, bar),
            bytes.len() as u64,
        )
        .file_name(filename.to_owned())
        .mime_str(content_type)
        .map_err(|e| TransferError {
            message: e.to_string(),
            retryable: false,
        })?;
        client.post(url).multipart(form.part("file", part))
    } else {
        let mut req = client.put(url).body(progress_body(bytes, bar));
        for (k, v) in auth.headers.iter().flatten() {
            req = req.header(k, v);
        }
        req.header(reqwest::header::CONTENT_LENGTH, bytes.len())
    };
    match request.send().await {
        Ok(resp)
            if matches!(
                resp.status(),
                StatusCode::OK | StatusCode::CREATED | StatusCode::NO_CONTENT
            ) =>
        {
            Ok(())
        }
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            Err(TransferError {
                message: format!(
                    "S3 answered HTTP {status}: {}",
                    body.chars().take(300).collect::<String>()
                ),
                retryable: status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS,
            })
        }
        Err(e) => Err(TransferError {
            message: format!("transfer failed: {e}"),
            retryable: true,
        }),
    }
}
