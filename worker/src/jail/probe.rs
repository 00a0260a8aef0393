//! The jail probe: from inside a confined child, try what a compromised decoder would want
//! to do (read the worker's environment, read a file, create a file, open a socket, start a
//! program) and report each outcome. `kiln decode-child --probe` prints it for operators
//! checking a host; the test hook `KILN-TEST-PROBE` returns it through a real worker
//! (`tests/integration/jail.rs`).

use serde::{Deserialize, Serialize};

use super::confine::Confinement;

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// Whether the operation succeeded (the jail failed to stop it).
    pub allowed: bool,
    /// What happened: the error, or what was obtained.
    pub detail: String,
}

impl Attempt {
    fn of<T>(result: std::io::Result<T>, ok: impl FnOnce(T) -> String) -> Self {
        match result {
            Ok(v) => Self {
                allowed: true,
                detail: ok(v),
            },
            Err(e) => Self {
                allowed: false,
                detail: e.to_string(),
            },
        }
    }
}

/// What the probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Variables in this process's environment (0: the worker's secrets were not passed).
    pub env_vars: usize,
    /// Reading `/proc/{parent}/environ`, the environment of the process that started this one
    /// (the worker, with its credentials).
    pub parent_environ: Attempt,
    /// Reading `/etc/hostname`.
    pub read_file: Attempt,
    /// Creating `/tmp/kiln-jail-probe-{pid}`.
    pub create_file: Attempt,
    /// Binding a TCP socket on 127.0.0.1.
    pub socket: Attempt,
    /// Starting `/bin/true`.
    pub spawn: Attempt,
    /// Whether the seccomp filter is installed.
    pub seccomp: bool,
    /// What Landlock enforces (see [`super::protocol::Hello::landlock`]).
    pub landlock: String,
}

impl ProbeReport {
    /// Whether every attempt was stopped and the environment is empty.
    pub fn all_blocked(&self) -> bool {
        self.env_vars == 0
            && [
                &self.parent_environ,
                &self.read_file,
                &self.create_file,
                &self.socket,
                &self.spawn,
            ]
            .iter()
            .all(|a| !a.allowed)
    }
}

/// Runs every attempt from this (confined) process, whose parent is `parent`.
pub fn run(parent: i32, confinement: &Confinement) -> ProbeReport {
    let scratch = format!("/tmp/kiln-jail-probe-{}", std::process::id());
    let create_file = Attempt::of(std::fs::File::create(&scratch), |_| {
        let _ = std::fs::remove_file(&scratch);
        format!("created {scratch}")
    });
    ProbeReport {
        env_vars: std::env::vars_os().count(),
        parent_environ: Attempt::of(std::fs::read(format!("/proc/{parent}/environ")), |b| {
            format!("read {} bytes", b.len())
        }),
        read_file: Attempt::of(std::fs::read("/etc/hostname"), |b| {
            format!("read {} bytes", b.len())
        }),
        create_file,
        socket: Attempt::of(std::net::TcpListener::bind("127.0.0.1:0"), |l| {
            format!("bound {:?}", l.local_addr())
        }),
        spawn: Attempt::of(std::process::Command::new("/bin/true").status(), |s| {
            format!("ran /bin/true: {s}")
        }),
        seccomp: confinement.seccomp,
        landlock: confinement.landlock.clone(),
    }
}
