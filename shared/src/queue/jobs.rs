//! The job payloads Kiln queues, and the queue each one travels on ([`Job`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::RedisSettings;
use crate::domain::UploadId;

/// A payload that travels on its own apalis queue.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + Unpin + 'static {
    /// The queue's Redis namespace (apalis `Config::queue`), also the `queue` label of the job
    /// metrics: `redis.queue` for [`ProcessUpload`], `{redis.queue}:renditions` for
    /// [`RenderRenditions`].
    fn namespace(settings: &RedisSettings) -> String;

    /// The upload the job works on (for the job's span and logs).
    fn upload_id(&self) -> UploadId;
}

/// Job: process one completed upload (sniff, decode, render, extract metadata, promote).
/// The upload row in Postgres is the source of truth; the job carries only its id. Its task
/// id is derived from the upload id and the row's job generation
/// ([`super::task_id::process_upload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessUpload {
    /// The upload to process.
    pub upload_id: UploadId,
}

impl Job for ProcessUpload {
    fn namespace(settings: &RedisSettings) -> String {
        settings.queue.clone()
    }

    fn upload_id(&self) -> UploadId {
        self.upload_id
    }
}

/// Job: re-render some renditions of a `ready` upload from its final original, replacing only
/// those derivatives (objects and rows). Queued by `kiln renditions regenerate`; the recipes
/// are the worker's configured ones, looked up by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderRenditions {
    /// The upload whose derivatives to re-render.
    pub upload_id: UploadId,
    /// Names of the renditions to re-render.
    pub renditions: Vec<String>,
    /// Earlier tasks for this same work that failed transiently (0 when queued by
    /// `regenerate`). Kiln counts retries itself, as for ProcessUpload, so apalis' built-in
    /// reschedule never runs.
    #[serde(default)]
    pub retries: u32,
}

impl Job for RenderRenditions {
    fn namespace(settings: &RedisSettings) -> String {
        settings.renditions_queue()
    }

    fn upload_id(&self) -> UploadId {
        self.upload_id
    }
}
