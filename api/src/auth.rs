//! Bearer-token extractors: [`Authenticated`] for owner routes, [`Admin`] for admin routes.
//! The owner always comes from the token's `sub`, never from a request parameter.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use kiln_shared::auth::Principal;

use crate::error::ApiError;
use crate::state::AppState;

/// A request with a valid `Authorization: Bearer <JWT>`, checked by [`AppState::verifier`].
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

/// A request whose token carries the `admin` scope.
#[derive(Debug, Clone)]
pub struct Admin(pub Principal);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
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
            .ok_or_else(|| ApiError::Unauthorized("malformed Authorization header".into()))?;
        state
            .verifier
            .verify(token.trim())
            .map(Authenticated)
            .map_err(|e| ApiError::Unauthorized(e.to_string()))
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(p) = Authenticated::from_request_parts(parts, state).await?;
        if p.admin {
            Ok(Admin(p))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}
