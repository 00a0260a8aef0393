//! A small TCP fault proxy in front of Garage: per connection it can delay, answer 503, or
//! reset, each with a configured probability. S3 clients that point at it see real network
//! faults; SigV4 still verifies because the proxy passes bytes through unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Live-tunable fault rates and counters.
#[derive(Default)]
pub struct Faults {
    /// Delay before forwarding a connection, in milliseconds.
    pub delay_ms: AtomicU64,
    /// Per-mille of connections answered `503 Slow Down`.
    pub p503_permille: AtomicU32,
    /// Per-mille of connections reset (RST) after the request arrives.
    pub reset_permille: AtomicU32,
    /// When non-zero, each forwarded connection is cut after a random 1..=this many
    /// milliseconds (mid-request if one is in flight), so pooled connections keep churning.
    pub max_life_ms: AtomicU64,
    /// Connections seen.
    pub connections: AtomicU64,
    /// 503s injected.
    pub injected_503: AtomicU64,
    /// Resets injected.
    pub injected_resets: AtomicU64,
}

/// A running proxy.
pub struct FaultProxy {
    /// `http://127.0.0.1:{port}`: use it as the S3 endpoint.
    pub endpoint: String,
    /// Knobs and counters.
    pub faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const SLOW_DOWN: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
Content-Length: 107\r\nConnection: close\r\n\r\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<Error><Code>SlowDown</Code><Message>fault proxy</Message></Error>\n";

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Self {
        let upstream: SocketAddr = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let faults = Arc::new(Faults::default());
        let f = faults.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(handle(client, upstream, f.clone()));
            }
        });
        Self {
            endpoint,
            faults,
            task,
        }
    }
}

async fn handle(mut client: TcpStream, upstream: SocketAddr, f: Arc<Faults>) {
    f.connections.fetch_add(1, Ordering::Relaxed);
    let mut first = vec![0u8; 16 * 1024];
    let n = match client.read(&mut first).await {
        Ok(0) | Err(_) => return,
        Ok(n) => n,
    };
    let roll = fastrand::u32(0..1000);
    let p503 = f.p503_permille.load(Ordering::Relaxed);
    let preset = f.reset_permille.load(Ordering::Relaxed);
    if roll < p503 {
        f.injected_503.fetch_add(1, Ordering::Relaxed);
        let _ = client.write_all(SLOW_DOWN).await;
        let _ = client.shutdown().await;
        return;
    }
    if roll < p503 + preset {
        f.injected_resets.fetch_add(1, Ordering::Relaxed);
        // A zero linger makes close send RST at once; it does not block (the deprecation is
        // about non-zero lingers).
        #[allow(deprecated)]
        let _ = client.set_linger(Some(Duration::ZERO));
        drop(client); // RST
        return;
    }
    let delay = f.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if server.write_all(&first[..n]).await.is_err() {
        return;
    }
    let life = f.max_life_ms.load(Ordering::Relaxed);
    if life == 0 {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        return;
    }
    let cut = Duration::from_millis(fastrand::u64(1..=life));
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = tokio::time::sleep(cut) => {
            f.injected_resets.fetch_add(1, Ordering::Relaxed);
            #[allow(deprecated)]
            let _ = client.set_linger(Some(Duration::ZERO));
        }
    }
}
