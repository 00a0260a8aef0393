//! Erasing an owner (GDPR Art. 17): every row and object of one owner, and their finished
//! queue tasks (`kiln owners erase`, `DELETE /v1/admin/owners/{owner}`).
//!
//! The order makes it resumable: API keys first (no new uploads), then share links, then each
//! upload (its finished tasks, then [`Lifecycle::purge`]), then anything left under the owner's
//! key prefixes, then the quota override and usage counters. Every step deletes what is left,
//! so running it again after an interruption finishes the job, and a run on an erased owner
//! removes nothing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Lifecycle, LifecycleError};
use crate::db::erase as rows;
use crate::domain::OwnerId;

/// What an erase removed (all zero when there was nothing left).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EraseReport {
    /// API keys deleted.
    pub api_keys: u64,
    /// Share links deleted.
    pub shares: u64,
    /// Upload rows deleted (with their derivative rows).
    pub uploads: u64,
    /// Objects deleted from the bucket (temp, originals, derivatives, trash).
    pub objects: u64,
    /// Finished queue tasks (done or dead) deleted from Redis or the SQLite queue.
    pub tasks: u64,
    /// Quota override and usage rows deleted.
    pub owner_rows: u64,
}

impl EraseReport {
    /// Whether nothing was removed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Lifecycle {
    /// Erases every row and object of `owner`. See the module docs.
    ///
    /// # Errors
    /// A dependency error; what was removed before it stays removed, and running it again
    /// continues.
    pub async fn erase_owner(&self, owner: &OwnerId) -> Result<EraseReport, LifecycleError> {
        let mut report = EraseReport {
            api_keys: rows::delete_api_keys(&self.pool, owner).await?,
            shares: rows::delete_shares(&self.pool, owner).await?,
            ..EraseReport::default()
        };
        loop {
            let ids = rows::upload_ids(&self.pool, owner, 200).await?;
            if ids.is_empty() {
                break;
            }
            report.tasks += self.uploads.forget_finished_of(&ids).await?;
            report.tasks += self.renditions.forget_finished_of(&ids).await?;
            for id in ids {
                let purged = self.purge(id).await?;
                report.uploads += purged.uploads;
                report.objects += purged.objects;
            }
        }
        for prefix in self.storage.layout().owner_prefixes(owner) {
            for key in self.storage.list(&prefix).await? {
                self.storage.delete(&key).await?;
                report.objects += 1;
            }
        }
        report.owner_rows = rows::delete_owner_rows(&self.pool, owner).await?;
        tracing::info!(%owner, ?report, "owner erased");
        Ok(report)
    }
}
