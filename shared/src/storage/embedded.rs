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

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
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
            let conn = http.serve_connection(TokioIo::new(socket), self.service.clone());
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
