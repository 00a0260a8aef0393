//! Measuring one child process: wall time, CPU time and peak RSS.
//!
//! The workspace forbids `unsafe`, and `std` reports no resource usage for a child, so each
//! measurement runs in a fresh `kiln-bench measure -- CMD…` process. That process spawns `CMD`,
//! waits for it and reads `getrusage(RUSAGE_CHILDREN)` (through `nix`): having had exactly one
//! child, its `ru_maxrss` is that child's peak RSS and its user and system times are that
//! child's CPU time. A long-lived process could not do this, because `RUSAGE_CHILDREN` keeps
//! the maximum over every child it ever waited for.
//!
//! Linux carries the spawning process's own peak RSS into the child across `exec`
//! (`setmax_mm_hiwater_rss` in `exec_mmap`), so a child never reports less than the measuring
//! process: [`rss_floor`] measures `true` to show that floor.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};

/// Arguments of the hidden `kiln-bench measure`.
#[derive(Debug, clap::Args)]
pub struct MeasureArgs {
    /// The command to run and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// What one measured process used. Printed by `kiln-bench measure` as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// From spawn to exit, in microseconds (includes exec and dynamic linking).
    pub wall_us: u64,
    /// User plus system CPU time of the child, all its threads, in microseconds.
    pub cpu_us: u64,
    /// Peak resident set size of the child (`ru_maxrss`), in KiB.
    pub max_rss_kib: u64,
    /// What the child printed on stdout.
    pub stdout: String,
}

impl Measurement {
    /// Wall time.
    pub fn wall(&self) -> Duration {
        Duration::from_micros(self.wall_us)
    }

    /// CPU time (user + system).
    pub fn cpu(&self) -> Duration {
        Duration::from_micros(self.cpu_us)
    }
}

fn micros(t: TimeVal) -> u64 {
    u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
}

/// `kiln-bench measure -- CMD…`: runs `CMD` once and prints a [`Measurement`] as JSON.
///
/// # Errors
/// When `CMD` cannot be spawned or exits unsuccessfully (its stderr is passed through), or
/// `getrusage` fails.
pub fn run(args: &MeasureArgs) -> anyhow::Result<()> {
    let (program, rest) = args
        .command
        .split_first()
        .context("measure needs a command")?;
    let started = Instant::now();
    let output = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("while spawning {}", program.to_string_lossy()))?;
    let wall = started.elapsed();
    if !output.status.success() {
        bail!(
            "{} exited with {}",
            args.command
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            output.status
        );
    }
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("while reading getrusage")?;
    let measurement = Measurement {
        wall_us: u64::try_from(wall.as_micros()).unwrap_or(u64::MAX),
        cpu_us: micros(usage.user_time()) + micros(usage.system_time()),
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: u64::try_from(usage.max_rss()).unwrap_or(0),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
    };
    println!("{}", serde_json::to_string(&measurement)?);
    Ok(())
}

/// Spawns `kiln-bench [--config FILE] measure -- command…` with this executable and returns
/// its [`Measurement`].
///
/// # Errors
/// When the measuring process fails (including a failure of `command`) or prints no
/// measurement.
pub fn measure(config: Option<&Path>, command: &[OsString]) -> anyhow::Result<Measurement> {
    let exe = std::env::current_exe().context("while finding the kiln-bench executable")?;
    let mut cmd = Command::new(exe);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let output = cmd
        .args(["measure", "--"])
        .args(command)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("while spawning kiln-bench measure")?;
    let shown = || {
        command
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !output.status.success() {
        bail!("measuring `{}` failed ({})", shown(), output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .with_context(|| format!("measuring `{}` printed nothing", shown()))?;
    serde_json::from_str(line)
        .with_context(|| format!("while parsing the measurement of `{}`: {line}", shown()))
}

/// The smallest peak RSS a measured child can report: `true` measured the same way, in KiB.
///
/// # Errors
/// As [`measure`].
pub fn rss_floor(config: Option<&Path>) -> anyhow::Result<u64> {
    Ok(measure(config, &["true".into()])?.max_rss_kib)
}
