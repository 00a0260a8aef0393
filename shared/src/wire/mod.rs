//! Kiln's wire types: the JSON bodies of the HTTP API (requests, responses and the error
//! body), in one place for the API, the `kiln upload` client, the benchmark and the tests.
//! Their OpenAPI schemas (utoipa) carry the constraints the server enforces, and the request
//! types' `validate`/`to_filter` methods are the server's side of those constraints
//! ([`Rejection`]).

mod admin;
mod de;
mod error;
mod filename;
mod health;
mod keys;
mod rejection;
mod schema;
mod shares;
mod uploads;
mod usage;

pub use admin::{
    DEFAULT_JOBS, DeadJob, JobFilter, JobList, JobState, ListJobsQuery, MAX_JOBS, MAX_REPLAY_IDS,
    ReplayReport, ReplayRequest,
};
pub use de::{JsonObject, RFC3339_PATTERN, rfc3339};
pub use error::{ErrorBody, ErrorDetail, QuotaDetail, QuotaLimit};
pub use filename::{FILENAME_PATTERN, MAX_FILENAME_CHARS, check_filename, forbidden_in_filename};
pub use health::{Dependency, Health, HealthStatus};
pub use keys::{CreateKey, CreatedKey, KeyList, KeyPath, KeyView, ListKeysQuery};
pub use rejection::Rejection;
pub use shares::{CreateShare, DeleteQuery, MAX_RENDITION_NAME, ShareList, ShareState, ShareView};
pub use uploads::{
    CreateUpload, DEFAULT_PAGE_SIZE, DerivativeView, ErrorView, ListUploadsQuery, MAX_PAGE_SIZE,
    UploadAuthorization, UploadPage, UploadView,
};
pub use usage::{OwnerView, SetQuota, UsageView};
