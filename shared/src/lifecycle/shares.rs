//! Downloads without the bucket's credentials: share links (`GET /s/{token}`, anyone holding
//! the token) and the owner's original (`GET /v1/uploads/{id}/original`). Both answer with a
//! short-lived presigned GET (`shares.redirect_url_secs`) whose response carries the sniffed
//! content type and a `Content-Disposition` (RFC 6266, filename per RFC 8187).
//!
//! A share token is 32 random bytes (base64url, 43 characters); only its SHA-256 is stored, and
//! the share is named by a separate public id in lists and revocation.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{Lifecycle, LifecycleError};
use crate::db::shares::{self as rows, NewShare, Opened, Share};
use crate::db::uploads as reads;
use crate::domain::{OwnerId, Upload, UploadId, UploadState};

/// The rendition name that shares the original file.
pub const ORIGINAL: &str = "original";

/// A share link to create.
#[derive(Debug, Clone)]
pub struct NewShareLink {
    /// A rendition name of the upload (e.g. `preview`), or `original`.
    pub rendition: String,
    /// How long the link works (1 s ..= `shares.max_expires_in_secs`, checked by the caller).
    pub expires_in: Duration,
    /// After this many downloads the link answers 410; `None` for no limit.
    pub max_downloads: Option<u64>,
}

/// A created share link: the stored share and its token (shown once, never stored).
#[derive(Debug, Clone)]
pub struct ShareLink {
    /// The share.
    pub share: Share,
    /// The secret token that goes in `/s/{token}`.
    pub token: String,
}

/// Where to send a download: a presigned GET URL and when it stops working.
#[derive(Debug, Clone)]
pub struct Download {
    /// Presigned GET URL (AWS SigV4 query auth).
    pub url: String,
    /// Its expiry.
    pub expires_at: DateTime<Utc>,
}

/// Hex SHA-256 of a share token: what `shares.token_hash` holds.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], LifecycleError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| LifecycleError::Internal(format!("no randomness for a share token: {e}")))?;
    Ok(b)
}

/// The MIME type of a sniffed container format (`ImageMetadata::format`).
fn sniffed_mime(format: &str) -> &'static str {
    match format {
        "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "tiff" => "image/tiff",
        "heif" => "image/heif",
        "avif" => "image/avif",
        _ => "application/octet-stream",
    }
}

/// `Content-Disposition` for `filename` (RFC 6266): `disposition`, an ASCII fallback
/// `filename` (quotes, backslashes and non-ASCII replaced by `_`) and the exact name as
/// `filename*` (RFC 8187, UTF-8, percent-encoded).
pub fn content_disposition(disposition: &str, filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in filename.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

impl Lifecycle {
    /// The owner's upload, unless it is deleted (a deleted upload looks missing here).
    async fn visible(&self, owner: &OwnerId, id: UploadId) -> Result<Upload, LifecycleError> {
        reads::get_owned(&self.pool, owner, id)
            .await?
            .filter(|u| u.deleted_at.is_none())
            .ok_or(LifecycleError::NotFound)
    }

    /// The object key and download name of `rendition` (`original` or a rendition name) of
    /// a `ready` upload.
    async fn file_of(
        &self,
        upload: &Upload,
        rendition: &str,
    ) -> Result<(String, String, &'static str), LifecycleError> {
        if upload.state != UploadState::Ready {
            return Err(LifecycleError::NotReady(
                "the upload is not ready yet".to_owned(),
            ));
        }
        let stem = upload
            .filename
            .rsplit_once('.')
            .map_or(upload.filename.as_str(), |(s, _)| s);
        if rendition == ORIGINAL {
            let key = upload
                .final_key
                .clone()
                .ok_or_else(|| LifecycleError::NotReady("the original is not stored".into()))?;
            let mime = upload
                .metadata
                .as_ref()
                .map_or("application/octet-stream", |m| sniffed_mime(&m.format));
            return Ok((key, upload.filename.clone(), mime));
        }
        let d = reads::derivatives(&self.pool, upload.id)
            .await?
            .into_iter()
            .find(|d| d.rendition == rendition)
            .ok_or_else(|| {
                LifecycleError::NotReady(format!("the upload has no rendition {rendition:?}"))
            })?;
        let ext = d
            .object_key
            .rsplit_once('.')
            .map_or("", |(_, e)| e)
            .to_owned();
        let mime = match d.format.as_str() {
            "jpeg" => "image/jpeg",
            "webp" => "image/webp",
            "avif" => "image/avif",
            "png" => "image/png",
            _ => "application/octet-stream",
        };
        Ok((d.object_key, format!("{stem}-{rendition}.{ext}"), mime))
    }

    /// Creates a share link to `rendition` (a rendition name or `original`) of the owner's
    /// `ready` upload.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown, deleted or another owner's upload;
    /// [`LifecycleError::NotReady`] when it is not ready or has no such rendition.
    pub async fn create_share(
        &self,
        owner: &OwnerId,
        id: UploadId,
        req: &NewShareLink,
    ) -> Result<ShareLink, LifecycleError> {
        let upload = self.visible(owner, id).await?;
        self.file_of(&upload, &req.rendition).await?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        let share_id = format!("shr_{}", hex::encode(random_bytes::<12>()?));
        let expires_at = chrono::TimeDelta::from_std(req.expires_in)
            .ok()
            .and_then(|d| Utc::now().checked_add_signed(d))
            .ok_or_else(|| LifecycleError::Internal("share expiry out of range".into()))?;
        let share = rows::insert(
            &self.pool,
            &NewShare {
                id: &share_id,
                token_hash: &token_hash(&token),
                upload_id: id,
                owner,
                rendition: &req.rendition,
                expires_at,
                max_downloads: req.max_downloads,
            },
        )
        .await?;
        tracing::info!(upload_id = %id, share_id = %share_id, rendition = %req.rendition, "share link created");
        Ok(ShareLink { share, token })
    }

    /// The share links of the owner's upload (revoked ones included), oldest first.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown, deleted or another owner's upload.
    pub async fn list_shares(
        &self,
        owner: &OwnerId,
        id: UploadId,
    ) -> Result<Vec<Share>, LifecycleError> {
        self.visible(owner, id).await?;
        Ok(rows::list(&self.pool, owner, id).await?)
    }

    /// Revokes the owner's share link `share_id` of upload `id`; it answers 404 from then on.
    /// Idempotent.
    ///
    /// # Errors
    /// [`LifecycleError::ShareNotFound`] when there is no such share of this upload and owner.
    pub async fn revoke_share(
        &self,
        owner: &OwnerId,
        id: UploadId,
        share_id: &str,
    ) -> Result<Share, LifecycleError> {
        rows::revoke(&self.pool, owner, id, share_id)
            .await?
            .ok_or(LifecycleError::ShareNotFound)
    }

    /// Opens share link `token`: counts a download and returns a presigned GET of the shared
    /// file, inline for a rendition and as an attachment for the original.
    ///
    /// # Errors
    /// [`LifecycleError::ShareNotFound`] for an unknown or revoked token or a deleted upload;
    /// [`LifecycleError::ShareExpired`] past `expires_at` or `max_downloads`.
    pub async fn open_share(&self, token: &str) -> Result<Download, LifecycleError> {
        let share = match rows::open(&self.pool, &token_hash(token)).await? {
            Opened::Granted(s) => s,
            Opened::NotFound => return Err(LifecycleError::ShareNotFound),
            Opened::Gone => return Err(LifecycleError::ShareExpired),
        };
        let upload = reads::get(&self.pool, share.upload_id)
            .await?
            .filter(|u| u.deleted_at.is_none())
            .ok_or(LifecycleError::ShareNotFound)?;
        let (key, name, mime) = self
            .file_of(&upload, &share.rendition)
            .await
            .map_err(|_| LifecycleError::ShareNotFound)?;
        let disposition = if share.rendition == ORIGINAL {
            "attachment"
        } else {
            "inline"
        };
        self.download(&key, mime, &content_disposition(disposition, &name))
            .await
    }

    /// The owner's original as a download: a presigned GET with the sniffed content type and
    /// `Content-Disposition: attachment` with the client's filename.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown, deleted or another owner's upload;
    /// [`LifecycleError::NotReady`] when it is not `ready`.
    pub async fn original_download(
        &self,
        owner: &OwnerId,
        id: UploadId,
    ) -> Result<Download, LifecycleError> {
        let upload = self.visible(owner, id).await?;
        let (key, name, mime) = self.file_of(&upload, ORIGINAL).await?;
        self.download(&key, mime, &content_disposition("attachment", &name))
            .await
    }

    async fn download(
        &self,
        key: &str,
        mime: &str,
        disposition: &str,
    ) -> Result<Download, LifecycleError> {
        let ttl = Duration::from_secs(self.settings.shares.redirect_url_secs);
        let p = self
            .storage
            .presign_download(key, ttl, mime, disposition)
            .await?;
        Ok(Download {
            url: p.url,
            expires_at: p.expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_keeps_ascii_and_encodes_the_rest() {
        assert_eq!(
            content_disposition("attachment", "IMG 1.jpg"),
            "attachment; filename=\"IMG 1.jpg\"; filename*=UTF-8''IMG%201.jpg"
        );
        assert_eq!(
            content_disposition("inline", "été\"x.png"),
            "inline; filename=\"_t__x.png\"; filename*=UTF-8''%C3%A9t%C3%A9%22x.png"
        );
    }

    #[test]
    fn token_hash_is_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
