//! Owner routes: authorize a direct upload, complete it, read one, list them.

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use chrono::DateTime;
use kiln_shared::db::uploads::{self as db, Cursor};
use kiln_shared::domain::{Derivative, Upload, UploadId, UploadState};
use kiln_shared::lifecycle::{LifecycleError, UploadRequest};
use kiln_shared::wire::{
    CreateUpload, DerivativeView, ErrorView, ListUploadsQuery, UploadAuthorization, UploadPage,
    UploadView,
};

use crate::auth::{Reader, Uploader};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::rate_limit::Policy;
use crate::routes::openapi::{
    Forbidden, Internal, InvalidRequest, RateLimited, StorageRejected, Timeout, Unauthorized,
    Unavailable,
};
use crate::state::AppState;

/// Authorizes a direct upload to S3.
///
/// Records a `pending` upload and returns a presigned PUT URL or POST policy for
/// `tmp/{owner}/{id}`, bound to the declared size and type and to `api.upload_expiry_secs`.
///
/// # Errors
/// 400 for a malformed body or size, 400 `invalid_filename` for an empty or overlong filename
/// or one with a control or bidirectional formatting character, 413 over
/// `api.max_upload_bytes` (or a body over `api.max_body_bytes`), 415 for a content type not in
/// `api.allowed_content_types` (all before anything is signed or stored), 500 when signing
/// fails, 503 when Postgres is down.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    operation_id = "create_upload",
    tag = "uploads",
    security(("bearer" = [])),
    request_body = CreateUpload,
    responses(
        (status = 201, description = "Authorized: send the bytes as it says", body = UploadAuthorization,
            links(
                ("get_upload" = (operation_id = "get_upload", parameters(("id" = "$response.body#/id")),
                    description = "The new upload (`pending` until completed)")),
                ("complete_upload" = (operation_id = "complete_upload", parameters(("id" = "$response.body#/id")),
                    description = "Complete it once the bytes are in S3")),
            )),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 408, response = Timeout),
        (status = 413, description = "`upload_too_large`: `byte_size` is over `api.max_upload_bytes`; or `invalid_request`: the body is over `api.max_body_bytes`", body = ErrorBody),
        (status = 403, description = "`quota_exceeded`: the upload would pass the owner's quota (`quota` names the limit, its value and the usage); or `forbidden`: the credential lacks the `upload` scope", body = ErrorBody),
        (status = 415, description = "`unsupported_content_type`: `content_type` is not accepted", body = ErrorBody),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Uploader(principal): Uploader,
    Json(req): Json<CreateUpload>,
) -> Result<(StatusCode, Json<UploadAuthorization>), ApiError> {
    state.limits.check(Policy::Authorize, &principal.owner)?;
    let api = &state.settings.api;
    req.validate(api)?;
    let content_type = req.content_type.clone();

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
        .await
        .inspect_err(|e| {
            if let LifecycleError::QuotaExceeded(q) = e {
                let limit = serde_json::to_value(q.limit).unwrap_or_default();
                let limit = limit.as_str().unwrap_or("unknown");
                state
                    .metrics
                    .record_quota_refusal(limit, principal.owner.as_str());
            }
        })?;
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
/// expiry); 500 on an internal fault; 502 when S3 refuses the API's own request; 503 when a
/// dependency is down (the upload stays `pending`, so the call can be retried).
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/complete",
    operation_id = "complete_upload",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = UploadId, Path, description = "Upload id")),
    responses(
        (status = 202, description = "Completed (now, or by an earlier call): the upload", body = UploadView,
            links(
                ("get_upload" = (operation_id = "get_upload", parameters(("id" = "$response.body#/id")),
                    description = "Poll the upload until it is `ready` or `failed`")),
            )),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no such upload for this owner", body = ErrorBody),
        (status = 408, response = Timeout),
        (status = 409, description = "`object_missing`: nothing has been uploaded yet (an upload just authorized answers this until its bytes are in S3)", body = ErrorBody),
        (status = 422, description = "`size_mismatch`: the object's size is not the declared one (it was deleted)", body = ErrorBody),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 502, response = StorageRejected),
        (status = 503, response = Unavailable),
    )
)]
pub async fn complete(
    State(state): State<AppState>,
    Uploader(principal): Uploader,
    Path(id): Path<UploadId>,
) -> Result<(StatusCode, Json<UploadView>), ApiError> {
    state.limits.check(Policy::Complete, &principal.owner)?;
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
/// 400 for a malformed id; 404 for an unknown id or another owner's upload; 500 on an internal
/// fault (e.g. signing a download URL); 503 when Postgres is down.
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
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no such upload for this owner", body = ErrorBody),
        (status = 408, response = Timeout),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<UploadId>,
) -> Result<Json<UploadView>, ApiError> {
    // A deleted upload reads as missing until it is restored.
    let upload = db::get_owned(&state.pool, &principal.owner, id)
        .await?
        .filter(|u| u.deleted_at.is_none())
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&state, upload, true).await?))
}

/// Lists the owner's uploads.
///
/// Newest first, keyset-paginated on `(created_at, id)`.
///
/// # Errors
/// 400 for a malformed cursor or a limit outside 1–100; 500 on an internal fault; 503 when
/// Postgres is down.
#[utoipa::path(
    get,
    path = "/v1/uploads",
    operation_id = "list_uploads",
    tag = "uploads",
    security(("bearer" = [])),
    params(ListUploadsQuery),
    responses(
        (status = 200, description = "A page of uploads", body = UploadPage),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = Timeout),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Query(q): Query<ListUploadsQuery>,
) -> Result<Json<UploadPage>, ApiError> {
    let limit = q.page_size()?;
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

/// Earliest and latest `created_at` a cursor can stand for, in microseconds since the Unix
/// epoch (0001-01-01 and 9999-12-31T23:59:59.999999Z, within both chrono's and Postgres's
/// range); a cursor outside is clamped, so every well-formed cursor reads a page.
const CURSOR_MICROS: std::ops::RangeInclusive<i64> =
    -62_135_596_800_000_000..=253_402_300_799_999_999;

/// A page cursor: 8 bytes of big-endian `created_at` microseconds, then the 16 bytes of the
/// id, as unpadded base64url. 24 bytes make exactly 32 characters, so every string matching
/// the documented pattern `^[A-Za-z0-9_-]{32}$` decodes.
fn encode_cursor(c: &Cursor) -> String {
    let mut raw = [0u8; 24];
    raw[..8].copy_from_slice(&c.created_at.timestamp_micros().to_be_bytes());
    raw[8..].copy_from_slice(c.id.0.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(s: &str) -> Result<Cursor, ApiError> {
    let bad =
        || ApiError::invalid("malformed cursor: pass the previous page's next_cursor unchanged");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let (micros, id) = raw.split_first_chunk::<8>().ok_or_else(bad)?;
    let id: [u8; 16] = id.try_into().map_err(|_| bad())?;
    let micros = i64::from_be_bytes(*micros).clamp(*CURSOR_MICROS.start(), *CURSOR_MICROS.end());
    Ok(Cursor {
        created_at: DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
        id: UploadId(uuid::Uuid::from_bytes(id)),
    })
}

/// The API's view of `u`: its visible state, the client's error message, and, `with_derivatives`
/// and `ready` and not deleted, each derivative with a presigned GET URL.
pub(crate) async fn view(
    state: &AppState,
    u: Upload,
    with_derivatives: bool,
) -> Result<UploadView, ApiError> {
    let mut derivatives = Vec::new();
    // A deleted upload gets no download URLs.
    if with_derivatives && u.state == UploadState::Ready && u.deleted_at.is_none() {
        for d in db::derivatives(&state.pool, u.id).await? {
            derivatives.push(derivative_view(state, d).await?);
        }
    }
    // Clients see the code's message with safe facts, never the internal detail.
    let error = match (u.state, u.error_code) {
        (UploadState::Failed, Some(code)) => Some(ErrorView {
            code,
            message: u
                .error_message
                .clone()
                .unwrap_or_else(|| code.client_message().to_owned()),
        }),
        _ => None,
    };
    let restorable_until = state.lifecycle.restorable_until(&u);
    Ok(UploadView {
        id: u.id,
        state: u.visible_state(),
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
        deleted_at: u.deleted_at,
        restorable_until,
        duplicate_of: u.duplicate_of,
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
