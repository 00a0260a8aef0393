//! One decoder child seen from the worker: starting it and waiting for its hello
//! ([`ChildSpec`], `Child::spawn`), one request/response exchange, reaping it after a failure,
//! forwarding its stderr to the worker's log (warn, target `kiln_worker::jail::child`, with
//! its pid; the last lines kept), and what its death means for the image ([`classify`]).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{ChildStdin, ChildStdout};

use super::protocol::{self, FrameError, Hello, PROTOCOL_VERSION, Response};
use super::{ChildOptions, JailError, SUBCOMMAND};
use crate::imaging::ImagingError;

/// How long a new child may take to confine itself and say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a child whose pipe broke may take to exit before it is killed.
pub(super) const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Lines of a child's stderr kept for classifying its death.
const STDERR_TAIL: usize = 20;
/// Longest stderr line logged, in bytes; the rest of the line is dropped.
const MAX_STDERR_LINE: usize = 4_096;
/// Stderr lines logged per child; later ones are only kept in the tail.
const MAX_STDERR_LINES: usize = 1_000;

/// How to start a child: the executable and its options.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    program: PathBuf,
    options: ChildOptions,
}

impl ChildSpec {
    /// Children of `program` (see [`super::program`]) run with `options`.
    pub fn new(program: PathBuf, options: ChildOptions) -> Self {
        Self { program, options }
    }

    /// The options children are started with.
    pub fn options(&self) -> &ChildOptions {
        &self.options
    }

    /// `kiln decode-child …` with an empty environment, `/` as working directory, its own
    /// process group (a terminal's Ctrl-C stops the worker gracefully, not its children), and
    /// stdin, stdout and stderr piped; killed when dropped.
    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.arg0("kiln")
            .arg(SUBCOMMAND)
            .args(self.options.to_args())
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }
}

/// How a child ended, as far as the worker can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Death {
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Its exit status, if it exited.
    pub code: Option<i32>,
    /// The last lines it wrote to stderr.
    pub stderr: Vec<String>,
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// What a child's death means for its image (all permanent): `SIGXCPU` (its CPU-time limit)
/// is [`ImagingError::Timeout`]; Rust's `memory allocation of N bytes failed` on its stderr
/// (the address-space limit) or `SIGKILL` not sent by the worker (the kernel's out-of-memory
/// killer) is [`ImagingError::TooLarge`]; any other signal or exit is
/// [`ImagingError::Corrupt`], whose message (internal detail, never shown to clients) quotes
/// the last stderr line.
pub fn classify(death: &Death, address_space_bytes: u64) -> ImagingError {
    let out_of_memory = death
        .stderr
        .iter()
        .any(|l| l.contains("memory allocation of") && l.contains("failed"));
    let last = death
        .stderr
        .last()
        .map(|l| format!("; stderr: {l}"))
        .unwrap_or_default();
    match death.signal {
        Some(s) if s == libc::SIGXCPU => {
            ImagingError::Timeout("the decoder used up its CPU-time limit (SIGXCPU)".into())
        }
        _ if out_of_memory => ImagingError::TooLarge(format!(
            "the decoder ran out of memory (limit {address_space_bytes} bytes of address space)"
        )),
        Some(s) if s == libc::SIGKILL => ImagingError::TooLarge(
            "the decoder was killed (SIGKILL), most likely by the out-of-memory killer".into(),
        ),
        Some(s) => ImagingError::Corrupt(format!("the decoder crashed ({}){last}", signal_name(s))),
        None => match death.code {
            Some(c) => ImagingError::Corrupt(format!("the decoder exited with status {c}{last}")),
            None => ImagingError::Corrupt(format!("the decoder stopped answering{last}")),
        },
    }
}

/// The last lines of a child's stderr.
#[derive(Default)]
struct StderrTail(Mutex<VecDeque<String>>);

impl StderrTail {
    fn push(&self, line: String) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == STDERR_TAIL {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    fn lines(&self) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect()
    }
}

/// Logs a child's stderr line by line (warn, target `kiln_worker::jail::child`, with its pid)
/// and keeps the tail, until the pipe closes.
async fn forward_stderr(mut stderr: tokio::process::ChildStderr, pid: u32, tail: Arc<StderrTail>) {
    let mut chunk = vec![0u8; 8_192];
    let mut line: Vec<u8> = Vec::new();
    let mut logged = 0usize;
    let mut emit = |line: &mut Vec<u8>| {
        let text = String::from_utf8_lossy(line).trim_end().to_owned();
        line.clear();
        if text.is_empty() {
            return;
        }
        if logged < MAX_STDERR_LINES {
            tracing::warn!(target: "kiln_worker::jail::child", decoder_pid = pid, "{text}");
        } else if logged == MAX_STDERR_LINES {
            tracing::warn!(target: "kiln_worker::jail::child", decoder_pid = pid, "further stderr of this decoder is not logged");
        }
        logged += 1;
        tail.push(text);
    };
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        for &b in &chunk[..n] {
            if b == b'\n' {
                emit(&mut line);
            } else if line.len() < MAX_STDERR_LINE {
                line.push(b);
            }
        }
    }
    emit(&mut line);
}

/// One running child.
pub(super) struct Child {
    process: tokio::process::Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    pub(super) pid: u32,
    pub(super) jobs: u32,
    stderr: Arc<StderrTail>,
    forwarder: tokio::task::JoinHandle<()>,
}

impl Child {
    /// Starts a child and waits for its hello.
    pub(super) async fn spawn(spec: &ChildSpec) -> Result<(Self, Hello), JailError> {
        let mut process = spec
            .command()
            .spawn()
            .map_err(|e| JailError::Spawn(format!("{}: {e}", spec.program.display())))?;
        let pid = process.id().unwrap_or_default();
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        ) else {
            return Err(JailError::Spawn("the child's pipes are missing".into()));
        };
        let tail = Arc::new(StderrTail::default());
        let forwarder = tokio::spawn(forward_stderr(stderr, pid, tail.clone()));
        let mut child = Self {
            process,
            stdin: Some(stdin),
            stdout,
            pid,
            jobs: 0,
            stderr: tail,
            forwarder,
        };
        let hello = tokio::time::timeout(
            HELLO_TIMEOUT,
            protocol::read_frame_async(&mut child.stdout, 64 * 1024),
        )
        .await;
        let failed = |why: String, death: Death| {
            JailError::Spawn(format!(
                "{why} (exit: {:?}, signal: {:?}, stderr: {})",
                death.code,
                death.signal.map(signal_name),
                death.stderr.join(" | ")
            ))
        };
        let payload = match hello {
            Ok(Ok(payload)) => payload,
            Ok(Err(e)) => {
                let why = format!("the child ended before it was ready ({e})");
                return Err(failed(why, child.reap(EXIT_GRACE).await));
            }
            Err(_) => {
                let why = format!("the child was not ready within {HELLO_TIMEOUT:?}");
                return Err(failed(why, child.reap(Duration::ZERO).await));
            }
        };
        match protocol::decode::<Hello>(&payload) {
            Ok(hello) if hello.protocol == PROTOCOL_VERSION => Ok((child, hello)),
            Ok(hello) => {
                let why = format!(
                    "the child speaks protocol {}, this worker {PROTOCOL_VERSION}",
                    hello.protocol
                );
                Err(failed(why, child.reap(Duration::ZERO).await))
            }
            Err(e) => {
                let why = format!("the child's hello is malformed ({e})");
                Err(failed(why, child.reap(Duration::ZERO).await))
            }
        }
    }

    /// Sends one request frame and reads the response.
    pub(super) async fn exchange(
        &mut self,
        frame: &[u8],
        max: usize,
    ) -> Result<Response, FrameError> {
        let stdin = self.stdin.as_mut().ok_or(FrameError::Closed)?;
        stdin.write_all(frame).await?;
        stdin.flush().await?;
        let payload = protocol::read_frame_async(&mut self.stdout, max).await?;
        protocol::decode(&payload)
    }

    /// Closes its stdin, waits up to `grace` for it to exit, kills it if it has not, then
    /// waits for the end of its stderr (so the tail holds its last words).
    pub(super) async fn reap(mut self, grace: Duration) -> Death {
        drop(self.stdin.take());
        let status = match tokio::time::timeout(grace, self.process.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                let _ = self.process.start_kill();
                tokio::time::timeout(EXIT_GRACE, self.process.wait())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut self.forwarder).await;
        use std::os::unix::process::ExitStatusExt;
        Death {
            signal: status.and_then(|s| s.signal()),
            code: status.and_then(|s| s.code()),
            stderr: self.stderr.lines(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn death(signal: Option<i32>, code: Option<i32>, stderr: &[&str]) -> Death {
        Death {
            signal,
            code,
            stderr: stderr.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn cpu_limit_is_a_timeout() {
        let e = classify(&death(Some(libc::SIGXCPU), None, &[]), 1 << 30);
        assert!(matches!(e, ImagingError::Timeout(_)), "{e:?}");
    }

    #[test]
    fn allocation_failure_or_oom_kill_is_too_large() {
        let line = "memory allocation of 2147483648 bytes failed";
        let e = classify(&death(Some(libc::SIGABRT), None, &[line]), 1 << 30);
        assert!(
            matches!(e, ImagingError::TooLarge(ref m) if m.contains("1073741824")),
            "{e:?}"
        );
        let e = classify(&death(Some(libc::SIGKILL), None, &[]), 1 << 30);
        assert!(matches!(e, ImagingError::TooLarge(_)), "{e:?}");
    }

    #[test]
    fn crashes_and_exits_are_corrupt_and_quote_the_last_stderr_line() {
        let e = classify(&death(Some(libc::SIGSEGV), None, &["a", "boom"]), 1 << 30);
        assert_eq!(
            e,
            ImagingError::Corrupt("the decoder crashed (SIGSEGV); stderr: boom".into())
        );
        let e = classify(&death(Some(libc::SIGABRT), None, &[]), 1 << 30);
        assert_eq!(
            e,
            ImagingError::Corrupt("the decoder crashed (SIGABRT)".into())
        );
        let e = classify(&death(None, Some(101), &[]), 1 << 30);
        assert!(
            matches!(e, ImagingError::Corrupt(ref m) if m.contains("status 101")),
            "{e:?}"
        );
    }
}
