//! Share links: the owner creates, lists and revokes them (`/v1/uploads/{id}/shares…`, the
//! `read` scope, as sharing is reading on someone else's behalf); anyone
//! holding one opens it (`GET /s/{token}`, no token header) and is redirected to a short-lived
//! presigned GET of the shared rendition or original.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use kiln_shared::domain::UploadId;
use kiln_shared::lifecycle::NewShareLink;
use kiln_shared::wire::{CreateShare, ShareList, ShareView};

use crate::auth::Reader;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::routes::assets::redirect;
use crate::routes::openapi::{
    ContentTooLarge, Forbidden, Internal, InvalidRequest, Timeout, Unauthorized, Unavailable,
};
use crate::state::AppState;

/// The base of share URLs: `shares.public_url`, else `http://{Host}` of this request.
fn base_url(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(url) = &state.settings.shares.public_url {
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '@']))
        .ok_or_else(|| {
            ApiError::invalid(
                "a Host header is needed to build the link (or set shares.public_url)",
            )
        })?;
    Ok(format!("http://{host}"))
}

/// Creates a share link.
///
/// An unguessable link (`{base}/s/{token}`, 256-bit token) to one rendition of the owner's
/// `ready` upload or to its `original`, valid for `expires_in` seconds and, with
/// `max_downloads`, for that many downloads. The token is shown only here.
///
/// # Errors
/// 400 for a malformed body or a value out of range; 404 for an unknown, deleted or another
/// owner's upload; 409 `not_ready` when it is not ready or has no such rendition; 503 when the
/// database is down.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/shares",
    operation_id = "create_share",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = UploadId, Path, description = "Upload id")),
    request_body = CreateShare,
    responses(
        (status = 201, description = "Created: the share with its `url`", body = ShareView),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no such upload for this owner", body = ErrorBody),
        (status = 408, response = Timeout),
        (status = 409, description = "`not_ready`: the upload is not ready, or has no such rendition", body = ErrorBody),
        (status = 413, response = ContentTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<UploadId>,
    headers: HeaderMap,
    Json(req): Json<CreateShare>,
) -> Result<(StatusCode, Json<ShareView>), ApiError> {
    req.validate(&state.settings.shares)?;
    let base = base_url(&state, &headers)?;
    let link = state
        .lifecycle
        .create_share(
            &principal.owner,
            id,
            &NewShareLink {
                rendition: req.rendition,
                expires_in: std::time::Duration::from_secs(req.expires_in),
                max_downloads: req.max_downloads,
            },
        )
        .await?;
    let url = format!("{base}/s/{}", link.token);
    Ok((
        StatusCode::CREATED,
        Json(ShareView::new(link.share, Some(url), chrono::Utc::now())),
    ))
}

/// Lists an upload's share links.
///
/// Every link of the upload, revoked ones included, oldest first, without their tokens.
///
/// # Errors
/// 400 for a malformed id; 404 for an unknown or another owner's upload; 503 when the database
/// is down.
#[utoipa::path(
    get,
    path = "/v1/uploads/{id}/shares",
    operation_id = "list_shares",
    tag = "uploads",
    security(("bearer" = [])),
    params(("id" = UploadId, Path, description = "Upload id")),
    responses(
        (status = 200, description = "The upload's share links", body = ShareList),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no such upload for this owner", body = ErrorBody),
        (status = 408, response = Timeout),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path(id): Path<UploadId>,
) -> Result<Json<ShareList>, ApiError> {
    let now = chrono::Utc::now();
    let items = state
        .lifecycle
        .list_shares(&principal.owner, id)
        .await?
        .into_iter()
        .map(|s| ShareView::new(s, None, now))
        .collect();
    Ok(Json(ShareList { items }))
}

/// Revokes a share link.
///
/// The link answers 404 from now on. Idempotent.
///
/// # Errors
/// 400 for a malformed id; 404 `share_not_found` when the upload has no such share for this
/// owner; 503 when the database is down.
#[utoipa::path(
    delete,
    path = "/v1/uploads/{id}/shares/{share_id}",
    operation_id = "revoke_share",
    tag = "uploads",
    security(("bearer" = [])),
    params(
        ("id" = UploadId, Path, description = "Upload id"),
        ("share_id" = String, Path, description = "Share id", pattern = "^shr_[0-9a-f]{24}$"),
    ),
    responses(
        (status = 200, description = "Revoked: the share", body = ShareView),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`share_not_found`: no such share of this upload", body = ErrorBody),
        (status = 408, response = Timeout),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    Reader(principal): Reader,
    Path((id, share_id)): Path<(UploadId, String)>,
) -> Result<Json<ShareView>, ApiError> {
    let share = state
        .lifecycle
        .revoke_share(&principal.owner, id, &share_id)
        .await?;
    Ok(Json(ShareView::new(share, None, chrono::Utc::now())))
}

/// Opens a share link.
///
/// No token header: the link is the credential. A 302 to a presigned GET of the shared file,
/// valid `shares.redirect_url_secs`; each redirect counts one download.
///
/// # Errors
/// 404 `share_not_found` for an unknown or revoked link or a deleted upload; 410
/// `share_expired` past its expiry or its download limit; 503 when a dependency is down.
#[utoipa::path(
    get,
    path = "/s/{token}",
    operation_id = "open_share",
    tag = "shares",
    params(("token" = String, Path, description = "The link's token", pattern = "^[A-Za-z0-9_-]{43}$")),
    responses(
        (status = 302, description = "Redirect to the file (`Location`: a presigned GET URL)"),
        (status = 404, description = "`share_not_found`: no such link, or it was revoked, or its upload deleted", body = ErrorBody),
        (status = 408, response = Timeout),
        (status = 410, description = "`share_expired`: the link expired or used all its downloads", body = ErrorBody),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn open(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let download = state.lifecycle.open_share(&token).await?;
    redirect(&download)
}
