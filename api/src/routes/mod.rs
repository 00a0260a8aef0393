//! HTTP routes: `/v1/uploads…` for owners, `/v1/admin/…` for operators, `/s/{token}` share
//! links for anyone, `/openapi.json`, and
//! the operations routes `/healthz`, `/readyz` and `/metrics`, which move to their own listener
//! when `api.admin_listen` is set ([`public`], [`operations`]).
//!
//! Every route is declared once, with `routes!` on a handler carrying `#[utoipa::path]`: that
//! one declaration both registers the handler with axum and adds it to the OpenAPI document
//! (`api/clippy.toml` forbids registering a route any other way).

pub mod admin;
pub mod assets;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod shares;
pub mod uploads;
pub mod usage;

use axum::http::{Method, Uri};
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route of the API (without middleware or fallbacks), with the OpenAPI document that
/// describes them: [`public`] and [`operations`] together, as one listener serves them when
/// `api.admin_listen` is unset.
pub fn router() -> OpenApiRouter<AppState> {
    public().merge(operations())
}

/// The owner and admin routes and `/openapi.json`, with the document's fixed parts.
pub fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(uploads::create, uploads::list))
        .routes(routes!(uploads::show, assets::delete))
        .routes(routes!(uploads::complete))
        .routes(routes!(assets::restore))
        .routes(routes!(assets::original))
        .routes(routes!(shares::create, shares::list))
        .routes(routes!(shares::revoke))
        .routes(routes!(shares::open))
        .routes(routes!(admin::list))
        .routes(routes!(admin::replay))
        .routes(routes!(keys::create, keys::list))
        .routes(routes!(keys::revoke))
        .routes(routes!(usage::show))
        .routes(routes!(usage::owner, assets::erase))
        .routes(routes!(usage::set_quota))
        .routes(routes!(openapi::openapi_json))
}

/// The operations routes: `/metrics`, `/healthz` and `/readyz` (no token; served on
/// `api.admin_listen` when it is set).
pub fn operations() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(metrics::metrics))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// The OpenAPI document of [`router`], as `/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().into_openapi()
}

/// The router's fallback: 404 `route_not_found` for a path no route matches, so clients (and
/// tests) can tell a missing route from a missing upload (`not_found`).
pub async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method,
        path: uri.path().to_owned(),
    }
}

/// 405 `method_not_allowed` for a path that exists without this method (axum adds `Allow`).
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method,
        path: uri.path().to_owned(),
    }
}
