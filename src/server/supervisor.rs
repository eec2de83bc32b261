//! The process model: a supervisor that never imports the app owns the listening socket and
//! one *generation* at a time: a zygote that imports the app once and forks `--workers`
//! workers from it (copy-on-write), re-forking any that exits. SIGHUP (or `--reload` seeing a
//! file change) starts a new generation and, once it is up, drains the old one; a new
//! generation whose app fails to import is dropped and the old one keeps serving.
//!
//! Every fork happens while the forking process has a single thread.

use super::listen::Listener;
use super::{serve, STOP};
use crate::config::appspec::AppSpec;
use crate::config::Config;
use crate::sys::{self, kill, reap, Backoff, Fork, ReadySignal, ReadyWait};
use crate::wsgi;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// SIGHUP: start a new generation.
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_reload_signal(_: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

/// How often the supervisor and the zygotes look at their children and flags.
const TICK: Duration = Duration::from_millis(50);
/// A worker that dies sooner than this after its start counts as crashing.
const QUICK_DEATH: Duration = Duration::from_secs(2);

/// The pause before restarting a crash-looping child: 100 ms, doubling up to 10 s.
fn crash_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
}

fn sleep_tick() {
    // Interrupted early by a signal, which is what we want.
    std::thread::sleep(TICK);
}

fn describe_exit(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    }
}

/// What the supervisor runs.
pub struct Plan<'a> {
    pub config: &'a Config,
    pub spec: &'a AppSpec,
    pub listener: &'a Listener,
    pub workers: usize,
}

/// One generation, as the supervisor sees it.
struct Generation {
    zygote: libc::pid_t,
    /// The zygote's readiness pipe (signalled once its workers are up).
    ready: Option<ReadyWait>,
    started: Instant,
}

/// The supervisor: returns the process exit status.
pub fn run(plan: &Plan<'_>) -> i32 {
    sys::set_signal(libc::SIGHUP, Some(on_reload_signal));
    let graceful = plan.config.graceful_timeout;
    let mut current = match spawn_generation(plan) {
        Ok(g) => g,
        Err(e) => {
            log::error!("cannot start the workers: {e}");
            return 1;
        }
    };
    if !wait_ready(&mut current) {
        log::error!("the app could not be started; see the log above");
        return 1;
    }
    sys::notify(&format!("READY=1\nSTATUS={} worker(s) serving {} on {}\nMAINPID={}", plan.workers, plan.spec, plan.listener.describe(), std::process::id()));
    // From zero: a SIGUSR1 that came while the first generation started is passed on too.
    let mut reopens = 0;
    let mut draining: Vec<(libc::pid_t, Instant)> = Vec::new();
    let mut watch = plan.config.reload.then(|| Watcher::new(plan.config, plan.spec));
    let mut backoff = crash_backoff();
    loop {
        sleep_tick();
        if STOP.load(Ordering::SeqCst) {
            break;
        }
        if sys::reopen_count() != reopens {
            // Our own descriptors were reopened by the handler; the zygotes pass it on.
            reopens = sys::reopen_count();
            log::info!("SIGUSR1: log files reopened");
            for pid in draining.iter().map(|(p, _)| *p).chain([current.zygote]) {
                kill(pid, libc::SIGUSR1);
            }
        }
        if watch.as_mut().is_some_and(Watcher::changed) {
            log::warn!("app files changed: reloading");
            RELOAD.store(true, Ordering::SeqCst);
        }
        if RELOAD.swap(false, Ordering::SeqCst) {
            reload(plan, &mut current, &mut draining);
        }
        while let Some((pid, status)) = reap() {
            if let Some(i) = draining.iter().position(|(p, _)| *p == pid) {
                draining.swap_remove(i);
                continue;
            }
            if pid != current.zygote {
                continue;
            }
            log::error!("the zygote {pid} exited ({}); starting a new one", describe_exit(status));
            std::thread::sleep(backoff.after_exit(current.started.elapsed(), QUICK_DEATH));
            match spawn_generation(plan) {
                Ok(mut g) => {
                    wait_ready(&mut g);
                    current = g;
                }
                Err(e) => log::error!("cannot start the workers: {e}"),
            }
        }
        // A drained generation that overstays is killed.
        for (pid, since) in &draining {
            if since.elapsed() > graceful + Duration::from_secs(5) {
                kill(*pid, libc::SIGKILL);
            }
        }
    }
    sys::notify("STOPPING=1\nSTATUS=stopping: finishing the requests in flight");
    stop_generations(&current, &draining, graceful);
    0
}

/// SIGHUP or `--reload`: start a new generation; once it is ready, the current one drains.
/// If it fails, the current one keeps serving.
fn reload(plan: &Plan<'_>, current: &mut Generation, draining: &mut Vec<(libc::pid_t, Instant)>) {
    match spawn_generation(plan).map(|mut g| (wait_ready(&mut g), g)) {
        Ok((true, next)) => {
            log::warn!("reloaded: new workers are serving; the old ones finish their requests");
            sys::notify(&format!("STATUS={} worker(s) serving {} on {} (reloaded)", plan.workers, plan.spec, plan.listener.describe()));
            kill(current.zygote, libc::SIGTERM);
            draining.push((current.zygote, Instant::now()));
            *current = next;
        }
        Ok((false, next)) => {
            log::error!("reload failed (the new app did not start); the old workers keep serving");
            kill(next.zygote, libc::SIGKILL);
        }
        Err(e) => log::error!("reload failed: {e}"),
    }
}

/// Stop: every generation drains; its workers finish the requests in flight. One that
/// overstays the graceful timeout is killed.
fn stop_generations(current: &Generation, draining: &[(libc::pid_t, Instant)], graceful: Duration) {
    kill(current.zygote, libc::SIGTERM);
    let mut left: Vec<libc::pid_t> = draining.iter().map(|(p, _)| *p).chain([current.zygote]).collect();
    let deadline = Instant::now() + graceful + Duration::from_secs(5);
    while !left.is_empty() && Instant::now() < deadline {
        while let Some((pid, _)) = reap() {
            left.retain(|p| *p != pid);
        }
        sleep_tick();
    }
    for pid in left {
        log::error!("zygote {pid} did not stop in time: killing it");
        kill(pid, libc::SIGKILL);
    }
}

/// How long a new generation may take to import the app and start its workers.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Wait (bounded) until a new generation's workers are up; false if it failed. A signal
/// arriving meanwhile (another SIGHUP) does not count as failure; a stop does.
fn wait_ready(g: &mut Generation) -> bool {
    let Some(mut pipe) = g.ready.take() else { return true };
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline && !STOP.load(Ordering::SeqCst) {
        if let Some(ready) = pipe.wait(Duration::from_secs(1)) {
            return ready;
        }
    }
    if !STOP.load(Ordering::SeqCst) {
        log::error!("the new workers did not start within {} s", READY_TIMEOUT.as_secs());
    }
    false
}

/// Fork a zygote. Called by the single-threaded supervisor.
fn spawn_generation(plan: &Plan<'_>) -> std::io::Result<Generation> {
    let (ready, signal) = sys::ready_pipe()?;
    let me = std::process::id() as libc::pid_t;
    // The supervisor is single-threaded and has not initialised Python.
    match sys::fork()? {
        Fork::Child => {
            drop(ready);
            sys::die_with_parent(me);
            let code = zygote(plan, signal);
            wsgi::process::exit(code)
        }
        Fork::Parent(pid) => {
            drop(signal);
            Ok(Generation { zygote: pid, ready: Some(ready), started: Instant::now() })
        }
    }
}

/// Per worker slot: its pid, start time and crash backoff.
struct Slot {
    pid: libc::pid_t,
    started: Instant,
    backoff: Backoff,
}

/// The zygote: import the app (unless `--lazy-apps`), fork the workers, keep them.
fn zygote(plan: &Plan<'_>, ready: ReadySignal) -> i32 {
    // Counted from our fork: a SIGUSR1 while the workers start is passed on to them too.
    let mut reopens = sys::reopen_count();
    sys::set_signal(libc::SIGHUP, None);
    let app = if plan.config.lazy_apps {
        None
    } else {
        match wsgi::boot::boot(plan.config, plan.spec) {
            Ok(app) => {
                // Objects alive now are never collected: the GC leaves their pages shared.
                wsgi::process::gc_freeze();
                Some(app)
            }
            Err(e) => {
                log::error!("{e}");
                return 3;
            }
        }
    };
    let Some(mut slots) = start_workers(plan, app.as_ref()) else { return 3 };
    // The supervisor's "ready".
    ready.signal();
    log::info!("{} worker(s) serving {}", slots.len(), plan.spec);
    let mut stopping: Option<Instant> = None;
    loop {
        sleep_tick();
        if sys::reopen_count() != reopens {
            reopens = sys::reopen_count();
            for s in &slots {
                kill(s.pid, libc::SIGUSR1);
            }
        }
        if STOP.load(Ordering::SeqCst) && stopping.is_none() {
            stopping = Some(Instant::now());
            for s in &slots {
                kill(s.pid, libc::SIGTERM);
            }
        }
        while let Some((pid, status)) = reap() {
            let Some(i) = slots.iter().position(|s| s.pid == pid) else { continue };
            if stopping.is_some() {
                slots.swap_remove(i);
            } else {
                replace_worker(plan, app.as_ref(), &mut slots[i], i, status);
            }
        }
        if let Some(since) = stopping {
            if slots.is_empty() {
                return 0;
            }
            if since.elapsed() > plan.config.graceful_timeout + Duration::from_secs(2) {
                for s in &slots {
                    log::error!("worker {} did not stop in time: killing it", s.pid);
                    kill(s.pid, libc::SIGKILL);
                }
                return 0;
            }
        }
    }
}

/// Fork the first workers; None (and none left running) when, with `--lazy-apps`, they
/// could not load the app.
fn start_workers(plan: &Plan<'_>, app: Option<&wsgi::App>) -> Option<Vec<Slot>> {
    let mut slots: Vec<Slot> = Vec::with_capacity(plan.workers);
    // With --lazy-apps the workers import the app: the generation is ready only once each
    // of the first ones says so (through this pipe), so a broken app never replaces a
    // working one.
    let boot_pipe = if plan.config.lazy_apps { sys::ready_pipe().ok() } else { None };
    for i in 0..plan.workers {
        match fork_worker(plan, app, i, boot_pipe.as_ref().map(|(_, w)| w.as_raw_fd())) {
            Ok(pid) => slots.push(Slot { pid, started: Instant::now(), backoff: crash_backoff() }),
            Err(e) => log::error!("cannot fork worker {i}: {e}"),
        }
    }
    if let Some((booted, signal)) = boot_pipe {
        // The zygote's copy of the sending end is closed (the workers hold theirs): one
        // byte from each worker, or EOF once they all failed.
        drop(signal);
        if slots.is_empty() || !booted.wait_all(slots.len()) {
            log::error!("the workers could not load the app");
            for s in &slots {
                kill(s.pid, libc::SIGKILL);
            }
            return None;
        }
    }
    Some(slots)
}

/// A worker exited (`status`) while serving: fork its replacement into the same slot, after
/// the crash backoff's pause if it died.
fn replace_worker(plan: &Plan<'_>, app: Option<&wsgi::App>, slot: &mut Slot, index: usize, status: libc::c_int) {
    let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if clean {
        // Recycled (--max-requests, --max-rss) or stopped on purpose.
        slot.backoff.reset();
    } else {
        log::error!("worker {} died ({}); starting another", slot.pid, describe_exit(status));
        let repeating = slot.backoff.is_repeating();
        let pause = slot.backoff.after_exit(slot.started.elapsed(), QUICK_DEATH);
        if repeating && !pause.is_zero() {
            log::error!("worker crash loop: waiting {pause:?} before the next start");
        }
        std::thread::sleep(pause);
    }
    match fork_worker(plan, app, index, None) {
        Ok(new) => {
            slot.pid = new;
            slot.started = Instant::now();
        }
        Err(e) => log::error!("cannot fork a worker: {e}"),
    }
}

/// Fork one worker from the zygote; the child serves and never returns.
fn fork_worker(plan: &Plan<'_>, app: Option<&wsgi::App>, index: usize, boot_fd: Option<RawFd>) -> std::io::Result<libc::pid_t> {
    let me = std::process::id() as libc::pid_t;
    let forked = match app {
        // Python's own fork protocol: locks taken before, state fixed up after.
        // The zygote is single-threaded.
        Some(_) => wsgi::process::fork_with_python(),
        // The zygote is single-threaded and Python is not initialised.
        None => sys::fork(),
    };
    if let Fork::Parent(pid) = forked? {
        return Ok(pid);
    }
    // The worker.
    sys::die_with_parent(me);
    STOP.store(false, Ordering::SeqCst);
    super::install_stop_handlers();
    let code = match app {
        Some(app) => serve(plan.config, plan.listener, app, plan.spec, Some(index)),
        None => match wsgi::boot::boot(plan.config, plan.spec) {
            Ok(app) => {
                // This worker's copy of the zygote's pipe: it has the app.
                if let Some(signal) = boot_fd.and_then(ReadySignal::adopt) {
                    signal.signal();
                }
                serve(plan.config, plan.listener, &app, plan.spec, Some(index))
            }
            Err(e) => {
                log::error!("{e}");
                3
            }
        },
    };
    wsgi::process::exit(code)
}

/// `--reload`: the modification times of the app's files, polled once a second.
struct Watcher {
    roots: Vec<PathBuf>,
    seen: HashMap<PathBuf, SystemTime>,
    last_scan: Instant,
}

impl Watcher {
    fn new(config: &Config, spec: &AppSpec) -> Watcher {
        let mut roots: Vec<PathBuf> = config.pythonpath.clone();
        if let Some(dir) = spec.file().and_then(|f| std::fs::canonicalize(f).ok()).and_then(|f| f.parent().map(PathBuf::from)) {
            roots.push(dir);
        }
        if let Some(dir) = &config.chdir {
            roots.push(dir.clone());
        }
        if roots.is_empty() {
            roots.push(std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")));
        }
        let mut w = Watcher { roots, seen: HashMap::new(), last_scan: Instant::now() };
        w.seen = w.scan();
        w
    }

    /// Python sources and templates under the roots (not venvs or caches), to a bounded depth.
    fn scan(&self) -> HashMap<PathBuf, SystemTime> {
        let mut out = HashMap::new();
        let mut stack: Vec<(PathBuf, usize)> = self.roots.iter().map(|r| (r.clone(), 0)).collect();
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let path = e.path();
                let name = e.file_name();
                let name = name.to_string_lossy();
                let Ok(meta) = e.metadata() else { continue };
                if meta.is_dir() {
                    if depth < 8 && !name.starts_with('.') && name != "__pycache__" && name != "node_modules" && !path.join("pyvenv.cfg").exists() {
                        stack.push((path, depth + 1));
                    }
                } else if [".py", ".cgi", ".fcgi", ".wsgi", ".html", ".txt", ".json", ".cfg", ".ini", ".toml"].iter().any(|ext| name.ends_with(ext)) {
                    if let Ok(m) = meta.modified() {
                        out.insert(path, m);
                    }
                }
            }
        }
        out
    }

    fn changed(&mut self) -> bool {
        if self.last_scan.elapsed() < Duration::from_secs(1) {
            return false;
        }
        self.last_scan = Instant::now();
        let now = self.scan();
        let changed = now != self.seen;
        self.seen = now;
        changed
    }
}
