//! Bearer credentials and scopes: the extractors that stand in a handler's signature and say
//! what the route needs. [`Uploader`] (scope `upload`), [`Reader`] (`read`) and [`Admin`]
//! (`admin`) check the scope; [`Authenticated`] takes any valid credential.
//!
//! `Authorization: Bearer kiln_…` is an API key, checked against its `api_keys` row on every
//! request ([`kiln_shared::api_keys::verify`]: a revoked or expired key fails at once); any
//! other bearer is a JWT, checked by [`AppState::verifier`]. Either resolves to a
//! [`Principal`] with the owner and scopes. The owner always comes from the credential, never
//! from a request parameter. A missing, malformed, unknown, revoked or expired credential is
//! 401 `unauthorized`; a valid one without the route's scope is 403 `forbidden`, naming the
//! scope.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use kiln_shared::api_keys::{self, Scope};
use kiln_shared::auth::Principal;

use crate::error::ApiError;
use crate::state::AppState;

/// A request with any valid credential (API key or JWT), whatever its scopes.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

/// The principal of the request's bearer credential.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("malformed Authorization header".into()))?;
    if api_keys::is_api_key(token) {
        return Ok(api_keys::verify(&state.pool, token).await?);
    }
    state
        .verifier
        .verify(token)
        .map_err(|e| ApiError::Unauthorized(e.to_string()))
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state).await.map(Self)
    }
}

/// Declares an extractor that takes a valid credential carrying one scope.
macro_rules! scoped {
    ($(#[$doc:meta])* $name:ident, $scope:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, ApiError> {
                let principal = authenticate(parts, state).await?;
                principal.require($scope)?;
                Ok(Self(principal))
            }
        }
    };
}

scoped!(
    /// A request whose credential carries `upload`: authorize and complete uploads.
    Uploader,
    Scope::Upload
);
scoped!(
    /// A request whose credential carries `read`: read and list uploads.
    Reader,
    Scope::Read
);
scoped!(
    /// A request whose credential carries `admin`: every `/v1/admin/…` route.
    Admin,
    Scope::Admin
);
