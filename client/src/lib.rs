//! `kiln-client`: the HTTP side of Kiln's reference upload client, typed end to end with the
//! wire types of [`kiln_shared::wire`]. `kiln upload` (progress bars, files, concurrency,
//! output) and `kiln-bench fleet` are built on it.
//!
//! The flow of one upload, each step a [`KilnClient`] method:
//! 1. [`KilnClient::authorize`]: `POST /v1/uploads` with a [`CreateUpload`] → an
//!    [`UploadAuthorization`] (a presigned PUT URL with headers, or a POST policy's fields);
//! 2. [`KilnClient::send`]: the bytes straight to S3, retried with exponential backoff;
//! 3. [`KilnClient::complete`]: `POST /v1/uploads/{id}/complete` → the [`UploadView`];
//! 4. [`KilnClient::wait_until_final`]: polls [`KilnClient::get`] until the upload is `ready`
//!    or `failed`.
//!
//! Every failure is a [`ClientError`]; an API error body becomes [`ClientError::Api`] with its
//! [`ErrorCode`](kiln_shared::domain::ErrorCode).

mod error;
mod transfer;

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_shared::domain::{UploadId, UploadMethod};
use kiln_shared::wire::{CreateUpload, UploadAuthorization, UploadView};
use reqwest::RequestBuilder;
use serde::de::DeserializeOwned;

pub use self::error::{Call, ClientError};
pub use self::transfer::{RETRY_MIN_DELAY, TRANSFER_RETRIES};

/// Whole-request timeout of the HTTP client [`KilnClient::new`] builds (API calls and the S3
/// transfer alike): 300 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// A client of one Kiln API with one bearer token. Cheap to clone (the reqwest client inside
/// is shared); the same HTTP client also sends the bytes to S3.
#[derive(Debug, Clone)]
pub struct KilnClient {
    http: reqwest::Client,
    /// `http://host:port`, without a trailing `/`.
    base: String,
    token: String,
}

impl KilnClient {
    /// A client of the API at `base_url` (e.g. `http://127.0.0.1:8080`; a trailing `/` is
    /// ignored) that sends `token` as `Authorization: Bearer …`, with its own HTTP client
    /// ([`DEFAULT_TIMEOUT`] per request).
    ///
    /// # Errors
    /// [`ClientError::Build`] when the HTTP client cannot start (TLS backend).
    pub fn new(base_url: &str, token: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .build()
            .map_err(ClientError::Build)?;
        Ok(Self::with_http(http, base_url, token))
    }

    /// As [`KilnClient::new`], over an HTTP client the caller configured (timeouts, pool).
    pub fn with_http(http: reqwest::Client, base_url: &str, token: &str) -> Self {
        Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
        }
    }

    /// The API's base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `POST /v1/uploads`: authorizes a direct upload of `body.byte_size` bytes. Returns where
    /// and how to send them; the upload is `pending` until [`KilnClient::complete`].
    ///
    /// # Errors
    /// [`ClientError::Api`] when the API refuses (e.g. `upload_too_large`,
    /// `unsupported_content_type`, `unauthorized`), else as [`ClientError`] for [`Call::Authorize`].
    pub async fn authorize(&self, body: &CreateUpload) -> Result<UploadAuthorization, ClientError> {
        let req = self.http.post(format!("{}/v1/uploads", self.base));
        self.call(Call::Authorize, req.json(body)).await
    }

    /// `POST /v1/uploads/{id}/complete`: the API checks the object in S3 and queues its
    /// processing. Returns the upload as the API shows it (`uploaded`, or already further).
    ///
    /// # Errors
    /// [`ClientError::Api`] when the API refuses (e.g. `object_missing`, `size_mismatch`,
    /// `not_found`), else as [`ClientError`] for [`Call::Complete`].
    pub async fn complete(&self, id: UploadId) -> Result<UploadView, ClientError> {
        let req = self
            .http
            .post(format!("{}/v1/uploads/{id}/complete", self.base));
        self.call(Call::Complete, req).await
    }

    /// `GET /v1/uploads/{id}`: the upload as the API shows it, with presigned derivative URLs
    /// once `ready`.
    ///
    /// # Errors
    /// [`ClientError::Api`] (e.g. `not_found`), else as [`ClientError`] for [`Call::Get`].
    pub async fn get(&self, id: UploadId) -> Result<UploadView, ClientError> {
        let req = self.http.get(format!("{}/v1/uploads/{id}", self.base));
        self.call(Call::Get, req).await
    }

    /// Polls [`KilnClient::get`] every `poll` until the upload is final (`ready`, `failed` or
    /// `expired`), and returns it.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when it is not final after `timeout` (checked after each poll);
    /// any error of [`KilnClient::get`], at once.
    pub async fn wait_until_final(
        &self,
        id: UploadId,
        timeout: Duration,
        poll: Duration,
    ) -> Result<UploadView, ClientError> {
        let started = Instant::now();
        loop {
            let upload = self.get(id).await?;
            if upload.state.is_terminal() {
                return Ok(upload);
            }
            if started.elapsed() > timeout {
                return Err(ClientError::Timeout {
                    id,
                    state: upload.state,
                    waited: timeout,
                });
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Sends `req` with the bearer token and parses a 2xx body as `T`. A 429 `rate_limited` is
    /// retried after its `Retry-After` (whole seconds, RFC 9110 §10.2.3; capped at
    /// [`MAX_RATE_LIMIT_WAIT`]), up to [`RATE_LIMIT_RETRIES`] times.
    async fn call<T: DeserializeOwned>(
        &self,
        call: Call,
        req: RequestBuilder,
    ) -> Result<T, ClientError> {
        let transport = |source| ClientError::Transport { call, source };
        let req = req.bearer_auth(&self.token);
        let mut retries = 0;
        loop {
            let attempt = req.try_clone().expect("API requests have buffered bodies");
            let resp = attempt.send().await.map_err(transport)?;
            let status = resp.status();
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS && retries < RATE_LIMIT_RETRIES {
                let wait = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map_or(Duration::from_secs(1), Duration::from_secs)
                    .min(MAX_RATE_LIMIT_WAIT);
                retries += 1;
                tokio::time::sleep(wait).await;
                continue;
            }
            let body = resp.bytes().await.map_err(transport)?;
            if !status.is_success() {
                return Err(ClientError::from_response(call, status, &body));
            }
            return serde_json::from_slice(&body)
                .map_err(|source| ClientError::Decode { call, source });
        }
    }
}

/// Times a call answered 429 `rate_limited` is retried before its error is returned.
pub const RATE_LIMIT_RETRIES: u32 = 5;

/// Longest wait the client honours from one `Retry-After`.
pub const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The [`CreateUpload`] for the file at `path` holding `byte_size` bytes: its file name
/// (`upload` when it has none in UTF-8), the MIME type its extension implies
/// ([`content_type::for_path`](kiln_shared::domain::content_type::for_path)), and `method`.
pub fn describe(path: &Path, byte_size: u64, method: UploadMethod) -> CreateUpload {
    CreateUpload {
        filename: path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("upload")
            .to_owned(),
        content_type: kiln_shared::domain::content_type::for_path(path).to_owned(),
        byte_size,
        method,
    }
}
