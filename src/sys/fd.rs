//! File descriptors: pipes and one-shot readiness signals, poll, flock, close-on-exec, and
//! the standard descriptors a CGI program or a spawned responder must rearrange.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both fds on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The sending end of a readiness pipe: one byte says "ready"; closing it without that
/// byte (dropped, or the process died) says "failed".
#[derive(Debug)]
pub struct ReadySignal(OwnedFd);

impl ReadySignal {
    /// Take an fd this process inherited for the signal (from its parent through exec, or
    /// a copy fork gave it); it becomes close-on-exec, so nothing the app starts holds it.
    /// `None` when `fd` is not open.
    pub fn adopt(fd: RawFd) -> Option<ReadySignal> {
        if !set_cloexec(fd, true) {
            return None;
        }
        // SAFETY: the fd is open (fcntl succeeded) and was handed to this process for this
        // one signal: nothing else in the process uses or closes it.
        Some(ReadySignal(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Say "ready" (once: the signal is consumed and its fd closed).
    pub fn signal(self) {
        // SAFETY: one byte from a live buffer to an fd we own; a failed write reads as EOF
        // on the other side, which is the right answer for a peer that cannot be told.
        unsafe { libc::write(self.0.as_raw_fd(), [b'R'].as_ptr().cast(), 1) };
    }
}

impl AsRawFd for ReadySignal {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The waiting end of a readiness pipe.
#[derive(Debug)]
pub struct ReadyWait(File);

impl ReadyWait {
    /// Wait up to `timeout`: `Some(true)` ready, `Some(false)` the other side closed without
    /// saying so (it failed), `None` nothing yet (time out, or a signal arrived).
    pub fn wait(&mut self, timeout: Duration) -> Option<bool> {
        if !wait_readable(self.0.as_raw_fd(), i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX)) {
            return None;
        }
        let mut byte = [0u8; 1];
        match self.0.read(&mut byte) {
            Ok(n) => Some(n == 1),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(_) => Some(false),
        }
    }

    /// Read exactly `n` signals (one per sender sharing the pipe); false if the senders all
    /// closed before that.
    pub fn wait_all(mut self, n: usize) -> bool {
        let mut got = vec![0u8; n];
        self.0.read_exact(&mut got).is_ok()
    }
}

/// A close-on-exec readiness pipe: (waiting end, sending end).
pub fn ready_pipe() -> io::Result<(ReadyWait, ReadySignal)> {
    let (read_end, write_end) = pipe()?;
    Ok((ReadyWait(File::from(read_end)), ReadySignal(write_end)))
}

/// poll(2) on one fd for `events`, up to `ms` (-1: no limit): Ok(true) when ready.
fn poll_one(fd: RawFd, events: libc::c_short, ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd { fd, events, revents: 0 };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc > 0)
}

/// Wait until `fd` is readable or `ms` pass (0: just look); false if not readable (a
/// signal arriving counts as not yet).
pub fn wait_readable(fd: RawFd, ms: i32) -> bool {
    poll_one(fd, libc::POLLIN, ms).unwrap_or(false)
}

/// Wait until `fd` can take more bytes; Ok(false) on timeout. A signal does not cut the
/// wait short.
pub fn wait_writable(fd: RawFd, timeout: Duration) -> io::Result<bool> {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    loop {
        match poll_one(fd, libc::POLLOUT, ms) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// Set (or clear) close-on-exec; false when `fd` is not open.
pub fn set_cloexec(fd: RawFd, on: bool) -> bool {
    // SAFETY: F_SETFD on a descriptor number; a bad number only makes fcntl fail.
    unsafe { libc::fcntl(fd, libc::F_SETFD, if on { libc::FD_CLOEXEC } else { 0 }) == 0 }
}

/// Is `fd` a listening socket (fd 0: FCGI_LISTENSOCK_FILENO)? A connected socket or a pipe
/// is not.
pub fn is_listening_socket(fd: RawFd) -> bool {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `val`, which is that large.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN, (&raw mut val).cast(), &raw mut len) };
    rc == 0 && val != 0
}

pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty only queries the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Try an exclusive flock without blocking; true when taken (released when `file` closes).
pub fn flock_exclusive(file: &File) -> bool {
    // SAFETY: flock on an fd we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Run `f` with the file-creation mask set to `mask`, then restore the previous one.
pub fn with_umask<T>(mask: libc::mode_t, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(mask) };
    let out = f();
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    out
}

/// CGI: take fd 1 for the response and point fd 1 at stderr, so stray output lands in the
/// error log.
pub fn claim_stdout() -> io::Result<File> {
    // SAFETY: plain fd syscalls on fds 1 and 2; the duplicate is owned by the File we return.
    unsafe {
        let fd = libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

/// fd 1 as a File that is never closed (a CGI program's response channel: some servers end
/// the request when it closes).
pub fn inherited_stdout() -> std::mem::ManuallyDrop<File> {
    // SAFETY: fd 1 is open for a CGI program; ManuallyDrop keeps it from being closed.
    std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(1) })
}

/// fds 1 and 2 may be closed when a web server spawns us (FastCGI §2.2), and a new
/// connection could then land on them: point them at the log (or /dev/null) so nothing
/// written to stdout/stderr can ever reach a connection. stdout always goes to the log.
pub fn secure_stdio(log_file: Option<&Path>) -> io::Result<()> {
    let fd_open = |fd| {
        // SAFETY: F_GETFD only queries the descriptor.
        unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
    };
    let target = match log_file {
        Some(path) => Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        None if fd_open(2) => None,
        None => Some(std::fs::OpenOptions::new().write(true).open("/dev/null")?),
    };
    // SAFETY: dup2 onto the standard descriptors; the sources are open.
    unsafe {
        if let Some(file) = &target {
            if libc::dup2(file.as_raw_fd(), 2) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_pipe_says_ready_or_failed() {
        let (mut wait, signal) = ready_pipe().unwrap();
        assert_eq!(wait.wait(Duration::ZERO), None, "nothing yet");
        signal.signal();
        assert_eq!(wait.wait(Duration::from_secs(5)), Some(true));
        let (mut wait, signal) = ready_pipe().unwrap();
        drop(signal);
        assert_eq!(wait.wait(Duration::from_secs(5)), Some(false), "closed without the byte");
    }

    #[test]
    fn adopt_refuses_a_closed_fd() {
        assert!(ReadySignal::adopt(-1).is_none());
    }
}
