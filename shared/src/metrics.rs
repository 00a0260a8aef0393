//! Prometheus metrics (prometheus crate, text exposition format 0.0.4). Names follow
//! docs/design.md "Observability" and Prometheus naming conventions: a `kiln_` prefix, base units,
//! `_total` on counters, `_seconds` on durations.
//!
//! Each process builds one [`Metrics`] with its own registry (no global state, so tests can run
//! several API and worker instances in one process) and serves it on `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric Kiln exports. Not every process uses every metric: the API records HTTP
/// metrics and the gauges read at scrape time, workers record jobs, stages and sweeps.
pub struct Metrics {
    registry: Registry,
    /// `kiln_http_requests_total{route,method,status}`.
    pub http_requests: IntCounterVec,
    /// `kiln_http_request_duration_seconds{route,method}`.
    pub http_duration: HistogramVec,
    /// `kiln_jobs_total{queue,outcome}`: outcome is `succeeded`, `retried`, `failed` (the
    /// upload failed and the job went to the dead set) or `skipped` (a duplicate delivery).
    pub jobs: IntCounterVec,
    /// `kiln_upload_failures_total{error_code}`: uploads that ended `failed`, by stable error
    /// code (`corrupt_image`, `image_too_large`, `retries_exhausted`, …).
    pub upload_failures: IntCounterVec,
    /// `kiln_job_duration_seconds{queue}`: one ProcessUpload attempt, claim to ack.
    pub job_duration: HistogramVec,
    /// `kiln_job_stage_duration_seconds{stage}`: fetch, decode, render, encode, store,
    /// promote, commit.
    pub stage_duration: HistogramVec,
    /// `kiln_upload_ready_latency_seconds`: complete → ready.
    pub ready_latency: Histogram,
    /// `kiln_processed_bytes_total`: bytes of originals processed.
    pub processed_bytes: IntCounter,
    /// `kiln_duplicates_total`: uploads committed as a duplicate of an owner's earlier upload
    /// with the same SHA-256, without being decoded.
    pub duplicates: IntCounter,
    /// `kiln_processed_pixels_total`: pixels of originals decoded.
    pub processed_pixels: IntCounter,
    /// `kiln_sweeper_actions_total{action}`: expired, requeued_uploaded, requeued_processing,
    /// temps_deleted.
    pub sweeper_actions: IntCounterVec,
    /// `kiln_sweeper_runs_total{result}`: ok or error.
    pub sweeper_runs: IntCounterVec,
    /// `kiln_sweeper_last_success_timestamp_seconds`: Unix time of the last successful sweep.
    pub sweeper_last_success: IntGauge,
    /// `kiln_queue_jobs{queue,state}`: scheduled, active, inflight, dead (read from Redis).
    pub queue_jobs: IntGaugeVec,
    /// `kiln_uploads{state}` (read from Postgres).
    pub uploads: IntGaugeVec,
    /// `kiln_uploads_held`: completed uploads held in the upload store for their owner's
    /// admission window (read from the store).
    pub uploads_held: IntGauge,
    /// `kiln_quota_refusals_total{limit[,owner]}`: authorizations refused `quota_exceeded`, by
    /// the limit (`bytes`, `uploads`, `pending`).
    pub quota_refusals: IntCounterVec,
    /// `kiln_rate_limited_total{policy[,owner]}`: requests answered 429, by policy
    /// (`authorize`, `complete`, `auth_failures`; the last never has an owner).
    pub rate_limited: IntCounterVec,
    /// `kiln_owner_queue_wait_seconds[{owner}]`: complete (or replay) → claim of a
    /// ProcessUpload job, time held for the owner's window included.
    pub owner_queue_wait: HistogramVec,
    /// Whether the per-owner series carry an `owner` label (`scheduling.owner_metrics`).
    owner_labels: bool,
}

/// How one job attempt ended: the `outcome` label of `kiln_jobs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobOutcome {
    /// The work was done (upload ready, derivatives re-rendered).
    Succeeded,
    /// A transient failure; a delayed retry task was queued.
    Retried,
    /// Permanent, or out of attempts: the task went to the dead set.
    Failed,
    /// Nothing to do (a duplicate or late delivery); acked without work.
    Skipped,
    /// Kiln could not record the outcome (Postgres or Redis down); apalis and the sweeper
    /// retry.
    Error,
}

impl JobOutcome {
    /// Every outcome, in label order.
    pub const ALL: [JobOutcome; 5] = [
        Self::Succeeded,
        Self::Retried,
        Self::Failed,
        Self::Skipped,
        Self::Error,
    ];

    /// The label value, e.g. `succeeded`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retried => "retried",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Error => "error",
        }
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

impl Metrics {
    /// Records one finished job attempt on `queue`: `kiln_jobs_total{queue,outcome}` + 1 and
    /// `kiln_job_duration_seconds{queue}` observes `elapsed` (seconds).
    pub fn record_job(&self, queue: &str, outcome: JobOutcome, elapsed: std::time::Duration) {
        self.jobs
            .with_label_values(&[queue, outcome.as_str()])
            .inc();
        self.job_duration
            .with_label_values(&[queue])
            .observe(elapsed.as_secs_f64());
    }

    /// Creates the worker's labelled series at 0 for `queue`: each job outcome, each error
    /// code, each stage, each sweeper action and result. A counter that first appears at 1
    /// hides that increase from `rate()` and `increase()`, and a missing series would make
    /// dashboard queries and alerts see nothing instead of zero.
    pub fn init_worker_series(&self, queue: &str) {
        for outcome in JobOutcome::ALL {
            self.jobs.with_label_values(&[queue, outcome.as_str()]);
        }
        for code in crate::domain::ErrorCode::PROCESSING {
            self.upload_failures.with_label_values(&[code.as_str()]);
        }
        for stage in [
            "fetch", "decode", "render", "encode", "store", "promote", "commit",
        ] {
            self.stage_duration.with_label_values(&[stage]);
        }
        self.job_duration.with_label_values(&[queue]);
        for action in [
            "expired",
            "requeued_uploaded",
            "requeued_processing",
            "temps_deleted",
            "purged",
        ] {
            self.sweeper_actions.with_label_values(&[action]);
        }
        for result in ["ok", "error"] {
            self.sweeper_runs.with_label_values(&[result]);
        }
    }

    /// Registers every metric in a fresh registry, plus `kiln_build_info{version}` = 1.
    ///
    /// # Panics
    /// Never in practice: the names are static and valid, and each is registered once.
    pub fn new() -> Self {
        Self::with_owner_labels(false)
    }

    /// [`Metrics::new`], with an `owner` label on the per-owner series when `owner_labels`
    /// (`scheduling.owner_metrics`; one series per owner, so off by default).
    ///
    /// # Panics
    /// Never in practice, as [`Metrics::new`].
    pub fn with_owner_labels(owner_labels: bool) -> Self {
        let registry = Registry::new();
        let with_owner = |labels: &[&'static str]| -> Vec<&'static str> {
            let mut v = labels.to_vec();
            if owner_labels {
                v.push("owner");
            }
            v
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let build = gauge_vec(
            "kiln_build_info",
            "Build information; always 1.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let sweeper_last_success = IntGauge::new(
            "kiln_sweeper_last_success_timestamp_seconds",
            "Unix time of the last successful sweep.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(sweeper_last_success.clone()))
            .expect("registered once");
        let ready_latency = Histogram::with_opts(
            HistogramOpts::new(
                "kiln_upload_ready_latency_seconds",
                "Time from complete to ready.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        registry
            .register(Box::new(ready_latency.clone()))
            .expect("registered once");
        let plain_counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let plain_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let processed_bytes = plain_counter(
            "kiln_processed_bytes_total",
            "Bytes of originals processed.",
        );
        let duplicates = plain_counter(
            "kiln_duplicates_total",
            "Uploads committed as a duplicate of the owner's earlier upload with the same SHA-256, without decoding.",
        );
        let processed_pixels = plain_counter(
            "kiln_processed_pixels_total",
            "Pixels of originals decoded.",
        );
        Self {
            http_requests: counter(
                "kiln_http_requests_total",
                "HTTP requests.",
                &["route", "method", "status"],
            ),
            http_duration: histogram(
                "kiln_http_request_duration_seconds",
                "HTTP request latency.",
                &["route", "method"],
            ),
            jobs: counter(
                "kiln_jobs_total",
                "Job attempts by outcome.",
                &["queue", "outcome"],
            ),
            upload_failures: counter(
                "kiln_upload_failures_total",
                "Uploads that ended failed, by error code.",
                &["error_code"],
            ),
            job_duration: histogram(
                "kiln_job_duration_seconds",
                "Duration of one job attempt.",
                &["queue"],
            ),
            stage_duration: histogram(
                "kiln_job_stage_duration_seconds",
                "Duration of one processing stage.",
                &["stage"],
            ),
            ready_latency,
            processed_bytes,
            duplicates,
            processed_pixels,
            sweeper_actions: counter(
                "kiln_sweeper_actions_total",
                "Sweeper repairs by action.",
                &["action"],
            ),
            sweeper_runs: counter(
                "kiln_sweeper_runs_total",
                "Sweeper runs by result.",
                &["result"],
            ),
            sweeper_last_success,
            queue_jobs: gauge_vec(
                "kiln_queue_jobs",
                "Jobs in the queue by state (from Redis).",
                &["queue", "state"],
            ),
            uploads: gauge_vec(
                "kiln_uploads",
                "Uploads by state (from Postgres).",
                &["state"],
            ),
            uploads_held: plain_gauge(
                "kiln_uploads_held",
                "Completed uploads held for their owner's admission window.",
            ),
            quota_refusals: counter(
                "kiln_quota_refusals_total",
                "Authorizations refused quota_exceeded, by limit.",
                &with_owner(&["limit"]),
            ),
            rate_limited: counter(
                "kiln_rate_limited_total",
                "Requests answered 429 rate_limited, by policy.",
                &with_owner(&["policy"]),
            ),
            owner_queue_wait: histogram(
                "kiln_owner_queue_wait_seconds",
                "Time from complete (or replay) to a worker's claim, held time included.",
                &with_owner(&[]),
            ),
            owner_labels,
            registry,
        }
    }

    /// `label` followed by `owner` when owner labels are on.
    fn owner_values<'a>(&self, label: Option<&'a str>, owner: &'a str) -> Vec<&'a str> {
        let mut v: Vec<&str> = label.into_iter().collect();
        if self.owner_labels {
            v.push(owner);
        }
        v
    }

    /// `kiln_quota_refusals_total{limit}` + 1 (`limit`: `bytes`, `uploads` or `pending`).
    pub fn record_quota_refusal(&self, limit: &str, owner: &str) {
        self.quota_refusals
            .with_label_values(&self.owner_values(Some(limit), owner))
            .inc();
    }

    /// `kiln_rate_limited_total{policy}` + 1; `owner` is `None` for `auth_failures` (the
    /// label is then empty).
    pub fn record_rate_limited(&self, policy: &str, owner: Option<&str>) {
        self.rate_limited
            .with_label_values(&self.owner_values(Some(policy), owner.unwrap_or("")))
            .inc();
    }

    /// `kiln_owner_queue_wait_seconds` observes `secs`.
    pub fn observe_queue_wait(&self, owner: &str, secs: f64) {
        self.owner_queue_wait
            .with_label_values(&self.owner_values(None, owner))
            .observe(secs);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Content-Type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
