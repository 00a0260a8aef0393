//! Testable startup: [`Application::build`] binds the listeners (port 0 works) and wires the
//! state; [`Application::run_until_stopped`] serves until the shutdown future resolves.
//!
//! Every request passes the same middleware ([`with_middleware`]): a sanitized or fresh
//! `x-request-id`, a tracing span carrying it, a 30 s timeout, and a body limit
//! (`api.max_body_bytes`, 413 with Kiln's error body).

use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use kiln_shared::Settings;
use kiln_shared::lifecycle::Lifecycle;
use kiln_shared::storage::Storage;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::error::ApiError;
use crate::extract::BodyLimit;
use crate::routes;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied `x-request-id` kept, in bytes; a longer one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 64;

/// The line prefix `kiln api` prints on stdout, once, as soon as its listener is bound:
/// `KILN_API_ADDR=127.0.0.1:41234` (then a newline), the rest being
/// [`Application::local_addr`]. Logs go to stderr, so stdout carries only these lines; whoever
/// starts `kiln api` with `api.listen` on port 0 (tests, `kiln-bench fleet`) reads its address
/// from it.
pub const LISTEN_ADDR_LINE: &str = "KILN_API_ADDR=";

/// The line prefix `kiln api` prints on stdout after [`LISTEN_ADDR_LINE`] when
/// `api.admin_listen` is set: `KILN_API_ADMIN_ADDR=127.0.0.1:41235`, the rest being
/// [`Application::admin_addr`].
pub const ADMIN_ADDR_LINE: &str = "KILN_API_ADMIN_ADDR=";

/// A bound, not yet serving, API server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// `api.admin_listen`'s listener and its router (`/metrics`, `/readyz`, `/healthz`).
    admin: Option<(TcpListener, Router)>,
    state: AppState,
}

impl Application {
    /// Connects to the upload store (lazily), the queue and S3 (no request yet) and binds
    /// `api.listen` and, when set, `api.admin_listen`.
    ///
    /// # Errors
    /// When no usable token key is configured ([`kiln_shared::auth::Verifier::from_settings`]:
    /// a missing, short or published `auth.jwt_secret`, or an unreadable public key), when an
    /// address cannot be bound, or when the Redis or Postgres URL is malformed.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let verifier = Arc::new(kiln_shared::auth::Verifier::from_settings(&settings.auth)?);
        let settings = Arc::new(settings);
        let pool = kiln_shared::db::connect(&settings.database)?;
        let storage = Storage::new(&settings.storage);
        let lifecycle = Lifecycle::connect(settings.clone(), pool.clone(), storage.clone())
            .await
            .context("while connecting to the queue")?;
        let listener = TcpListener::bind(settings.api.listen)
            .await
            .with_context(|| format!("while binding {}", settings.api.listen))?;
        let admin_listener = match settings.api.admin_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("while binding api.admin_listen {addr}"))?,
            ),
            None => None,
        };
        let metrics = Arc::new(kiln_shared::metrics::Metrics::with_owner_labels(
            settings.scheduling.owner_metrics,
        ));
        let limits = Arc::new(
            crate::rate_limit::RateLimits::from_settings(&settings.rate_limits)
                .with_metrics(metrics.clone()),
        );
        limits.spawn_housekeeping();
        let state = AppState {
            settings,
            verifier,
            lifecycle,
            pool,
            storage,
            limits,
            metrics,
            gauges_refreshed: Arc::default(),
            readiness: Arc::default(),
        };
        Ok(Self {
            listener,
            router: router(state.clone()),
            admin: admin_listener.map(|l| (l, admin_router(state.clone()))),
            state,
        })
    }

    /// The bound port (useful with `listen = 127.0.0.1:0`).
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound `api.admin_listen` address, when it is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
            .as_ref()
            .map(|(l, _)| l.local_addr().expect("a bound listener has an address"))
    }

    /// The handler state (for tests that inspect the queue or database directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves (both listeners, when `api.admin_listen` is set) until `shutdown` resolves, then
    /// drains in-flight requests.
    ///
    /// # Errors
    /// When a server fails to accept connections.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), admin = ?self.admin_addr(), "api listening");
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        // Resolves on shutdown, or when the task above is gone without sending.
        let until = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        // Client IPs for the per-IP limit on failed authentications.
        let public = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(until(stopped.clone()))
        .into_future();
        match self.admin {
            Some((listener, router)) => {
                let admin = axum::serve(listener, router)
                    .with_graceful_shutdown(until(stopped))
                    .into_future();
                tokio::try_join!(public, admin)?;
            }
            None => public.await?,
        }
        Ok(())
    }
}

/// The public listener's router with middleware ([`with_middleware`]): every route, or without
/// `/metrics`, `/readyz` and `/healthz` when `api.admin_listen` is set ([`admin_router`]
/// serves them there). It serves its own OpenAPI document at `/openapi.json`, listing exactly
/// its routes, with `state`'s limits filled in. Its routes count failed authentications per
/// client IP ([`crate::rate_limit::limit_auth_failures`]).
///
/// # Panics
/// If the OpenAPI document cannot be serialized (it is plain data; this does not happen).
pub fn router(state: AppState) -> Router {
    let routes = if state.settings.api.admin_listen.is_some() {
        routes::public()
    } else {
        routes::router()
    };
    let (router, mut openapi) = routes.split_for_parts();
    routes::openapi::apply_settings(&mut openapi, &state.settings.api, &state.settings.shares);
    let document = serde_json::to_vec(&openapi).expect("the OpenAPI document serializes");
    let limit_auth_failures = axum::middleware::from_fn_with_state(
        state.limits.clone(),
        crate::rate_limit::limit_auth_failures,
    );
    with_middleware(
        router
            .layer(Extension(routes::openapi::Document(document.into())))
            .layer(limit_auth_failures),
        state,
    )
}

/// The `api.admin_listen` listener's router: `/metrics`, `/readyz` and `/healthz` only, with
/// the same middleware as [`router`].
pub fn admin_router(state: AppState) -> Router {
    let (router, _) = routes::operations().split_for_parts();
    with_middleware(router, state)
}

/// Adds the fallbacks and middleware every listener has: unmatched paths get 404
/// `route_not_found` and unsupported methods 405 `method_not_allowed`; HTTP metrics per route;
/// a body limit of `api.max_body_bytes` (a larger `Content-Length` is refused before the body
/// is read, a longer body as soon as it passes the limit: 413 `invalid_request`); a 30 s
/// request timeout (408); tracing spans with the request id; and request ids: a client's
/// `x-request-id` is kept only when [`acceptable_request_id`] (otherwise a fresh UUID v4 takes
/// its place), and echoed on the response.
pub fn with_middleware(router: Router<AppState>, state: AppState) -> Router {
    let max_body = state.settings.api.max_body_bytes;
    router
        .fallback(routes::route_not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::metrics::track,
        ))
        .with_state(state)
        // Axum's extractors read at most this much; `Json` names it in its 413.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(Extension(BodyLimit(max_body)))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(axum::middleware::map_response_with_state(
            max_body,
            body_too_large_as_error_body,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("http", method = %req.method(), uri = %req.uri(), request_id)
            })
            // One INFO line per request (status, latency), inside the span with its id.
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(axum::middleware::map_request(drop_unacceptable_request_id))
}

/// Whether a client's `x-request-id` value is kept: 1 to [`MAX_REQUEST_ID_LEN`] bytes of
/// `[A-Za-z0-9._:-]`, which is safe to log, to put in a header and to search for.
pub fn acceptable_request_id(value: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Removes `x-request-id` unless there is exactly one and it is [`acceptable_request_id`], so
/// that `SetRequestIdLayer` generates a fresh one.
async fn drop_unacceptable_request_id(mut req: Request) -> Request {
    let mut values = req.headers().get_all(&REQUEST_ID).iter();
    let keep = match (values.next(), values.next()) {
        (None, _) => true,
        (Some(v), None) => acceptable_request_id(v.as_bytes()),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        req.headers_mut().remove(&REQUEST_ID);
    }
    req
}

/// Gives `RequestBodyLimitLayer`'s own 413 (plain text, sent when `Content-Length` is over the
/// limit) Kiln's error body, as [`ApiError::BodyTooLarge`].
async fn body_too_large_as_error_body(State(max): State<usize>, response: Response) -> Response {
    let plain_text = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/plain"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && plain_text {
        ApiError::BodyTooLarge { max }.into_response()
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::acceptable_request_id;

    #[test]
    fn request_ids_are_short_and_of_safe_characters() {
        for ok in ["req-kiln-test-1", "a", "0190f3c2.A_b:c-d", &"x".repeat(64)] {
            assert!(acceptable_request_id(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "a b",
            "a\tb",
            "a\"b",
            "a/b",
            "a=b",
            "é",
            "a\u{202E}b",
        ] {
            assert!(!acceptable_request_id(bad.as_bytes()), "{bad:?}");
        }
    }
}
