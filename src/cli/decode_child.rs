//! `kiln decode-child` (hidden): a decoder child of a worker's jail
//! ([`kiln_worker::jail`]). The worker starts it with an empty environment and talks to it
//! over stdin and stdout; nobody runs it by hand, except `kiln decode-child --probe`, which
//! confines itself like a child and prints what it could and could not do (an operator's
//! check of the host's seccomp and Landlock support).

use kiln_worker::jail::ChildOptions;
use kiln_worker::jail::protocol::LogLevel;

/// Arguments of `kiln decode-child`, as [`ChildOptions::to_args`] writes them.
#[derive(Debug, clap::Args)]
pub struct DecodeChildArgs {
    /// `RLIMIT_AS` of this process, in bytes (`worker.jail.address_space_bytes`).
    #[arg(long, default_value_t = 1 << 30)]
    address_space: u64,
    /// Wall-clock budget of one job, in seconds (`worker.job_timeout_secs`); its CPU-time
    /// limit per job is this plus 1 s.
    #[arg(long, default_value_t = 30)]
    job_timeout: u64,
    /// Jobs this child may serve (`worker.jail.max_jobs_per_child`), for its CPU-time hard
    /// limit.
    #[arg(long, default_value_t = 500)]
    max_jobs: u32,
    /// Most verbose level of the pipeline's log events sent back to the worker (`error`,
    /// `warn`, `info`, `debug`, `trace`); none when absent.
    #[arg(long, value_parser = parse_level)]
    log_level: Option<LogLevel>,
    /// Honour the test-only input hooks (`kiln_worker::jail::child::hooks`). Tests only.
    #[arg(long)]
    test_hooks: bool,
    /// Confine, try to read the parent's environment, read and create a file, open a socket
    /// and start a program, print the outcomes as JSON and exit.
    #[arg(long)]
    probe: bool,
}

fn parse_level(name: &str) -> Result<LogLevel, String> {
    LogLevel::parse(name).ok_or_else(|| format!("unknown level {name:?}"))
}

impl DecodeChildArgs {
    /// The options these arguments express.
    pub fn options(&self) -> ChildOptions {
        ChildOptions {
            address_space_bytes: self.address_space,
            job_timeout_secs: self.job_timeout,
            max_jobs: self.max_jobs,
            log_level: self.log_level,
            test_hooks: self.test_hooks,
            probe: self.probe,
        }
    }
}

/// Runs the child (or the probe) until the worker closes its stdin.
///
/// # Errors
/// As [`kiln_worker::jail::child::run`]: the process then exits non-zero, which its worker
/// treats as the child's end.
pub fn run(args: &DecodeChildArgs) -> anyhow::Result<()> {
    kiln_worker::jail::child::run(&args.options())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: DecodeChildArgs,
    }

    #[test]
    fn the_arguments_the_worker_writes_parse_back_to_the_same_options() {
        let options = ChildOptions {
            address_space_bytes: 123_456_789,
            job_timeout_secs: 9,
            max_jobs: 42,
            log_level: Some(LogLevel::Debug),
            test_hooks: true,
            probe: false,
        };
        let argv = std::iter::once("decode-child".to_owned()).chain(options.to_args());
        let parsed = Wrapper::try_parse_from(argv).unwrap();
        assert_eq!(parsed.args.options(), options);

        let quiet = ChildOptions {
            log_level: None,
            test_hooks: false,
            probe: true,
            ..options
        };
        let argv = std::iter::once("decode-child".to_owned()).chain(quiet.to_args());
        assert_eq!(Wrapper::try_parse_from(argv).unwrap().args.options(), quiet);
    }
}
