//! `kiln-bench fleet`: the whole upload path, end to end, with 1 and then 2 worker processes,
//! and the queue alone. Needs Postgres, Redis and the S3 server up (`scripts/bench-fleet`
//! starts them) and a built `kiln` ([`processes::kiln_binary`]: next to `kiln-bench`, or
//! `--kiln PATH` / `KILN_BIN`).
//!
//! **Fleet runs.** Each worker count in `--workers` gets a fresh queue
//! (`kiln-bench-fleet-{stamp}-w{n}`), one `kiln api` process and `n` `kiln worker` processes
//! (each with `worker.concurrency = --concurrency`, default 1, and its metrics on a port of its
//! own choosing, which it reports), all children of this process with this process' settings
//! (passed whole as `KILN__…` env, [`kiln_shared::Settings::to_env`]). Before the workers
//! start, the bench authorizes `--uploads` copies of one photo (each made distinct by a JPEG
//! comment, so per-owner dedup decodes every one) and sends them to S3 through presigned PUT
//! URLs, so the transfer is not timed. It warms each worker up with two uploads,
//! then calls complete on all the others at once and waits until Postgres shows every one
//! `ready`.
//! - throughput = uploads ÷ (last `ready_at` − first `completed_at`), from the database;
//! - complete→ready latency = `ready_at` − `completed_at` per upload. Under that backlog it is
//!   mostly time spent queued, so the first run also measures it **unloaded**: after the
//!   backlog, `--latency-uploads` uploads are completed one at a time, each after the previous
//!   one is ready.
//! - CPU: the CPU time the workers, the API and everything else on the machine (Postgres, Redis,
//!   the S3 server, this process) used during the backlog, from `/proc`, to show what limits
//!   the ratio.
//!
//! **Standalone** (`--standalone`). After the fleet runs, the same backlog on one `kiln serve`
//! process (SQLite, apalis-sqlite and the embedded S3 endpoint in a fresh data directory under
//! the logs folder) with the same `worker.concurrency`: its row's "vs first" is standalone ÷ the
//! first fleet run (one worker process by default). It measures the unloaded latency too.
//!
//! **Queue alone.** `--noop-jobs` no-op jobs are pushed one at a time through apalis-redis (as
//! the API pushes), then run by an in-process apalis worker built like Kiln's (the worker's
//! Redis settings: poll interval, fetch batch = concurrency, heartbeat) whose handler does
//! nothing, once for each `--noop-concurrency`. It prints pushes/s and jobs/s processed.
//!
//! Every Redis key the runs made is deleted at the end; the upload rows and objects stay (their
//! owner is `bench-fleet`).

mod client;
mod cpu;
mod db;
mod noop;
mod processes;
mod report;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use kiln_client::KilnClient;
use kiln_shared::Settings;
use kiln_shared::domain::{OwnerId, UploadMethod};
use reqwest::Client;
use tokio::process::Child;
use uuid::Uuid;

use self::cpu::CpuSample;
use self::processes::{Process, Role};
use self::report::{FleetRun, Percentiles, Report};
use crate::machine::Machine;

/// Arguments of `kiln-bench fleet`.
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// The photo every upload sends (default: the 8 MP iPhone JPEG in tests/fixtures/photos).
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
    /// Loopback port of the API; 0 (the default) lets it pick a free one and report it. The
    /// workers' metrics always listen on a port they pick and report.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The `kiln` binary to run as API and workers (default: `kiln` next to this executable).
    #[arg(long, env = "KILN_BIN")]
    kiln: Option<PathBuf>,
    /// Also run the backlog on one standalone `kiln serve` process (see the module docs).
    #[arg(long)]
    standalone: bool,
    /// Also print the results as markdown, between marker comments, for `docs/benchmarks.md`.
    #[arg(long)]
    markdown: bool,
}

/// Runs the benchmark and prints the report (and markdown with `--markdown`) on stdout.
///
/// # Errors
/// `kiln` is not found, a service is unreachable, a child process does not start or exits, an
/// upload fails or is not processed within 10 minutes.
pub async fn run(settings: &Settings, args: &FleetArgs) -> anyhow::Result<()> {
    if args.workers.is_empty() || args.workers.contains(&0) {
        bail!("--workers needs one or more counts > 0");
    }
    let kiln = processes::kiln_binary(args.kiln.as_deref())?;
    let machine = Machine::read("n/a".into());
    let bytes = Bytes::from(
        std::fs::read(&args.photo)
            .with_context(|| format!("while reading {}", args.photo.display()))?,
    );
    let db = kiln_shared::db::connect(&settings.database)?;
    kiln_shared::db::migrate(&db).await?;
    if db.as_postgres().is_none() {
        bail!("the fleet benchmark needs a postgres:// database.url");
    }
    let stamp = format!(
        "{}-{}",
        Utc::now().format("%Y%m%d%H%M%S"),
        std::process::id()
    );
    let logs = std::env::temp_dir().join(format!("kiln-bench-fleet-{stamp}"));
    std::fs::create_dir_all(&logs)?;
    eprintln!("kiln: {}; child logs in {}", kiln.display(), logs.display());

    let mut runs = Vec::new();
    let mut queues = Vec::new();
    for (i, &workers) in args.workers.iter().enumerate() {
        let queue = format!("kiln-bench-fleet-{stamp}-w{workers}");
        queues.push(queue.clone());
        let fleet = Fleet {
            settings: processes::run_settings(settings, &queue, args.port, args.concurrency),
            kiln: &kiln,
            args,
            db: db.clone(),
            queue,
            logs: &logs,
            bytes: &bytes,
        };
        runs.push(fleet.run(workers, i == 0).await?);
    }
    if args.standalone {
        let name = format!("kiln-bench-standalone-{stamp}");
        let standalone = Fleet {
            settings: processes::run_settings(settings, "kiln", args.port, args.concurrency),
            kiln: &kiln,
            args,
            db: db.clone(),
            queue: name,
            logs: &logs,
            bytes: &bytes,
        };
        runs.push(standalone.run(0, true).await?);
    }
    let mut noops = Vec::new();
    if args.noop_jobs > 0 {
        for &concurrency in &args.noop_concurrency {
            let queue = format!("kiln-bench-noop-{stamp}-c{concurrency}");
            queues.push(queue.clone());
            noops.push(noop::run(settings, &queue, args.noop_jobs, concurrency.max(1)).await?);
        }
    }
    noop::delete_queues(settings, &queues).await?;

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
    /// The children's settings.
    settings: Settings,
    kiln: &'a Path,
    args: &'a FleetArgs,
    /// The fleet's store (a standalone run opens its own).
    db: kiln_shared::db::Db,
    queue: String,
    logs: &'a Path,
    bytes: &'a Bytes,
}

impl Fleet<'_> {
    /// `kiln ROLE` with this run's settings, logging to `{logs}/{queue}-{name}.log`.
    async fn spawn(&self, role: Role, name: &str) -> anyhow::Result<Process> {
        let log = self.logs.join(format!("{}-{name}.log", self.queue));
        processes::spawn(self.kiln, role, &self.settings, &log).await
    }

    /// One run with `workers` worker processes beside one API process, or with `workers = 0`
    /// one standalone `kiln serve` process.
    async fn run(&self, workers: u16, baseline: bool) -> anyhow::Result<FleetRun> {
        let standalone = workers == 0;
        if standalone {
            eprintln!("standalone run: one kiln serve process, {}", self.queue);
        } else {
            eprintln!(
                "fleet run: {workers} worker process(es), queue {}",
                self.queue
            );
        }
        let http = Client::builder().timeout(Duration::from_secs(60)).build()?;
        let owner = OwnerId::parse("bench-fleet")?;
        let token = if standalone {
            String::new() // minted below with the data directory's own key
        } else {
            kiln_shared::auth::Signer::from_settings(&self.settings.auth)?.mint(
                &owner,
                false,
                Duration::from_secs(3600),
            )?
        };
        let role = if standalone { Role::Serve } else { Role::Api };
        let Process {
            child: mut api,
            addr,
        } = self.spawn(role, "api").await?;
        let base = format!("http://{addr}");
        processes::wait_http(&http, &format!("{base}/readyz"), &mut api).await?;
        let (db, token) = if standalone {
            let data = kiln_shared::config::standalone::DataDir::new(processes::data_dir(
                &self.logs.join(format!("{}-api.log", self.queue)),
            ));
            let mut store = self.settings.database.clone();
            store.url = format!("sqlite://{}", data.database().display());
            let auth = kiln_shared::config::AuthSettings {
                jwt_secret: data.secrets()?.jwt_secret,
                ..Default::default()
            };
            let token = kiln_shared::auth::Signer::from_settings(&auth)?.mint(
                &owner,
                false,
                Duration::from_secs(3600),
            )?;
            (kiln_shared::db::connect(&store)?, token)
        } else {
            (self.db.clone(), token)
        };
        let api_client = KilnClient::with_http(http.clone(), &base, &token);

        let warmups = u32::from(workers.max(1)) * 2;
        let unloaded = if baseline {
            self.args.latency_uploads
        } else {
            0
        };
        let total = warmups + self.args.uploads + unloaded;
        let ids = self.send(&api_client, total).await?;
        let (warm_ids, rest) = ids.split_at(warmups as usize);
        let (backlog_ids, unloaded_ids) = rest.split_at(self.args.uploads as usize);

        let mut children = Vec::new();
        for w in 0..workers {
            let Process { mut child, addr } =
                self.spawn(Role::Worker, &format!("worker{w}")).await?;
            let url = format!("http://{addr}/metrics");
            processes::wait_http(&http, &url, &mut child).await?;
            children.push(child);
        }
        client::complete_all(&api_client, warm_ids).await?;
        db::wait_final(&db, warm_ids, self.logs).await?;

        let pids = |c: &[Child]| c.iter().filter_map(Child::id).collect::<Vec<_>>();
        let api_pid = pids(std::slice::from_ref(&api));
        // Standalone, the one process is counted as the workers.
        let (worker_pids, api_pid) = if standalone {
            (api_pid, Vec::new())
        } else {
            (pids(&children), api_pid)
        };
        let before = CpuSample::take(&worker_pids, &api_pid)?;
        client::complete_all(&api_client, backlog_ids).await?;
        db::wait_final(&db, backlog_ids, self.logs).await?;
        let after = CpuSample::take(&worker_pids, &api_pid)?;
        let times = db::times(&db, backlog_ids).await?;
        let first = times.iter().map(|t| t.0).min().context("no uploads")?;
        let last = times.iter().map(|t| t.1).max().context("no uploads")?;
        let latency = Percentiles::of(times.iter().map(|(c, r)| ms_between(*c, *r)).collect());

        let unloaded = if unloaded_ids.is_empty() {
            None
        } else {
            let mut ms = Vec::new();
            for id in unloaded_ids {
                let one = std::slice::from_ref(id);
                client::complete_all(&api_client, one).await?;
                db::wait_final(&db, one, self.logs).await?;
                let t = db::times(&db, one).await?;
                ms.extend(t.iter().map(|(c, r)| ms_between(*c, *r)));
            }
            Some(Percentiles::of(ms))
        };

        for child in children.iter_mut().chain(std::iter::once(&mut api)) {
            processes::terminate(child).await;
        }
        Ok(FleetRun {
            workers,
            standalone,
            uploads: self.args.uploads,
            span: (last - first).to_std().unwrap_or_default(),
            latency,
            cpu: before.until(&after),
            unloaded,
        })
    }

    /// Authorizes `n` uploads of the photo and sends each to S3.
    async fn send(&self, api: &KilnClient, n: u32) -> anyhow::Result<Vec<Uuid>> {
        let size = (self.bytes.len() + client::COPY_TAG_BYTES) as u64;
        let upload = kiln_client::describe(&self.args.photo, size, UploadMethod::Put);
        client::send_many(api, &upload, self.bytes, n).await
    }
}

fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1000.0
}
