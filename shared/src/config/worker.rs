//! `[worker]` and `[worker.jail]`: concurrency, retries, decode limits, the memory budget, the
//! per-job timeout, the decoder jail and the renditions.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use crate::domain::rendition::Rendition;

/// Worker settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    /// Address of the worker's `/metrics` (`KILN__WORKER__METRICS_LISTEN`); port 0 picks a
    /// free port.
    pub metrics_listen: SocketAddr,
    /// ProcessUpload jobs processed at once by one worker process.
    pub concurrency: usize,
    /// RenderRenditions jobs (re-renders queued by `kiln renditions regenerate`) processed at
    /// once by one worker process, besides `concurrency`.
    pub renditions_concurrency: usize,
    /// Attempts for transient failures, the first included.
    pub max_attempts: u32,
    /// Base delay of the retry backoff, in milliseconds: after attempt n the upload waits a
    /// uniformly random time in `c/2 ..= c`, `c = min(retry_max_delay_ms, retry_base_delay_ms ×
    /// 2^(n-1))` (see `kiln_shared::retry`).
    pub retry_base_delay_ms: u64,
    /// Cap of the retry backoff, in milliseconds.
    pub retry_max_delay_ms: u64,
    /// Time a stopping worker gives in-flight jobs, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Largest original the worker will fetch and decode, in bytes.
    pub max_encoded_bytes: u64,
    /// Largest decoded image, in pixels (width × height).
    pub max_pixels: u64,
    /// Largest width or height, in pixels.
    pub max_dimension: u32,
    /// Most frames an animated GIF or WebP may declare; the first frame is rendered.
    pub max_frames: u32,
    /// Most memory one image's decode and render may need, in bytes, estimated from the header
    /// before any pixel is decoded (decode buffer plus the copies the chosen path makes). An
    /// image over it that cannot be streamed fails `image_too_large`.
    pub memory_budget_bytes: u64,
    /// Wall-clock limit of one image's pipeline (sniff to encoded renditions), in seconds.
    /// Past it the decoder child is killed and the upload fails `decode_timeout`.
    pub job_timeout_secs: u64,
    /// The decoder jail.
    pub jail: JailSettings,
    /// The renditions rendered for every upload.
    pub renditions: Vec<Rendition>,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 9101)),
            concurrency: 2,
            renditions_concurrency: 1,
            max_attempts: 5,
            retry_base_delay_ms: 1_000,
            retry_max_delay_ms: 60_000,
            shutdown_timeout_secs: 20,
            max_encoded_bytes: 100 * 1024 * 1024,
            max_pixels: 100_000_000,
            max_dimension: 30_000,
            max_frames: 1_000,
            memory_budget_bytes: 256 * 1024 * 1024,
            job_timeout_secs: 30,
            jail: JailSettings::default(),
            renditions: Rendition::defaults(),
        }
    }
}

/// `[worker.jail]`: the pool of decoder children. Sniffing, decoding, colour conversion,
/// resizing, encoding and metadata extraction run in prespawned `kiln` child processes, one
/// image at a time each, with an empty environment, a seccomp filter (no sockets, no opening
/// files, no exec) and rlimits on address space and CPU time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JailSettings {
    /// Run the pipeline in jailed children. `false` runs it on a blocking thread of the worker
    /// itself (for debugging and for platforms without seccomp); the timeout then cannot
    /// stop a stuck decoder.
    pub enabled: bool,
    /// Children kept ready; 0 means one per job slot (`concurrency + renditions_concurrency`).
    pub pool_size: usize,
    /// `RLIMIT_AS` of each child, in bytes: the backstop behind `memory_budget_bytes`. A decode
    /// that passes it fails `image_too_large`.
    pub address_space_bytes: u64,
    /// Images one child processes before it is replaced (bounds fragmentation and leaks in C
    /// decoders).
    pub max_jobs_per_child: u32,
}

impl Default for JailSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            pool_size: 0,
            address_space_bytes: 1024 * 1024 * 1024,
            max_jobs_per_child: 500,
        }
    }
}
