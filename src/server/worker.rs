//! One request thread: an epoll loop over the listener and its connections. The loop runs
//! without the GIL (the WSGI door takes it for each request, only while Python runs) and
//! never blocks on a peer: what it owes a connection waits in that connection's queue until
//! epoll says the socket is writable. Kept-alive connections from nginx never tie a thread
//! down.

use super::listen::{self, Listener};
use super::{watchdog, STOP};
use crate::gateway::fastcgi::{self as conn, Conn, Settings, Step};
use crate::sys::Epoll;
use crate::wsgi;
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// While stopping, an idle connection is closed once it has been quiet this long.
const STOP_GRACE: Duration = Duration::from_millis(300);

/// The epoll token of the listener (connections use their fd).
const LISTENER: u64 = u64::MAX;

/// One open connection of this thread.
struct Entry {
    conn: Conn,
    /// When it last finished something: the least recent idle one makes room, and a
    /// connection quiet too long mid-request is closed (`--read-timeout`).
    last_used: Instant,
    /// The epoll events it is registered for (see `Conn::interest`).
    interest: u32,
}

/// This thread's connections, by fd.
type Table = HashMap<RawFd, Entry>;

/// Take a connection out of the table and close it.
fn drop_conn(conns: &mut Table, fd: RawFd) {
    if let Some(e) = conns.remove(&fd) {
        // Closing the fd takes it out of the epoll set (it is never dup'ed).
        e.conn.close();
    }
}

pub struct Worker<'a> {
    pub listener: &'a Listener,
    pub app: &'a wsgi::App,
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
        let mut last = self.last_rss_check.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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
    /// Runs without the GIL.
    pub fn run(&self) -> std::io::Result<()> {
        let epoll = Epoll::new()?;
        let listen_events = libc::EPOLLIN as u32 | if self.exclusive { libc::EPOLLEXCLUSIVE as u32 } else { 0 };
        epoll.ctl(libc::EPOLL_CTL_ADD, self.listener.raw_fd(), listen_events, LISTENER)?;
        let mut listening = true;
        let mut conns: Table = HashMap::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut buf = vec![0u8; conn::READ_BUF];
        let mut stop_deadline: Option<Instant> = None;
        let mut last_sweep = Instant::now();
        loop {
            let n = epoll.wait(&mut events, 1000);
            if super::HUP_IGNORED.swap(false, Ordering::SeqCst) {
                log::warn!("SIGHUP ignored: a single process cannot reload itself; run with a supervisor (--workers 2 or more, --reload, --max-requests) or let the web server restart it");
            }
            if STOP.load(Ordering::SeqCst) && stop_deadline.is_none() {
                // Stop: no new connections; idle ones close after a short quiet, busy ones when done.
                stop_deadline = Some(Instant::now() + self.graceful_timeout);
                if listening {
                    // Connections already in the backlog were accepted by the kernel on our
                    // behalf and their web server is waiting: serve them, do not reset them.
                    self.take_new(&epoll, &mut conns, &mut buf, true);
                    let _ = epoll.ctl(libc::EPOLL_CTL_DEL, self.listener.raw_fd(), 0, 0);
                    listening = false;
                }
            }
            for ev in &events[..n] {
                let token = ev.u64;
                if token == LISTENER {
                    if stop_deadline.is_none() {
                        self.take_new(&epoll, &mut conns, &mut buf, false);
                    }
                    continue;
                }
                let fd = token as RawFd;
                if ev.events & libc::EPOLLOUT as u32 != 0 && !self.on_writable(&epoll, &mut conns, fd) {
                    continue;
                }
                if ev.events & !(libc::EPOLLOUT as u32) != 0 {
                    self.serve_readable(&epoll, fd, &mut conns, &mut buf);
                }
            }
            // At most once a second: the checks lock every connection.
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                last_sweep = Instant::now();
                self.close_stalled(&mut conns);
            }
            if let Some(deadline) = stop_deadline {
                // Idle for a moment: a connection just taken from the backlog may not have
                // sent its request yet (the web server writes right after connecting).
                let now = Instant::now();
                let idle: Vec<RawFd> =
                    conns.iter().filter(|(_, e)| now.duration_since(e.last_used) >= STOP_GRACE && e.conn.is_idle()).map(|(fd, _)| *fd).collect();
                for fd in idle {
                    drop_conn(&mut conns, fd);
                }
                if conns.is_empty() || Instant::now() >= deadline {
                    return Ok(());
                }
                continue;
            }
            // Every connection busy at the limit: leave the listener alone until one closes
            // (idle ones are closed to make room in `accept_all`).
            let blocked = conns.len() >= self.max_conns && conns.values().all(|e| !e.conn.is_idle());
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
    fn take_new(&self, epoll: &Epoll, conns: &mut Table, buf: &mut [u8], drain: bool) {
        for fd in self.accept_all(conns, drain) {
            self.serve_readable(epoll, fd, conns, buf);
        }
    }

    /// Register (or update) a connection's epoll events after the loop acted on it; false
    /// if it had to be closed.
    fn watch(&self, epoll: &Epoll, conns: &mut Table, fd: RawFd) -> bool {
        let Some(entry) = conns.get_mut(&fd) else { return false };
        let want = entry.conn.interest();
        if want == entry.interest {
            return true;
        }
        // Not yet in the epoll set (fresh from `accept_all`): added now, once its first read
        // left it open.
        let op = if entry.interest == 0 { libc::EPOLL_CTL_ADD } else { libc::EPOLL_CTL_MOD };
        match epoll.ctl(op, fd, want, fd as u64) {
            Ok(()) => {
                entry.interest = want;
                true
            }
            Err(e) => {
                log::warn!("cannot watch a connection: {e}");
                drop_conn(conns, fd);
                false
            }
        }
    }

    /// The socket can take more of what the loop queued for it; false if it was closed.
    fn on_writable(&self, epoll: &Epoll, conns: &mut Table, fd: RawFd) -> bool {
        let Some(entry) = conns.get(&fd) else { return false };
        match entry.conn.on_writable() {
            Step::Close => {
                drop_conn(conns, fd);
                false
            }
            _ => self.watch(epoll, conns, fd),
        }
    }

    /// Take in what a connection has sent and run every request it completes.
    fn serve_readable(&self, epoll: &Epoll, fd: RawFd, conns: &mut Table, buf: &mut [u8]) {
        let Some(entry) = conns.get_mut(&fd) else { return };
        entry.last_used = Instant::now();
        let conn = entry.conn.clone();
        // A slow upload is activity too (the accelerator's idle timer must not stop it).
        super::ACTIVITY.fetch_add(1, Ordering::Relaxed);
        let mut step = conn.on_readable(self.settings, buf);
        loop {
            step = match step {
                Step::Wait => {
                    self.watch(epoll, conns, fd);
                    return;
                }
                Step::Run(ready) => {
                    super::IN_FLIGHT.fetch_add(1, Ordering::SeqCst);
                    let id = ready.id();
                    let busy = watchdog::Busy::enter(self.settings.timeout.is_some(), id, || {
                        let conn = conn.clone();
                        std::sync::Arc::new(move || conn.answer_timeout(id))
                    });
                    let next = conn::run(&conn, self.app, self.settings, ready);
                    drop(busy);
                    super::IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
                    super::ACTIVITY.fetch_add(1, Ordering::SeqCst);
                    // The quiet time of what follows counts from now, not from before the app ran.
                    if let Some(entry) = conns.get_mut(&fd) {
                        entry.last_used = Instant::now();
                    }
                    if self.recycle.due() {
                        STOP.store(true, Ordering::SeqCst);
                    }
                    next
                }
                Step::Close => {
                    drop_conn(conns, fd);
                    return;
                }
            };
        }
    }

    /// Close connections that started a request and then sent nothing for `--read-timeout`
    /// (idle ones, between requests, are a web server's pool: `--max-conns` bounds them),
    /// and connections whose queued answers the peer has not taken for `WRITE_TIMEOUT`.
    fn close_stalled(&self, conns: &mut Table) {
        let now = Instant::now();
        let quiet = |e: &Entry| self.read_timeout.is_some_and(|limit| now.duration_since(e.last_used) >= limit && !e.conn.is_idle());
        let stalled: Vec<(RawFd, bool)> = conns
            .iter()
            .filter_map(|(fd, e)| if quiet(e) { Some((*fd, true)) } else { e.conn.output_stalled(conn::WRITE_TIMEOUT).then_some((*fd, false)) })
            .collect();
        for (fd, quiet) in stalled {
            if quiet {
                log::warn!(
                    "closing a connection that sent part of a request and then nothing for {}s (--read-timeout)",
                    self.read_timeout.unwrap_or_default().as_secs()
                );
            } else {
                log::warn!("closing a connection whose web server read none of its answers for {}s", conn::WRITE_TIMEOUT.as_secs());
            }
            drop_conn(conns, fd);
        }
    }

    /// Accept every waiting connection; returns their fds (the caller adds them to the
    /// epoll set once their first read leaves them open).
    fn accept_all(&self, conns: &mut Table, drain: bool) -> Vec<RawFd> {
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
                let oldest_idle = conns.iter().filter(|(_, e)| e.conn.is_idle()).min_by_key(|(_, e)| e.last_used).map(|(fd, _)| *fd);
                let Some(old) = oldest_idle else { return accepted };
                log::debug!("closing an idle connection to make room (--max-conns {})", self.max_conns);
                drop_conn(conns, old);
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
            if let (Some(want), crate::sys::Stream::Unix(_)) = (self.peer_uid, &stream) {
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
            conns.insert(fd, Entry { conn, last_used: Instant::now(), interest: 0 });
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
