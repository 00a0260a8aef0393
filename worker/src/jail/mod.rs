//! The decoder jail (issue "Safe to expose", part 2): the image pipeline (sniffing, decoding,
//! colour conversion, resizing, encoding, metadata) runs in prespawned child processes of the
//! worker, one image at a time each, instead of in the process that holds the S3, database
//! and token credentials.
//!
//! Each child is this same `kiln` executable run as `kiln decode-child` (a hidden
//! subcommand, [`child::run`]) with an **empty environment**, in its own process group, with
//! rlimits on address space, CPU time, open files and file size, Landlock where the kernel
//! has it, and a seccomp allow-list that leaves no way to open a file or socket or start a
//! program ([`confine`], [`seccomp`]). It talks to the worker over its stdin and stdout
//! ([`protocol`]); its stderr is forwarded to the worker's log.
//!
//! The worker side is [`pool::Pool`]: `worker.jail.pool_size` children (0: one per job slot,
//! `concurrency + renditions_concurrency`), a wall-clock timeout per job
//! (`worker.job_timeout_secs`; past it the child is killed: `decode_timeout`), crash and
//! out-of-memory classification (`corrupt_image`, `image_too_large`), and replacement of any
//! child that died, was killed, panicked or served `worker.jail.max_jobs_per_child` images.
//! [`Decoders`] is what the jobs hold: the pool, or, with `worker.jail.enabled = false`,
//! nothing (the jobs then run the pipeline on a blocking thread under the same timeout, which
//! can only abandon it).
//!
//! Modules: [`protocol`] (frames and messages), [`pool`] and [`supervise`] (worker side: the
//! pool, and one child's start, exchange, stderr and death), [`child`] (child side), [`confine`] and [`seccomp`] (the walls), [`logs`] (the child's `tracing` events
//! replayed in the job's span), [`probe`] (what a confined child can and cannot do).

pub mod child;
pub mod confine;
pub mod logs;
pub mod pool;
pub mod probe;
pub mod protocol;
pub mod seccomp;
pub mod supervise;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kiln_shared::config::WorkerSettings;

pub use pool::{JobError, Pool};
use protocol::LogLevel;
pub use supervise::ChildSpec;

/// The hidden subcommand of `kiln` that runs a decoder child ([`child::run`]).
pub const SUBCOMMAND: &str = "decode-child";

/// The environment variable that, set to `1` in the **worker's** environment, makes it start
/// its children with `--test-hooks` ([`child::hooks`]). For tests only.
pub const TEST_HOOKS_ENV: &str = "KILN_TEST_DECODER_HOOKS";

/// Why the jail could not start or replace a child.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JailError {
    /// No `kiln` executable was found to run as a child (see [`program`]).
    #[error("no `kiln` executable to run decoder children: {0}")]
    Program(String),
    /// A child could not be started, or did not confine itself and say hello.
    #[error("cannot start a decoder child: {0}")]
    Spawn(String),
}

/// The arguments of `kiln decode-child`, as the worker passes them and the child reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildOptions {
    /// `RLIMIT_AS`, in bytes (`--address-space`).
    pub address_space_bytes: u64,
    /// Wall-clock budget of one job, in seconds (`--job-timeout`): the child's CPU-time limit
    /// per job is this plus 1 s.
    pub job_timeout_secs: u64,
    /// Jobs the child may serve (`--max-jobs`), for its CPU-time hard limit.
    pub max_jobs: u32,
    /// Most verbose level of the pipeline's events to collect and send back (`--log-level`;
    /// absent: none).
    pub log_level: Option<LogLevel>,
    /// Honour [`child::hooks`] (`--test-hooks`). Tests only.
    pub test_hooks: bool,
    /// Confine, run [`probe::run`], print its report as JSON on stdout and exit (`--probe`),
    /// instead of serving.
    pub probe: bool,
}

impl ChildOptions {
    /// The options for children of a worker with these settings, collecting the pipeline's
    /// events at `log_level`.
    pub fn from_settings(worker: &WorkerSettings, log_level: Option<LogLevel>) -> Self {
        Self {
            address_space_bytes: worker.jail.address_space_bytes,
            job_timeout_secs: worker.job_timeout_secs,
            max_jobs: worker.jail.max_jobs_per_child.max(1),
            log_level,
            test_hooks: false,
            probe: false,
        }
    }

    /// The command-line arguments after `decode-child` that express these options.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--address-space".to_owned(),
            self.address_space_bytes.to_string(),
            "--job-timeout".to_owned(),
            self.job_timeout_secs.to_string(),
            "--max-jobs".to_owned(),
            self.max_jobs.to_string(),
        ];
        if let Some(level) = self.log_level {
            args.extend(["--log-level".to_owned(), level.as_str().to_owned()]);
        }
        if self.test_hooks {
            args.push("--test-hooks".to_owned());
        }
        if self.probe {
            args.push("--probe".to_owned());
        }
        args
    }
}

static SERVES_CHILDREN: AtomicBool = AtomicBool::new(false);

/// Declares that this process's executable runs [`child::run`] for `kiln decode-child` (the
/// `kiln` binary calls it first thing), so pools started here spawn this very executable.
pub fn this_executable_serves_children() {
    SERVES_CHILDREN.store(true, Ordering::SeqCst);
}

/// The executable a pool starts children from:
/// - in `kiln` itself ([`this_executable_serves_children`]), `/proc/self/exe`: this process's
///   own image, even if the file was replaced or deleted since (a rebuilt binary must not
///   start children that speak another protocol), or the path of the current executable
///   where `/proc` is missing;
/// - elsewhere (the integration tests' in-process workers, `kiln-bench`), `KILN_BIN` when set,
///   else a `kiln` beside the current executable or in its parent directory (Cargo's
///   `target/{profile}/deps/` layout).
///
/// # Errors
/// [`JailError::Program`] when none is found.
pub fn program() -> Result<PathBuf, JailError> {
    let exe = std::env::current_exe().map_err(|e| JailError::Program(e.to_string()));
    if SERVES_CHILDREN.load(Ordering::SeqCst) {
        let own = PathBuf::from("/proc/self/exe");
        return if own.exists() { Ok(own) } else { exe };
    }
    if let Some(bin) = std::env::var_os("KILN_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = exe?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("kiln"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            JailError::Program(format!(
                "{} is not `kiln`, and there is no `kiln` beside it (build it, or set KILN_BIN)",
                exe.display()
            ))
        })
}

/// How this worker runs the image pipeline: through a [`Pool`] of jailed children, or (with
/// `worker.jail.enabled = false`) in process. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Decoders {
    pool: Option<Pool>,
    timeout: Duration,
}

impl Decoders {
    /// Starts the pool `worker.jail` describes (spawning every child and waiting until each is
    /// confined), or returns the in-process runner when the jail is disabled. Children get
    /// `--test-hooks` only when this process's environment has `KILN_TEST_DECODER_HOOKS=1`.
    ///
    /// # Errors
    /// [`JailError`] when the jail is enabled but no child can be started (no `kiln`
    /// executable, or a kernel without seccomp: the worker refuses to run unconfined; set
    /// `worker.jail.enabled = false` to run the decoders in process).
    pub async fn start(worker: &WorkerSettings) -> Result<Self, JailError> {
        if !worker.jail.enabled {
            tracing::warn!("the decoder jail is disabled: images are decoded inside the worker");
            return Ok(Self::in_process(worker));
        }
        let mut options = ChildOptions::from_settings(worker, logs::wanted_level());
        options.test_hooks = std::env::var_os(TEST_HOOKS_ENV).is_some_and(|v| v == "1");
        let size = match worker.jail.pool_size {
            0 => worker.concurrency + worker.renditions_concurrency,
            n => n,
        };
        let pool = Pool::start(
            ChildSpec::new(program()?, options),
            size.max(1),
            Duration::from_secs(worker.job_timeout_secs),
        )
        .await?;
        Ok(Self {
            pool: Some(pool),
            timeout: Duration::from_secs(worker.job_timeout_secs),
        })
    }

    /// The in-process runner (no children), with the settings' job timeout.
    pub fn in_process(worker: &WorkerSettings) -> Self {
        Self {
            pool: None,
            timeout: Duration::from_secs(worker.job_timeout_secs),
        }
    }

    /// The pool, when the jail is enabled.
    pub fn pool(&self) -> Option<&Pool> {
        self.pool.as_ref()
    }

    /// The wall-clock limit of one image's pipeline (`worker.job_timeout_secs`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_the_settings_and_become_arguments() {
        let mut worker = WorkerSettings {
            job_timeout_secs: 7,
            ..WorkerSettings::default()
        };
        worker.jail.address_space_bytes = 1 << 30;
        worker.jail.max_jobs_per_child = 0;
        let mut options = ChildOptions::from_settings(&worker, Some(LogLevel::Debug));
        assert_eq!(options.max_jobs, 1, "at least one job per child");
        options.test_hooks = true;
        assert_eq!(
            options.to_args().join(" "),
            "--address-space 1073741824 --job-timeout 7 --max-jobs 1 --log-level debug \
             --test-hooks"
        );
    }
}
