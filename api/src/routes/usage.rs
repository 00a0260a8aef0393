//! Usage and quota routes: `GET /v1/usage` gives an owner their own usage and limits;
//! `GET /v1/admin/owners/{owner}` and `PUT /v1/admin/owners/{owner}/quota` let operators read
//! any owner's and set their quota overrides (as `kiln owners show` and `kiln owners
//! set-quota` do).

use axum::extract::State;
use kiln_shared::db::owners;
use kiln_shared::domain::OwnerId;
use kiln_shared::wire::{OwnerView, SetQuota, UsageView};

use crate::auth::{Admin, Reader};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::openapi::{
    ContentTooLarge, Forbidden, Internal, InvalidRequest, Timeout, Unauthorized, Unavailable,
};
use crate::state::AppState;

/// Reads the caller's usage and limits.
///
/// What the owner holds now (bytes and uploads in live uploads, pending uploads, jobs waiting
/// in the queue) and the limits that apply to them.
///
/// # Errors
/// 401 without a valid token; 403 without the `read` scope; 500 on an internal fault; 503 when the database is down.
#[utoipa::path(
    get,
    path = "/v1/usage",
    operation_id = "get_usage",
    tag = "uploads",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's usage and limits", body = UsageView),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = Timeout),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    Reader(principal): Reader,
) -> Result<Json<UsageView>, ApiError> {
    let view = owner_view(&state, &principal.owner).await?;
    Ok(Json(UsageView {
        owner: view.owner,
        usage: view.usage,
        limits: view.limits,
    }))
}

/// Reads an owner's usage, limits and quota overrides.
///
/// # Errors
/// 400 for a malformed owner id; 401/403 without an admin token; 500 on an internal fault;
/// 503 when the database is down.
#[utoipa::path(
    get,
    path = "/v1/admin/owners/{owner}",
    operation_id = "get_owner",
    tag = "admin",
    security(("bearer" = [])),
    params(("owner" = String, Path, description = "Owner id: 1–64 characters of `[A-Za-z0-9_.-]`, not starting with `.`",
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")),
    responses(
        (status = 200, description = "The owner's usage, limits and overrides", body = OwnerView),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = Timeout),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn owner(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(owner): Path<String>,
) -> Result<Json<OwnerView>, ApiError> {
    let owner = parse_owner(&owner)?;
    Ok(Json(owner_view(&state, &owner).await?))
}

/// Sets an owner's quota overrides.
///
/// Replaces all three overrides; an absent or `null` limit restores the configured default.
/// Lowering a limit below the owner's usage refuses their next authorizations; it removes
/// nothing.
///
/// # Errors
/// 400 for a malformed owner id or body, or a limit over 2^63 − 1; 401/403 without an admin
/// token; 413 for a body over `api.max_body_bytes`; 500 on an internal fault; 503 when the
/// database is down.
#[utoipa::path(
    put,
    path = "/v1/admin/owners/{owner}/quota",
    operation_id = "set_owner_quota",
    tag = "admin",
    security(("bearer" = [])),
    params(("owner" = String, Path, description = "Owner id: 1–64 characters of `[A-Za-z0-9_.-]`, not starting with `.`",
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")),
    request_body = SetQuota,
    responses(
        (status = 200, description = "The owner's usage, limits and overrides, as now set", body = OwnerView),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = Timeout),
        (status = 413, response = ContentTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn set_quota(
    State(state): State<AppState>,
    Admin(_): Admin,
    Path(owner): Path<String>,
    Json(body): Json<SetQuota>,
) -> Result<Json<OwnerView>, ApiError> {
    let owner = parse_owner(&owner)?;
    let limits = [body.max_bytes, body.max_uploads, body.max_pending];
    if limits
        .into_iter()
        .flatten()
        .any(|v| i64::try_from(v).is_err())
    {
        return Err(ApiError::invalid("a quota limit is over 2^63 - 1"));
    }
    owners::set_overrides(&state.pool, &owner, body.into()).await?;
    tracing::info!(%owner, ?body, "quota overrides set");
    Ok(Json(owner_view(&state, &owner).await?))
}

fn parse_owner(owner: &str) -> Result<OwnerId, ApiError> {
    OwnerId::parse(owner).map_err(|e| ApiError::invalid(format!("owner: {e}")))
}

async fn owner_view(state: &AppState, owner: &OwnerId) -> Result<OwnerView, ApiError> {
    let usage = owners::usage(&state.pool, owner).await?;
    let overrides = owners::overrides(&state.pool, owner).await?;
    Ok(OwnerView {
        owner: owner.as_str().to_owned(),
        usage,
        limits: overrides.apply(&state.settings.quotas),
        overrides,
    })
}
