//! Domain types: validated identifiers, the upload state machine, object keys, renditions,
//! error codes and image metadata. Parsed once at the edge, trusted everywhere after.

pub mod content_type;
pub mod error_code;
pub mod keys;
pub mod metadata;
pub mod owner_id;
pub mod rendition;
pub mod upload;
pub mod upload_id;

pub use error_code::{Classify, CodeSpec, ErrorCode};
pub use keys::KeyLayout;
pub use metadata::ImageMetadata;
pub use owner_id::OwnerId;
pub use rendition::{Fit, OutputFormat, Rendition};
pub use upload::{Derivative, Upload, UploadMethod, UploadState};
pub use upload_id::UploadId;
