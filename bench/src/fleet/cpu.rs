//! CPU accounting of a fleet run from `/proc`: the machine's busy time and the user + system
//! time of the worker and API processes, so the report can say what limits the ratio.

use std::time::Instant;

use anyhow::Context;

/// CPU seconds used during a run, by whom.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    /// The `kiln worker` processes.
    pub workers: f64,
    /// The `kiln api` process.
    pub api: f64,
    /// Every other process on the machine (Postgres, Redis, the S3 server, this bench).
    pub rest: f64,
    /// Seconds the machine's CPUs could have run in the interval (wall × CPUs).
    pub capacity: f64,
}

/// CPU time so far, in clock ticks: the machine's busy time and some processes' user + system.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    busy: u64,
    workers: u64,
    api: u64,
}

impl CpuSample {
    /// Reads `/proc/stat` (all CPUs: every field but idle and iowait) and `/proc/{pid}/stat`
    /// (utime + stime, fields 14 and 15, proc(5)) of the `workers` and `api` processes.
    ///
    /// # Errors
    /// When `/proc/stat` or a process' `stat` cannot be read (the process exited).
    pub fn take(workers: &[u32], api: &[u32]) -> anyhow::Result<Self> {
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

    /// What was used between this sample and `later`.
    pub fn until(&self, later: &Self) -> CpuUse {
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
