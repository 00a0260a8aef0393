//! The results of `kiln-bench fleet` and their report: the setup lines, the fleet table and the
//! queue-alone table, as aligned text or as markdown for `docs/benchmarks.md`. Imports only
//! the result types of [`super::cpu`] and [`super::noop`]; the run ([`super`]) imports this.

use std::path::PathBuf;
use std::time::Duration;

use super::cpu::CpuUse;
use super::noop::NoopRun;
use crate::machine::Machine;
use crate::table;

/// First line of the markdown block; `scripts/bench-fleet` (`scripts/doc-block`) replaces the
/// block in `docs/benchmarks.md` from this line to [`MARKDOWN_END`]. The marker keeps its
/// historical `kiln bench` wording, which both of them match.
pub const MARKDOWN_BEGIN: &str = "<!-- kiln bench fleet: begin (generated, do not edit) -->";
/// Last line of the markdown block.
pub const MARKDOWN_END: &str = "<!-- kiln bench fleet: end -->";

/// Percentiles of a set of durations, in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

impl Percentiles {
    /// The percentiles of `ms` (milliseconds); all zero when it is empty.
    pub fn of(mut ms: Vec<f64>) -> Self {
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

/// One fleet run's results.
#[derive(Debug, Clone)]
pub struct FleetRun {
    /// Worker processes (0 for the standalone run).
    pub workers: u16,
    /// One `kiln serve` process instead of API and worker processes.
    pub standalone: bool,
    /// Uploads in the backlog.
    pub uploads: u32,
    /// First `completed_at` to last `ready_at`.
    pub span: Duration,
    /// complete→ready latency under the backlog.
    pub latency: Percentiles,
    /// CPU used during the backlog.
    pub cpu: CpuUse,
    /// Unloaded latency (first run only).
    pub unloaded: Option<Percentiles>,
}

impl FleetRun {
    fn per_second(&self) -> f64 {
        f64::from(self.uploads) / self.span.as_secs_f64()
    }
}

/// The fleet benchmark's results.
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The photo every upload sent.
    pub photo: PathBuf,
    /// Its size.
    pub photo_bytes: usize,
    /// `worker.concurrency` of each worker process.
    pub concurrency: u16,
    /// `redis.poll_interval_ms`.
    pub poll_ms: u64,
    /// One per worker count, in the order run.
    pub runs: Vec<FleetRun>,
    /// One per no-op worker concurrency.
    pub noops: Vec<NoopRun>,
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
                "Photo: {} ({:.1} MB), every upload a distinct copy of it (a JPEG comment each, so dedup skips none); worker.concurrency {} per process; \
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
                    if r.standalone {
                        "standalone".into()
                    } else {
                        r.workers.to_string()
                    },
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
    pub fn text(&self) -> String {
        let mut out = self.setup_lines().join("\n") + "\n\n";
        out += &table::text(&Self::FLEET_HEADERS, &self.fleet_rows());
        if !self.noops.is_empty() {
            out += "\nQueue alone (apalis-redis, no-op handler):\n";
            out += &table::text(&Self::NOOP_HEADERS, &self.noop_rows());
        }
        out
    }

    /// Markdown between [`MARKDOWN_BEGIN`] and [`MARKDOWN_END`].
    pub fn markdown(&self) -> String {
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
