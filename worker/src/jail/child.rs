//! The decoder child's side (`kiln decode-child`): confine this process ([`super::confine`]),
//! say [`Hello`], then answer one [`Request`] at a time with one [`Response`] until the
//! worker closes stdin. Runs before (and without) settings, logging setup or an async
//! runtime: everything it needs comes in its arguments ([`ChildOptions`]) and its requests.
//!
//! The protocol uses copies of stdin and stdout taken at start; file descriptor 1 is then
//! pointed at stderr, so a C library that prints to stdout cannot corrupt a frame. The
//! pipeline's `tracing` events are collected ([`super::logs`]) and sent with each response.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::panic::AssertUnwindSafe;

use super::confine::{self, Confinement};
use super::logs::Collector;
use super::protocol::{
    self, FrameError, Hello, LogLevel, MAX_FRAME, PROTOCOL_VERSION, Request, Response,
};
use super::{ChildOptions, probe};
use crate::imaging::{self, ImagingError, Processed};

/// Test-only hooks, honoured only by a child started with `--test-hooks` (which the worker
/// passes only when its own environment has `KILN_TEST_DECODER_HOOKS=1`): an original whose
/// bytes start with one of these prefixes does what the name says instead of being decoded,
/// so tests can show a stuck decoder, a crashing one and the jail's walls through a real
/// worker. Never enable them in production.
pub mod hooks {
    /// Spins on the CPU forever (a decoder stuck in a loop).
    pub const SPIN: &[u8] = b"KILN-TEST-SPIN";
    /// Calls `abort()` (a decoder crashing on a bad file).
    pub const ABORT: &[u8] = b"KILN-TEST-ABORT";
    /// Allocates twice the child's address-space limit (a decoder running out of memory:
    /// Rust prints `memory allocation of N bytes failed` and aborts).
    pub const OOM: &[u8] = b"KILN-TEST-OOM";
    /// Runs the jail probe ([`super::probe::run`]) and fails the image as
    /// `unsupported_format` with [`PROBE_DETAIL`] and the report's JSON as its message.
    pub const PROBE: &[u8] = b"KILN-TEST-PROBE";
    /// What a probe's error message starts with, before the JSON report.
    pub const PROBE_DETAIL: &str = "jail probe: ";
}

/// Runs a decoder child until the worker closes its stdin (then `Ok`), or, with
/// `options.probe`, confines itself, runs the probe and prints its JSON report on stdout.
///
/// # Errors
/// When the pipes cannot be set up, the process cannot be confined (e.g. no seccomp), a
/// frame cannot be read or written (the worker went away), or a request is malformed. The
/// worker treats any exit as that child's end.
pub fn run(options: &ChildOptions) -> anyhow::Result<()> {
    let parent = nix::unistd::getppid();
    let input = File::from(nix::unistd::dup(std::io::stdin())?);
    let output = File::from(nix::unistd::dup(std::io::stdout())?);
    nix::unistd::dup2_stdout(std::io::stderr())?;
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut output = BufWriter::with_capacity(1 << 16, output);
    let logs = Collector::install(options.log_level);

    let confinement = confine::confine(options)?;
    logs.drain();
    if options.probe {
        let report = probe::run(parent.as_raw(), &confinement);
        writeln!(output, "{}", serde_json::to_string(&report)?)?;
        output.flush()?;
        return Ok(());
    }
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        seccomp: true,
        landlock: confinement.landlock.clone(),
    };
    protocol::write_frame(&mut output, &protocol::encode(&hello)?)?;

    loop {
        let payload = match protocol::read_frame(&mut input, MAX_FRAME) {
            Ok(payload) => payload,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let request: Request<'_> = protocol::decode(&payload)?;
        confine::limit_cpu_for_job(options.job_timeout_secs)?;
        let (result, retire) = serve(&request, options, parent.as_raw(), &confinement);
        drop(request);
        drop(payload);
        let response = Response {
            result: result.map(Into::into),
            logs: logs.drain(),
            retire,
        };
        protocol::write_frame(&mut output, &protocol::encode(&response)?)?;
        if retire {
            return Ok(());
        }
    }
}

/// One request: the test hooks when enabled, else the pipeline, a panic caught. Returns the
/// result and whether the child must retire after answering.
fn serve(
    request: &Request<'_>,
    options: &ChildOptions,
    parent: i32,
    confinement: &Confinement,
) -> (Result<Processed, ImagingError>, bool) {
    if options.test_hooks
        && let Some(result) = test_hook(&request.bytes, options, parent, confinement)
    {
        return (result, false);
    }
    let run = || imaging::process(&request.bytes, &request.renditions, &request.limits);
    match std::panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(result) => (
            result.map_err(|e| out_of_memory_is_too_large(e, options.address_space_bytes)),
            false,
        ),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic".to_owned());
            let e = ImagingError::Corrupt(format!("decoder panicked: {message}"));
            (Err(e), true)
        }
    }
}

fn test_hook(
    bytes: &[u8],
    options: &ChildOptions,
    parent: i32,
    confinement: &Confinement,
) -> Option<Result<Processed, ImagingError>> {
    if bytes.starts_with(hooks::SPIN) {
        loop {
            std::hint::spin_loop();
        }
    }
    if bytes.starts_with(hooks::ABORT) {
        std::process::abort();
    }
    if bytes.starts_with(hooks::OOM) {
        let size = usize::try_from(options.address_space_bytes.saturating_mul(2)).ok()?;
        let buffer: Vec<u8> = Vec::with_capacity(size);
        std::hint::black_box(&buffer);
        return Some(Err(ImagingError::Render(format!(
            "allocated {size} bytes beyond the address-space limit"
        ))));
    }
    if bytes.starts_with(hooks::PROBE) {
        let report = probe::run(parent, confinement);
        let json = serde_json::to_string(&report).unwrap_or_default();
        return Some(Err(ImagingError::Unsupported(format!(
            "{}{json}",
            hooks::PROBE_DETAIL
        ))));
    }
    None
}

/// Text by which C decoders (libjpeg-turbo, libpng, libwebp, libheif, lcms2) and Rust report
/// a failed allocation, lowercased.
const OUT_OF_MEMORY: &[&str] = &[
    "out of memory",
    "insufficient memory",
    "memory allocation",
    "cannot allocate",
    "allocation failed",
    "failed to allocate",
];

/// A decoder error caused by the address-space limit (`RLIMIT_AS` made an allocation fail)
/// becomes [`ImagingError::TooLarge`]; any other error is returned as it is.
pub fn out_of_memory_is_too_large(e: ImagingError, address_space_bytes: u64) -> ImagingError {
    match &e {
        ImagingError::Corrupt(m) | ImagingError::Render(m) => {
            let lower = m.to_lowercase();
            if OUT_OF_MEMORY.iter().any(|s| lower.contains(s)) {
                return ImagingError::TooLarge(format!(
                    "the decoder ran out of memory (limit {address_space_bytes} bytes of \
                     address space): {m}"
                ));
            }
            e
        }
        _ => e,
    }
}

/// The level the worker asked for, as the collector's filter.
pub(super) fn level_filter(level: Option<LogLevel>) -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match level {
        None => LevelFilter::OFF,
        Some(LogLevel::Error) => LevelFilter::ERROR,
        Some(LogLevel::Warn) => LevelFilter::WARN,
        Some(LogLevel::Info) => LevelFilter::INFO,
        Some(LogLevel::Debug) => LevelFilter::DEBUG,
        Some(LogLevel::Trace) => LevelFilter::TRACE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_failures_of_c_decoders_are_too_large() {
        let e = out_of_memory_is_too_large(
            ImagingError::Corrupt("HEIF: Memory allocation error: Security limit".into()),
            1 << 30,
        );
        assert!(
            matches!(e, ImagingError::TooLarge(ref m) if m.contains("1073741824")),
            "{e:?}"
        );
        let e = out_of_memory_is_too_large(
            ImagingError::Corrupt("JPEG: Insufficient memory (case 4)".into()),
            1 << 30,
        );
        assert!(matches!(e, ImagingError::TooLarge(_)), "{e:?}");
    }

    #[test]
    fn other_errors_are_kept() {
        for e in [
            ImagingError::Corrupt("JPEG: premature end of data".into()),
            ImagingError::Unsupported("out of memory".into()),
            ImagingError::Mismatch("declared image/png".into()),
        ] {
            assert_eq!(out_of_memory_is_too_large(e.clone(), 1 << 30), e);
        }
    }
}
