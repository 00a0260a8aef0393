//! `kiln bench fleet`: the whole upload path, end to end, with 1 and then 2 worker processes,
//! and the queue alone. Needs Postgres, Redis and the S3 server up (`scripts/bench-fleet`
//! starts them).
//!
//! **Fleet runs.** Each worker count in `--workers` gets a fresh queue
//! (`kiln-bench-fleet-{stamp}-w{n}`), one `kiln api` process and `n` `kiln worker` processes
//! (each with `worker.concurrency = --concurrency`, default 1, and its own metrics port), all
//! children of this process with this process' settings. Before the workers start, the bench
//! authorizes `--uploads` copies of one photo and sends them to S3 through presigned PUT URLs, so
//! the transfer is not timed. It warms each worker up with two uploads, then calls complete on
//! all the others at once and waits until Postgres shows every one `ready`.
//! - throughput = uploads ÷ (last `ready_at` − first `completed_at`), from the database;
//! - complete→ready latency = `ready_at` − `completed_at` per upload. Under that backlog it is
//!   mostly time spent queued, so the first run also measures it **unloaded**: after the
//!   backlog, `--latency-uploads` uploads are completed one at a time, each after the previous
//!   one is ready.
//! - CPU: the CPU time the workers, the API and everything else on the machine (Postgres, Redis,
//!   the S3 server, this process) used during the backlog, from `/proc`, to show what limits
//!   the ratio.
//!
//! **Queue alone.** `--noop-jobs` no-op jobs are pushed one at a time through apalis-redis (as
//! the API pushes), then run by an in-process apalis worker built like Kiln's (the worker's
//! Redis settings: poll interval, fetch batch = concurrency, heartbeat) whose handler does
//! nothing, once for each `--noop-concurrency`. It prints pushes/s and jobs/s processed.
//!
//! Every Redis key the runs made is deleted at the end; the upload rows and objects stay (their
//! owner is `bench-fleet`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apalis::prelude::*;
use apalis_redis::RedisStorage;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_shared::Settings;
use kiln_shared::domain::OwnerId;
use kiln_shared::queue;
use reqwest::Client;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::process::{Child, Command};
use uuid::Uuid;

use super::report::Machine;
use super::table;
use crate::cli::upload::{self, Original};

/// First line of the markdown block; `scripts/bench-fleet` replaces the block in
/// `docs/benchmarks.md` from this line to [`MARKDOWN_END`].
pub const MARKDOWN_BEGIN: &str = "<!-- kiln bench fleet: begin (generated, do not edit) -->";
/// Last line of the markdown block.
pub const MARKDOWN_END: &str = "<!-- kiln bench fleet: end -->";

/// Arguments of `kiln bench fleet`.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// The photo every upload sends (default: the 8 MP iPhone JPEG in the team kit).
    #[arg(
        long,
        default_value = "tests/fixtures/photos/mobile/iphone_hdr_YES.jpg"
    )]
    photo: PathBuf,
    /// Uploads in each backlog run (besides two warm-up uploads per worker).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    uploads: u32,
    /// Worker-process counts to run, comma-separated; the first is the baseline of the ratio.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    workers: Vec<u16>,
    /// Jobs each worker process runs at once (`worker.concurrency`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Uploads completed one at a time on the first run's idle workers, for the unloaded
    /// complete→ready latency; 0 skips it.
    #[arg(long, default_value_t = 20)]
    latency_uploads: u32,
    /// No-op jobs for the queue-only run; 0 skips it.
    #[arg(long, default_value_t = 2000)]
    noop_jobs: u32,
    /// Concurrency of the no-op worker, comma-separated: one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    noop_concurrency: Vec<u16>,
    /// First loopback port: the API listens on it, the workers' metrics on the ones after it.
    #[arg(long, default_value_t = 18480)]
    port: u16,
    /// Also print the results as markdown, between marker comments, for `docs/benchmarks.md`.
    #[arg(long)]
    markdown: bool,
}

/// Percentiles of a set of durations, in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, Default)]
struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return Self::default();
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Self {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: ms[ms.len() - 1],
        }
    }

    fn cells(&self) -> String {
        format!(
            "{:.0} / {:.0} / {:.0} / {:.0}",
            self.p50, self.p95, self.p99, self.max
        )
    }
}

/// CPU seconds used during a run, by whom.
#[derive(Debug, Clone, Copy, Default)]
struct CpuUse {
    workers: f64,
    api: f64,
    /// Every other process on the machine (Postgres, Redis, the S3 server, this bench).
    rest: f64,
    /// Seconds the machine's CPUs could have run in the interval (wall × CPUs).
    capacity: f64,
}

/// One fleet run's results.
#[derive(Debug, Clone)]
struct FleetRun {
    workers: u16,
    uploads: u32,
    /// First `completed_at` to last `ready_at`.
    span: Duration,
    latency: Percentiles,
    cpu: CpuUse,
    /// Unloaded latency (first run only).
    unloaded: Option<Percentiles>,
}

impl FleetRun {
    fn per_second(&self) -> f64 {
        f64::from(self.uploads) / self.span.as_secs_f64()
    }
}

/// One no-op queue run.
#[derive(Debug, Clone, Copy)]
struct NoopRun {
    jobs: u32,
    concurrency: u16,
    pushed_per_sec: f64,
    processed_per_sec: f64,
}

/// A no-op job: the payload is only there so jobs differ.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Noop {
    n: u32,
}

async fn noop(_job: Noop) -> Result<(), BoxDynError> {
    Ok(())
}

/// Runs the benchmark and prints the report (and markdown with `--markdown`) on stdout.
///
/// # Errors
/// A service is unreachable, a child process does not start or exits, an upload fails or is not
/// processed within 10 minutes.
pub async fn run(
    settings: &Settings,
    config: Option<&Path>,
    args: &FleetArgs,
) -> anyhow::Result<()> {
    if args.workers.is_empty() || args.workers.contains(&0) {
        bail!("--workers needs one or more counts > 0");
    }
    let machine = Machine::read("n/a".into());
    let bytes = Bytes::from(
        std::fs::read(&args.photo)
            .with_context(|| format!("while reading {}", args.photo.display()))?,
    );
    let pool = kiln_shared::db::connect(&settings.database)?;
    kiln_shared::db::migrate(&pool).await?;
    let stamp = format!(
        "{}-{}",
        Utc::now().format("%Y%m%d%H%M%S"),
        std::process::id()
    );
    let logs = std::env::temp_dir().join(format!("kiln-bench-fleet-{stamp}"));
    std::fs::create_dir_all(&logs)?;
    eprintln!("child logs in {}", logs.display());

    let mut runs = Vec::new();
    let mut queues = Vec::new();
    for (i, &workers) in args.workers.iter().enumerate() {
        let queue = format!("kiln-bench-fleet-{stamp}-w{workers}");
        queues.push(queue.clone());
        let fleet = Fleet {
            settings,
            config,
            args,
            pool: &pool,
            queue,
            logs: &logs,
            bytes: &bytes,
        };
        runs.push(fleet.run(workers, i == 0).await?);
    }
    let mut noops = Vec::new();
    if args.noop_jobs > 0 {
        for &concurrency in &args.noop_concurrency {
            let queue = format!("kiln-bench-noop-{stamp}-c{concurrency}");
            queues.push(queue.clone());
            noops.push(noop_run(settings, &queue, args.noop_jobs, concurrency.max(1)).await?);
        }
    }
    delete_queues(settings, &queues).await?;

    let report = Report {
        machine,
        photo: args.photo.clone(),
        photo_bytes: bytes.len(),
        concurrency: args.concurrency,
        poll_ms: settings.redis.poll_interval_ms,
        runs,
        noops,
    };
    print!("{}", report.text());
    if args.markdown {
        print!("{}", report.markdown());
    }
    Ok(())
}

/// What one fleet run needs.
struct Fleet<'a> {
    settings: &'a Settings,
    config: Option<&'a Path>,
    args: &'a FleetArgs,
    pool: &'a PgPool,
    queue: String,
    logs: &'a Path,
    bytes: &'a Bytes,
}

impl Fleet<'_> {
    fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.args.port)
    }

    /// A `kiln ROLE` child with this run's queue (a worker's metrics on `metrics_port`),
    /// logging JSON to `{logs}/{queue}-{name}.log`.
    fn spawn(&self, role: &str, name: &str, metrics_port: Option<u16>) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.logs.join(format!("{}-{name}.log", self.queue)))?;
        let mut cmd = Command::new(std::env::current_exe()?);
        if let Some(config) = self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.arg(role)
            .env("KILN__API__LISTEN", format!("127.0.0.1:{}", self.args.port))
            .env("KILN__REDIS__QUEUE", &self.queue)
            .env(
                "KILN__WORKER__CONCURRENCY",
                self.args.concurrency.to_string(),
            )
            .env("KILN__TELEMETRY__FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        if let Some(port) = metrics_port {
            cmd.env("KILN__WORKER__METRICS_LISTEN", format!("127.0.0.1:{port}"));
        }
        cmd.spawn()
            .with_context(|| format!("while starting kiln {role}"))
    }

    async fn run(&self, workers: u16, baseline: bool) -> anyhow::Result<FleetRun> {
        eprintln!(
            "fleet run: {workers} worker process(es), queue {}",
            self.queue
        );
        let client = Client::builder().timeout(Duration::from_secs(60)).build()?;
        let owner = OwnerId::parse("bench-fleet")?;
        let token = kiln_shared::auth::mint(
            &self.settings.auth.jwt_secret,
            &owner,
            false,
            Duration::from_secs(3600),
        )?;
        let mut api = self.spawn("api", "api", None)?;
        wait_http(&client, &format!("{}/readyz", self.api_url()), &mut api).await?;

        let warmups = u32::from(workers) * 2;
        let unloaded = if baseline {
            self.args.latency_uploads
        } else {
            0
        };
        let total = warmups + self.args.uploads + unloaded;
        let ids = self.send(&client, &token, total).await?;
        let (warm_ids, rest) = ids.split_at(warmups as usize);
        let (backlog_ids, unloaded_ids) = rest.split_at(self.args.uploads as usize);

        let mut children = Vec::new();
        for w in 0..workers {
            let port = self.args.port + 1 + w;
            let mut child = self.spawn("worker", &format!("worker{w}"), Some(port))?;
            wait_http(
                &client,
                &format!("http://127.0.0.1:{port}/metrics"),
                &mut child,
            )
            .await?;
            children.push(child);
        }
        self.complete_all(&client, &token, warm_ids).await?;
        self.wait_final(warm_ids).await?;

        let pids = |c: &[Child]| c.iter().filter_map(Child::id).collect::<Vec<_>>();
        let api_pid = pids(std::slice::from_ref(&api));
        let before = CpuSample::take(&pids(&children), &api_pid)?;
        self.complete_all(&client, &token, backlog_ids).await?;
        self.wait_final(backlog_ids).await?;
        let after = CpuSample::take(&pids(&children), &api_pid)?;
        let times = self.times(backlog_ids).await?;
        let first = times.iter().map(|t| t.0).min().context("no uploads")?;
        let last = times.iter().map(|t| t.1).max().context("no uploads")?;
        let latency = Percentiles::of(times.iter().map(|(c, r)| ms_between(*c, *r)).collect());

        let unloaded = if unloaded_ids.is_empty() {
            None
        } else {
            let mut ms = Vec::new();
            for id in unloaded_ids {
                self.complete_all(&client, &token, std::slice::from_ref(id))
                    .await?;
                self.wait_final(std::slice::from_ref(id)).await?;
                let t = self.times(std::slice::from_ref(id)).await?;
                ms.extend(t.iter().map(|(c, r)| ms_between(*c, *r)));
            }
            Some(Percentiles::of(ms))
        };

        for child in children.iter_mut().chain(std::iter::once(&mut api)) {
            terminate(child).await;
        }
        Ok(FleetRun {
            workers,
            uploads: self.args.uploads,
            span: (last - first).to_std().unwrap_or_default(),
            latency,
            cpu: before.until(&after),
            unloaded,
        })
    }

    /// Authorizes `n` uploads of the photo and sends each to S3 (presigned PUT), 8 at a time.
    async fn send(&self, client: &Client, token: &str, n: u32) -> anyhow::Result<Vec<Uuid>> {
        let bar = ProgressBar::new(u64::from(n)).with_style(
            ProgressStyle::with_template("sending to S3 {pos}/{len} [{bar:30}] {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let api = self.api_url();
        let filename = self
            .args
            .photo
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("photo.jpg")
            .to_owned();
        let original = Original {
            filename: &filename,
            content_type: kiln_shared::domain::content_type::for_path(&self.args.photo),
            bytes: self.bytes,
        };
        let ids: Vec<Uuid> = futures::stream::iter(0..n)
            .map(|_| async {
                let hidden = ProgressBar::hidden();
                let id =
                    upload::send_original(client, &api, token, "put", &original, &hidden).await?;
                bar.inc(1);
                Uuid::parse_str(&id).context("the API returned a malformed upload id")
            })
            .buffered(8)
            .try_collect()
            .await?;
        bar.finish_and_clear();
        Ok(ids)
    }

    /// Calls complete on every upload, 16 requests at a time.
    async fn complete_all(&self, client: &Client, token: &str, ids: &[Uuid]) -> anyhow::Result<()> {
        let api = self.api_url();
        futures::stream::iter(ids)
            .map(|id| {
                let api = api.as_str();
                async move { upload::complete(client, api, token, &id.to_string()).await }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// Polls Postgres (one query every 20 ms) until every upload is `ready` or `failed`; fails
    /// if any failed or 10 minutes pass.
    async fn wait_final(&self, ids: &[Uuid]) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let (done, failed): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE state IN ('ready', 'failed')), \
                        count(*) FILTER (WHERE state = 'failed') \
                 FROM uploads WHERE id = ANY($1)",
            )
            .bind(ids)
            .fetch_one(self.pool)
            .await?;
            if failed > 0 {
                bail!(
                    "{failed} upload(s) failed; see the worker logs in {}",
                    self.logs.display()
                );
            }
            if done == ids.len() as i64 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} of {} uploads not ready after 10 minutes",
                    ids.len() as i64 - done,
                    ids.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `(completed_at, ready_at)` of each ready upload.
    async fn times(&self, ids: &[Uuid]) -> anyhow::Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
        let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT completed_at, ready_at FROM uploads \
             WHERE id = ANY($1) AND completed_at IS NOT NULL AND ready_at IS NOT NULL",
        )
        .bind(ids)
        .fetch_all(self.pool)
        .await?;
        if rows.len() != ids.len() {
            bail!(
                "{} of {} uploads have no completed_at/ready_at",
                ids.len() - rows.len(),
                ids.len()
            );
        }
        Ok(rows)
    }
}

fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// Waits until `url` answers 2xx (up to 30 s), failing early if `child` exits.
async fn wait_http(client: &Client, url: &str, child: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(resp) = client.get(url).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("a child process exited ({status}) before {url} answered");
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM (graceful drain), then SIGKILL after 20 s.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// CPU time so far, in clock ticks: the machine's busy time and some processes' user + system.
#[derive(Debug, Clone, Copy)]
struct CpuSample {
    at: Instant,
    busy: u64,
    workers: u64,
    api: u64,
}

impl CpuSample {
    /// Reads `/proc/stat` (all CPUs: every field but idle and iowait) and `/proc/{pid}/stat`
    /// (utime + stime, fields 14 and 15, proc(5)).
    fn take(workers: &[u32], api: &[u32]) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .context("/proc/stat is empty")?
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        let busy =
            fields.iter().sum::<u64>() - fields.get(3).unwrap_or(&0) - fields.get(4).unwrap_or(&0);
        let procs = |pids: &[u32]| -> anyhow::Result<u64> {
            let mut ticks = 0;
            for pid in pids {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
                // The command name (field 2) may hold spaces; count fields after its ')'.
                let after = stat.rsplit_once(')').map_or("", |(_, s)| s);
                let f: Vec<u64> = after
                    .split_whitespace()
                    .map(|x| x.parse().unwrap_or(0))
                    .collect();
                ticks += f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
            }
            Ok(ticks)
        };
        Ok(Self {
            at: Instant::now(),
            busy,
            workers: procs(workers)?,
            api: procs(api)?,
        })
    }

    fn until(&self, later: &Self) -> CpuUse {
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as f64;
        let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / hz;
        let workers = secs(self.workers, later.workers);
        let api = secs(self.api, later.api);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        CpuUse {
            workers,
            api,
            rest: (secs(self.busy, later.busy) - workers - api).max(0.0),
            capacity: later.at.duration_since(self.at).as_secs_f64() * cpus,
        }
    }
}

/// Pushes `jobs` no-op jobs one at a time, then runs them on one in-process worker with
/// `concurrency`, timing both.
async fn noop_run(
    settings: &Settings,
    queue_name: &str,
    jobs: u32,
    concurrency: u16,
) -> anyhow::Result<NoopRun> {
    eprintln!("queue alone: {jobs} no-op jobs, worker concurrency {concurrency}");
    let mut redis_settings = settings.redis.clone();
    redis_settings.queue = queue_name.to_owned();
    let conn = queue::connect_redis(&redis_settings).await?;
    let config = queue::namespace_config(&redis_settings, queue_name, usize::from(concurrency));
    let done_set = config.done_jobs_set();
    let mut storage: RedisStorage<Noop> = RedisStorage::new(conn.clone()).with_config(config);

    let started = Instant::now();
    for n in 0..jobs {
        storage
            .push(Noop { n })
            .await
            .map_err(|e| anyhow::anyhow!("push: {e}"))?;
    }
    let pushed_per_sec = f64::from(jobs) / started.elapsed().as_secs_f64();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = WorkerBuilder::new(format!("kiln-bench-noop-{}", ulid::Ulid::generate()))
        .backend(
            storage
                .clone()
                .poll_with_interval(Duration::from_millis(settings.redis.poll_interval_ms)),
        )
        .concurrency(usize::from(concurrency))
        .parallelize(tokio::spawn)
        .build(noop);
    let started = Instant::now();
    let handle = tokio::spawn(worker.run_until(async move {
        let _ = stop_rx.await;
        Ok::<(), std::io::Error>(())
    }));
    let mut redis = conn;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: u64 = redis::AsyncCommands::scard(&mut redis, &done_set).await?;
        if done >= u64::from(jobs) {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {jobs} no-op jobs ran in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let processed_per_sec = f64::from(jobs) / started.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), handle).await;
    Ok(NoopRun {
        jobs,
        concurrency,
        pushed_per_sec,
        processed_per_sec,
    })
}

/// Deletes every Redis key of the given queues (`{q}` and `{q}:*`, found with SCAN).
async fn delete_queues(settings: &Settings, queues: &[String]) -> anyhow::Result<()> {
    let mut conn = queue::connect_redis(&settings.redis).await?;
    for q in queues {
        for pattern in [q.clone(), format!("{q}:*")] {
            let keys: Vec<String> = {
                let iter: redis::AsyncIter<String> =
                    redis::AsyncCommands::scan_match(&mut conn, &pattern).await?;
                iter.try_collect().await?
            };
            if !keys.is_empty() {
                let _: () = redis::AsyncCommands::del(&mut conn, keys).await?;
            }
        }
    }
    Ok(())
}

/// The fleet benchmark's results.
struct Report {
    machine: Machine,
    photo: PathBuf,
    photo_bytes: usize,
    concurrency: u16,
    poll_ms: u64,
    runs: Vec<FleetRun>,
    noops: Vec<NoopRun>,
}

impl Report {
    fn setup_lines(&self) -> Vec<String> {
        let m = &self.machine;
        vec![
            format!(
                "Machine: {} CPUs ({}), {:.1} GiB RAM, Linux {}, load {} at start; kiln {} profile.",
                m.cpus,
                m.cpu_model,
                m.mem_kib as f64 / 1024.0 / 1024.0,
                m.kernel,
                m.load,
                if cfg!(debug_assertions) {
                    "dev"
                } else {
                    "release"
                }
            ),
            format!(
                "Photo: {} ({:.1} MB), every upload the same file; worker.concurrency {} per process; \
                 redis.poll_interval_ms {}. Postgres, Redis, the S3 server and the API share the machine.",
                self.photo.display(),
                self.photo_bytes as f64 / 1e6,
                self.concurrency,
                self.poll_ms
            ),
        ]
    }

    fn fleet_rows(&self) -> Vec<Vec<String>> {
        let base = self.runs.first().map(FleetRun::per_second);
        self.runs
            .iter()
            .map(|r| {
                let cpu = &r.cpu;
                vec![
                    r.workers.to_string(),
                    r.uploads.to_string(),
                    format!("{:.2}", r.per_second()),
                    base.map_or("-".into(), |b| format!("{:.2}×", r.per_second() / b)),
                    r.latency.cells(),
                    r.unloaded.map_or("-".into(), |u| u.cells()),
                    format!(
                        "{:.0}% ({:.0}/{:.0}/{:.0})",
                        100.0 * (cpu.workers + cpu.api + cpu.rest) / cpu.capacity.max(1e-9),
                        100.0 * cpu.workers / cpu.capacity.max(1e-9),
                        100.0 * cpu.api / cpu.capacity.max(1e-9),
                        100.0 * cpu.rest / cpu.capacity.max(1e-9),
                    ),
                    format!("{:.0}", 1000.0 * cpu.workers / f64::from(r.uploads)),
                ]
            })
            .collect()
    }

    const FLEET_HEADERS: [&str; 8] = [
        "workers",
        "uploads",
        "uploads/s",
        "vs first",
        "complete→ready ms p50/p95/p99/max (backlog)",
        "unloaded ms p50/p95/p99/max",
        "machine CPU busy (workers/api/rest)",
        "worker CPU ms/upload",
    ];

    const NOOP_HEADERS: [&str; 4] = [
        "no-op jobs",
        "worker concurrency",
        "pushed/s",
        "processed/s",
    ];

    fn noop_rows(&self) -> Vec<Vec<String>> {
        self.noops
            .iter()
            .map(|n| {
                vec![
                    n.jobs.to_string(),
                    n.concurrency.to_string(),
                    format!("{:.0}", n.pushed_per_sec),
                    format!("{:.0}", n.processed_per_sec),
                ]
            })
            .collect()
    }

    /// Aligned text for the terminal.
    fn text(&self) -> String {
        let mut out = self.setup_lines().join("\n") + "\n\n";
        out += &table::text(&Self::FLEET_HEADERS, &self.fleet_rows());
        if !self.noops.is_empty() {
            out += "\nQueue alone (apalis-redis, no-op handler):\n";
            out += &table::text(&Self::NOOP_HEADERS, &self.noop_rows());
        }
        out
    }

    /// Markdown between [`MARKDOWN_BEGIN`] and [`MARKDOWN_END`].
    fn markdown(&self) -> String {
        let mut out = format!("{MARKDOWN_BEGIN}\n");
        for line in self.setup_lines() {
            out += &format!("{line}\n\n");
        }
        out += &table::markdown(&Self::FLEET_HEADERS, &self.fleet_rows());
        if !self.noops.is_empty() {
            out += "\nThe queue alone (apalis-redis, pushes one at a time, no-op handler):\n\n";
            out += &table::markdown(&Self::NOOP_HEADERS, &self.noop_rows());
        }
        out += MARKDOWN_END;
        out += "\n";
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        let one = Percentiles::of(vec![7.0]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert_eq!(Percentiles::of(Vec::new()).max, 0.0);
    }
}
