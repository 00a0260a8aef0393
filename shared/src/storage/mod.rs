//! S3 storage client: object I/O for the worker and API, presigned URLs and POST policies.
//!
//! Wraps `aws-sdk-s3` for one bucket. Works against AWS and S3-compatible servers (Garage in
//! development) with path-style addressing. Errors are classified once here into transient
//! ([`StorageError::Unavailable`]) and permanent ([`StorageError::Rejected`]) so callers can pick
//! a retry policy without looking at SDK types. The `tmp/` lifecycle rule is [`temp_expiry`]'s.

pub mod embedded;
pub mod presign;
pub mod temp_expiry;

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use secrecy::ExposeSecret;

use crate::config::StorageSettings;
use crate::domain::{Classify, ErrorCode, KeyLayout};

/// The S3 SDK, for callers of [`Storage::client`] (operations this type does not wrap, in
/// tests and tools) without a dependency of their own.
pub use aws_sdk_s3 as sdk;
pub use presign::{PostPolicy, PresignedRequest};

/// Errors from [`Storage`].
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// S3 was unreachable, timed out or answered 5xx: worth retrying.
    #[error("object storage unavailable: {0}")]
    Unavailable(String),
    /// S3 refused the request (4xx other than a missing object): retrying will not help.
    #[error("object storage rejected the request: {0}")]
    Rejected(String),
    /// The object is larger than the caller's limit (permanent).
    #[error("object {key} has {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Object key.
        key: String,
        /// Its size, in bytes.
        size: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A presigning input was invalid (e.g. an expiry over 7 days): Kiln's fault, not S3's.
    #[error("cannot presign: {0}")]
    Presign(String),
    /// The SDK could not build the request (a client-side fault; nothing was sent).
    #[error("cannot build the S3 request: {0}")]
    Client(String),
}

impl Classify for StorageError {
    /// `Unavailable` → `storage_unavailable` (transient); `Rejected` → `storage_rejected`;
    /// `TooLarge` → `image_too_large`; `Presign` and `Client` → `internal`.
    fn code(&self) -> ErrorCode {
        match self {
            Self::Unavailable(_) => ErrorCode::StorageUnavailable,
            Self::Rejected(_) => ErrorCode::StorageRejected,
            Self::TooLarge { .. } => ErrorCode::ImageTooLarge,
            Self::Presign(_) | Self::Client(_) => ErrorCode::Internal,
        }
    }
}

fn classify<E>(op: &str, key: &str, err: SdkError<E, HttpResponse>) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let msg = format!(
                "{op} {key}: HTTP {status} {} {}",
                e.err().code().unwrap_or("unknown"),
                e.err().message().unwrap_or("")
            );
            if (400..500).contains(&status) && status != 408 && status != 429 {
                StorageError::Rejected(msg)
            } else {
                StorageError::Unavailable(msg)
            }
        }
        SdkError::ConstructionFailure(_) => {
            StorageError::Client(format!("{op} {key}: {}", DisplayErrorContext(&err)))
        }
        // Timeouts, dispatch (connection) failures and unparseable responses.
        _ => StorageError::Unavailable(format!("{op} {key}: {}", DisplayErrorContext(&err))),
    }
}

/// An object read into memory.
#[derive(Debug, Clone)]
pub struct Object {
    /// The body.
    pub bytes: Bytes,
    /// Its ETag, as S3 returned it (quoted).
    pub etag: Option<String>,
}

/// Size and type of a stored object, from HeadObject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Content-Length, in bytes.
    pub size: u64,
    /// Content-Type, if the object has one.
    pub content_type: Option<String>,
}

/// An S3 bucket plus Kiln's key layout.
#[derive(Clone, Debug)]
pub struct Storage {
    client: Client,
    bucket: String,
    endpoint: String,
    layout: KeyLayout,
    credentials: Credentials,
    region: String,
    download_url_expiry: Duration,
}

impl Storage {
    /// Builds a client from settings. Makes no request.
    pub fn new(settings: &StorageSettings) -> Self {
        let credentials = Credentials::from_keys(
            settings.access_key_id.clone(),
            settings.secret_access_key.expose_secret().to_owned(),
            None,
        );
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials.clone())
            .force_path_style(settings.force_path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            // A short SDK-level retry for blips; longer outages are Kiln's retry policy's job.
            .retry_config(
                aws_sdk_s3::config::retry::RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(100))
                    .with_max_backoff(Duration::from_secs(1)),
            )
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(30))
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            );
        if !settings.endpoint.is_empty() {
            builder = builder.endpoint_url(settings.endpoint.clone());
        }
        let endpoint = if settings.endpoint.is_empty() {
            format!("https://s3.{}.amazonaws.com", settings.region)
        } else {
            settings.endpoint.trim_end_matches('/').to_owned()
        };
        Self {
            client: Client::from_conf(builder.build()),
            bucket: settings.bucket.clone(),
            endpoint,
            layout: KeyLayout::new(&settings.key_prefix),
            credentials,
            region: settings.region.clone(),
            download_url_expiry: Duration::from_secs(settings.download_url_expiry_secs),
        }
    }

    /// The key layout (with this deployment's prefix).
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The underlying SDK client, for operations this type does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Checks that the bucket answers (HeadBucket), for readiness probes.
    ///
    /// # Errors
    /// [`StorageError`] when S3 is down or the bucket is not accessible.
    pub async fn check(&self) -> Result<(), StorageError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("HeadBucket", &self.bucket, e))
    }

    /// HeadObject: `None` when the object does not exist.
    ///
    /// # Errors
    /// [`StorageError`] on any other failure.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectHead>, StorageError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectHead {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                content_type: out.content_type().map(str::to_owned),
            })),
            Err(SdkError::ServiceError(e)) if e.err().is_not_found() => Ok(None),
            Err(e) => Err(classify("HeadObject", key, e)),
        }
    }

    /// GetObject into memory, refusing objects over `max_bytes`. `None` when it does not exist.
    ///
    /// # Errors
    /// [`StorageError::TooLarge`] when the object is larger than `max_bytes`;
    /// [`StorageError::Unavailable`] when the body stream breaks; other failures as classified.
    pub async fn get(&self, key: &str, max_bytes: u64) -> Result<Option<Object>, StorageError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => return Ok(None),
            Err(e) => return Err(classify("GetObject", key, e)),
        };
        let declared = out.content_length().unwrap_or(0).max(0) as u64;
        if declared > max_bytes {
            return Err(StorageError::TooLarge {
                key: key.to_owned(),
                size: declared,
                limit: max_bytes,
            });
        }
        let etag = out.e_tag().map(str::to_owned);
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StorageError::Unavailable(format!("GetObject {key}: body: {e}")))?;
        Ok(Some(Object {
            bytes: body.into_bytes(),
            etag,
        }))
    }

    /// PutObject (overwrites).
    ///
    /// # Errors
    /// [`StorageError`] as classified.
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<(), StorageError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("PutObject", key, e))
    }

    /// Server-side CopyObject `from` → `to` within the bucket (objects up to 5 GiB, the
    /// single-request CopyObject limit; Kiln's upload limit is far below it). With `if_match`,
    /// the copy happens only if the source still has that ETag (`x-amz-copy-source-if-match`),
    /// so what is promoted is exactly what was read.
    ///
    /// # Errors
    /// [`StorageError`] as classified; a missing source is [`StorageError::Rejected`]; a changed
    /// source (412) is [`StorageError::Unavailable`], since a fresh read can succeed.
    pub async fn copy(
        &self,
        from: &str,
        to: &str,
        if_match: Option<&str>,
    ) -> Result<(), StorageError> {
        let source = format!("{}/{}", self.bucket, urlencode_key(from));
        match self
            .client
            .copy_object()
            .bucket(&self.bucket)
            .copy_source(source)
            .set_copy_source_if_match(if_match.map(str::to_owned))
            .key(to)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 412 => {
                Err(StorageError::Unavailable(format!(
                    "CopyObject {from}: source changed since it was read"
                )))
            }
            Err(e) => Err(classify("CopyObject", from, e)),
        }
    }

    /// DeleteObject; deleting a missing object succeeds (S3 semantics).
    ///
    /// # Errors
    /// [`StorageError`] as classified.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("DeleteObject", key, e))
    }

    /// Every key under `prefix` (ListObjectsV2, all pages).
    ///
    /// # Errors
    /// [`StorageError`] as classified.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        Ok(self
            .list_objects(prefix)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect())
    }

    /// Every object under `prefix` with its last-modified time (ListObjectsV2, all pages).
    ///
    /// # Errors
    /// [`StorageError`] as classified.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("ListObjectsV2", prefix, e))?;
            for o in page.contents() {
                let Some(key) = o.key() else { continue };
                let last_modified = o
                    .last_modified()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
                out.push(ListedObject {
                    key: key.to_owned(),
                    last_modified,
                });
            }
        }
        Ok(out)
    }
}

/// One entry of [`Storage::list_objects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Object key.
    pub key: String,
    /// Last-modified time, when S3 gave one.
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// Percent-encodes a key for `x-amz-copy-source`, keeping `/` (RFC 3986 unreserved set).
fn urlencode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
