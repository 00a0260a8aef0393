//! The client's side of the lifecycle: authorize a direct upload, then complete it.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Lifecycle, LifecycleError};
use crate::db::owners;
use crate::db::transitions::{self, NewUpload};
use crate::db::uploads as reads;
use crate::domain::{OwnerId, Upload, UploadId, UploadMethod, UploadState};

/// A validated upload request (the API checks the filename, size and content type first).
#[derive(Debug, Clone, Copy)]
pub struct UploadRequest<'a> {
    /// Client filename, 1–255 bytes.
    pub filename: &'a str,
    /// Declared content type, lower-case and in `api.allowed_content_types`.
    pub content_type: &'a str,
    /// Exact size the client will upload, in bytes (1 ..= `api.max_upload_bytes`).
    pub byte_size: u64,
    /// Presigned PUT URL or POST policy.
    pub method: UploadMethod,
}

/// A recorded `pending` upload and where to send its bytes.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// The new `pending` row.
    pub upload: Upload,
    /// PUT: the presigned URL; POST: the bucket URL to post the form to.
    pub url: String,
    /// PUT only: headers to send unchanged (signed).
    pub headers: Option<BTreeMap<String, String>>,
    /// POST only: form fields to send before the `file` field.
    pub fields: Option<BTreeMap<String, String>>,
    /// When the URL or policy expires.
    pub expires_at: DateTime<Utc>,
}

impl Lifecycle {
    /// Authorizes a direct upload: presigns a PUT URL (AWS SigV4 query auth, content length and
    /// type signed) or a POST policy (`eq $key`, `content-length-range` up to the declared
    /// size) for the temp key `tmp/{owner}/{id}`, valid `api.upload_expiry_secs`, and records
    /// the upload as `pending` if it keeps the owner within their quota (checked and counted
    /// atomically, see [`owners::insert_pending_within_quota`]). Nothing is stored if signing
    /// fails or the quota would be passed.
    ///
    /// # Errors
    /// [`LifecycleError::QuotaExceeded`] with the limit, its value and the owner's usage;
    /// [`LifecycleError::Storage`] when presigning fails (`internal`);
    /// [`LifecycleError::Db`] when the row cannot be written.
    pub async fn authorize(
        &self,
        owner: &OwnerId,
        req: UploadRequest<'_>,
    ) -> Result<Authorization, LifecycleError> {
        let id = UploadId::new();
        let key = self.storage.layout().temp(owner, id);
        let expires_in = Duration::from_secs(self.settings.api.upload_expiry_secs);
        let (url, headers, fields, expires_at) = match req.method {
            UploadMethod::Put => {
                let p = self
                    .storage
                    .presign_put(&key, req.byte_size, req.content_type, expires_in)
                    .await?;
                (p.url, Some(p.headers), None, p.expires_at)
            }
            UploadMethod::Post => {
                // The policy's upper bound is the declared size, which is stricter than
                // `max_upload_bytes`: a larger file is refused by S3 itself.
                let p = self
                    .storage
                    .post_policy(&key, req.content_type, req.byte_size, expires_in);
                (p.url, None, Some(p.fields), p.expires_at)
            }
        };
        let new = NewUpload {
            id,
            owner,
            filename: req.filename,
            content_type: req.content_type,
            byte_size: i64::try_from(req.byte_size).unwrap_or(i64::MAX),
            method: req.method,
            temp_key: &key,
            expires_at,
        };
        let upload = owners::insert_pending_within_quota(&self.pool, &new, &self.settings.quotas)
            .await?
            .map_err(LifecycleError::QuotaExceeded)?;
        tracing::info!(upload_id = %id, %owner, method = req.method.as_str(), "upload authorized");
        Ok(Authorization {
            upload,
            url,
            headers,
            fields,
            expires_at,
        })
    }

    /// Completes an upload once its bytes are in S3: verifies the temp object (HeadObject:
    /// present, of the declared size), moves the upload to `uploaded` (held), and admits the
    /// owner's oldest held uploads while their window has room ([`Lifecycle::admit`]), which
    /// queues exactly one ProcessUpload task for each. Idempotent: when the upload is past `pending` (or a concurrent call
    /// wins the transition) it returns the current row and queues nothing.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown id, another owner's upload or a deleted one;
    /// [`LifecycleError::ObjectMissing`] when nothing was uploaded;
    /// [`LifecycleError::SizeMismatch`] when the object's size is not the declared one (the
    /// object is deleted, and the client may upload again before expiry); a dependency error
    /// otherwise (the upload is left `pending`, so the call can be retried).
    pub async fn complete(&self, owner: &OwnerId, id: UploadId) -> Result<Upload, LifecycleError> {
        let upload = reads::get_owned(&self.pool, owner, id)
            .await?
            .ok_or(LifecycleError::NotFound)?;
        if upload.deleted_at.is_some() {
            // Deleted before it was completed: it stays out of the queue.
            return Err(LifecycleError::NotFound);
        }
        if upload.state != UploadState::Pending {
            return Ok(upload);
        }
        let head = self
            .storage
            .head(&upload.temp_key)
            .await?
            .ok_or(LifecycleError::ObjectMissing)?;
        let declared = upload.byte_size.max(0) as u64;
        if head.size != declared {
            self.storage.delete(&upload.temp_key).await?;
            return Err(LifecycleError::SizeMismatch {
                declared,
                actual: head.size,
            });
        }
        let Some(uploaded) = transitions::mark_uploaded(&self.pool, owner, id).await? else {
            // A concurrent call won the transition and admits the upload.
            return reads::get_owned(&self.pool, owner, id)
                .await?
                .ok_or(LifecycleError::NotFound);
        };
        let mut admitted = self.admit(owner).await?;
        if let Some(i) = admitted.unqueued.iter().position(|(u, ..)| *u == id) {
            // Hand the upload back to `pending` so the client's retry of `complete` queues it.
            let (_, generation, error) = admitted.unqueued.swap_remove(i);
            transitions::revert_to_pending(&self.pool, id, generation).await?;
            return Err(error.into());
        }
        if admitted.queued.contains(&id) {
            tracing::info!(upload_id = %id, "upload completed; job queued");
        } else {
            tracing::info!(upload_id = %id, "upload completed; held for the owner's window");
        }
        Ok(uploaded)
    }
}
