//! The embedded S3 endpoint of standalone Kiln (`kiln serve`, `kiln transfer`, and the tests'
//! standalone backend): s3s 0.14 over s3s-fs 0.14 (one folder per bucket
//! under the data directory's `objects/`), served over HTTP/1.1 on a local port with hyper-util.
//!
//! s3s checks AWS Signature Version 4 on every request: the `Authorization` header, presigned
//! query strings (`X-Amz-Expires` included) and browser POST uploads with a POST policy
//! (signature, `expiration`, `eq`/`starts-with` and `content-length-range` conditions). So
//! clients upload straight to it with the same presigned PUT URLs and POST policies the fleet
//! hands out for Garage or AWS, and the worker reads and writes it with the same aws-sdk-s3
//! code. What s3s-fs does not implement (bucket lifecycle rules) answers 501 NotImplemented;
//! the sweeper deletes expired temporary objects itself.
//!
//! GetObject's `response-content-type`, `response-content-disposition` (and the other
//! `response-*` overrides S3 defines) are applied here to a successful GET or HEAD response:
//! s3s parses them but s3s-fs ignores them, while the API's download redirects rely on them.
//!
//! POST uploads reach s3s re-cut into frames of at most 16 KiB ([`Rechunked`]): s3s 0.14.1's
//! multipart parser keeps a possible partial boundary (`\r…`) from the end of one frame and
//! appends the whole next frame to it, refusing once that passes 64 KiB
//! (`BoundaryBufferTooLarge`, answered 400). hyper hands over frames of up to 408 KiB, so a file
//! with a `\r` byte at a frame edge failed at random.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::auth::SimpleAuth;
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long in-flight S3 requests may take to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(10);

/// A bound, not yet serving, embedded S3 endpoint.
pub struct EmbeddedS3 {
    listener: TcpListener,
    service: S3Service,
}

impl EmbeddedS3 {
    /// Binds `listen` and prepares the service over `root` (which must exist), accepting only
    /// requests signed with `access_key_id`/`secret_access_key`. POST uploads are held in memory
    /// by s3s, up to `max_post_bytes`.
    ///
    /// # Errors
    /// When the address cannot be bound or `root` cannot be opened.
    pub async fn bind(
        listen: SocketAddr,
        root: &Path,
        access_key_id: &str,
        secret_access_key: &str,
        max_post_bytes: u64,
    ) -> anyhow::Result<Self> {
        let fs = s3s_fs::FileSystem::new(root)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("while opening {}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key_id, secret_access_key));
        let mut config = S3Config::default();
        config.post_object_max_file_size = max_post_bytes;
        builder.set_config(Arc::new(StaticConfigProvider::new(Arc::new(config))));
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("while binding the embedded S3 endpoint on {listen}"))?;
        Ok(Self {
            listener,
            service: builder.build(),
        })
    }

    /// The bound address (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `stop` turns `true`, then lets in-flight requests finish (up to 10 s).
    pub async fn run_until_stopped(self, mut stop: watch::Receiver<bool>) {
        let http = ConnBuilder::new(TokioExecutor::new());
        let graceful = GracefulShutdown::new();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        tokio::pin!(stopped);
        loop {
            let socket = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        tracing::warn!(error = %e, "embedded S3: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut stopped => break,
            };
            let s3 = self.service.clone();
            let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                let s3 = s3.clone();
                let overrides = response_overrides(&req);
                async move {
                    let mut resp = s3.call(into_s3_request(req)).await?;
                    if resp.status().is_success() {
                        for (name, value) in &overrides {
                            resp.headers_mut().insert(name.clone(), value.clone());
                        }
                    }
                    Ok::<_, s3s::HttpError>(resp)
                }
            });
            let conn = http.serve_connection(TokioIo::new(socket), service);
            let conn = graceful.watch(conn.into_owned());
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "embedded S3: connection ended with an error");
                }
            });
        }
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(DRAIN) => tracing::warn!("embedded S3: requests still running at shutdown"),
        }
    }
}

/// The `response-*` query parameters of a GET or HEAD (AWS S3 GetObject: content type,
/// disposition, language, encoding, cache control, expires) as the response headers they set.
fn response_overrides(req: &http::Request<Incoming>) -> http::HeaderMap {
    use http::header;
    let mut out = http::HeaderMap::new();
    if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        return out;
    }
    let Some(query) = req.uri().query() else {
        return out;
    };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let name = match k.as_ref() {
            "response-content-type" => header::CONTENT_TYPE,
            "response-content-disposition" => header::CONTENT_DISPOSITION,
            "response-content-language" => header::CONTENT_LANGUAGE,
            "response-content-encoding" => header::CONTENT_ENCODING,
            "response-cache-control" => header::CACHE_CONTROL,
            "response-expires" => header::EXPIRES,
            _ => continue,
        };
        if let Ok(value) = http::HeaderValue::from_str(&v) {
            out.insert(name, value);
        }
    }
    out
}

/// The request s3s sees: multipart (POST upload) bodies re-cut by [`Rechunked`], any other body
/// as hyper delivered it.
fn into_s3_request(req: http::Request<Incoming>) -> s3s::HttpRequest {
    let multipart = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("multipart/form-data"));
    if multipart {
        req.map(|body| s3s::Body::http_body_unsync(Rechunked::new(body)))
    } else {
        req.map(s3s::Body::from)
    }
}

/// The largest data frame [`Rechunked`] hands on, in bytes (16 KiB: with the boundary prefix
/// s3s may carry over, well under its 64 KiB boundary buffer).
pub const MAX_FRAME: usize = 16 * 1024;

/// An HTTP body whose data frames are at most [`MAX_FRAME`] bytes: larger frames of `B` are
/// split, in order, without copying; trailers pass through. See the module docs for why.
pub struct Rechunked<B> {
    inner: B,
    pending: Bytes,
}

impl<B> Rechunked<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            pending: Bytes::new(),
        }
    }
}

impl<B> Body for Rechunked<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            let n = this.pending.len().min(MAX_FRAME);
            return Poll::Ready(Some(Ok(Frame::data(this.pending.split_to(n)))));
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() > MAX_FRAME {
                        this.pending = data.split_off(MAX_FRAME);
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(trailers) => Poll::Ready(Some(Ok(trailers))),
            },
            other => Poll::Ready(other),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let pending = self.pending.len() as u64;
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(pending));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(pending));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, Full};

    #[tokio::test]
    async fn large_frames_are_split_in_order_and_small_ones_pass() {
        let data: Vec<u8> = (0..(3 * MAX_FRAME + 7)).map(|i| (i % 251) as u8).collect();
        let mut body = Rechunked::new(Full::new(Bytes::from(data.clone())));
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        let mut seen = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(chunk.len() <= MAX_FRAME, "frame of {} bytes", chunk.len());
            seen.extend_from_slice(&chunk);
            frames += 1;
        }
        assert_eq!(frames, 4);
        assert_eq!(seen, data);
        assert!(body.is_end_stream());

        let small = Rechunked::new(Full::new(Bytes::from_static(b"abc")));
        assert_eq!(small.collect().await.unwrap().to_bytes(), "abc");
    }
}
