//! The machine a benchmark ran on, from `/proc` and the environment: the first lines of every
//! report.

/// The machine the benchmark ran on, from `/proc` and the environment.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Logical CPUs available to this process (what `nproc` prints).
    pub cpus: usize,
    /// `model name` of the first CPU in `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` from `/proc/meminfo`, in KiB.
    pub mem_kib: u64,
    /// Kernel release.
    pub kernel: String,
    /// The 1, 5 and 15 minute load averages when the run started (other work on the machine).
    pub load: String,
    /// `vipsthumbnail --version` (`n/a` when the benchmark does not run it).
    pub vips: String,
    /// `VIPS_CONCURRENCY` if set (libvips' thread pool size; else libvips uses one per CPU).
    pub vips_concurrency: Option<String>,
}

impl Machine {
    /// Reads what `/proc` says about this machine; unknown fields read `?`.
    pub fn read(vips: String) -> Self {
        let proc = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let mem_kib = field(&proc("/proc/meminfo"), "MemTotal")
            .and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        Self {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: field(&proc("/proc/cpuinfo"), "model name").unwrap_or_else(|| "?".into()),
            mem_kib,
            kernel: proc("/proc/sys/kernel/osrelease").trim().to_owned(),
            load: proc("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            vips,
            vips_concurrency: std::env::var("VIPS_CONCURRENCY").ok(),
        }
    }
}
