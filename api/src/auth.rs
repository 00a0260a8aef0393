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
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use kiln_shared::api_keys::{self, KeyError, MissingScope, Scope};
use kiln_shared::auth::Principal;
use kiln_shared::domain::Classify;
use kiln_shared::wire::{ErrorBody, ErrorDetail};

use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;

/// A refusal by the auth extractors or the key routes: an [`ApiError`], or one of the two
/// refusals it has no variant for (a missing scope, an unknown key prefix), answered with the
/// same body and the status of their taxonomy code.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Any API failure.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// 403 `forbidden`, naming the scope the route needs.
    #[error(transparent)]
    Scope(#[from] MissingScope),
    /// An API key failure: 401 `unauthorized` (malformed, unknown, revoked, expired), 400
    /// `invalid_request`, 404 `not_found` (revoking an unknown prefix), or the database's code.
    #[error(transparent)]
    Key(#[from] KeyError),
}

impl From<kiln_shared::wire::Rejection> for Refusal {
    fn from(e: kiln_shared::wire::Rejection) -> Self {
        Self::Api(e.into())
    }
}

/// `{"error": {"code", "message"}}` with the code's status; for 4xx codes only, whose message is
/// the refusal's own text.
fn client_error(e: &(impl Classify + std::fmt::Display)) -> Response {
    let code = e.code();
    let status = StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = ErrorBody {
        error: ErrorDetail::new(code, e.to_string()),
    };
    (status, Json(body)).into_response()
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Self::Api(e) => e.into_response(),
            Self::Scope(e) => client_error(&e),
            Self::Key(KeyError::Db(e)) => ApiError::Database(e).into_response(),
            Self::Key(KeyError::Invalid(m)) => ApiError::invalid(m).into_response(),
            Self::Key(e @ KeyError::NotFound(_)) => client_error(&e),
            Self::Key(e) => ApiError::Unauthorized(e.to_string()).into_response(),
        }
    }
}

/// A request with any valid credential (API key or JWT), whatever its scopes.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

/// The principal of the request's bearer credential.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, Refusal> {
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
        .map_err(|e| ApiError::Unauthorized(e.to_string()).into())
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
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
            type Rejection = Refusal;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Refusal> {
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
