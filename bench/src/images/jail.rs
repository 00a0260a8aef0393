//! `kiln-bench images --jail`: Kiln's pipeline through the decoder jail the way a worker runs
//! it (`kiln_worker::jail`): a pool of one prespawned, confined `kiln decode-child` (the
//! `kiln` next to `kiln-bench`, or `KILN_BIN`), each image sent over its pipes and the result
//! read back. What it measures beside the in-process pipeline is the jail's cost per image:
//! serialising the request and the derivatives, the pipe copies, the process switch and the
//! seccomp filter on every system call.

use std::time::Duration;

use anyhow::Context;
use kiln_shared::Settings;
use kiln_shared::domain::Rendition;
use kiln_worker::imaging::{Limits, Processed};
use kiln_worker::jail::{ChildOptions, ChildSpec, Pool};
use tokio::runtime::Handle;

/// A pool of one decoder child, driven from blocking code (inside `block_in_place`).
pub struct Jail {
    pool: Pool,
    runtime: Handle,
}

impl Jail {
    /// Starts one child with `settings`' jail options (and no limit on its jobs, so the same
    /// child serves the whole run and its CPU time can be read from `/proc`).
    ///
    /// # Errors
    /// When no `kiln` executable is found or the child does not start.
    pub fn start(settings: &Settings) -> anyhow::Result<Self> {
        let runtime = Handle::current();
        let mut options = ChildOptions::from_settings(&settings.worker, None);
        options.max_jobs = u32::MAX;
        let program = kiln_worker::jail::program()?;
        let timeout = Duration::from_secs(settings.worker.job_timeout_secs);
        let pool = runtime
            .block_on(Pool::start(ChildSpec::new(program, options), 1, timeout))
            .context("while starting the decoder jail")?;
        Ok(Self { pool, runtime })
    }

    /// Runs the pipeline on `bytes` in the child.
    ///
    /// # Errors
    /// The pipeline's error, or the child's failure.
    pub fn process(
        &self,
        bytes: &[u8],
        renditions: &[Rendition],
        limits: &Limits,
    ) -> anyhow::Result<Processed> {
        Ok(self
            .runtime
            .block_on(self.pool.process(bytes, renditions, limits))?)
    }

    /// CPU time (user + system, all threads) the pool's idle children have used so far, from
    /// `/proc/{pid}/stat`, at the clock-tick resolution (10 ms on Linux).
    ///
    /// # Errors
    /// When `/proc` cannot be read.
    pub fn children_cpu(&self) -> anyhow::Result<Duration> {
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?
            .filter(|&t| t > 0)
            .context("no CLK_TCK")? as u64;
        let mut total = Duration::ZERO;
        for pid in self.pool.idle_pids() {
            let path = format!("/proc/{pid}/stat");
            let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
            // `pid (comm) state …`: utime and stime are the 12th and 13th fields after `)`.
            let after = &stat[stat.rfind(')').context("malformed stat")? + 1..];
            let fields: Vec<&str> = after.split_whitespace().collect();
            let used: u64 = fields
                .get(11..13)
                .context("short stat")?
                .iter()
                .map(|f| f.parse::<u64>().unwrap_or(0))
                .sum();
            total += Duration::from_micros(used * 1_000_000 / ticks);
        }
        Ok(total)
    }
}
