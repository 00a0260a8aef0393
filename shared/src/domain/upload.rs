//! The upload record and its state machine (docs/design.md "Upload state machine").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ErrorCode, ImageMetadata, OwnerId, UploadId};

/// Where an upload is in its life. Each transition is one conditional UPDATE in
/// [`crate::db::uploads`], so a duplicate delivery cannot move a row backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(
    description = "Where an upload is in its life: `pending` (authorized) → `uploaded` \
                        (completed, queued) → `processing` → `ready`; or `failed`, or \
                        `expired` when never completed."
)]
pub enum UploadState {
    /// Authorized; the client may upload to the temp key until `expires_at`.
    Pending,
    /// `complete` verified the temp object; a ProcessUpload job is queued.
    Uploaded,
    /// A worker claimed it.
    Processing,
    /// Derivatives stored, original promoted, metadata committed. Terminal.
    Ready,
    /// A permanent error or exhausted retries; `error_code` says which.
    Failed,
    /// Never completed before `expires_at`. Terminal.
    Expired,
    /// Deleted by its owner: out of lists, no download URLs, share links stop. Shown in the API
    /// only: the row keeps the state it was deleted from (and `deleted_at`), so a restore within
    /// `retention.deleted_secs` returns it exactly there; after that the sweeper purges it.
    Deleted,
}

impl UploadState {
    /// Wire and database form, e.g. `ready`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Uploaded => "uploaded",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Deleted => "deleted",
        }
    }

    /// Whether no worker will change this state again (without a replay).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Ready | Self::Failed | Self::Expired | Self::Deleted
        )
    }
}

impl TryFrom<String> for UploadState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Ok(match s.as_str() {
            "pending" => Self::Pending,
            "uploaded" => Self::Uploaded,
            "processing" => Self::Processing,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            "expired" => Self::Expired,
            "deleted" => Self::Deleted,
            other => return Err(format!("unknown upload state {other:?}")),
        })
    }
}

/// How the client sends the bytes to S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UploadMethod {
    /// A presigned PUT URL (AWS SigV4 query-string auth) signing Content-Length and Content-Type.
    Put,
    /// A browser-style POST with a SigV4-signed POST policy (multipart/form-data).
    Post,
}

impl UploadMethod {
    /// Wire and database form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Post => "post",
        }
    }
}

impl TryFrom<String> for UploadMethod {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "put" => Ok(Self::Put),
            "post" => Ok(Self::Post),
            other => Err(format!("unknown upload method {other:?}")),
        }
    }
}

/// One upload row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upload {
    /// Server-chosen id.
    pub id: UploadId,
    /// Authenticated owner (JWT `sub`).
    pub owner: OwnerId,
    /// Current state.
    pub state: UploadState,
    /// The client's filename, as given (only its sanitized form reaches a key).
    pub filename: String,
    /// The client's declared content type (advisory; the worker sniffs the bytes).
    pub content_type: String,
    /// Declared size, in bytes; `complete` checks the stored object against it.
    pub byte_size: i64,
    /// Upload method.
    pub method: UploadMethod,
    /// Temp object key.
    pub temp_key: String,
    /// Final key of the promoted original, once ready.
    pub final_key: Option<String>,
    /// Metadata, once ready.
    pub metadata: Option<ImageMetadata>,
    /// Error code, when failed.
    pub error_code: Option<ErrorCode>,
    /// Error message for clients, when failed: the code's fixed message plus safe facts
    /// (`None` on rows failed before messages were split; clients then see the code's
    /// message).
    pub error_message: Option<String>,
    /// Internal detail of the failure (S3 operation, key, transport error), for operators and
    /// logs only.
    pub error_detail: Option<String>,
    /// Processing attempts so far.
    pub attempts: i32,
    /// End of the upload window.
    pub expires_at: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last state change.
    pub updated_at: DateTime<Utc>,
    /// When `complete` succeeded.
    pub completed_at: Option<DateTime<Utc>>,
    /// When the upload became ready.
    pub ready_at: Option<DateTime<Utc>>,
    /// Job generation: incremented by every transition that queues a ProcessUpload task, whose
    /// id is derived from it (`queue::task_id::process_upload`); 0 before the first.
    pub job_generation: i32,
    /// How often an operator replayed it.
    pub replays: i32,
    /// When its owner deleted it (soft delete; `None` while it is not deleted).
    pub deleted_at: Option<DateTime<Utc>>,
    /// Set when it is a duplicate: the owner's earlier `ready` upload with the same SHA-256,
    /// whose original and derivative objects it shares (that upload may be purged since).
    pub duplicate_of: Option<UploadId>,
}

impl Upload {
    /// The state the API shows: [`UploadState::Deleted`] while deleted, else the row's state.
    pub fn visible_state(&self) -> UploadState {
        if self.deleted_at.is_some() {
            UploadState::Deleted
        } else {
            self.state
        }
    }

    /// The task id of the upload's current ProcessUpload task, derived from its id and job
    /// generation; `None` before the first (generation 0).
    pub fn task_id(&self) -> Option<String> {
        (self.job_generation > 0).then(|| {
            crate::queue::task_id::process_upload(self.id, self.job_generation).to_string()
        })
    }
}

/// One stored rendition of a ready upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Derivative {
    /// Rendition name, e.g. `thumb`.
    pub rendition: String,
    /// Object key.
    pub object_key: String,
    /// Encoded format, e.g. `webp`.
    pub format: String,
    /// Width, in pixels.
    pub width: u32,
    /// Height, in pixels.
    pub height: u32,
    /// Encoded size, in bytes.
    pub byte_size: u64,
    /// Version of the recipe it was rendered with.
    pub recipe_version: u32,
    /// [`Rendition::fingerprint`](super::Rendition::fingerprint) of the recipe it was rendered
    /// with; `None` for derivatives stored before fingerprints were (always stale).
    pub recipe_hash: Option<String>,
}
