//! The owner's side of an upload's end: delete, restore and purge, and the sweeper's purge of
//! what is past its retention (docs/ARCHITECTURE.md "Asset lifecycle").
//!
//! A delete stamps `deleted_at` and moves the upload's objects under `trash/`, so download URLs
//! already handed out stop working at once; objects a dedup sibling still serves stay put. A
//! restore within `retention.deleted_secs` clears the stamp and moves them back. A purge deletes
//! the rows (upload, derivatives, share links) first and then every object no remaining row
//! points at, including anything a racing worker wrote under the upload's prefixes.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::{Lifecycle, LifecycleError};
use crate::db::assets::{self as rows, Restore};
use crate::db::uploads as reads;
use crate::domain::{OwnerId, Upload, UploadId, UploadState};

/// What [`Lifecycle::purge`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Upload rows deleted (0 or 1), with their derivative rows and share links.
    pub uploads: u64,
    /// Objects deleted from the bucket.
    pub objects: u64,
}

impl PurgeReport {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &PurgeReport) {
        self.uploads += other.uploads;
        self.objects += other.objects;
    }
}

impl Lifecycle {
    /// When a deleted upload can no longer be restored: `deleted_at` + `retention.deleted_secs`.
    pub fn restorable_until(&self, upload: &Upload) -> Option<DateTime<Utc>> {
        let keep = chrono::TimeDelta::try_seconds(
            i64::try_from(self.settings.retention.deleted_secs).unwrap_or(i64::MAX),
        )
        .unwrap_or(chrono::TimeDelta::MAX);
        upload.deleted_at.and_then(|at| at.checked_add_signed(keep))
    }

    /// Soft-deletes the owner's upload (`DELETE /v1/uploads/{id}`): it leaves lists, its
    /// download URLs and share links stop working (its objects move under `trash/`), and it
    /// stops counting against the owner's quota. A worker processing it finishes, but the
    /// upload stays deleted. Idempotent: deleting a deleted upload returns it unchanged.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown id or another owner's upload; a dependency
    /// error otherwise (the row may be deleted with objects still in place: calling again
    /// moves them).
    pub async fn delete(&self, owner: &OwnerId, id: UploadId) -> Result<Upload, LifecycleError> {
        let upload = match rows::soft_delete(&self.pool, owner, id).await? {
            Some(u) => u,
            None => reads::get_owned(&self.pool, owner, id)
                .await?
                .ok_or(LifecycleError::NotFound)?,
        };
        self.hide(id).await?;
        tracing::info!(upload_id = %id, %owner, state = upload.state.as_str(), "upload deleted");
        Ok(upload)
    }

    /// Restores the owner's deleted upload within `retention.deleted_secs`: back to the state
    /// it was deleted from, objects moved back from `trash/`, share links working again; an
    /// upload deleted while `uploaded` is admitted again.
    ///
    /// Idempotent: restoring an upload that is not deleted moves back any file still in
    /// `trash/` and returns it.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown id or another owner's upload;
    /// [`LifecycleError::NotRestorable`] when its retention has passed;
    /// [`LifecycleError::QuotaExceeded`] when it would pass the owner's quota.
    pub async fn restore(&self, owner: &OwnerId, id: UploadId) -> Result<Upload, LifecycleError> {
        let cutoff = crate::db::ago(std::time::Duration::from_secs(
            self.settings.retention.deleted_secs,
        ));
        let upload = match rows::restore(&self.pool, owner, id, cutoff, &self.settings.quotas)
            .await?
            .ok_or(LifecycleError::NotFound)?
        {
            Restore::Restored(u) => *u,
            Restore::NotDeleted(u) => {
                // Restored already (perhaps by a call that failed after the commit): make sure
                // its files are back.
                self.unhide(&u).await?;
                return Ok(*u);
            }
            Restore::NotRestorable => return Err(LifecycleError::NotRestorable),
            Restore::Quota(q) => return Err(LifecycleError::QuotaExceeded(q)),
        };
        self.unhide(&upload).await?;
        if upload.state == UploadState::Uploaded {
            self.admit(owner).await?;
        }
        tracing::info!(upload_id = %id, %owner, state = upload.state.as_str(), "upload restored");
        Ok(upload)
    }

    /// Purges the owner's upload at once (`DELETE /v1/uploads/{id}?purge=true`), deleted or
    /// not. See [`Lifecycle::purge`].
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown id or another owner's upload; as
    /// [`Lifecycle::purge`].
    pub async fn purge_owned(
        &self,
        owner: &OwnerId,
        id: UploadId,
    ) -> Result<PurgeReport, LifecycleError> {
        reads::get_owned(&self.pool, owner, id)
            .await?
            .ok_or(LifecycleError::NotFound)?;
        self.purge(id).await
    }

    /// Purges upload `id`: deletes its row, derivative rows and share links in one transaction,
    /// then every object of it that no remaining row points at: its temp, final and derivative
    /// keys, their `trash/` copies, and anything else under its own prefixes (what a worker
    /// racing the purge wrote). A worker that finishes later finds no row and deletes what it
    /// wrote ([`Lifecycle::commit_ready`]). Idempotent: a purged upload purges nothing.
    ///
    /// # Errors
    /// A dependency error; the row may be gone with objects left, which a second call (or the
    /// owner's erase) removes through the prefix listing.
    pub async fn purge(&self, id: UploadId) -> Result<PurgeReport, LifecycleError> {
        self.purge_if(id, None).await
    }

    /// [`Lifecycle::purge`], only while the row is still `due` (see
    /// [`rows::purge_row`]).
    async fn purge_if(
        &self,
        id: UploadId,
        due: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<PurgeReport, LifecycleError> {
        let Some(purged) = rows::purge_row(&self.pool, id, due).await? else {
            return Ok(PurgeReport::default());
        };
        let layout = self.storage.layout();
        let u = &purged.upload;
        let mut doomed: BTreeSet<String> = BTreeSet::new();
        for key in &purged.unreferenced {
            doomed.insert(layout.trash(key));
            doomed.insert(key.clone());
        }
        let mut listed = Vec::new();
        for prefix in layout.upload_prefixes(&u.owner, u.id) {
            listed.extend(self.storage.list(&prefix).await?);
        }
        // A trash copy counts as its normal key: a dedup sibling may still point at it.
        let normal: Vec<String> = listed.iter().map(|k| layout.untrash(k)).collect();
        let kept = rows::any_references(&self.pool, &normal).await?;
        doomed.extend(
            listed
                .into_iter()
                .filter(|k| !kept.contains(&layout.untrash(k))),
        );
        let objects = self.delete_objects(&doomed).await?;
        tracing::info!(upload_id = %id, owner = %u.owner, objects, "upload purged");
        Ok(PurgeReport {
            uploads: 1,
            objects,
        })
    }

    /// Sweeper: purges up to `retention.purge_batch` uploads past their retention (deleted
    /// longer than `retention.deleted_secs` ago; failed or expired with no change for
    /// `retention.failed_secs`), and forgets their finished queue tasks.
    ///
    /// # Errors
    /// A dependency error (what was purged before it stays purged).
    pub async fn purge_due(&self) -> Result<PurgeReport, LifecycleError> {
        let r = &self.settings.retention;
        let deleted = crate::db::ago(std::time::Duration::from_secs(r.deleted_secs));
        let failed = crate::db::ago(std::time::Duration::from_secs(r.failed_secs));
        let due =
            rows::due_for_purge(&self.pool, deleted, failed, i64::from(r.purge_batch)).await?;
        let mut report = PurgeReport::default();
        if due.is_empty() {
            return Ok(report);
        }
        self.uploads.forget_finished_of(&due).await?;
        self.renditions.forget_finished_of(&due).await?;
        for id in due {
            report.add(&self.purge_if(id, Some((deleted, failed))).await?);
        }
        Ok(report)
    }

    /// Deletes those of `keys` that exist from the bucket; returns how many.
    pub(super) async fn delete_objects(
        &self,
        keys: &BTreeSet<String>,
    ) -> Result<u64, LifecycleError> {
        let mut n = 0;
        for key in keys {
            if self.storage.head(key).await?.is_some() {
                self.storage.delete(key).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The object keys a row points at: its final key and its derivatives' keys.
    async fn object_keys(&self, upload: &Upload) -> Result<Vec<String>, LifecycleError> {
        let mut keys: Vec<String> = reads::derivatives(&self.pool, upload.id)
            .await?
            .into_iter()
            .map(|d| d.object_key)
            .collect();
        keys.extend(upload.final_key.clone());
        Ok(keys)
    }

    /// Moves the objects of upload `id`, if it is deleted, under `trash/`, except those a live
    /// (not deleted) sibling points at. Repeatable: a key already moved is skipped. Reads the
    /// row first and again after: a row no longer deleted is left alone, and one restored while
    /// its objects moved gets them back.
    pub(super) async fn hide(&self, id: UploadId) -> Result<(), LifecycleError> {
        let upload = match reads::get(&self.pool, id).await? {
            Some(row) if row.deleted_at.is_some() => row,
            _ => return Ok(()),
        };
        let keys = self.object_keys(&upload).await?;
        let shared = rows::live_references(&self.pool, &keys, upload.id).await?;
        for key in keys.iter().filter(|k| !shared.contains(*k)) {
            self.move_object(key, &self.storage.layout().trash(key))
                .await?;
        }
        if let Some(row) = reads::get(&self.pool, upload.id).await?
            && row.deleted_at.is_none()
        {
            self.unhide(&row).await?;
        }
        Ok(())
    }

    /// Moves a restored upload's objects back from `trash/`. Repeatable.
    async fn unhide(&self, upload: &Upload) -> Result<(), LifecycleError> {
        for key in self.object_keys(upload).await? {
            self.move_object(&self.storage.layout().trash(&key), &key)
                .await?;
        }
        Ok(())
    }

    /// Copies `from` to `to` and deletes `from`, if `from` exists.
    async fn move_object(&self, from: &str, to: &str) -> Result<(), LifecycleError> {
        if self.storage.head(from).await?.is_none() {
            return Ok(());
        }
        self.storage.copy(from, to, None).await?;
        self.storage.delete(from).await?;
        Ok(())
    }
}
