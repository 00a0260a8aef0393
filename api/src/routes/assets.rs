//! An upload's end and its downloads: delete (soft, or `?purge=true`), restore, the owner's
//! original (`GET /v1/uploads/{id}/original`), and erasing an owner
//! (`DELETE /v1/admin/owners/{owner}`). Every change goes through the lifecycle
//! (`kiln_shared::lifecycle`, "Asset lifecycle" in docs/ARCHITECTURE.md).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_shared::domain::{OwnerId, UploadId};
use kiln_shared::lifecycle::{Download, EraseReport};
use kiln_shared::wire::{DeleteQuery, UploadView};

use crate::auth::{Admin, Reader, Uploader};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::routes::openapi::{
    Forbidden, Internal, InvalidRequest, StorageRejected, Timeout, Unauthorized, Unavailable,
};
use crate::routes::uploads::view;
use crate::state::AppState;

/// A 302 to a presigned download, never cached (the URL is short-lived).
pub(crate) fn redirect(to: &Download) -> Result<Response, ApiError> {
    let location = HeaderValue::from_str(&to.url).map_err(|e| {
        ApiError::Lifecycle(kiln_shared::lifecycle::LifecycleError::Internal(format!(
            "unusable download URL: {e}"
        )))
    })?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response())
}

/// Deletes an upload.
///
/// Soft delete by default: the upload leaves lists, reads as 404, gets no download URLs (its
/// files move out of reach, so URLs already handed out stop working), its share links answer
/// 404 and it stops
/// counting against the quota; `POST /v1/uploads/{id}/restore` brings it back within
/// `retention.deleted_secs` (7 days by default), after which it is purged. A worker processing
/// it finishes, but it stays deleted. With `purge=true`: original, derivatives, share links
/// and rows are removed at once (204).
///
/// # Errors
/// 400 for a malformed id; 404 for an unknown id or another owner's upload (so also for a
/// second `purge=true`); 503 when a dependency is down (call again: a soft delete is
/// idempotent, and a purge that failed halfway finishes).
#[utoipa::path(
    delete,
    path = "/v1/uploads/{id}",
    operation_id = "delete_upload",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = UploadId, Path, description = "Upload id"), DeleteQuery),
    responses(
        (status = 200, description = "Deleted (now or earlier): the upload, `state` `deleted`, with `restorable_until`", body = UploadView),
        (status = 204, description = "Purged (`purge=true`)"),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no such upload for this owner", body = ErrorBody),
        (status = 408, response = Timeout),
        (status = 500, response = Internal),
        (status = 502, response = StorageRejected),
        (status = 503, response = Unavailable),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Uploader(principal): Uploader,
    Path(id): Path<UploadId>,
    Query(q): Query<DeleteQuery>,
) -> Result<Response, ApiError> {
    if q.purge {
        state.lifecycle.purge_owned(&principal.owner, id).await?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let upload = state.lifecycle.delete(&principal.owner, id).await?;
    Ok(Json(view(&state, upload, false).await?).into_response())
}

/// Restores a deleted upload.
///
/// Within `retention.deleted_secs` of its deletion: the upload returns to the state it was
/// deleted from, with its files, URLs and share links. Idempotent: restoring an upload that is
/// not deleted returns it as it is.
///
/// # Errors
/// 400 for a malformed id; 403 `quota_exceeded` when it would pass the owner's quota; 404 for
/// an unknown id or another owner's upload; 409 `not_restorable` when its retention has
/// passed; 503 when a dependency is down.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/restore",
    operation_id = "restore_upload",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = UploadId, Path, description = "Upload id")),
    responses(
        (status = 200, description = "Restored: the upload", body = UploadView),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "`quota_exceeded`: restoring would pass the owner's quota; or `forbidden`: the credential lacks the `upload` scope", body = ErrorBody),
        (status = 404, description = "`not_found`: no such upload for this owner", body = ErrorBody),
        (status = 408, response = Timeout),
        (status = 409, description = "`not_restorable`: its retention period has passed", body = ErrorBody),
        (status = 500, response = Internal),
        (status = 502, response = StorageRejected),
        (status = 503, response = Unavailable),
    )
)]
pub async fn restore(
    State(state): State<AppState>,
    Uploader(principal): Uploader,
    Path(id): Path<UploadId>,
) -> Result<Json<UploadView>, ApiError> {
    let upload = state.lifecycle.restore(&principal.owner, id).await?;
    Ok(Json(view(&state, upload, true).await?))
}

/// Downloads the original.
///
/// A 302 to a presigned GET of the original file, valid `shares.redirect_url_secs` (60 s by
/// default), whose response carries the sniffed content type (not the declared one) and
/// `Content-Disposition: attachment` with the client's filename (RFC 6266 and RFC 8187).
///
/// # Errors
/// 400 for a malformed id; 404 for an unknown, deleted or another owner's upload; 409
/// `not_ready` before it is `ready`; 503 when a dependency is down.
#[utoipa::path(
    get,
    path = "/v1/uploads/{id}/original",
    operation_id = "download_original",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = UploadId, Path, description = "Upload id")),
    responses(
        (status = 302, description = "Redirect to the original (`Location`: a presigned GET URL)"),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no such upload for this owner", body = ErrorBody),
        (status = 408, response = Timeout),
        (status = 409, description = "`not_ready`: the upload is not ready", body = ErrorBody),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn original(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<UploadId>,
) -> Result<Response, ApiError> {
    let download = state
        .lifecycle
        .original_download(&principal.owner, id)
        .await?;
    redirect(&download)
}

/// Erases an owner.
///
/// Removes every row and object of the owner: uploads in any state with their originals,
/// derivatives and temporary objects, share links, API keys, quota overrides and usage, and
/// their finished jobs in the queue. Resumable and idempotent: call it again after a failure;
/// on an erased owner it removes nothing (all counts 0). `kiln owners erase` does the same.
///
/// # Errors
/// 400 for a malformed owner id; 401/403 without an admin token; 503 when a dependency is down
/// (what was removed stays removed; call again).
#[utoipa::path(
    delete,
    path = "/v1/admin/owners/{owner}",
    operation_id = "erase_owner",
    tag = "admin",
    security(("bearer" = [])),
    params(("owner" = String, Path, description = "Owner id: 1–64 characters of `[A-Za-z0-9_.-]`, not starting with `.`",
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")),
    responses(
        (status = 200, description = "What was removed", body = EraseReport),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = Timeout),
        (status = 500, response = Internal),
        (status = 502, response = StorageRejected),
        (status = 503, response = Unavailable),
    )
)]
pub async fn erase(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(owner): Path<String>,
) -> Result<Json<EraseReport>, ApiError> {
    let owner = OwnerId::parse(&owner).map_err(|e| ApiError::invalid(format!("owner: {e}")))?;
    Ok(Json(state.lifecycle.erase_owner(&owner).await?))
}
