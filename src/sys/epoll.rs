//! epoll, as the request threads' event loops use it: one instance per thread, its fd
//! closed on drop, and the three calls wrapped safe.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// An epoll instance, closed on drop.
pub struct Epoll(OwnedFd);

impl Epoll {
    /// A new instance (close-on-exec).
    pub fn new() -> std::io::Result<Epoll> {
        // SAFETY: plain syscall; the fd it returns is owned by the value made from it.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// `epoll_ctl(op, fd)` with `events`; `token` comes back in the event.
    pub fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` outlives the call; the kernel copies it.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &raw mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `ms` milliseconds; the number of `events` filled (0 on a signal).
    pub fn wait(&self, events: &mut [libc::epoll_event], ms: i32) -> usize {
        let room = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // SAFETY: the buffer holds at least `room` entries.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), room, ms) };
        usize::try_from(n).unwrap_or(0)
    }
}
