//! The fleet bench's client of the upload API: authorize a presigned-PUT upload and send the
//! bytes straight to S3 (untimed, before the workers start), then call complete (timed).
//!
//! It is the part of `kiln upload` (the reference client, in the `kiln` binary) that the bench
//! needs, without progress bars or POST policies: the same requests, and the same retries of
//! the transfer (5xx, 429 and transport errors, 4 retries from 200 ms, doubling).

use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// The API of one fleet run, with a bearer token.
pub struct Api<'a> {
    /// The HTTP client (also used for S3).
    pub client: &'a Client,
    /// `http://host:port`.
    pub base: String,
    /// Bearer token.
    pub token: &'a str,
}

/// A file to upload: its name, MIME type and bytes.
pub struct Original<'a> {
    /// File name sent to the API (`filename`).
    pub filename: &'a str,
    /// MIME type declared to the API and to S3.
    pub content_type: &'a str,
    /// The whole file.
    pub bytes: &'a Bytes,
}

async fn api_json(resp: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .with_context(|| format!("{what}: response is not JSON"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {body}");
    }
    Ok(body)
}

impl Api<'_> {
    /// Authorizes a presigned-PUT upload (`POST /v1/uploads`) and sends the bytes to S3.
    /// Returns the upload id; the upload stays `pending` until [`Api::complete`].
    ///
    /// # Errors
    /// The API refused the authorization, or S3 refused the bytes or stayed unreachable after
    /// the retries.
    pub async fn send(&self, original: &Original<'_>) -> anyhow::Result<Uuid> {
        let auth = api_json(
            self.client
                .post(format!("{}/v1/uploads", self.base))
                .bearer_auth(self.token)
                .json(&json!({
                    "filename": original.filename,
                    "content_type": original.content_type,
                    "byte_size": original.bytes.len(),
                    "method": "put",
                }))
                .send()
                .await?,
            "authorize",
        )
        .await?;
        let id = auth["id"].as_str().context("authorize: no id")?;
        let id = Uuid::parse_str(id).context("authorize: malformed upload id")?;
        let mut delay = Duration::from_millis(200);
        for retry in 0.. {
            match self.put(&auth, original.bytes).await {
                Ok(()) => break,
                Err((e, true)) if retry < 4 => {
                    eprintln!("{}: {e:#}; retrying in {delay:?}", original.filename);
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err((e, _)) => return Err(e),
            }
        }
        Ok(id)
    }

    /// One PUT of `bytes` to the presigned URL in `auth`, with its headers. The error says
    /// whether a retry may help.
    async fn put(&self, auth: &Value, bytes: &Bytes) -> Result<(), (anyhow::Error, bool)> {
        let url = auth["url"].as_str().unwrap_or_default();
        let mut req = self.client.put(url).body(bytes.clone());
        if let Some(headers) = auth["headers"].as_object() {
            for (k, v) in headers {
                // reqwest sets Content-Length from the body.
                if !k.eq_ignore_ascii_case("content-length") {
                    req = req.header(k, v.as_str().unwrap_or_default());
                }
            }
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                let body: String = body.chars().take(300).collect();
                Err((
                    anyhow::anyhow!("S3 answered HTTP {status}: {body}"),
                    retryable,
                ))
            }
            Err(e) => Err((anyhow::Error::new(e).context("transfer failed"), true)),
        }
    }

    /// `POST /v1/uploads/{id}/complete`: the API checks the object in S3 and queues its
    /// processing.
    ///
    /// # Errors
    /// The API's error (e.g. `object_missing`) or a transport error.
    pub async fn complete(&self, id: Uuid) -> anyhow::Result<()> {
        let resp = self
            .client
            .post(format!("{}/v1/uploads/{id}/complete", self.base))
            .bearer_auth(self.token)
            .send()
            .await?;
        api_json(resp, "complete").await.map(drop)
    }

    /// Sends `n` copies of `original`, each its own upload ([`Api::send`]), 8 at a time, with a
    /// progress bar. Returns the upload ids.
    ///
    /// # Errors
    /// As [`Api::send`], for the first copy that fails.
    pub async fn send_many(&self, original: &Original<'_>, n: u32) -> anyhow::Result<Vec<Uuid>> {
        let bar = ProgressBar::new(u64::from(n)).with_style(
            ProgressStyle::with_template("sending to S3 {pos}/{len} [{bar:30}] {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let ids = futures::stream::iter(0..n)
            .map(|_| async {
                let id = self.send(original).await?;
                bar.inc(1);
                anyhow::Ok(id)
            })
            .buffered(8)
            .try_collect()
            .await?;
        bar.finish_and_clear();
        Ok(ids)
    }

    /// Calls complete on every upload in `ids`, 16 requests at a time.
    ///
    /// # Errors
    /// As [`Api::complete`], for the first that fails.
    pub async fn complete_all(&self, ids: &[Uuid]) -> anyhow::Result<()> {
        futures::stream::iter(ids)
            .map(|id| self.complete(*id))
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}
