//! The decoder child's seccomp filter (seccomp-bpf through the `seccompiler` crate): an
//! **allow-list**. The pipeline, once its libraries are initialised, needs only memory, threads,
//! clocks, signals to itself and reads and writes on the pipes it already holds; every other
//! system call fails with `EPERM`. So a decoder exploited by a hostile file cannot open a file
//! or a socket, create, rename or delete anything, start a program, fork, or trace or signal
//! another process, whatever path the attacker takes (an allow-list also covers the
//! `io_uring`, `open_by_handle_at` or `process_vm_readv` routes a deny-list has to remember).
//!
//! Why an allow-list and not a deny-list: its failure mode is safe. A call the list forgot
//! fails with `EPERM` (or `ENOSYS`, below), which libraries treat as "not available" and fall
//! back from (glibc's thread creation, `available_parallelism`), or which fails that one
//! image; nothing gains a capability by being forgotten. The filter returns errors rather
//! than killing, so a rare path degrades instead of crashing the child.
//!
//! Argument checks, where a call is needed but only in one form:
//! - `clone` only with `CLONE_THREAD | CLONE_VM` (threads; no fork-style child);
//! - `clone3` fails with `ENOSYS` (its flags are in memory the filter cannot read), so glibc
//!   falls back to `clone`, whose flags it can; this is a second filter, installed last so
//!   that its `ENOSYS` wins over the first filter's `EPERM` (the kernel keeps the most
//!   recently installed filter's errno among equal actions);
//! - `tgkill` only to this process (`abort` raises `SIGABRT` on itself);
//! - `prlimit64` only on this process (the child lowers its own CPU-time limit before each
//!   job), `prctl` only to name threads and set no-new-privileges, `seccomp` only to add a
//!   filter (which can only restrict further).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Why the filter could not be built or installed.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// This architecture has no filter (seccompiler supports x86_64, aarch64 and riscv64).
    #[error("no seccomp filter for this architecture: {0}")]
    Arch(String),
    /// Building the filter failed (a bug in the rules).
    #[error("cannot build the seccomp filter: {0}")]
    Build(String),
    /// The kernel refused the filter (no seccomp support, or it is not allowed here).
    #[error("cannot install the seccomp filter: {0}")]
    Install(String),
}

/// System calls allowed with any arguments.
const ALLOWED: &[i64] = &[
    // The pipes it holds.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_lseek,
    // Memory.
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mremap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    // Threads (clone itself is below, with its flags checked).
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_set_tid_address,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // Signals to itself (abort, stack overflow handlers).
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    // Clocks, randomness, its own usage.
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_getrandom,
    libc::SYS_getrusage,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
];

/// System calls that must never be on the allow-list (checked by a test): what the jail
/// promises to stop, on every architecture.
pub const NEVER_ALLOWED: &[i64] = &[
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kill,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat2,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_truncate,
    libc::SYS_memfd_create,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_mount,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_clone3,
    libc::SYS_landlock_restrict_self,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_open,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_creat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mkdir,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_unlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rename,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_link,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_symlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_fork,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_vfork,
];

fn build(e: impl std::fmt::Display) -> SeccompError {
    SeccompError::Build(e.to_string())
}

/// A rule matching when argument `index` (64-bit) satisfies `op` against `value`.
fn arg(index: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompRule, SeccompError> {
    let cond = SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value).map_err(build)?;
    SeccompRule::new(vec![cond]).map_err(build)
}

/// The allow-list's rules for a process whose id is `pid`: [`ALLOWED`] unconditionally, the
/// others with their argument checks (see the module docs).
fn allow_rules(pid: u32) -> Result<BTreeMap<i64, Vec<SeccompRule>>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let thread = (libc::CLONE_THREAD | libc::CLONE_VM) as u64;
    rules.insert(
        libc::SYS_clone,
        vec![arg(0, SeccompCmpOp::MaskedEq(thread), thread)?],
    );
    rules.insert(
        libc::SYS_tgkill,
        vec![arg(0, SeccompCmpOp::Eq, u64::from(pid))?],
    );
    rules.insert(libc::SYS_prlimit64, vec![arg(0, SeccompCmpOp::Eq, 0)?]);
    rules.insert(
        libc::SYS_prctl,
        vec![
            arg(0, SeccompCmpOp::Eq, libc::PR_SET_NAME as u64)?,
            arg(0, SeccompCmpOp::Eq, libc::PR_GET_NAME as u64)?,
            arg(0, SeccompCmpOp::Eq, libc::PR_SET_NO_NEW_PRIVS as u64)?,
        ],
    );
    rules.insert(
        libc::SYS_seccomp,
        vec![arg(
            0,
            SeccompCmpOp::Eq,
            u64::from(libc::SECCOMP_SET_MODE_FILTER),
        )?],
    );
    Ok(rules)
}

/// The two compiled filters for a process whose id is `pid`, in installation order: the
/// allow-list (anything else `EPERM`), then the one that makes `clone3` `ENOSYS`.
///
/// # Errors
/// [`SeccompError::Arch`] on an architecture seccompiler does not support;
/// [`SeccompError::Build`] for a rule it rejects (a bug).
pub fn filters(pid: u32) -> Result<[BpfProgram; 2], SeccompError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SeccompError::Arch(e.to_string()))?;
    let allow = SeccompFilter::new(
        allow_rules(pid)?,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(build)?;
    let nosys = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(build)?;
    Ok([
        allow.try_into().map_err(build)?,
        nosys.try_into().map_err(build)?,
    ])
}

/// Installs [`filters`] on every thread of this process (seccomp `TSYNC`), after setting
/// no-new-privileges. Irreversible; call it last, once every library that opens files has
/// been initialised.
///
/// # Errors
/// As [`filters`], or [`SeccompError::Install`] when the kernel refuses.
pub fn install() -> Result<(), SeccompError> {
    for filter in filters(std::process::id())? {
        seccompiler::apply_filter_all_threads(&filter)
            .map_err(|e| SeccompError::Install(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_the_jail_promises_to_stop_is_allowed() {
        let rules = allow_rules(1234).unwrap();
        for nr in NEVER_ALLOWED {
            assert!(!rules.contains_key(nr), "syscall {nr} is allowed");
        }
    }

    #[test]
    fn the_filters_compile_for_this_architecture() {
        let [allow, nosys] = filters(1234).unwrap();
        assert!(allow.len() > ALLOWED.len(), "{}", allow.len());
        assert!(!nosys.is_empty());
    }
}
