//! Processes: fork, signals, reaping, leaving at once, the clock, the environment and the
//! allocator's process-wide options.

use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Which side of a fork this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    Child,
    Parent(libc::pid_t),
}

/// fork(2).
///
/// Call it only while this process has a single thread, and (when Python is initialised)
/// between `PyOS_BeforeFork` and `PyOS_AfterFork_*`: the child gets a copy of this thread
/// only, and a lock another thread held would stay held forever.
pub fn fork() -> io::Result<Fork> {
    // SAFETY: the caller keeps the single-thread rule above; fork has no other precondition.
    match unsafe { libc::fork() } {
        pid if pid < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// Send `sig` to `pid` (errors ignored: the process may be gone already).
pub fn kill(pid: libc::pid_t, sig: libc::c_int) {
    // Never 0 or -1: the signal would reach our whole process group, or every process we
    // may signal.
    if pid > 0 {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Send `sig` to the process group `pgid` (a process started in a session of its own,
/// with what it started in turn).
pub fn kill_group(pgid: libc::pid_t, sig: libc::c_int) {
    // Never 0 or 1 or below: our own group, or init's.
    if pgid > 1 {
        // SAFETY: kill has no memory preconditions; a negative pid names the group.
        unsafe { libc::kill(-pgid, sig) };
    }
}

/// Send `sig` to this thread.
pub fn raise(sig: libc::c_int) {
    // SAFETY: raise has no memory preconditions.
    unsafe { libc::raise(sig) };
}

/// Reap one exited child without blocking: its pid and wait status.
pub fn reap() -> Option<(libc::pid_t, libc::c_int)> {
    let mut status = 0;
    // SAFETY: waitpid writes the status into a live int.
    let pid = unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// Die (SIGTERM) with the parent `parent`: a supervisor killed with SIGKILL must not leave
/// its children holding the socket. Exits at once if the parent is already gone.
pub fn die_with_parent(parent: libc::pid_t) {
    // SAFETY: prctl with integer arguments; getppid has no preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        // The parent may have died before prctl took effect.
        if libc::getppid() != parent {
            libc::_exit(0);
        }
    }
}

/// Leave the process at once (`_exit`): no destructors, no atexit, no stdio flush.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process; callers flush what is worth keeping first.
    unsafe { libc::_exit(code) }
}

/// Install `handler` for `sig` (`None`: ignore it). Handlers in this crate only store to
/// atomics (async-signal-safe); no SA_RESTART, so a blocking epoll_wait or poll returns at
/// once.
pub fn set_signal(sig: libc::c_int, handler: Option<extern "C" fn(libc::c_int)>) {
    // SAFETY: a zeroed sigaction with an empty mask and a valid handler or SIG_IGN.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler.map_or(libc::SIG_IGN, |h| h as usize);
        libc::sigemptyset(&raw mut sa.sa_mask);
        libc::sigaction(sig, &raw const sa, std::ptr::null_mut());
    }
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// CLOCK_MONOTONIC in nanoseconds (system-wide on Linux, so two processes' readings compare).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The process environment as byte pairs: a CGI request's variables (all of them, as
/// wsgiref reads them).
pub fn process_params() -> Vec<(Vec<u8>, Vec<u8>)> {
    std::env::vars_os().map(|(k, v): (OsString, OsString)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
}

/// Make the program `cmd` starts a detached daemon: its own session (out of the web
/// server's process group and its signals), and no fd but stdio and `keep` inherited (a
/// child holding the CGI's stdout would keep the response from ending).
pub fn detach_on_exec(cmd: &mut Command, keep: RawFd) {
    // SAFETY: between fork and exec only async-signal-safe calls (setsid, fcntl, getrlimit,
    // close_range).
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::fcntl(keep, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // close_range (Linux 5.11) marks every fd at once, however high the limit.
            let ranges = [(3, keep.saturating_sub(1) as libc::c_uint), (keep as libc::c_uint + 1, libc::c_uint::MAX)];
            for (first, last) in ranges {
                if first > last {
                    continue;
                }
                if libc::syscall(libc::SYS_close_range, first, last, libc::CLOSE_RANGE_CLOEXEC) != 0 {
                    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                    let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) == 0 { lim.rlim_cur.min(1 << 20) as libc::c_uint } else { 1024 };
                    for fd in first..last.min(max) {
                        libc::fcntl(fd as RawFd, libc::F_SETFD, libc::FD_CLOEXEC);
                    }
                }
            }
            Ok(())
        });
    }
}

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc 2.x (the version is pinned by Cargo.lock).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Give freed memory back to the OS at once: a worker that spooled a 1 MiB body must not
/// keep holding it (tests/leaks.rs bounds each worker's RSS growth). Only meaningful in a
/// binary whose global allocator is mimalloc; call it before any thread exists.
pub fn allocator_release_at_once() {
    // SAFETY: sets a process-wide mimalloc option; called from main before any thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}
