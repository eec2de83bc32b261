//! One request thread: an epoll loop over the listener and its connections. The thread
//! holds the GIL except while it waits in epoll and during socket writes, so with one
//! thread per process (the default) there is no GIL hand-off at all, and kept-alive
//! connections from nginx never tie a thread down.
// TODO(layout): move to sys (the Epoll wrapper).
#![allow(unsafe_code)]

use super::listen::{self, Listener};
use super::STOP;
use crate::fastcgi::conn::{self, Conn, Settings, Step};
use pyo3::prelude::*;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// While stopping, an idle connection is closed once it has been quiet this long.
const STOP_GRACE: Duration = Duration::from_millis(300);

/// The epoll token of the listener (connections use their fd).
const LISTENER: u64 = u64::MAX;

/// An epoll instance, closed on drop.
struct Epoll(RawFd);

impl Epoll {
    fn new() -> std::io::Result<Epoll> {
        // SAFETY: plain syscall; the fd is owned by the returned value.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Epoll(fd))
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` outlives the call; the kernel copies it.
        if unsafe { libc::epoll_ctl(self.0, op, fd, &mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event], ms: i32) -> usize {
        // SAFETY: the buffer holds `events.len()` entries.
        let n = unsafe { libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, ms) };
        usize::try_from(n).unwrap_or(0)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

pub struct Worker<'a> {
    pub listener: &'a Listener,
    pub app: &'a Py<PyAny>,
    pub settings: &'a Settings,
    pub allowed: Option<&'a [IpAddr]>,
    /// Unix peers must have this uid (SO_PEERCRED); others are dropped unanswered.
    pub peer_uid: Option<u32>,
    /// Connections this thread keeps at most; past it the listener is left alone.
    pub max_conns: usize,
    /// Several threads share the listener: wake only one of them per connection.
    pub exclusive: bool,
    pub graceful_timeout: Duration,
    pub recycle: &'a Recycle,
    /// `--read-timeout`: a connection in the middle of sending a request that goes quiet for
    /// this long is closed (slowloris), so it holds neither memory nor a connection slot.
    pub read_timeout: Option<Duration>,
}

/// `--max-requests` (with up to 10% jitter, so workers do not all recycle at once) and
/// `--max-rss`: once due, the worker stops accepting, finishes and exits; its zygote forks
/// a fresh one.
pub struct Recycle {
    max_requests: Option<u64>,
    max_rss_kib: Option<u64>,
    served: std::sync::atomic::AtomicU64,
    last_rss_check: std::sync::Mutex<Instant>,
}

impl Recycle {
    pub fn new(max_requests: Option<u64>, max_rss_mb: Option<u64>) -> Recycle {
        let jitter = |n: u64| {
            let seed = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33;
            n + seed % (n / 10 + 1)
        };
        Recycle {
            max_requests: max_requests.map(jitter),
            max_rss_kib: max_rss_mb.map(|m| m * 1024),
            served: std::sync::atomic::AtomicU64::new(0),
            last_rss_check: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Count a finished request; true when the worker is due for recycling.
    fn due(&self) -> bool {
        let served = self.served.fetch_add(1, Ordering::SeqCst) + 1;
        if self.max_requests.is_some_and(|max| served >= max) {
            log::info!("recycling after {served} requests (--max-requests)");
            return true;
        }
        let Some(limit) = self.max_rss_kib else { return false };
        let mut last = self.last_rss_check.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() < Duration::from_secs(1) {
            return false;
        }
        *last = Instant::now();
        let rss = rss_kib();
        if rss > limit {
            log::warn!("recycling: RSS {} MiB is over --max-rss {} MiB", rss / 1024, limit / 1024);
            return true;
        }
        false
    }
}

/// This process's resident set size.
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let page = crate::sys::page_size();
    pages * page / 1024
}

impl Worker<'_> {
    /// Serve until a stop signal, then let requests in flight finish (bounded) and return.
    pub fn run(&self, py: Python<'_>) -> std::io::Result<()> {
        let epoll = Epoll::new()?;
        let listen_events = libc::EPOLLIN as u32 | if self.exclusive { libc::EPOLLEXCLUSIVE as u32 } else { 0 };
        epoll.ctl(libc::EPOLL_CTL_ADD, self.listener.raw_fd(), listen_events, LISTENER)?;
        let mut listening = true;
        let mut conns: HashMap<RawFd, Conn> = HashMap::new();
        // When each connection last finished something: the least recent idle one makes room.
        let mut last_used: HashMap<RawFd, Instant> = HashMap::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut buf = vec![0u8; conn::READ_BUF];
        let mut stop_deadline: Option<Instant> = None;
        let mut last_sweep = Instant::now();
        loop {
            let n = py.detach(|| epoll.wait(&mut events, 1000));
            if super::HUP_IGNORED.swap(false, Ordering::SeqCst) {
                log::warn!("SIGHUP ignored: a single process cannot reload itself; run with a supervisor (--workers 2 or more, --reload, --max-requests) or let the web server restart it");
            }
            if STOP.load(Ordering::SeqCst) && stop_deadline.is_none() {
                // Stop: no new connections; idle ones close after a short quiet, busy ones when done.
                stop_deadline = Some(Instant::now() + self.graceful_timeout);
                if listening {
                    // Connections already in the backlog were accepted by the kernel on our
                    // behalf and their web server is waiting: serve them, do not reset them.
                    self.take_new(py, &epoll, &mut conns, &mut last_used, &mut buf, true);
                    let _ = epoll.ctl(libc::EPOLL_CTL_DEL, self.listener.raw_fd(), 0, 0);
                    listening = false;
                }
            }
            for ev in &events[..n] {
                let token = ev.u64;
                if token == LISTENER {
                    if stop_deadline.is_none() {
                        self.take_new(py, &epoll, &mut conns, &mut last_used, &mut buf, false);
                    }
                    continue;
                }
                self.serve_readable(py, token as RawFd, &mut conns, &mut last_used, &mut buf);
            }
            if let Some(limit) = self.read_timeout {
                // At most once a second: the check locks every connection.
                if last_sweep.elapsed() >= Duration::from_secs(1) {
                    last_sweep = Instant::now();
                    self.close_stalled(limit, &mut conns, &mut last_used);
                }
            }
            if let Some(deadline) = stop_deadline {
                // Idle for a moment: a connection just taken from the backlog may not have
                // sent its request yet (the web server writes right after connecting).
                let now = Instant::now();
                let quiet = |fd: &RawFd| last_used.get(fd).is_none_or(|t| now.duration_since(*t) >= STOP_GRACE);
                let idle: Vec<RawFd> = conns.iter().filter(|(fd, c)| quiet(fd) && c.is_idle()).map(|(fd, _)| *fd).collect();
                for fd in idle {
                    last_used.remove(&fd);
                    if let Some(c) = conns.remove(&fd) {
                        c.close();
                    }
                }
                if conns.is_empty() || Instant::now() >= deadline {
                    return Ok(());
                }
                continue;
            }
            // Every connection busy at the limit: leave the listener alone until one closes
            // (idle ones are closed to make room in `accept_all`).
            let blocked = conns.len() >= self.max_conns && conns.values().all(|c| !c.is_idle());
            if listening == blocked {
                let op = if blocked { libc::EPOLL_CTL_DEL } else { libc::EPOLL_CTL_ADD };
                if epoll.ctl(op, self.listener.raw_fd(), listen_events, LISTENER).is_ok() {
                    listening = !blocked;
                }
            }
        }
    }

    /// Accept waiting connections (all of them when `drain`) and serve what each has sent.
    /// A web server that connects per request (mod_fcgid, lighttpd) has usually sent the
    /// request already: it is read now, not one epoll round trip later, and a connection
    /// answered and closed on that first read (nginx's default: one request per connection)
    /// never enters the epoll set.
    fn take_new(&self, py: Python<'_>, epoll: &Epoll, conns: &mut HashMap<RawFd, Conn>, last_used: &mut HashMap<RawFd, Instant>, buf: &mut [u8], drain: bool) {
        for fd in self.accept_all(conns, last_used, drain) {
            self.serve_readable(py, fd, conns, last_used, buf);
            if conns.contains_key(&fd) {
                if let Err(e) = epoll.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32, fd as u64) {
                    log::warn!("cannot watch a new connection: {e}");
                    last_used.remove(&fd);
                    if let Some(c) = conns.remove(&fd) {
                        c.close();
                    }
                }
            }
        }
    }

    /// Take in what a connection has sent and run every request it completes.
    fn serve_readable(&self, py: Python<'_>, fd: RawFd, conns: &mut HashMap<RawFd, Conn>, last_used: &mut HashMap<RawFd, Instant>, buf: &mut [u8]) {
        let Some(conn) = conns.get(&fd).cloned() else { return };
        last_used.insert(fd, Instant::now());
        // A slow upload is activity too (the accelerator's idle timer must not stop it).
        super::ACTIVITY.fetch_add(1, Ordering::Relaxed);
        let mut step = conn.on_readable(self.settings, buf);
        loop {
            step = match step {
                Step::Wait => return,
                Step::Run(ready) => {
                    super::IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
                    let next = conn::run(py, &conn, self.app, self.settings, ready);
                    super::IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
                    super::ACTIVITY.fetch_add(1, Ordering::SeqCst);
                    // The quiet time of what follows counts from now, not from before the app ran.
                    last_used.insert(fd, Instant::now());
                    if self.recycle.due() {
                        STOP.store(true, Ordering::SeqCst);
                    }
                    next
                }
                Step::Close => {
                    // Closing the fd takes it out of the epoll set (it is never dup'ed).
                    conns.remove(&fd);
                    last_used.remove(&fd);
                    conn.close();
                    return;
                }
            };
        }
    }

    /// Close connections that started a request and then sent nothing for `limit`. Idle
    /// ones (between requests: a web server's pool) are left alone; `--max-conns` bounds them.
    fn close_stalled(&self, limit: Duration, conns: &mut HashMap<RawFd, Conn>, last_used: &mut HashMap<RawFd, Instant>) {
        let now = Instant::now();
        let stalled: Vec<RawFd> = conns
            .iter()
            .filter(|(fd, c)| last_used.get(fd).is_some_and(|t| now.duration_since(*t) >= limit) && !c.is_idle())
            .map(|(fd, _)| *fd)
            .collect();
        for fd in stalled {
            log::warn!("closing a connection that sent part of a request and then nothing for {}s (--read-timeout)", limit.as_secs());
            last_used.remove(&fd);
            if let Some(c) = conns.remove(&fd) {
                c.close();
            }
        }
    }

    /// Accept every waiting connection; returns their fds (the caller adds them to the
    /// epoll set once their first read leaves them open).
    fn accept_all(&self, conns: &mut HashMap<RawFd, Conn>, last_used: &mut HashMap<RawFd, Instant>, drain: bool) -> Vec<RawFd> {
        let mut accepted = Vec::new();
        loop {
            // At the limit, the least recently used idle connection (a web server's pooled
            // one) gives way to a waiting new one: FastCGI lets the application close a
            // connection between requests, and web servers reconnect. With none idle, the
            // new one waits in the backlog.
            if conns.len() >= self.max_conns {
                if !crate::sys::wait_readable(self.listener.raw_fd(), 0) {
                    return accepted;
                }
                let oldest_idle = conns.iter().filter(|(_, c)| c.is_idle()).min_by_key(|(fd, _)| last_used.get(fd).copied()).map(|(fd, _)| *fd);
                let Some(old) = oldest_idle else { return accepted };
                log::debug!("closing an idle connection to make room (--max-conns {})", self.max_conns);
                last_used.remove(&old);
                if let Some(c) = conns.remove(&old) {
                    c.close();
                }
            }
            let (stream, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return accepted,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("accept: {e}");
                    return accepted;
                }
            };
            if let (Some(allowed), Some(peer)) = (self.allowed, peer) {
                if !listen::peer_allowed(allowed, peer) {
                    log::warn!("refused a connection from {peer}: not in FCGI_WEB_SERVER_ADDRS");
                    continue;
                }
            }
            if let (Some(want), listen::Stream::Unix(_)) = (self.peer_uid, &stream) {
                match crate::sys::peer_cred(stream.fd()) {
                    Ok((_, uid)) if uid == want => {}
                    Ok((pid, uid)) => {
                        log::warn!("refused a connection from pid {pid} uid {uid}: only uid {want} may use this socket");
                        continue;
                    }
                    Err(e) => {
                        log::warn!("refused a connection whose peer is unknown: {e}");
                        continue;
                    }
                }
            }
            super::ACTIVITY.fetch_add(1, Ordering::SeqCst);
            let conn = Conn::new(stream, &self.settings.codec);
            let fd = conn.fd();
            conns.insert(fd, conn);
            last_used.insert(fd, Instant::now());
            accepted.push(fd);
            // Sharing the listener with other workers: take one connection per wake-up, so a
            // busy worker does not drain the backlog while an idle one waits (the kernel wakes
            // the idle one for the next connection).
            if self.exclusive && !drain {
                return accepted;
            }
        }
    }
}
