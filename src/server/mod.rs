//! The persistent FastCGI responder: find the listening socket, make stdio safe, import the
//! app once, then accept connections, one thread each (the GIL is released around I/O).

pub mod listen;

use crate::config::Config;
use crate::error::ServerError;
use crate::fastcgi::{self, conn};
use crate::wsgi::{self, call, environ};
use listen::Listener;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Set by SIGTERM or SIGINT: stop accepting, let requests in flight finish, exit 0.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_stop_handlers() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe). No SA_RESTART, so a
    // blocking poll() returns EINTR at once.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        for sig in [libc::SIGTERM, libc::SIGINT] {
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Wait until the listener has a connection or `ms` pass; false if interrupted or timed out.
fn wait_readable(fd: std::os::fd::RawFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// How long a stop waits for requests in flight.
const GRACEFUL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Concurrent connections served at once (each one thread); more wait in the backlog.
pub const DEFAULT_MAX_CONNS: usize = 64;

/// fds 1 and 2 may be closed when a web server spawns us (FastCGI §2.2), and a new
/// connection could then land on them: point them at the log (or /dev/null) so nothing
/// written to stdout/stderr can ever reach a connection. stdout always goes to the log.
pub fn secure_stdio(log_file: Option<&std::path::Path>) -> std::io::Result<()> {
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
                return Err(std::io::Error::last_os_error());
            }
        }
        if libc::dup2(2, 1) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where the connections come from: --bind, systemd, or fd 0.
pub fn open_listener(config: &Config) -> Result<Listener, ServerError> {
    if let Some(spec) = &config.bind {
        return listen::bind(spec, &config.socket_perms);
    }
    if let Some(l) = listen::from_systemd() {
        return l;
    }
    if crate::config::stdin_is_listening_socket() {
        return listen::from_fd0();
    }
    Err(ServerError::NoSocket)
}

/// A counting gate: at most `max` connections in service.
struct Gate {
    busy: Mutex<usize>,
    freed: Condvar,
    max: usize,
}

impl Gate {
    fn enter(&self) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy >= self.max {
            busy = self.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy += 1;
    }

    fn leave(&self) {
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.freed.notify_one();
    }
}

/// Run the FastCGI responder until the process is stopped. Returns the exit status.
pub fn run(config: &Config) -> i32 {
    let listener = match open_listener(config) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    if let Err(e) = secure_stdio(config.log_file.as_deref()) {
        log::error!("cannot secure stdio: {e}");
        return 1;
    }
    wsgi::boot::prepare_environment(config);
    let Some(spec) = &config.app else {
        log::error!("{}", crate::error::ConfigError::NoApp);
        return 1;
    };
    let app = match wsgi::boot::boot(config, spec) {
        Ok(app) => Arc::new(app),
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    let max_conns = config.max_conns.unwrap_or(DEFAULT_MAX_CONNS);
    let settings = Arc::new(conn::Settings {
        codec: fastcgi::Config { mpxs_conns: false, max_conns: max_conns as u32, max_reqs: max_conns as u32, limits: Default::default() },
        max_body: config.max_body,
        policy: call::ErrorPolicy { show_traceback: config.debug },
        model: environ::ProcessModel { multithread: max_conns > 1, multiprocess: true, run_once: false },
    });
    let allowed = listen::allowed_peers();
    let gate = Arc::new(Gate { busy: Mutex::new(0), freed: Condvar::new(), max: max_conns });
    let served = Arc::new(AtomicUsize::new(0));
    log::info!("serving {spec} over FastCGI on {}", listener.describe());
    install_stop_handlers();
    // Non-blocking, so a connection taken by another process sharing the socket never
    // leaves us stuck in accept() past a stop signal.
    if let Err(e) = listener.set_nonblocking() {
        log::warn!("cannot make the listener non-blocking: {e}");
    }
    loop {
        gate.enter();
        // poll() blocks up to a second at a time; a stop signal interrupts it at once.
        while !STOP.load(Ordering::SeqCst) {
            if wait_readable(listener.raw_fd(), 1000) {
                break;
            }
        }
        if STOP.load(Ordering::SeqCst) {
            gate.leave();
            break;
        }
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            // Another process sharing the socket took it first.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                gate.leave();
                continue;
            }
            Err(e) => {
                gate.leave();
                log::warn!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        if let (Some(allowed), Some(peer)) = (&allowed, peer) {
            if !listen::peer_allowed(allowed, peer) {
                log::warn!("refused a connection from {peer}: not in FCGI_WEB_SERVER_ADDRS");
                gate.leave();
                continue;
            }
        }
        let gate_again = gate.clone();
        let (app, settings, gate, served) = (app.clone(), settings.clone(), gate.clone(), served.clone());
        let spawned = std::thread::Builder::new().name("fcgi-conn".into()).spawn(move || {
            if let Err(e) = conn::serve(stream, &app, &settings) {
                log::warn!("connection closed: {e}");
            }
            served.fetch_add(1, Ordering::Relaxed);
            gate.leave();
        });
        if let Err(e) = spawned {
            log::error!("cannot start a connection thread: {e}");
            gate_again.leave();
        }
    }
    // Stopping: no new connections; requests in flight finish (idle kept-alive connections
    // are simply closed when the process exits).
    drop(listener);
    let deadline = std::time::Instant::now() + GRACEFUL_TIMEOUT;
    while conn::IN_FLIGHT.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    log::info!("stopped after {} connections", served.load(Ordering::Relaxed));
    0
}
