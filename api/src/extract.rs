//! `Json`, `Path` and `Query` extractors that reject with [`ApiError::invalid`] (400
//! `invalid_request`, the usual `{"error": …}` body) instead of axum's plain-text rejections,
//! so every error an endpoint returns has the one documented shape. Bodies must be JSON
//! objects, as every request schema says ([`JsonObject`]), and no longer than the router's
//! [`BodyLimit`] (413, [`ApiError::BodyTooLarge`]).
//!
//! [`Json`] is also a response (it serializes like `axum::Json`).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use kiln_shared::wire::JsonObject;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The request body limit (`api.max_body_bytes`), in bytes, as a request extension: the router
/// adds it beside the layers that enforce it, so that [`Json`] can name it in its 413.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

/// A JSON object body (`Content-Type: application/json`) deserialized into `T`, or a JSON
/// response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req.extensions().get::<BodyLimit>().copied();
        axum::Json::<JsonObject<T>>::from_request(req, state)
            .await
            .map(|axum::Json(JsonObject(value))| Self(value))
            .map_err(|rejection| match limit {
                // The body stream hit the limit (`http_body_util::LengthLimitError`).
                Some(BodyLimit(max)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    ApiError::BodyTooLarge { max }
                }
                _ => ApiError::invalid(rejection.body_text()),
            })
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters deserialized into `T` (e.g. an `UploadId`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| ApiError::invalid(rejection.body_text()))
    }
}

/// The query string deserialized into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| ApiError::invalid(rejection.body_text()))
    }
}
