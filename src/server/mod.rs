//! The persistent FastCGI responder: find the listening socket, make stdio safe, import the
//! app once, then serve from `--threads` event-loop threads (see `worker`).

pub mod listen;
pub mod privs;
pub mod supervisor;
pub mod watchdog;
pub mod worker;

use crate::config::Config;
use crate::fastcgi;
use crate::gateway::fastcgi as conn;
use crate::sys::{secure_stdio, set_signal};
use crate::wsgi;
use listen::Listener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Problems setting up or running the FastCGI server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Listen(String),
    #[error("no socket to serve: give --bind unix:/path or --bind HOST:PORT, start under a web server that passes a listening socket on fd 0, or use systemd socket activation")]
    NoSocket,
}

/// Set by SIGTERM or SIGINT: stop accepting, let requests in flight finish, exit 0.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Connections accepted plus requests finished by this process, and requests running now:
/// the CGI accelerator's idle timer reads them (`accel::worker`).
pub(crate) static ACTIVITY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
pub(crate) static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// SIGHUP in a process without a supervisor: there is nothing to reload with, so it is
/// noted (and logged by the request loop) instead of killing the process.
pub(crate) static HUP_IGNORED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_hup_unsupervised(_: libc::c_int) {
    HUP_IGNORED.store(true, Ordering::SeqCst);
}

pub(crate) fn install_stop_handlers() {
    set_signal(libc::SIGTERM, Some(on_stop_signal));
    set_signal(libc::SIGINT, Some(on_stop_signal));
}

/// Connections kept open at once per request thread (FCGI_MAX_CONNS reports the total).
pub const DEFAULT_MAX_CONNS: usize = 256;

/// Where the connections come from: --bind, systemd, or fd 0.
pub fn open_listener(config: &Config) -> Result<Listener, ServerError> {
    if let Some(spec) = &config.bind {
        return listen::bind(spec, &config.socket_perms);
    }
    if let Some(l) = listen::from_systemd() {
        return l.inspect(|l| log::info!("serving the socket systemd passed (LISTEN_FDS): {}", l.describe()));
    }
    if crate::sys::is_listening_socket(0) {
        return listen::from_fd0();
    }
    Err(ServerError::NoSocket)
}

/// How many worker processes: `--workers`, else one when a web server handed us the socket
/// on fd 0 (mod_fcgid and lighttpd multiply processes themselves), else one per CPU.
fn worker_count(config: &Config) -> usize {
    if let Some(n) = config.workers {
        return n.max(1);
    }
    if config.bind.is_none() && std::env::var_os("LISTEN_FDS").is_none() {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The start-up the persistent server and the accelerator's worker share: stdio made
/// safe, the app's process environment set, the app named. `Err` holds the exit status.
pub(crate) fn prepare(config: &Config) -> Result<&crate::config::appspec::AppSpec, i32> {
    if let Err(e) = secure_stdio(config.log_file.as_deref()) {
        log::error!("cannot secure stdio: {e}");
        return Err(1);
    }
    if let Some(path) = &config.access_log {
        if let Err(e) = crate::sys::open_access_log(path) {
            log::error!("--access-log {}: {e}", path.display());
            return Err(1);
        }
    }
    // SIGUSR1: reopen both (logrotate); every process forked from here inherits it.
    if let Err(e) = crate::sys::reopen_on_sigusr1(config.log_file.as_deref()) {
        log::error!("--log-file: {e}");
        return Err(1);
    }
    wsgi::boot::prepare_environment(config);
    config.app.as_ref().ok_or_else(|| {
        log::error!("{}", crate::error::ConfigError::NoApp);
        1
    })
}

/// The listener made ready for the event loops (non-blocking: several threads or
/// processes may share it) and the stop signals installed. `Err` holds the exit status.
pub(crate) fn ready_to_serve(listener: &Listener) -> Result<(), i32> {
    if let Err(e) = listener.set_nonblocking() {
        log::error!("cannot make the listener non-blocking: {e}");
        return Err(1);
    }
    install_stop_handlers();
    Ok(())
}

/// Run the FastCGI responder until a stop signal. Returns the exit status.
pub fn run(config: &Config) -> i32 {
    // Read before any thread exists, and kept from the app (systemd's readiness protocol).
    crate::sys::take_notify_socket();
    let workers = worker_count(config);
    let listener = match open_listener(config) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    let spec = match prepare(config) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    // Bound (perhaps on a privileged port or in /run): now give up root, before the app.
    if let Some(target) = &config.run_as {
        if let Err(e) = privs::drop_to(target) {
            log::error!("{e}");
            return 1;
        }
    }
    if let Err(code) = ready_to_serve(&listener) {
        return code;
    }
    // One process serves by itself unless the process model needs a supervisor.
    // --timeout replaces a stuck worker, so something must start the next one.
    let supervised =
        workers > 1 || config.lazy_apps || config.max_requests.is_some() || config.max_rss_mb.is_some() || config.reload || config.timeout.is_some();
    if supervised {
        log::info!("supervising {workers} worker(s) for {spec} on {}, roles {}", listener.describe(), config.roles.describe());
        return supervisor::run(&supervisor::Plan { config, spec, listener: &listener, workers });
    }
    set_signal(libc::SIGHUP, Some(on_hup_unsupervised));
    let app = match wsgi::boot::boot(config, spec) {
        Ok(app) => app,
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    crate::sys::notify(&format!("READY=1\nSTATUS=serving {spec} on {}\nMAINPID={}", listener.describe(), std::process::id()));
    if crate::sys::notify_enabled() {
        // STOPPING=1 when the stop begins, not once the requests in flight have drained.
        let spawned = std::thread::Builder::new().name("sd-notify".into()).spawn(|| {
            while !STOP.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            notify_stopping();
        });
        if let Err(e) = spawned {
            log::warn!("cannot start the systemd notifier: {e}");
        }
    }
    let code = serve(config, &listener, &app, spec, None);
    // The drain may end before the notifier's next look.
    notify_stopping();
    code
}

/// STOPPING=1 for systemd, once.
fn notify_stopping() {
    static SENT: AtomicBool = AtomicBool::new(false);
    if !SENT.swap(true, Ordering::SeqCst) {
        crate::sys::notify("STOPPING=1\nSTATUS=stopping: finishing the requests in flight");
    }
}

/// Serve with the app already imported, in this process, until a stop signal (or, in a
/// worker, until it is due for recycling). Returns the exit status.
pub fn serve(config: &Config, listener: &Listener, app: &wsgi::App, spec: &crate::config::appspec::AppSpec, worker: Option<usize>) -> i32 {
    let threads = config.threads.max(1);
    let max_conns = config.max_conns.unwrap_or(DEFAULT_MAX_CONNS);
    let processes = if worker.is_some() { worker_count(config) } else { 1 };
    // The CGI accelerator's worker answers CGI requests relayed as FastCGI: the responder
    // only, and no FCGI_ROLE (the app sees what plain CGI would give it).
    let accel_worker = config.persist.worker_socket.is_some();
    let settings = conn::Settings {
        codec: fastcgi::Config {
            // Several request threads: a web server may interleave requests on a connection
            // (they are answered in turn by the thread that owns it).
            mpxs_conns: threads > 1,
            max_conns: u32::try_from(max_conns * threads * processes).unwrap_or(u32::MAX),
            max_reqs: u32::try_from(threads * processes).unwrap_or(u32::MAX),
            limits: fastcgi::Limits::default(),
            roles: if accel_worker { crate::http::role::Roles::default() } else { config.roles },
        },
        fcgi_role: !accel_worker,
        max_body: config.max_body,
        script_name: config.script_name.clone(),
        policy: wsgi::Policy::persistent(wsgi::ProcessModel { multithread: threads > 1, multiprocess: true, run_once: false }, config.debug),
        timeout: config.timeout,
    };
    if let Some(t) = config.timeout {
        watchdog::arm(t);
    }
    let allowed = listen::allowed_peers();
    let recycle = worker::Recycle::new(config.max_requests, config.max_rss_mb);
    match worker {
        Some(i) => log::info!("worker {i} (pid {}) serving {spec} with {threads} thread(s)", std::process::id()),
        None => log::info!("serving {spec} over FastCGI on {} with {threads} thread(s), roles {}", listener.describe(), config.roles.describe()),
    }
    let worker = worker::Worker {
        listener,
        app,
        settings: &settings,
        allowed: allowed.as_deref(),
        // The accelerator's private socket: only our own uid may talk to the worker.
        peer_uid: config.persist.worker_socket.is_some().then(crate::sys::euid),
        max_conns,
        exclusive: threads > 1 || processes > 1,
        graceful_timeout: config.graceful_timeout,
        recycle: &recycle,
        read_timeout: config.read_timeout,
    };
    let failed = Arc::new(AtomicBool::new(false));
    std::thread::scope(|scope| {
        for i in 1..threads {
            let (worker, failed) = (&worker, failed.clone());
            let spawned = std::thread::Builder::new().name(format!("fcgi-{i}")).spawn_scoped(scope, move || {
                if let Err(e) = wsgi::process::detached(|| worker.run()) {
                    log::error!("request thread {i}: {e}");
                    failed.store(true, Ordering::SeqCst);
                }
            });
            if let Err(e) = spawned {
                log::error!("cannot start request thread {i}: {e}");
            }
        }
        if let Err(e) = wsgi::process::detached(|| worker.run()) {
            log::error!("request thread 0: {e}");
            failed.store(true, Ordering::SeqCst);
        }
    });
    log::info!("stopped");
    i32::from(failed.load(Ordering::SeqCst))
}
