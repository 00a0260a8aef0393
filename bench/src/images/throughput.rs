//! Thumb-only throughput: Kiln's pipeline with only the `thumb` rendition, in this process, on
//! this one thread (or, with `--jail`, in one decoder child driven from this thread: see
//! [`super::jail`]), over a set of files again and again for a fixed time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use kiln_shared::Settings;
use kiln_worker::imaging::{self, Limits};
use nix::sys::resource::{UsageWho, getrusage};

use super::jail::Jail;

/// The result of a thumb-only run.
#[derive(Debug, Clone)]
pub struct Throughput {
    /// The files cycled through.
    pub files: Vec<PathBuf>,
    /// Thumbnails made (whole pipeline runs: decode, resize, encode).
    pub thumbs: u64,
    /// Wall time of the timed loop.
    pub wall: Duration,
    /// CPU time (user + system) used during the loop, all threads: this process's, plus the
    /// decoder child's when jailed.
    pub cpu: Duration,
    /// Whether the pipeline ran in a decoder child.
    pub jailed: bool,
}

impl Throughput {
    /// Thumbnails per second of CPU time: what one fully used core makes.
    pub fn per_core(&self) -> f64 {
        self.thumbs as f64 / self.cpu.as_secs_f64()
    }

    /// Thumbnails per second of wall time.
    pub fn per_wall_second(&self) -> f64 {
        self.thumbs as f64 / self.wall.as_secs_f64()
    }
}

fn process_cpu() -> anyhow::Result<Duration> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("while reading getrusage")?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Ok(micros(usage.user_time()) + micros(usage.system_time()))
}

/// Runs the pipeline with only the rendition named `thumb` from `worker.renditions` over
/// `files` (read into memory first), round-robin, for at least `duration`, after one untimed
/// pass; in this process, or in `jail`'s decoder child.
///
/// # Errors
/// When no rendition is named `thumb`, a file cannot be read, the pipeline rejects one, or
/// the child's CPU time cannot be read.
pub fn run(
    settings: &Settings,
    files: &[PathBuf],
    duration: Duration,
    jail: Option<&Jail>,
) -> anyhow::Result<Throughput> {
    let thumb = settings
        .worker
        .renditions
        .iter()
        .find(|r| r.name == "thumb")
        .context("worker.renditions has no rendition named `thumb`")?;
    let thumb = std::slice::from_ref(thumb);
    let limits = Limits::from_settings(&settings.worker);
    let inputs = files
        .iter()
        .map(|f| {
            Ok((
                f.as_path(),
                std::fs::read(f).with_context(|| format!("while reading {}", f.display()))?,
            ))
        })
        .collect::<anyhow::Result<Vec<(&Path, Vec<u8>)>>>()?;
    anyhow::ensure!(!inputs.is_empty(), "no files for the thumb-only run");
    let once = |path: &Path, bytes: &[u8]| {
        match jail {
            Some(jail) => jail.process(bytes, thumb, &limits),
            None => imaging::process(bytes, thumb, &limits).map_err(Into::into),
        }
        .with_context(|| format!("while processing {}", path.display()))
    };
    let cpu_now = || -> anyhow::Result<Duration> {
        Ok(process_cpu()?
            + match jail {
                Some(jail) => jail.children_cpu()?,
                None => Duration::ZERO,
            })
    };
    for (path, bytes) in &inputs {
        once(path, bytes)?;
    }
    let cpu_before = cpu_now()?;
    let started = Instant::now();
    let mut thumbs = 0u64;
    while started.elapsed() < duration {
        for (path, bytes) in &inputs {
            std::hint::black_box(once(path, bytes)?);
            thumbs += 1;
        }
    }
    let wall = started.elapsed();
    let cpu = cpu_now()? - cpu_before;
    Ok(Throughput {
        files: files.to_vec(),
        thumbs,
        wall,
        cpu,
        jailed: jail.is_some(),
    })
}
