//! Confining a decoder child, in this order (each step needs what the next one takes away):
//!
//! 1. **rlimits** (`setrlimit(2)`): `RLIMIT_AS` = `worker.jail.address_space_bytes` (a decode
//!    past it fails its allocation: `image_too_large`), `RLIMIT_CPU` hard = enough for every
//!    job this child may serve ([`limit_cpu_for_job`] lowers the soft limit before each one,
//!    so a stuck decoder gets `SIGXCPU`: `decode_timeout`, behind the worker's wall clock),
//!    `RLIMIT_NOFILE` 16, `RLIMIT_FSIZE` 0 (no file can grow), `RLIMIT_CORE` 0.
//! 2. **Library initialisation that may open files**: libheif (plugin loading), kept
//!    initialised for the child's life.
//! 3. **Landlock** (best effort): every filesystem right, TCP bind and connect, and (ABI 6)
//!    signals and abstract Unix sockets outside the child are denied. A kernel without it is
//!    reported in [`Confinement::landlock`] (and logged by the worker); seccomp still holds.
//! 4. **Warm-up**: a tiny PNG and JPEG through the whole pipeline, to WebP and JPEG, so lazy
//!    initialisation (thread pools, tables, CPU-feature detection) happens now.
//! 5. **seccomp** ([`super::seccomp`]), on every thread. Irreversible, and last.

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};

use super::ChildOptions;
use super::seccomp;
use crate::imaging::{self, Limits};
use kiln_shared::domain::OutputFormat;

/// What confining achieved; kept alive for the child's life (it holds libheif initialised).
pub struct Confinement {
    /// Whether the seccomp filter is installed.
    pub seccomp: bool,
    /// What Landlock enforces, in words (see [`super::protocol::Hello::landlock`]).
    pub landlock: String,
    _heif: Option<libheif_rs::LibHeif>,
}

/// Files the child may have open: its pipes, plus slack for library initialisation.
const MAX_OPEN_FILES: u64 = 16;

/// Applies every step of the module docs to this process.
///
/// # Errors
/// When an rlimit cannot be set or the seccomp filter cannot be installed: the child must not
/// serve unconfined, so it exits and the worker reports why.
pub fn confine(options: &ChildOptions) -> anyhow::Result<Confinement> {
    set_rlimits(options)?;
    let heif = libheif_rs::LibHeif::new_checked().ok();
    let landlock = landlock();
    warm_up();
    seccomp::install()?;
    Ok(Confinement {
        seccomp: true,
        landlock,
        _heif: heif,
    })
}

fn set_rlimits(options: &ChildOptions) -> nix::Result<()> {
    setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
    setrlimit(Resource::RLIMIT_FSIZE, 0, 0)?;
    setrlimit(Resource::RLIMIT_NOFILE, MAX_OPEN_FILES, MAX_OPEN_FILES)?;
    let space = options.address_space_bytes;
    setrlimit(Resource::RLIMIT_AS, space, space)?;
    // Every job this child may serve at its timeout, plus start-up.
    let cpu = u64::from(options.max_jobs)
        .saturating_mul(options.job_timeout_secs.saturating_add(1))
        .saturating_add(60);
    setrlimit(Resource::RLIMIT_CPU, cpu, cpu)
}

/// CPU time this process has used (user + system), in whole seconds rounded up.
fn cpu_used_secs() -> nix::Result<u64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let micros = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
    };
    Ok((micros(usage.user_time()) + micros(usage.system_time())).div_ceil(1_000_000))
}

/// Lowers this process's soft `RLIMIT_CPU` to the CPU time used so far plus `timeout_secs`
/// plus 1 s (never above the hard limit), so a job that burns more CPU than its wall-clock
/// budget is stopped by `SIGXCPU` even if the worker's timer failed.
///
/// # Errors
/// When `getrusage` or `prlimit` fails (not expected: the filter allows both on itself).
pub fn limit_cpu_for_job(timeout_secs: u64) -> nix::Result<()> {
    let (_, hard) = getrlimit(Resource::RLIMIT_CPU)?;
    let soft = cpu_used_secs()?
        .saturating_add(timeout_secs)
        .saturating_add(1)
        .min(hard);
    setrlimit(Resource::RLIMIT_CPU, soft, hard)
}

fn landlock() -> String {
    use landlock::{ABI, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetStatus, Scope};
    let abi = ABI::V6;
    let restricted = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.handle_access(AccessNet::from_all(abi)))
        .and_then(|r| r.scope(Scope::from_all(abi)))
        .and_then(|r| r.create())
        .and_then(|r| r.restrict_self());
    match restricted {
        Ok(status) => match status.ruleset {
            RulesetStatus::FullyEnforced => "fully enforced".to_owned(),
            RulesetStatus::PartiallyEnforced => {
                "partially enforced (this kernel's Landlock lacks some of the rights)".to_owned()
            }
            RulesetStatus::NotEnforced => {
                "not enforced (Landlock is not available in this kernel)".to_owned()
            }
        },
        Err(e) => format!("not enforced: {e}"),
    }
}

/// Runs the pipeline on tiny in-memory images (see the module docs). Failures are ignored:
/// this only triggers initialisation.
fn warm_up() {
    let pixels = image::RgbImage::from_fn(16, 12, |x, y| {
        image::Rgb([(x * 16) as u8, (y * 20) as u8, 128])
    });
    let image = image::DynamicImage::ImageRgb8(pixels);
    let mut renditions = kiln_shared::domain::Rendition::defaults();
    let mut jpeg = renditions[0].clone();
    jpeg.name = "warm-up-jpeg".into();
    jpeg.format = OutputFormat::Jpeg;
    renditions.push(jpeg);
    let limits = Limits::from_settings(&kiln_shared::config::WorkerSettings::default());
    for format in [image::ImageFormat::Png, image::ImageFormat::Jpeg] {
        let mut encoded = std::io::Cursor::new(Vec::new());
        if image.write_to(&mut encoded, format).is_ok() {
            let _ = imaging::process(encoded.get_ref(), &renditions, &limits);
        }
    }
}
