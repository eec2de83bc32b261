//! The accelerator's worker: the FastCGI responder (`server::serve`, one process) on the
//! private socket (0600, peers of another uid refused with SO_PEERCRED), which imports the
//! app, writes the stamp, binds, tells the invocation that started it, and serves until it
//! has been idle for `--persist-idle-timeout` or is retired (`RETIRE_SIGNAL`, SIGWINCH: its
//! app changed; SIGUSR1 reopens `--log-file` and `--access-log`, as in every server process).
//! Before it stops accepting it takes its socket's name away, so a new request either
//! reaches it while it still accepts or finds no socket and starts a new worker.

use super::lock::Lock;
use super::spawn::READY_FD_VAR;
use super::{LoadStart, Paths, Stamp};
use crate::config::Config;
use crate::config::{BindSpec, SocketPerms};
use crate::server::listen;
use crate::server::{self, STOP};
use crate::wsgi;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The signal a client sends a stale worker: a newer worker is taking over, finish what is
/// queued and exit. SIGWINCH, as nginx and Apache use it for "stop gracefully": SIGUSR1
/// reopens the logs everywhere, and SIGUSR2 is `--timeout`'s stack dump.
pub const RETIRE_SIGNAL: libc::c_int = libc::SIGWINCH;

static RETIRE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_retire(_: libc::c_int) {
    RETIRE.store(true, Ordering::SeqCst);
}

/// After taking the socket's name away, connections already queued are still served.
const GRACE: Duration = Duration::from_secs(1);

/// The fd the invocation that started us waits on; close-on-exec from now, so nothing the
/// app starts while it imports can hold it open.
fn take_ready_fd() -> Option<crate::sys::ReadySignal> {
    let fd = std::env::var(READY_FD_VAR).ok().and_then(|v| v.parse::<i32>().ok())?;
    std::env::remove_var(READY_FD_VAR);
    crate::sys::ReadySignal::adopt(fd)
}

/// Tell the invocation that started us that we listen (or, by exiting, that we failed).
fn report_ready(fd: Option<crate::sys::ReadySignal>) {
    if let Some(fd) = fd {
        fd.signal();
    }
}

fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Remove our socket's name, only if it is still ours (a newer worker may have bound it).
fn unlink_own_socket(paths: &Paths, ours: Option<(u64, u64)>) {
    let Ok(Some(_lock)) = Lock::acquire(&paths.lock, Duration::from_secs(2)) else { return };
    if ours.is_some() && identity(&paths.sock) == ours {
        let _ = std::fs::remove_file(&paths.sock);
    }
}

/// How often the watcher looks for modules the app imported since start-up.
const RESCAN: Duration = Duration::from_secs(2);

/// Modules imported after start-up (Django's views on the first request, blueprints loaded
/// lazily) are deploys too: add their files to the stamp. Only when `sys.modules` grew, so
/// the GIL is taken for a moment every `RESCAN` and the scan itself is rare. The stamp is
/// rewritten under the lock and only while it is still ours (a client may be replacing us).
fn watch_new_modules(paths: &Paths, stamp: &mut Stamp, modules: &mut usize, since: LoadStart) {
    let files = wsgi::scan::app_files_if_new_modules(modules);
    let Some(files) = files else { return };
    if !stamp.add_files(files, since) {
        return;
    }
    let Ok(Some(_lock)) = Lock::acquire(&paths.lock, Duration::from_secs(2)) else { return };
    if Stamp::read(&paths.stamp).is_some_and(|s| s.pid == stamp.pid) {
        if let Err(e) = stamp.write(&paths.stamp) {
            log::warn!("cannot update {}: {e}", paths.stamp.display());
        }
    }
}

/// `K.log` (the worker's stdio, which no logrotate knows) is rotated past this size, one
/// old copy (`K.log.1`) kept.
pub const LOG_LIMIT: u64 = 10 << 20;

/// Rotate `K.log` when it is too large, under the lock (a client starting a worker opens it).
fn rotate_log(paths: &Paths) {
    let Ok(Some(_lock)) = Lock::acquire(&paths.lock, Duration::from_secs(2)) else { return };
    match crate::sys::rotate_stdio(&paths.log, LOG_LIMIT) {
        Ok(true) => log::info!("{} passed {} MiB: the old one is now {}.1", paths.log.display(), LOG_LIMIT >> 20, paths.log.display()),
        Ok(false) => {}
        Err(e) => log::warn!("cannot rotate {}: {e}", paths.log.display()),
    }
}

/// The idle timer, retirement, the log's size and the watch on newly imported modules, on
/// a thread of its own (Python only for the rare module scan). `loaded`: when the app's
/// import began.
fn watch(paths: Paths, ours: Option<(u64, u64)>, idle_timeout: Duration, mut stamp: Stamp, loaded: LoadStart) {
    let mut seen = server::ACTIVITY.load(Ordering::SeqCst);
    let mut since = Instant::now();
    let mut modules = 0usize;
    let mut last_scan = Instant::now();
    let mut scanned = loaded;
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
        if last_scan.elapsed() >= RESCAN {
            last_scan = Instant::now();
            // Modules new in this scan were imported after the previous one began.
            let now = LoadStart::now();
            watch_new_modules(&paths, &mut stamp, &mut modules, scanned);
            scanned = now;
            rotate_log(&paths);
        }
        let now = server::ACTIVITY.load(Ordering::SeqCst);
        if now != seen || server::IN_FLIGHT.load(Ordering::SeqCst) > 0 {
            seen = now;
            since = Instant::now();
        }
        let retire = RETIRE.load(Ordering::SeqCst);
        if retire || since.elapsed() >= idle_timeout {
            if retire {
                log::info!("retiring: a newer worker serves this app");
            } else {
                log::info!("idle for {} s: exiting (--persist-idle-timeout)", idle_timeout.as_secs());
            }
            unlink_own_socket(&paths, ours);
            std::thread::sleep(GRACE);
            STOP.store(true, Ordering::SeqCst);
        }
    }
}

/// Run the worker; returns the exit status.
pub fn run(config: &Config) -> i32 {
    let Some(sock) = config.persist.worker_socket.as_deref() else { return 2 };
    let paths = match Paths::from_socket(sock) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e}");
            return 2;
        }
    };
    let ready_fd = take_ready_fd();
    // Before the import: a file rewritten from here on is not vouched for by the stamp.
    let loaded = LoadStart::now();
    let spec = match server::prepare(config) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    let app = match wsgi::boot::boot(config, spec) {
        Ok(app) => app,
        Err(e) => {
            log::error!("{e}");
            return 3;
        }
    };
    let mut files: Vec<PathBuf> = std::env::current_exe().into_iter().collect();
    files.extend(spec.file().and_then(|f| std::fs::canonicalize(f).ok()));
    files.extend(wsgi::scan::app_files());
    let stamp = Stamp::new(std::process::id() as i32, files, loaded);
    // Bound first, the stamp written only then: a worker that loses the bind (another one
    // holds the socket) never touches the winner's stamp. A client seeing the socket
    // before the stamp waits on the lock, which our starter holds until we are ready.
    let perms = SocketPerms { mode: Some(0o600), owner: None, group: None };
    let listener = match listen::bind(&BindSpec::Unix(paths.sock.clone()), &perms) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    let ours = identity(&paths.sock);
    if let Err(e) = stamp.write(&paths.stamp) {
        log::error!("cannot write {}: {e}", paths.stamp.display());
        // Our starter holds the lock for us until we answer: the name is still ours.
        if identity(&paths.sock) == ours {
            let _ = std::fs::remove_file(&paths.sock);
        }
        return 1;
    }
    if let Err(code) = server::ready_to_serve(&listener) {
        return code;
    }
    crate::sys::set_signal(libc::SIGHUP, None);
    crate::sys::set_signal(RETIRE_SIGNAL, Some(on_retire));
    log::info!(
        "persistent worker (pid {}) ready for {spec} on {}; idle timeout {} s",
        std::process::id(),
        paths.sock.display(),
        config.persist.idle_timeout.as_secs()
    );
    report_ready(ready_fd);
    let watcher = {
        let (paths, idle, stamp) = (paths.clone(), config.persist.idle_timeout, stamp.clone());
        std::thread::Builder::new().name("persist-idle".into()).spawn(move || watch(paths, ours, idle, stamp, loaded))
    };
    if let Err(e) = &watcher {
        log::warn!("cannot start the idle timer ({e}): the worker will not exit by itself");
    }
    let code = server::serve(config, &listener, &app, spec, None);
    unlink_own_socket(&paths, ours);
    if Stamp::read(&paths.stamp).is_some_and(|s| s.pid == std::process::id() as i32) {
        let _ = std::fs::remove_file(&paths.stamp);
    }
    code
}
