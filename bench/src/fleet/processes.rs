//! The `kiln api` and `kiln worker` children of a fleet run: finding the `kiln` binary,
//! starting a child with a given [`Settings`] (passed whole as `KILN__…` env through
//! [`Settings::to_env`]), reading the address it bound from its stdout, waiting until it
//! answers HTTP, and stopping it.
//!
//! Every child binds port 0 (or the port asked for) and reports the address on stdout: `kiln
//! api` prints `KILN_API_ADDR=…` ([`kiln_api::startup::LISTEN_ADDR_LINE`]) and `kiln worker`
//! prints `KILN_WORKER_METRICS_ADDR=…` ([`kiln_worker::startup::METRICS_ADDR_LINE`]), so no
//! port is picked by binding and releasing it. Both streams of a child go to its log file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kiln_shared::Settings;
use kiln_shared::config::LogFormat;
use reqwest::Client;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// The `kiln` binary: `explicit` (`--kiln` or `KILN_BIN`) if given, else `kiln` in the
/// directory of this `kiln-bench` executable (the same target directory and profile: `cargo
/// build -p kiln -p kiln-bench` puts both there).
///
/// # Errors
/// When the binary does not exist (the message says how to build it or name it).
pub fn kiln_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    let bin = match explicit {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()
            .context("while finding the kiln-bench executable")?
            .with_file_name("kiln"),
    };
    if !bin.is_file() {
        bail!(
            "no kiln binary at {}: build it next to kiln-bench (`cargo build --bin kiln`) or \
             name it with --kiln PATH / KILN_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// `settings` for the children of one fleet run: its own `queue`, the API on loopback
/// `api_port` (0: any free port), each worker's metrics on port 0, `concurrency` jobs per
/// worker, JSON logs, and no rate limits (the bench sends its whole backlog at once: it measures
/// processing, not the API's admission of one owner's requests).
pub fn run_settings(settings: &Settings, queue: &str, api_port: u16, concurrency: u16) -> Settings {
    let mut s = settings.clone();
    s.redis.queue = queue.to_owned();
    s.api.listen = SocketAddr::from(([127, 0, 0, 1], api_port));
    s.worker.metrics_listen = SocketAddr::from(([127, 0, 0, 1], 0));
    s.worker.concurrency = usize::from(concurrency);
    s.telemetry.format = LogFormat::Json;
    s.rate_limits.authorize_per_second = 0;
    s.rate_limits.complete_per_second = 0;
    if s.auth.check_key() == Err(kiln_shared::config::KeyError::Missing) {
        // This run's own HS256 key (the fleet refuses to start without one).
        s.auth.jwt_secret = kiln_shared::config::standalone::random_hex(32).into();
    }
    s
}

/// Which `kiln` subcommand a child runs.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// `kiln api`: its address is the API's (`api.listen`).
    Api,
    /// `kiln worker`: its address is the metrics listener's (`worker.metrics_listen`).
    Worker,
    /// `kiln serve` on a fresh data directory beside the log ([`data_dir`]), S3 on a free
    /// port: its address is the API's.
    Serve,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Worker => "worker",
            Self::Serve => "serve",
        }
    }

    fn addr_line(self) -> &'static str {
        match self {
            Self::Api | Self::Serve => kiln_api::startup::LISTEN_ADDR_LINE,
            Self::Worker => kiln_worker::startup::METRICS_ADDR_LINE,
        }
    }
}

/// A running `kiln` child and the address it bound.
pub struct Process {
    /// The child (killed if dropped).
    pub child: Child,
    /// The API's address, or the worker's metrics address.
    pub addr: SocketAddr,
}

/// Starts `kiln ROLE` with exactly `settings` (as `KILN__…` env, over this process'
/// environment), logging both streams to `log`, and waits (up to 30 s) for the line that
/// reports its address.
///
/// # Errors
/// When the child cannot start, exits or closes stdout before reporting, or stays silent.
pub async fn spawn(
    kiln: &Path,
    role: Role,
    settings: &Settings,
    log: &Path,
) -> anyhow::Result<Process> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("while opening {}", log.display()))
    };
    let mut command = Command::new(kiln);
    if let Role::Serve = role {
        command
            .env("KILN_DATA_DIR", data_dir(log))
            .env("KILN_S3_LISTEN", "127.0.0.1:0");
    }
    let mut child = command
        .arg(role.subcommand())
        .envs(settings.to_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(open()?))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("while starting {} {}", kiln.display(), role.subcommand()))?;
    let stdout = child.stdout.take().context("the child has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut copy = tokio::fs::File::from_std(open()?);
    let prefix = role.addr_line();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            copy.write_all(format!("{line}\n").as_bytes()).await?;
            if let Some(addr) = line.strip_prefix(prefix) {
                return Ok(Some(addr.trim().parse::<SocketAddr>()?));
            }
        }
        anyhow::Ok(None)
    })
    .await;
    let addr = match found {
        Ok(Ok(Some(addr))) => addr,
        Ok(Ok(None)) => {
            let status = child.wait().await?;
            bail!(
                "kiln {} exited ({status}) before reporting its address; see {}",
                role.subcommand(),
                log.display()
            );
        }
        Ok(Err(e)) => return Err(e.context("while reading the child's stdout")),
        Err(_) => bail!(
            "kiln {} did not print {prefix}… within 30 s; see {}",
            role.subcommand(),
            log.display()
        ),
    };
    // Keep copying whatever else it prints, so it never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = copy.write_all(format!("{line}\n").as_bytes()).await;
        }
    });
    Ok(Process { child, addr })
}

/// The data directory of the `kiln serve` child logging to `log`: `log` with `.data` for its
/// extension.
pub fn data_dir(log: &Path) -> PathBuf {
    log.with_extension("data")
}

/// Waits until `url` answers 2xx (up to 30 s), failing early if `child` exits.
///
/// # Errors
/// When the child exits first or 30 s pass.
pub async fn wait_http(client: &Client, url: &str, child: &mut Child) -> anyhow::Result<()> {
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
pub async fn terminate(child: &mut Child) {
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
