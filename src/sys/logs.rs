//! The log files a persistent process writes: `--log-file` (on fds 1 and 2) and
//! `--access-log` (its own fd), both reopened by path on SIGUSR1, as nginx and gunicorn do
//! for logrotate's `postrotate`. The handler itself reopens (open, dup2 and close are
//! async-signal-safe), so no thread has to notice a flag first and every process of the
//! family reopens its own descriptors when it gets the signal.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// `--log-file`, as the handler reopens it.
static LOG_PATH: OnceLock<CString> = OnceLock::new();
/// `--access-log`: its path and the descriptor lines are written to (-1: none).
static ACCESS_PATH: OnceLock<CString> = OnceLock::new();
static ACCESS_FD: AtomicI32 = AtomicI32::new(-1);
/// How many SIGUSR1 this process got: a supervisor passes each on to its children.
static REOPENS: AtomicU64 = AtomicU64::new(0);

const FLAGS: libc::c_int = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC;
const MODE: libc::c_uint = 0o644;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path holds a NUL byte"))
}

fn open_append(path: &CString) -> libc::c_int {
    // SAFETY: open on a valid C string; async-signal-safe.
    unsafe { libc::open(path.as_ptr(), FLAGS, MODE) }
}

/// Open `path` for the access log (appending, created 0644 when missing).
pub fn open_access_log(path: &Path) -> io::Result<()> {
    let c = c_path(path)?;
    let fd = open_append(&c);
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let _ = ACCESS_PATH.set(c);
    let old = ACCESS_FD.swap(fd, Ordering::SeqCst);
    if old >= 0 {
        // SAFETY: a descriptor this module opened and no one else holds.
        unsafe { libc::close(old) };
    }
    Ok(())
}

/// Is an access log open?
pub fn access_log_enabled() -> bool {
    ACCESS_FD.load(Ordering::Relaxed) >= 0
}

/// Append one line (one write: with O_APPEND, lines of several threads and processes do
/// not interleave). Errors are dropped: a full disk must not fail the request.
pub fn write_access_line(line: &[u8]) {
    let fd = ACCESS_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: writes from a live buffer to a descriptor this module owns (a reopen
        // dup2s onto the same number, so it stays valid).
        unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
    }
}

/// Reopen `path` onto `target`; nothing changes if it cannot be opened.
fn reopen_onto(path: &CString, targets: &[libc::c_int]) {
    let fd = open_append(path);
    if fd < 0 {
        return;
    }
    // SAFETY: dup2 and close on descriptors we own; all async-signal-safe.
    unsafe {
        for t in targets {
            libc::dup2(fd, *t);
        }
        libc::close(fd);
    }
}

extern "C" fn on_reopen(_: libc::c_int) {
    if let Some(p) = LOG_PATH.get() {
        reopen_onto(p, &[2, 1]);
    }
    let access = ACCESS_FD.load(Ordering::SeqCst);
    if let (Some(p), true) = (ACCESS_PATH.get(), access >= 0) {
        reopen_onto(p, &[access]);
    }
    REOPENS.fetch_add(1, Ordering::SeqCst);
}

/// Reopen the logs on SIGUSR1 from now on (`log_file`: what fds 1 and 2 were pointed at by
/// `secure_stdio`). Children forked later inherit the handler.
pub fn reopen_on_sigusr1(log_file: Option<&Path>) -> io::Result<()> {
    if let Some(p) = log_file {
        let _ = LOG_PATH.set(c_path(p)?);
    }
    super::set_signal(libc::SIGUSR1, Some(on_reopen));
    Ok(())
}

/// SIGUSR1s received so far (a supervisor compares it with what it last passed on).
pub fn reopen_count() -> u64 {
    REOPENS.load(Ordering::SeqCst)
}

/// If fds 1 and 2 write to `path` (a log no logrotate knows) and it has grown past `limit`
/// bytes, rename it to `PATH.1` (replacing the older copy) and point them at a new `path`
/// (0600). True when rotated.
pub fn rotate_stdio(path: &Path, limit: u64) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let (Ok(ours), Ok(named)) = (std::fs::metadata("/proc/self/fd/2"), std::fs::symlink_metadata(path)) else { return Ok(false) };
    if (ours.dev(), ours.ino()) != (named.dev(), named.ino()) || ours.size() <= limit {
        return Ok(false);
    }
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    std::fs::rename(path, &old)?;
    let fresh = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)?;
    // SAFETY: dup2 from a file we own onto the standard descriptors.
    unsafe {
        if libc::dup2(fresh.as_raw_fd(), 2) < 0 || libc::dup2(fresh.as_raw_fd(), 1) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdio_is_rotated_only_when_it_is_that_file_and_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("k.log");
        std::fs::write(&log, vec![b'x'; 100]).unwrap();
        // fd 2 of the test runner is not k.log: never touched.
        assert!(!rotate_stdio(&log, 10).unwrap());
        assert!(!dir.path().join("k.log.1").exists());
    }
}
