//! Testable startup: [`Application::build`] binds the listener (port 0 works) and wires the
//! state; [`Application::run_until_stopped`] serves until the shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::http::{HeaderName, Request};
use axum::{Extension, Router};
use kiln_shared::Settings;
use kiln_shared::lifecycle::Lifecycle;
use kiln_shared::storage::Storage;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::routes;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The line prefix `kiln api` prints on stdout, once, as soon as its listener is bound:
/// `KILN_API_ADDR=127.0.0.1:41234` (then a newline), the rest being
/// [`Application::local_addr`]. Logs go to stderr, so this is the only line on stdout; whoever
/// starts `kiln api` with `api.listen` on port 0 (tests, `kiln-bench fleet`) reads its address
/// from it.
pub const LISTEN_ADDR_LINE: &str = "KILN_API_ADDR=";

/// A bound, not yet serving, API server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Connects to the upload store (lazily), the queue and S3 (no request yet) and binds
    /// `api.listen`.
    ///
    /// # Errors
    /// When the address cannot be bound, or the Redis or Postgres URL is malformed.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let settings = Arc::new(settings);
        let pool = kiln_shared::db::connect(&settings.database)?;
        let storage = Storage::new(&settings.storage);
        let lifecycle = Lifecycle::connect(settings.clone(), pool.clone(), storage.clone())
            .await
            .context("while connecting to the queue")?;
        let listener = TcpListener::bind(settings.api.listen)
            .await
            .with_context(|| format!("while binding {}", settings.api.listen))?;
        let state = AppState {
            settings,
            lifecycle,
            pool,
            storage,
            metrics: Arc::new(kiln_shared::metrics::Metrics::new()),
            gauges_refreshed: Arc::default(),
        };
        Ok(Self {
            listener,
            router: router(state.clone()),
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

    /// The handler state (for tests that inspect the queue or database directly).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    ///
    /// # Errors
    /// When the server fails to accept connections.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "api listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

/// The full router with middleware: request ids (accepted from `x-request-id` or generated,
/// echoed back), tracing spans carrying the request id, and a 30 s request timeout. It serves
/// its own OpenAPI document at `/openapi.json`, with `state`'s upload limits filled in;
/// unmatched paths get 404 `route_not_found` and unsupported methods 405 `method_not_allowed`.
///
/// # Panics
/// If the OpenAPI document cannot be serialized (it is plain data; this does not happen).
pub fn router(state: AppState) -> Router {
    let (router, mut openapi) = routes::router().split_for_parts();
    routes::openapi::apply_settings(&mut openapi, &state.settings.api);
    let document = serde_json::to_vec(&openapi).expect("the OpenAPI document serializes");
    router
        .fallback(routes::route_not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(Extension(routes::openapi::Document(document.into())))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::metrics::track,
        ))
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
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
}
