//! [`KilnClient::send`]: the bytes straight to S3 through the presigned PUT URL or the POST
//! policy of an [`UploadAuthorization`], retried with exponential backoff.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use kiln_shared::domain::UploadMethod;
use kiln_shared::wire::{CreateUpload, UploadAuthorization};
use reqwest::StatusCode;
use reqwest::header::CONTENT_LENGTH;
use reqwest::multipart::{Form, Part};

use crate::error::excerpt;
use crate::{Call, ClientError, KilnClient};

/// Retries of a failed transfer after the first attempt: 4.
pub const TRANSFER_RETRIES: usize = 4;

/// Wait before the first retry of a transfer: 200 ms, doubling for each retry after it (200,
/// 400, 800, 1600 ms; no jitter).
pub const RETRY_MIN_DELAY: Duration = Duration::from_millis(200);

impl KilnClient {
    /// Sends the bytes of `upload` (authorized as `auth` by [`KilnClient::authorize`]) to S3:
    /// - `put`: a PUT of the body to `auth.url` with `auth.headers` (signed, sent unchanged) and
    ///   `Content-Length: upload.byte_size`;
    /// - `post`: a `multipart/form-data` POST to `auth.url` with `auth.fields` first, then the
    ///   body as the `file` part, named `upload.filename`, typed `upload.content_type`,
    ///   `upload.byte_size` bytes long.
    ///
    /// `body` builds the request body, exactly `upload.byte_size` bytes, once per attempt (a
    /// progress-reporting stream, or `Body::from(bytes.clone())`). S3's 200, 201 and 204 are
    /// success. A 5xx or 429 answer and a transport error are retried [`TRANSFER_RETRIES`]
    /// times with exponential backoff from [`RETRY_MIN_DELAY`]; `on_retry` is told the error
    /// and the wait before each retry. The upload stays `pending` until
    /// [`KilnClient::complete`].
    ///
    /// # Errors
    /// [`ClientError::Storage`] when S3 refuses the bytes (any other status; after the retries
    /// for 5xx and 429), [`ClientError::Transport`] ([`Call::Transfer`]) when S3 stays
    /// unreachable, [`ClientError::Build`] when `upload.content_type` is not a MIME type (POST).
    pub async fn send(
        &self,
        auth: &UploadAuthorization,
        upload: &CreateUpload,
        body: impl Fn() -> reqwest::Body,
        mut on_retry: impl FnMut(&ClientError, Duration),
    ) -> Result<(), ClientError> {
        let attempt = || self.transfer(auth, upload, body());
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(RETRY_MIN_DELAY)
                    .with_max_times(TRANSFER_RETRIES),
            )
            .when(ClientError::is_retryable_transfer)
            .notify(|e, after| on_retry(e, after))
            .await
    }

    /// One attempt of [`KilnClient::send`].
    async fn transfer(
        &self,
        auth: &UploadAuthorization,
        upload: &CreateUpload,
        body: reqwest::Body,
    ) -> Result<(), ClientError> {
        let request = match auth.method {
            UploadMethod::Post => {
                let mut form = Form::new();
                for (k, v) in auth.fields.iter().flatten() {
                    form = form.text(k.clone(), v.clone());
                }
                let part = Part::stream_with_length(body, upload.byte_size)
                    .file_name(upload.filename.clone())
                    .mime_str(&upload.content_type)
                    .map_err(ClientError::Build)?;
                self.http.post(&auth.url).multipart(form.part("file", part))
            }
            UploadMethod::Put => {
                let mut req = self.http.put(&auth.url).body(body);
                for (k, v) in auth.headers.iter().flatten() {
                    // Set once below: a streamed body has no length of its own.
                    if !k.eq_ignore_ascii_case(CONTENT_LENGTH.as_str()) {
                        req = req.header(k, v);
                    }
                }
                req.header(CONTENT_LENGTH, upload.byte_size)
            }
        };
        let resp = request
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                call: Call::Transfer,
                source,
            })?;
        match resp.status() {
            StatusCode::OK | StatusCode::CREATED | StatusCode::NO_CONTENT => Ok(()),
            status => {
                let body = resp.bytes().await.unwrap_or_default();
                Err(ClientError::Storage {
                    status,
                    body: excerpt(&body),
                })
            }
        }
    }
}
