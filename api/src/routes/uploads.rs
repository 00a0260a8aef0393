//! Owner routes: authorize a direct upload, complete it, read one, list them.

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use chrono::{DateTime, Utc};
use kiln_shared::db::uploads::{self as db, Cursor};
use kiln_shared::domain::{Derivative, ImageMetadata, Upload, UploadId, UploadMethod, UploadState};
use kiln_shared::lifecycle::UploadRequest;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Authenticated;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::routes::openapi::{InvalidRequest, Unauthorized, Unavailable};
use crate::state::AppState;

/// Body of `POST /v1/uploads`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateUpload {
    /// Client filename (1–255 bytes); only its sanitized form reaches an object key.
    pub filename: String,
    /// Declared MIME type; must be in `api.allowed_content_types`.
    pub content_type: String,
    /// Exact size the client will upload, in bytes (1 ..= `api.max_upload_bytes`).
    pub byte_size: u64,
    /// `put` (presigned URL) or `post` (POST policy); default `put`.
    #[serde(default = "default_method")]
    #[schema(default = "put")]
    pub method: UploadMethod,
}

fn default_method() -> UploadMethod {
    UploadMethod::Put
}

/// Response of `POST /v1/uploads` (201): where and how to send the bytes.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadAuthorization {
    /// Upload id, for `complete` and `GET`.
    pub id: UploadId,
    /// `put` or `post`.
    pub method: UploadMethod,
    /// PUT: the presigned URL. POST: the bucket URL to post the form to.
    pub url: String,
    /// PUT only: headers to send unchanged (signed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    /// POST only: form fields to send before the `file` field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<std::collections::BTreeMap<String, String>>,
    /// The temp object key the bytes go to.
    pub key: String,
    /// When the URL or policy expires.
    pub expires_at: DateTime<Utc>,
}

/// Authorizes a direct upload to S3.
///
/// Records a `pending` upload and returns a presigned PUT URL or POST policy for
/// `tmp/{owner}/{id}`, bound to the declared size and type and to `api.upload_expiry_secs`.
///
/// # Errors
/// 400 for a malformed body, a bad filename or size, 413 over `api.max_upload_bytes`, 415 for
/// a content type not in `api.allowed_content_types` (all before anything is signed or
/// stored), 503 when Postgres is down.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    operation_id = "create_upload",
    tag = "uploads",
    security(("bearer" = [])),
    request_body = CreateUpload,
    responses(
        (status = 201, description = "Authorized: send the bytes as it says", body = UploadAuthorization),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 413, description = "`upload_too_large`: `byte_size` is over `api.max_upload_bytes`", body = ErrorBody),
        (status = 415, description = "`unsupported_content_type`: `content_type` is not accepted", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Json(req): Json<CreateUpload>,
) -> Result<(StatusCode, Json<UploadAuthorization>), ApiError> {
    let api = &state.settings.api;
    if req.filename.is_empty() || req.filename.len() > 255 {
        return Err(ApiError::InvalidRequest(
            "filename must be 1-255 bytes".into(),
        ));
    }
    if req.byte_size == 0 {
        return Err(ApiError::InvalidRequest(
            "byte_size must be at least 1".into(),
        ));
    }
    if req.byte_size > api.max_upload_bytes {
        return Err(ApiError::TooLarge {
            size: req.byte_size,
            max: api.max_upload_bytes,
        });
    }
    let content_type = req.content_type.trim().to_ascii_lowercase();
    if !api
        .allowed_content_types
        .iter()
        .any(|t| t.eq_ignore_ascii_case(&content_type))
    {
        return Err(ApiError::UnsupportedContentType(req.content_type));
    }

    let auth = state
        .lifecycle
        .authorize(
            &principal.owner,
            UploadRequest {
                filename: &req.filename,
                content_type: &content_type,
                byte_size: req.byte_size,
                method: req.method,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadAuthorization {
            id: auth.upload.id,
            method: auth.upload.method,
            url: auth.url,
            headers: auth.headers,
            fields: auth.fields,
            key: auth.upload.temp_key,
            expires_at: auth.expires_at,
        }),
    ))
}

/// Completes an upload once its bytes are in S3.
///
/// Verifies the temp object (HeadObject: present, declared size), moves the upload to
/// `uploaded` and enqueues exactly one ProcessUpload job. 202 with the upload. Idempotent: a
/// repeated call returns the current state and enqueues nothing.
///
/// # Errors
/// 400 for a malformed id; 404 for an unknown id or another owner's upload; 409
/// `object_missing` when nothing was uploaded; 422 `size_mismatch` when the object's size is
/// not the declared one (the object is deleted, and the client may upload again before
/// expiry); 503 when a dependency is down (the upload stays `pending`, so the call can be
/// retried).
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/complete",
    operation_id = "complete_upload",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = UploadId, Path, description = "Upload id")),
    responses(
        (status = 202, description = "Completed (now, or by an earlier call): the upload", body = UploadView),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such upload for this owner", body = ErrorBody),
        (status = 409, description = "`object_missing`: nothing has been uploaded yet", body = ErrorBody),
        (status = 422, description = "`size_mismatch`: the object's size is not the declared one (it was deleted)", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<UploadId>,
) -> Result<(StatusCode, Json<UploadView>), ApiError> {
    let upload = state.lifecycle.complete(&principal.owner, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(view(&state, upload, true).await?),
    ))
}

/// Reads one upload.
///
/// The upload with its state, error, metadata and derivatives (each with a presigned GET URL
/// valid for `storage.download_url_expiry_secs`).
///
/// # Errors
/// 400 for a malformed id; 404 for an unknown id or another owner's upload; 503 when a
/// dependency is down.
#[utoipa::path(
    get,
    path = "/v1/uploads/{id}",
    operation_id = "get_upload",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = UploadId, Path, description = "Upload id")),
    responses(
        (status = 200, description = "The upload", body = UploadView),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 404, description = "`not_found`: no such upload for this owner", body = ErrorBody),
        (status = 503, response = Unavailable),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<UploadId>,
) -> Result<Json<UploadView>, ApiError> {
    let upload = db::get_owned(&state.pool, &principal.owner, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&state, upload, true).await?))
}

/// Query of `GET /v1/uploads`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1–100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A page of uploads.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadPage {
    /// Uploads, newest first (without derivative URLs; `GET /v1/uploads/{id}` has them).
    pub items: Vec<UploadView>,
    /// Cursor for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Lists the owner's uploads.
///
/// Newest first, keyset-paginated on `(created_at, id)`.
///
/// # Errors
/// 400 for a malformed cursor or a limit outside 1–100; 503 when Postgres is down.
#[utoipa::path(
    get,
    path = "/v1/uploads",
    operation_id = "list_uploads",
    tag = "uploads",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of uploads", body = UploadPage),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(q): Query<ListQuery>,
) -> Result<Json<UploadPage>, ApiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::InvalidRequest("limit must be 1-100".into()));
    }
    let cursor = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut uploads = db::list_owned(&state.pool, &principal.owner, limit + 1, cursor).await?;
    let next_cursor = if uploads.len() as i64 > limit {
        uploads.truncate(limit as usize);
        uploads.last().map(|u| {
            encode_cursor(&Cursor {
                created_at: u.created_at,
                id: u.id,
            })
        })
    } else {
        None
    };
    let mut items = Vec::with_capacity(uploads.len());
    for u in uploads {
        items.push(view(&state, u, false).await?);
    }
    Ok(Json(UploadPage { items, next_cursor }))
}

fn encode_cursor(c: &Cursor) -> String {
    let raw = format!("{}|{}", c.created_at.timestamp_micros(), c.id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(s: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::InvalidRequest("malformed cursor".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (micros, id) = raw.split_once('|').ok_or_else(bad)?;
    let created_at =
        DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok(Cursor {
        created_at,
        id: id.parse().map_err(|_| bad())?,
    })
}

/// An upload as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    /// Upload id.
    pub id: UploadId,
    /// State: `pending`, `uploaded`, `processing`, `ready`, `failed` or `expired`.
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
}

/// Error of a failed upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorView {
    /// Stable code, e.g. `corrupt_image`.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

/// One derivative with a short-lived download URL.
#[derive(Debug, Serialize, ToSchema)]
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

async fn view(state: &AppState, u: Upload, with_derivatives: bool) -> Result<UploadView, ApiError> {
    let mut derivatives = Vec::new();
    if with_derivatives && u.state == UploadState::Ready {
        for d in db::derivatives(&state.pool, u.id).await? {
            derivatives.push(derivative_view(state, d).await?);
        }
    }
    // Clients see the code's message with safe facts, never the internal detail.
    let error = match (u.state, u.error_code) {
        (UploadState::Failed, Some(code)) => Some(ErrorView {
            code: code.as_str().to_owned(),
            message: u
                .error_message
                .clone()
                .unwrap_or_else(|| code.client_message().to_owned()),
        }),
        _ => None,
    };
    Ok(UploadView {
        id: u.id,
        state: u.state,
        filename: u.filename,
        content_type: u.content_type,
        byte_size: u.byte_size,
        method: u.method,
        attempts: u.attempts,
        error,
        metadata: u.metadata,
        derivatives,
        created_at: u.created_at,
        updated_at: u.updated_at,
        expires_at: u.expires_at,
        completed_at: u.completed_at,
        ready_at: u.ready_at,
    })
}

async fn derivative_view(state: &AppState, d: Derivative) -> Result<DerivativeView, ApiError> {
    let signed = state.storage.presign_get(&d.object_key).await?;
    Ok(DerivativeView {
        name: d.rendition,
        width: d.width,
        height: d.height,
        format: d.format,
        bytes: d.byte_size,
        recipe_version: d.recipe_version,
        url: signed.url,
        url_expires_at: signed.expires_at,
    })
}
