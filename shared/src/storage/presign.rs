//! Presigned requests (AWS SigV4 query-string authentication) and SigV4 POST policies.
//!
//! Specs: AWS "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)",
//! "Creating a POST Policy" and "Authenticating Requests in Browser-Based Uploads Using POST
//! (AWS Signature Version 4)". aws-sdk-s3 has no POST-policy builder (awslabs/aws-sdk-rust#863),
//! so the policy document is built here and signed with `aws_sigv4`'s signing-key derivation.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Storage, StorageError};

/// A presigned request: send `method` to `url` with exactly `headers`.
#[derive(Debug, Clone, Serialize)]
pub struct PresignedRequest {
    /// HTTP method, e.g. `PUT`.
    pub method: String,
    /// Full URL with the `X-Amz-*` query parameters.
    pub url: String,
    /// Headers that were signed and must be sent unchanged (e.g. `content-length`,
    /// `content-type`).
    pub headers: BTreeMap<String, String>,
    /// When the signature stops being valid.
    pub expires_at: DateTime<Utc>,
}

/// A signed POST policy: POST a multipart/form-data body to `url` with every entry of `fields`
/// as a form field, then the file as the last field, named `file`.
#[derive(Debug, Clone, Serialize)]
pub struct PostPolicy {
    /// Bucket URL (path-style: `{endpoint}/{bucket}`).
    pub url: String,
    /// Form fields: `key`, `Content-Type`, `policy`, `x-amz-algorithm`, `x-amz-credential`,
    /// `x-amz-date`, `x-amz-signature`.
    pub fields: BTreeMap<String, String>,
    /// The policy's `expiration`.
    pub expires_at: DateTime<Utc>,
}

fn presigning_config(expires_in: Duration) -> Result<PresigningConfig, StorageError> {
    PresigningConfig::expires_in(expires_in).map_err(|e| StorageError::Presign(e.to_string()))
}

fn expiry(expires_in: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(expires_in).unwrap_or(chrono::Duration::zero())
}

impl Storage {
    /// A presigned PUT for `key` that signs `Content-Length: content_length` and
    /// `Content-Type: content_type`, so S3 rejects a body of any other length or type.
    ///
    /// # Errors
    /// [`StorageError::Presign`] when `expires_in` is over 7 days.
    pub async fn presign_put(
        &self,
        key: &str,
        content_length: u64,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, StorageError> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(i64::try_from(content_length).unwrap_or(i64::MAX))
            .content_type(content_type)
            .presigned(presigning_config(expires_in)?)
            .await
            .map_err(|e| StorageError::Presign(e.to_string()))?;
        Ok(PresignedRequest {
            method: req.method().to_owned(),
            url: req.uri().to_owned(),
            headers: req
                .headers()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .collect(),
            expires_at: expiry(expires_in),
        })
    }

    /// A presigned GET URL for `key`, valid for `storage.download_url_expiry_secs`.
    ///
    /// # Errors
    /// [`StorageError::Presign`] when the configured expiry is over 7 days.
    pub async fn presign_get(&self, key: &str) -> Result<PresignedRequest, StorageError> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning_config(self.download_url_expiry)?)
            .await
            .map_err(|e| StorageError::Presign(e.to_string()))?;
        Ok(PresignedRequest {
            method: req.method().to_owned(),
            url: req.uri().to_owned(),
            headers: BTreeMap::new(),
            expires_at: expiry(self.download_url_expiry),
        })
    }

    /// A presigned GET URL for `key`, valid for `expires_in`, whose response carries
    /// `Content-Type: content_type` and `Content-Disposition: content_disposition` (the S3
    /// GetObject `response-content-type` and `response-content-disposition` overrides, signed
    /// into the query string), whatever was stored with the object.
    ///
    /// # Errors
    /// [`StorageError::Presign`] when `expires_in` is over 7 days.
    pub async fn presign_download(
        &self,
        key: &str,
        expires_in: Duration,
        content_type: &str,
        content_disposition: &str,
    ) -> Result<PresignedRequest, StorageError> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_type(content_type)
            .response_content_disposition(content_disposition)
            .presigned(presigning_config(expires_in)?)
            .await
            .map_err(|e| StorageError::Presign(e.to_string()))?;
        Ok(PresignedRequest {
            method: req.method().to_owned(),
            url: req.uri().to_owned(),
            headers: BTreeMap::new(),
            expires_at: expiry(expires_in),
        })
    }

    /// A SigV4 POST policy that allows exactly one upload: key `key` (`eq $key`), Content-Type
    /// `content_type` (`eq $Content-Type`), a body of 1..=`max_bytes` bytes
    /// (`content-length-range`), until `expires_in` from now.
    pub fn post_policy(
        &self,
        key: &str,
        content_type: &str,
        max_bytes: u64,
        expires_in: Duration,
    ) -> PostPolicy {
        let now = SystemTime::now();
        let now_utc: DateTime<Utc> = now.into();
        let expires_at = expiry(expires_in);
        let date = now_utc.format("%Y%m%d").to_string();
        let amz_date = now_utc.format("%Y%m%dT%H%M%SZ").to_string();
        let credential = format!(
            "{}/{date}/{}/s3/aws4_request",
            self.credentials.access_key_id(),
            self.region
        );
        let policy = serde_json::json!({
            "expiration": expires_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            "conditions": [
                {"bucket": self.bucket},
                ["eq", "$key", key],
                ["eq", "$Content-Type", content_type],
                ["content-length-range", 1, max_bytes],
                {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                {"x-amz-credential": credential},
                {"x-amz-date": amz_date},
            ]
        });
        let policy_b64 = base64::engine::general_purpose::STANDARD.encode(policy.to_string());
        let signing_key = aws_sigv4::sign::v4::generate_signing_key(
            self.credentials.secret_access_key(),
            now,
            &self.region,
            "s3",
        );
        let signature =
            aws_sigv4::sign::v4::calculate_signature(signing_key, policy_b64.as_bytes());
        let fields = BTreeMap::from([
            ("key".to_owned(), key.to_owned()),
            ("Content-Type".to_owned(), content_type.to_owned()),
            ("policy".to_owned(), policy_b64),
            ("x-amz-algorithm".to_owned(), "AWS4-HMAC-SHA256".to_owned()),
            ("x-amz-credential".to_owned(), credential),
            ("x-amz-date".to_owned(), amz_date),
            ("x-amz-signature".to_owned(), signature),
        ]);
        PostPolicy {
            url: format!("{}/{}", self.endpoint, self.bucket),
            fields,
            expires_at,
        }
    }
}
