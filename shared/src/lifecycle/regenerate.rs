//! Re-rendering derivatives after a recipe changed: the logic behind
//! `kiln renditions regenerate [--rendition NAME] [--stale-only] [--dry-run]`.
//!
//! It walks the `ready` uploads in pages (keyset pagination on the id), picks per upload the
//! renditions to redo — every configured one, or only `NAME`; with `--stale-only` only those
//! whose derivative is missing or stale ([`Rendition::is_current`]) — and queues one
//! [`RenderRenditions`] job per upload that has any. It never changes an upload or a derivative
//! itself; the worker's job does, for exactly the renditions named.
//!
//! Each job gets a deterministic task id derived from the upload id and the chosen recipes'
//! names and fingerprints ([`task_id`]). Running `regenerate` again while that job still waits
//! or runs queues nothing new; once it has finished, the same id can be queued again (see
//! [`crate::queue::Queue::push`]).

use std::collections::BTreeMap;

use crate::db::Db;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::DbError;
use crate::db::derivatives::{self, StoredRecipe};
use crate::domain::{Rendition, UploadId};
use crate::queue::{Pushed, QueueError, RenderRenditions, RenditionQueue};
use std::time::Duration;

/// What to regenerate.
#[derive(Debug, Clone)]
pub struct RegenerateOptions {
    /// Only this rendition (it must be configured); every configured one when `None`.
    pub rendition: Option<String>,
    /// Only derivatives that are missing or stale.
    pub stale_only: bool,
    /// Count, queue nothing.
    pub dry_run: bool,
    /// Ready uploads read per query (≥ 1).
    pub page_size: i64,
}

impl Default for RegenerateOptions {
    fn default() -> Self {
        Self {
            rendition: None,
            stale_only: false,
            dry_run: false,
            page_size: 500,
        }
    }
}

/// What a run did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RegenerateReport {
    /// Nothing was queued.
    pub dry_run: bool,
    /// Only missing or stale derivatives were selected.
    pub stale_only: bool,
    /// Ready uploads examined.
    pub ready_uploads: u64,
    /// Uploads with at least one derivative to re-render: one job each.
    pub uploads: u64,
    /// Derivatives to re-render, per selected rendition (every selected rendition is listed,
    /// with 0 when none of its derivatives qualified).
    pub derivatives: BTreeMap<String, u64>,
    /// Jobs pushed.
    pub enqueued: u64,
    /// Jobs not pushed because the same job (same upload and recipes) was still waiting or
    /// running.
    pub already_queued: u64,
}

/// Errors from [`regenerate`].
#[derive(Debug, thiserror::Error)]
pub enum RegenerateError {
    /// `--rendition` names no configured rendition.
    #[error("no rendition named {0:?} is configured (worker.renditions)")]
    UnknownRendition(String),
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Redis failed while queueing; jobs pushed so far stay queued, and running again queues
    /// the rest (already queued ones are not queued twice).
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// The renditions of `selected` to re-render for an upload whose derivatives were rendered
/// with `stored`: all of them, or with `stale_only` those with no derivative or a stale one.
pub fn renditions_to_redo<'a>(
    selected: &[&'a Rendition],
    stored: &[StoredRecipe],
    stale_only: bool,
) -> Vec<&'a Rendition> {
    selected
        .iter()
        .copied()
        .filter(|r| {
            !stale_only
                || !stored.iter().any(|s| {
                    s.rendition == r.name
                        && r.is_current(s.recipe_version, s.recipe_hash.as_deref())
                })
        })
        .collect()
}

/// The deterministic task id of the job re-rendering `renditions` of `upload_id`: the first
/// 128 bits of SHA-256 over the upload id and each rendition's name and fingerprint, sorted by
/// name, as a ULID. The same work gets the same id; a changed recipe gets a new one.
pub fn task_id(upload_id: UploadId, renditions: &[&Rendition]) -> ulid::Ulid {
    let mut parts: Vec<String> = renditions
        .iter()
        .map(|r| format!("{}={}", r.name, r.fingerprint()))
        .collect();
    parts.sort();
    let mut hasher = Sha256::new();
    hasher.update(b"kiln-render-renditions-1\0");
    hasher.update(upload_id.to_string().as_bytes());
    for p in &parts {
        hasher.update(b"\0");
        hasher.update(p.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    ulid::Ulid::from_bytes(bytes)
}

/// Finds the derivatives to re-render under `configured` (the worker's `worker.renditions`)
/// and, unless `opts.dry_run`, queues one [`RenderRenditions`] job per upload.
///
/// # Errors
/// [`RegenerateError::UnknownRendition`] before anything else when `opts.rendition` is not
/// configured; otherwise the first database or queue failure.
pub async fn regenerate(
    pool: &Db,
    queue: &RenditionQueue,
    configured: &[Rendition],
    opts: &RegenerateOptions,
) -> Result<RegenerateReport, RegenerateError> {
    let selected: Vec<&Rendition> = match &opts.rendition {
        None => configured.iter().collect(),
        Some(name) => vec![
            configured
                .iter()
                .find(|r| &r.name == name)
                .ok_or_else(|| RegenerateError::UnknownRendition(name.clone()))?,
        ],
    };
    let mut report = RegenerateReport {
        dry_run: opts.dry_run,
        stale_only: opts.stale_only,
        derivatives: selected.iter().map(|r| (r.name.clone(), 0)).collect(),
        ..Default::default()
    };
    let mut after = None;
    loop {
        let page = derivatives::ready_page(pool, after, opts.page_size.max(1)).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for upload in &page {
            report.ready_uploads += 1;
            let redo = renditions_to_redo(&selected, &upload.derivatives, opts.stale_only);
            if redo.is_empty() {
                continue;
            }
            report.uploads += 1;
            for r in &redo {
                *report.derivatives.entry(r.name.clone()).or_default() += 1;
            }
            if opts.dry_run {
                continue;
            }
            let job = RenderRenditions {
                upload_id: upload.id,
                renditions: redo.iter().map(|r| r.name.clone()).collect(),
                retries: 0,
            };
            match queue
                .push(job, task_id(upload.id, &redo), Duration::ZERO)
                .await?
            {
                Pushed::Enqueued => report.enqueued += 1,
                Pushed::AlreadyQueued => report.already_queued += 1,
            }
        }
    }
    tracing::info!(
        ready_uploads = report.ready_uploads,
        uploads = report.uploads,
        enqueued = report.enqueued,
        already_queued = report.already_queued,
        dry_run = report.dry_run,
        "regenerate finished"
    );
    Ok(report)
}

impl super::Lifecycle {
    /// [`regenerate`] on this lifecycle's database and RenderRenditions queue.
    ///
    /// # Errors
    /// As [`regenerate`].
    pub async fn regenerate(
        &self,
        configured: &[Rendition],
        opts: &RegenerateOptions,
    ) -> Result<RegenerateReport, RegenerateError> {
        regenerate(&self.pool, &self.renditions, configured, opts).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(r: &Rendition) -> StoredRecipe {
        StoredRecipe {
            rendition: r.name.clone(),
            recipe_version: r.version,
            recipe_hash: Some(r.fingerprint()),
        }
    }

    #[test]
    fn stale_only_picks_changed_missing_and_unhashed_derivatives() {
        let defaults = Rendition::defaults();
        let (thumb, preview) = (&defaults[0], &defaults[1]);
        let mut cheaper = preview.clone();
        cheaper.quality = 60;
        let selected = [thumb, &cheaper];
        let names = |v: Vec<&Rendition>| v.iter().map(|r| r.name.clone()).collect::<Vec<_>>();

        let current = [stored(thumb), stored(preview)];
        assert_eq!(
            names(renditions_to_redo(&selected, &current, true)),
            ["preview"]
        );
        assert_eq!(
            names(renditions_to_redo(&selected, &current, false)),
            ["thumb", "preview"]
        );
        assert_eq!(
            names(renditions_to_redo(&selected, &[stored(thumb)], true)),
            ["preview"],
            "a missing derivative is stale"
        );
        let unhashed = StoredRecipe {
            recipe_hash: None,
            ..stored(thumb)
        };
        assert_eq!(
            names(renditions_to_redo(&[thumb], &[unhashed], true)),
            ["thumb"],
            "a derivative without a fingerprint is stale"
        );
        assert!(renditions_to_redo(&[thumb, preview], &current, true).is_empty());
    }

    #[test]
    fn task_ids_follow_the_work() {
        let defaults = Rendition::defaults();
        let (thumb, preview) = (&defaults[0], &defaults[1]);
        let id = UploadId::new();
        assert_eq!(
            task_id(id, &[thumb, preview]),
            task_id(id, &[preview, thumb])
        );
        assert_ne!(task_id(id, &[thumb]), task_id(id, &[thumb, preview]));
        assert_ne!(task_id(id, &[thumb]), task_id(UploadId::new(), &[thumb]));
        let mut changed = thumb.clone();
        changed.quality = 50;
        assert_ne!(task_id(id, &[thumb]), task_id(id, &[&changed]));
    }
}
