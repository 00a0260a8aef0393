//! Admin routes for API keys (scope `admin`): create one (the whole key is in this answer and
//! nowhere else), list them, revoke one. The same operations as `kiln keys`, over
//! [`kiln_shared::api_keys`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CACHE_CONTROL;
use kiln_shared::api_keys;
use kiln_shared::wire::{CreateKey, CreatedKey, KeyList, KeyPath, KeyView, ListKeysQuery};

use crate::auth::Admin;
use crate::error::ApiError;
use crate::error::ErrorBody;
use crate::extract::{Json, Path, Query};
use crate::routes::openapi::{
    ContentTooLarge, Forbidden, Internal, InvalidRequest, Timeout, Unauthorized, Unavailable,
};
use crate::state::AppState;

/// Creates an API key.
///
/// A key for `owner` with `scopes` (and optionally a lifetime and a name). The answer holds
/// the whole key, `kiln_{prefix}_{secret}`, this once (`Cache-Control: no-store`): Kiln keeps
/// only the secret's SHA-256.
///
/// # Errors
/// 400 for a malformed body, owner, scope list (empty or repeated), lifetime or name; 401/403
/// without an admin credential; 413 for a body over `api.max_body_bytes`; 500 on an internal
/// fault; 503 when the database is down.
#[utoipa::path(
    post,
    path = "/v1/admin/keys",
    operation_id = "create_api_key",
    tag = "admin",
    security(("bearer" = [])),
    request_body = CreateKey,
    responses(
        (status = 201, description = "The key, shown this once, and its metadata", body = CreatedKey,
            headers(("cache-control" = String, description = "`no-store`: the answer holds a secret")),
            links(
                ("revoke_api_key" = (operation_id = "revoke_api_key",
                    parameters(("prefix" = "$response.body#/api_key/prefix")),
                    description = "Revoke the new key")),
            )),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = Timeout),
        (status = 413, response = ContentTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Json(req): Json<CreateKey>,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, &'static str); 1],
        Json<CreatedKey>,
    ),
    ApiError,
> {
    let new = req.to_new_key()?;
    let created = api_keys::create(&state.pool, &new).await?;
    let key = &created.api_key;
    tracing::info!(
        prefix = %key.prefix,
        owner = %key.owner,
        scopes = %key.scopes,
        by = %admin.owner,
        "API key created"
    );
    Ok((
        StatusCode::CREATED,
        [(CACHE_CONTROL, "no-store")],
        Json(created),
    ))
}

/// Lists API keys.
///
/// Every key (or one owner's), revoked and expired ones included, oldest first: prefix,
/// owner, scopes, name and times, never the secret or its hash.
///
/// # Errors
/// 400 for a malformed owner; 401/403 without an admin credential; 500 on an internal fault;
/// 503 when the database is down.
#[utoipa::path(
    get,
    path = "/v1/admin/keys",
    operation_id = "list_api_keys",
    tag = "admin",
    security(("bearer" = [])),
    params(ListKeysQuery),
    responses(
        (status = 200, description = "The keys", body = KeyList),
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
    Admin(_): Admin,
    Query(q): Query<ListKeysQuery>,
) -> Result<Json<KeyList>, ApiError> {
    let owner = q.owner()?;
    let items = api_keys::list(&state.pool, owner.as_ref()).await?;
    Ok(Json(KeyList { items }))
}

/// Revokes an API key.
///
/// The key stops working from the next request on; its row stays, with `revoked_at`, so it is
/// still listed. Idempotent: revoking a revoked key answers the same, with the first
/// revocation's time.
///
/// # Errors
/// 400 for a prefix that is not 12 lowercase hex digits; 401/403 without an admin credential;
/// 404 when no key has the prefix; 500 on an internal fault; 503 when the database is down.
#[utoipa::path(
    delete,
    path = "/v1/admin/keys/{prefix}",
    operation_id = "revoke_api_key",
    tag = "admin",
    security(("bearer" = [])),
    params(KeyPath),
    responses(
        (status = 200, description = "The revoked key", body = KeyView),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "`not_found`: no API key has this prefix", body = ErrorBody),
        (status = 408, response = Timeout),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub async fn revoke(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(path): Path<KeyPath>,
) -> Result<Json<KeyView>, ApiError> {
    let key = api_keys::revoke(&state.pool, path.prefix()?).await?;
    tracing::info!(prefix = %key.prefix, owner = %key.owner, by = %admin.owner, "API key revoked");
    Ok(Json(key))
}
