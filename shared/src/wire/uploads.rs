//! Bodies of the owner routes (`/v1/uploads…`): the create request and its authorization, the
//! upload as the API shows it, and the list query and page.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::Rejection;
use crate::config::ApiSettings;
use crate::domain::{ErrorCode, ImageMetadata, UploadId, UploadMethod, UploadState};

/// Largest `limit` of `GET /v1/uploads`.
pub const MAX_PAGE_SIZE: i64 = 100;

/// `limit` of `GET /v1/uploads` when the query has none.
pub const DEFAULT_PAGE_SIZE: i64 = 20;

/// Body of `POST /v1/uploads`. `content_type` and `byte_size` are bounded by the server's
/// configuration (`api.allowed_content_types`, `api.max_upload_bytes`); the served document
/// lists the configured values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateUpload {
    /// Client filename: 1–255 characters, none of them a control character (U+0000–U+001F,
    /// U+007F–U+009F) or a bidirectional formatting character (U+061C, U+200E, U+200F,
    /// U+202A–U+202E, U+2066–U+2069); otherwise 400 `invalid_filename`. Stored as given; it
    /// never becomes part of an object key.
    #[schema(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]+$",
        example = "IMG_0001.jpg"
    )]
    pub filename: String,
    /// Declared MIME type: one of `api.allowed_content_types`, exactly as listed (lowercase).
    #[schema(example = "image/jpeg")]
    pub content_type: String,
    /// Exact size the client will upload, in bytes: 1 ..= `api.max_upload_bytes`.
    #[serde(deserialize_with = "super::de::integer")]
    #[schema(minimum = 1, example = 1_048_576)]
    pub byte_size: u64,
    /// `put` (presigned URL) or `post` (POST policy); default `put`.
    #[serde(default = "default_method")]
    #[schema(default = "put")]
    pub method: UploadMethod,
}

fn default_method() -> UploadMethod {
    UploadMethod::Put
}

impl CreateUpload {
    /// Checks the body against the constraints its schema declares, with `api`'s limits.
    ///
    /// # Errors
    /// [`Rejection::InvalidFilename`] for a filename that is empty, over 255 characters or
    /// holds a control or bidirectional formatting character ([`super::check_filename`]);
    /// [`Rejection::Invalid`] for a zero `byte_size`; [`Rejection::TooLarge`] over
    /// `api.max_upload_bytes`; [`Rejection::UnsupportedContentType`] for a content type not
    /// in `api.allowed_content_types` (compared exactly).
    pub fn validate(&self, api: &ApiSettings) -> Result<(), Rejection> {
        super::check_filename(&self.filename)?;
        if self.byte_size == 0 {
            return Err(Rejection::invalid("byte_size must be at least 1"));
        }
        if self.byte_size > api.max_upload_bytes {
            return Err(Rejection::TooLarge {
                size: self.byte_size,
                max: api.max_upload_bytes,
            });
        }
        if !api.allowed_content_types.contains(&self.content_type) {
            return Err(Rejection::UnsupportedContentType(self.content_type.clone()));
        }
        Ok(())
    }

    /// This body's schema with `api`'s limits filled in: `content_type` becomes an enum of
    /// `api.allowed_content_types`, and `byte_size` gets `maximum: api.max_upload_bytes`. The
    /// API serves this one (the derived [`PartialSchema::schema`] cannot know the settings).
    pub fn schema_for(api: &ApiSettings) -> RefOr<Schema> {
        let mut schema = Self::schema();
        if let RefOr::T(Schema::Object(body)) = &mut schema {
            if let Some(RefOr::T(Schema::Object(content_type))) =
                body.properties.get_mut("content_type")
            {
                content_type.enum_values = Some(
                    api.allowed_content_types
                        .iter()
                        .map(|t| t.as_str().into())
                        .collect(),
                );
            }
            if let Some(RefOr::T(Schema::Object(byte_size))) = body.properties.get_mut("byte_size")
            {
                byte_size.maximum = Some(api.max_upload_bytes.into());
            }
        }
        schema
    }
}

/// Response of `POST /v1/uploads` (201): where and how to send the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UploadAuthorization {
    /// Upload id, for `complete` and `GET`.
    pub id: UploadId,
    /// `put` or `post`.
    pub method: UploadMethod,
    /// PUT: the presigned URL. POST: the bucket URL to post the form to.
    pub url: String,
    /// PUT only: headers to send unchanged (signed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// POST only: form fields to send before the `file` field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// The temp object key the bytes go to.
    pub key: String,
    /// When the URL or policy expires.
    pub expires_at: DateTime<Utc>,
}

/// An upload as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadView {
    /// Upload id.
    pub id: UploadId,
    /// State: `pending`, `uploaded`, `processing`, `ready`, `failed`, `expired` or `deleted`.
    pub state: UploadState,
    /// Client filename.
    pub filename: String,
    /// Declared content type.
    pub content_type: String,
    /// Declared size, in bytes.
    pub byte_size: i64,
    /// Upload method.
    pub method: UploadMethod,
    /// Processing attempts so far.
    pub attempts: i32,
    /// Set when failed: the stable code and the last message.
    pub error: Option<ErrorView>,
    /// Set when ready.
    pub metadata: Option<ImageMetadata>,
    /// Derivatives, when ready (empty in list pages).
    pub derivatives: Vec<DerivativeView>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Upload window end.
    pub expires_at: DateTime<Utc>,
    /// When `complete` succeeded.
    pub completed_at: Option<DateTime<Utc>>,
    /// When processing finished.
    pub ready_at: Option<DateTime<Utc>>,
    /// When its owner deleted it (`state` is then `deleted`).
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
    /// Until when a deleted upload can be restored (`POST /v1/uploads/{id}/restore`); then
    /// it is purged.
    #[serde(default)]
    pub restorable_until: Option<DateTime<Utc>>,
    /// Set when its bytes equal an earlier `ready` upload of the same owner: that upload's
    /// id. It was not processed again; it shares that upload's files.
    #[serde(default)]
    pub duplicate_of: Option<UploadId>,
}

impl UploadView {
    /// The derivative named `name` (e.g. `thumb`), if the upload has it.
    pub fn derivative(&self, name: &str) -> Option<&DerivativeView> {
        self.derivatives.iter().find(|d| d.name == name)
    }
}

/// Error of a failed upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorView {
    /// Stable processing code, e.g. `corrupt_image`.
    #[schema(schema_with = super::schema::processing_code)]
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
}

/// One derivative with a short-lived download URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DerivativeView {
    /// Rendition name, e.g. `thumb`.
    pub name: String,
    /// Width, in pixels.
    pub width: u32,
    /// Height, in pixels.
    pub height: u32,
    /// Format, e.g. `webp`.
    pub format: String,
    /// Size, in bytes.
    pub bytes: u64,
    /// Recipe version it was rendered with.
    pub recipe_version: u32,
    /// Presigned GET URL.
    pub url: String,
    /// When `url` expires.
    pub url_expires_at: DateTime<Utc>,
}

/// Query of `GET /v1/uploads`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUploadsQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Opaque cursor from the previous page's `next_cursor` (32 characters of unpadded
    /// base64url).
    #[param(pattern = "^[A-Za-z0-9_-]{32}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

impl ListUploadsQuery {
    /// The page size: `limit`, or 20 when absent.
    ///
    /// # Errors
    /// [`Rejection::Invalid`] when `limit` is outside 1–100.
    pub fn page_size(&self) -> Result<i64, Rejection> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if (1..=MAX_PAGE_SIZE).contains(&limit) {
            Ok(limit)
        } else {
            Err(Rejection::invalid("limit must be 1-100"))
        }
    }
}

/// A page of uploads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadPage {
    /// Uploads, newest first (without derivative URLs; `GET /v1/uploads/{id}` has them).
    pub items: Vec<UploadView>,
    /// Cursor for the next page (pass it as `cursor`); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9_-]{32}$")]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{FILENAME_PATTERN, MAX_FILENAME_CHARS};

    fn body(filename: &str, content_type: &str, byte_size: u64) -> CreateUpload {
        CreateUpload {
            filename: filename.into(),
            content_type: content_type.into(),
            byte_size,
            method: UploadMethod::Put,
        }
    }

    #[test]
    fn create_upload_is_validated_as_its_schema_says() {
        let api = ApiSettings::default();
        let max = api.max_upload_bytes;
        assert_eq!(body("a.jpg", "image/jpeg", 1).validate(&api), Ok(()));
        assert_eq!(
            body(&"é".repeat(255), "image/png", max).validate(&api),
            Ok(())
        );
        for name in [
            "",
            "a\0b",
            "tab\there",
            "del\u{7f}",
            "c1\u{85}",
            "rlo\u{202E}gpj.exe",
            &"x".repeat(256),
        ] {
            assert!(
                matches!(
                    body(name, "image/jpeg", 1).validate(&api),
                    Err(Rejection::InvalidFilename(_))
                ),
                "{name:?}"
            );
        }
        assert!(matches!(
            body("a", "image/jpeg", 0).validate(&api),
            Err(Rejection::Invalid(_))
        ));
        assert_eq!(
            body("a", "image/jpeg", max + 1).validate(&api),
            Err(Rejection::TooLarge { size: max + 1, max })
        );
        for ct in ["IMAGE/JPEG", " image/jpeg", "text/plain", ""] {
            assert_eq!(
                body("a", ct, 1).validate(&api),
                Err(Rejection::UnsupportedContentType(ct.into()))
            );
        }
    }

    #[test]
    fn the_served_schema_carries_the_configured_limits() {
        let api = ApiSettings {
            max_upload_bytes: 1234,
            allowed_content_types: vec!["image/png".into(), "image/gif".into()],
            ..ApiSettings::default()
        };
        let schema = serde_json::to_value(CreateUpload::schema_for(&api)).unwrap();
        let props = &schema["properties"];
        assert_eq!(
            props["content_type"]["enum"],
            serde_json::json!(["image/png", "image/gif"])
        );
        assert_eq!(props["byte_size"]["maximum"], 1234);
        assert_eq!(props["byte_size"]["minimum"], 1);
        assert_eq!(props["filename"]["maxLength"], MAX_FILENAME_CHARS);
        assert_eq!(props["filename"]["minLength"], 1);
        assert_eq!(props["filename"]["pattern"], FILENAME_PATTERN);
    }
}
