//! `GET /openapi.json`: the API's OpenAPI 3.1 document, and the parts of it that no single route
//! declares (info, tags, the bearer security scheme, responses shared by several routes).
//!
//! The paths come from the `#[utoipa::path]` attribute on each handler, collected by the same
//! `routes!` calls that register the handlers with axum ([`super::router`]), so a route cannot
//! be served without being documented, nor documented without being served.

use axum::Extension;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use kiln_shared::config::{ApiSettings, ShareSettings};
use kiln_shared::wire::{CreateShare, CreateUpload, ReplayRequest};
use utoipa::openapi::Ref;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use crate::error::ErrorBody;

/// Name of the bearer-token security scheme. Authenticated handlers spell it as a literal in
/// `#[utoipa::path(security(("bearer" = [])))]` (the attribute takes no constant); the
/// integration test checks that every requirement names a defined scheme.
pub const BEARER: &str = "bearer";

/// The document's fixed parts; [`super::router`] adds every route to it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kiln",
        version = env!("CARGO_PKG_VERSION"),
        description = "Direct-to-S3 image uploads: authorize an upload (presigned PUT URL or POST \
                       policy), send the bytes to S3, complete it, and read its state, metadata \
                       and derivatives. Every error body is `{\"error\": {\"code\", \"message\"}}` \
                       with a stable snake_case code (its `code` enum lists them all); any \
                       request may also end in an empty 408 after 30 s, and any request whose \
                       body is over the server's body limit (64 KiB by default) in a 413 \
                       `invalid_request`."
    ),
    tags(
        (name = "uploads", description = "An owner's uploads (the owner is the token's `sub`)."),
        (name = "admin", description = "Dead jobs, replay, API keys, owners' quotas and erasure; the credential needs the `admin` scope."),
        (name = "shares", description = "Share links: the link is the credential; no token."),
        (name = "operations", description = "Probes, metrics and this document; no token."),
    ),
    components(
        schemas(ErrorBody),
        responses(
            InvalidRequest,
            ContentTooLarge,
            Unauthorized,
            Forbidden,
            Timeout,
            Internal,
            StorageRejected,
            Unavailable,
            RateLimited
        )
    ),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

/// Adds the [`BEARER`] scheme: `Authorization: Bearer <JWT or API key>` (`kiln token` mints a
/// JWT, `kiln keys create` makes a key).
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT or kiln API key".into());
        http.description = Some(
            "A JWT (`sub` is the owner; HS256 with `auth.jwt_secret`, or EdDSA/RS256 with the \
             configured public keys) or an API key `kiln_{prefix}_{secret}` (`kiln keys \
             create`, `POST /v1/admin/keys`). Each route needs a scope: `upload` (create, \
             complete, delete and restore uploads), `read` (get and list them, download originals, \
             manage share links) or `admin` (`/v1/admin/…`). A JWT \
             carries `upload` and `read`, and `admin` too when its `scope` claim has `admin`; \
             an API key carries the scopes it was created with."
                .into(),
        );
        components.add_security_scheme(BEARER, SecurityScheme::Http(http));
    }
}

/// `invalid_request`: a malformed body, path or query parameter, or a value out of range
/// (`invalid_filename` for a `filename` that breaks its rule).
#[derive(ToResponse)]
pub struct InvalidRequest(pub ErrorBody);

/// `invalid_request` with 413 (RFC 9110 Content Too Large): the request body is over the
/// server's body limit (`api.max_body_bytes`).
#[derive(ToResponse)]
pub struct ContentTooLarge(pub ErrorBody);

/// `unauthorized`: no, malformed, bad or expired bearer token, or an unknown, revoked or
/// expired API key.
#[derive(ToResponse)]
pub struct Unauthorized(pub ErrorBody);

/// `forbidden`: the credential lacks the scope the route needs (the message names it).
#[derive(ToResponse)]
pub struct Forbidden(pub ErrorBody);

/// The request took over 30 s and was cut off (the timeout layer answers with an empty body).
#[derive(ToResponse)]
pub struct Timeout;

/// `internal`: a bug or an unexpected state (a corrupt row, a rejected statement, a signing
/// failure); the cause is logged, not sent.
#[derive(ToResponse)]
pub struct Internal(pub ErrorBody);

/// `storage_rejected`: object storage refused the API's own request (credentials,
/// permissions); an operator has to fix it.
#[derive(ToResponse)]
pub struct StorageRejected(pub ErrorBody);

/// `database_unavailable`, `queue_unavailable` or `storage_unavailable`: a dependency is down;
/// retry later.
#[derive(ToResponse)]
pub struct Unavailable(pub ErrorBody);

/// `rate_limited`: too many requests; `Retry-After` (seconds), `RateLimit-Policy` and
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers-10) say when to try again.
#[derive(ToResponse)]
#[response(headers(
    ("Retry-After" = u64, description = "Seconds to wait before the next request"),
    ("RateLimit-Policy" = String, description = "The policy: `\"name\";q=requests;w=seconds`"),
    ("RateLimit" = String, description = "What is left: `\"name\";r=0;t=seconds`"),
))]
pub struct RateLimited(pub ErrorBody);

/// Fills `settings`' limits into `doc` (built from code, which cannot know them): the
/// `CreateUpload` schema's `content_type` enum (`api.allowed_content_types`) and `byte_size`
/// maximum (`api.max_upload_bytes`) ([`CreateUpload::schema_for`]), and the `ReplayRequest`
/// schema's `ids` `maxItems` (`api.max_replay_ids`, [`ReplayRequest::schema_for`]). It also
/// lists 429 ([`RateLimited`]) on every `/v1/…` operation: a client IP over the failed
/// authentication limit gets it on any of them (`crate::rate_limit::limit_auth_failures`).
pub fn apply_settings(
    doc: &mut utoipa::openapi::OpenApi,
    api: &ApiSettings,
    shares: &ShareSettings,
) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            op.responses
                .responses
                .entry("429".into())
                .or_insert_with(|| Ref::from_response_name("RateLimited").into());
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.insert(
        CreateUpload::name().into_owned(),
        CreateUpload::schema_for(api),
    );
    components.schemas.insert(
        ReplayRequest::name().into_owned(),
        ReplayRequest::schema_for(api.max_replay_ids),
    );
    components.schemas.insert(
        CreateShare::name().into_owned(),
        CreateShare::schema_for(shares),
    );
}

/// The serialized document, shared by every request (the layer [`super::router`] adds).
#[derive(Clone)]
pub struct Document(pub Bytes);

/// Serves the OpenAPI document.
///
/// The OpenAPI 3.1 document of this API, generated from the handlers' declarations.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object),
        (status = 408, response = Timeout),
    )
)]
pub async fn openapi_json(Extension(doc): Extension<Document>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], doc.0)
}
