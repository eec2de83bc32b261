//! The FastCGI process model under load, with real nginx in front of cgi2wsgi over a unix
//! socket: a worker killed with SIGKILL, SIGTERM and SIGHUP to the supervisor, a reload to
//! a broken app, `--max-requests`, `--reload`, workers that crash or segfault, the memory a
//! forked worker does not share with its zygote (Flask), the default worker count, and
//! `--max-rss`, `--lazy-apps` with a broken reload, a second SIGHUP during a reload and
//! SIGHUP to a single process.
//! A bounded load client (a few threads sending sequential requests through nginx) records
//! every outcome; the tests assert outcomes, never speed. Processes are found through
//! /proc (supervisor → zygote → workers) and every one started is stopped by PID.

mod common;

use common::servers::{self, path_str, Server};
use common::{http, Fixture};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- processes via /proc

/// State, parent pid and start time (clock ticks since boot) of a process.
fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, ppid, start))
}

/// True while `pid` is the process that started at `start` and has not exited.
fn running(pid: i32, start: u64) -> bool {
    proc_stat(pid).is_some_and(|(state, _, s)| s == start && state != 'Z' && state != 'X')
}

/// Live (not zombie) children of `parent`.
fn children(parent: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if let Some((state, ppid, _)) = proc_stat(pid) {
            if ppid == parent && state != 'Z' && state != 'X' {
                out.insert(pid);
            }
        }
    }
    out
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: signalling a process this test started (or one of its descendants), by PID.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

// ---------------------------------------------------------------- cgi2wsgi and nginx

/// cgi2wsgi started with `--bind unix:…` as a service manager would; unlike
/// `servers::fastcgi_backend` it keeps the child so a test can signal it and see its exit.
struct Backend {
    child: Child,
    sock: PathBuf,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Backend {
    /// Start cgi2wsgi serving `app` with `args` (before `--bind`); ready once the socket
    /// accepts a connection (20 s at most).
    fn start(fx: &Fixture, app: &Path, args: &[&str]) -> Backend {
        let dir = fx.path().join("run/cgi2wsgi");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sock = dir.join("app.sock");
        let log = fx.path().join("logs/cgi2wsgi.log");
        let mut cmd = Command::new(fx.bin());
        cmd.env_clear().args(args);
        if !args.contains(&"--graceful-timeout") {
            cmd.args(["--graceful-timeout", "10"]);
        }
        cmd.arg("--bind").arg(format!("unix:{}", sock.display())).arg("--log-file").arg(&log).args(["--log-level", "info"]);
        if servers::is_root() {
            // nginx's workers run as www-data; the socket stays 0660.
            cmd.args(["--socket-group", "www-data"]);
        }
        cmd.arg(app).stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let mut b = Backend { child, sock, log, exit: None };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&b.sock).is_err() {
            if let Ok(Some(status)) = b.child.try_wait() {
                b.exit = Some(status);
                panic!("cgi2wsgi exited at start ({status}); its log:\n{}", b.log());
            }
            assert!(Instant::now() < deadline, "cgi2wsgi did not listen within 20 s; its log:\n{}", b.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn zygotes(&self) -> BTreeSet<i32> {
        children(self.pid())
    }

    /// The workers of every generation (children of the zygotes).
    fn workers(&self) -> BTreeSet<i32> {
        self.zygotes().into_iter().flat_map(children).collect()
    }

    /// Every live descendant with its start time (to tell a reused PID apart).
    fn family(&self) -> Vec<(i32, u64)> {
        self.zygotes().into_iter().chain(self.workers()).filter_map(|p| proc_stat(p).map(|(_, _, s)| (p, s))).collect()
    }

    /// Wait until `ok` accepts the worker set; returns it, or panics after `within`.
    fn wait_workers(&self, within: Duration, what: &str, ok: impl Fn(&BTreeSet<i32>) -> bool) -> BTreeSet<i32> {
        let deadline = Instant::now() + within;
        loop {
            let w = self.workers();
            if ok(&w) {
                return w;
            }
            assert!(Instant::now() < deadline, "{what}: not within {within:?}; workers now {w:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (at most `within`) until the log contains `needle`.
    fn wait_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// The exit status, waiting at most `within`.
    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while self.exit.is_none() && Instant::now() < deadline {
            self.exit = self.child.try_wait().unwrap();
            if self.exit.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.exit
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let family = self.family();
        if self.exit.is_none() {
            signal(self.pid(), libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(20)).is_none() {
                let _ = self.child.kill();
                self.exit = self.child.wait().ok();
            }
        }
        // They die with the supervisor (PR_SET_PDEATHSIG); make sure, by PID.
        for (pid, start) in family {
            if running(pid, start) {
                eprintln!("cgi2wsgi process {pid} outlived its supervisor: killing it");
                // SAFETY: a process this test started (checked by its start time).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// nginx with the examples/nginx/unix.conf recipe in front of a backend. Fields drop in
/// order: nginx stops first.
struct Stack {
    nginx: Server,
    backend: Backend,
}

impl Stack {
    fn start(fx: &Fixture, app: &Path, args: &[&str]) -> Stack {
        let backend = Backend::start(fx, app, args);
        let port = servers::free_port();
        let site = servers::render_snippet(
            "examples/nginx/unix.conf",
            &[("listen 80;", format!("listen 127.0.0.1:{port};")), ("/run/cgi2wsgi", path_str(backend.sock.parent().unwrap()))],
        );
        let nginx = servers::nginx(fx, port, &site);
        Stack { nginx, backend }
    }

    fn port(&self) -> u16 {
        self.nginx.port
    }

    /// Both logs for failure messages: the last 60 lines of each, without the lines of
    /// requests that went well.
    fn logs(&self) -> String {
        let tail = |text: String| {
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" -> 200 ")).collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        format!("--- cgi2wsgi log ---\n{}\n--- nginx error log ---\n{}", tail(self.backend.log()), tail(self.nginx.log()))
    }
}

/// A fixture (no venv) with tests/apps/workers_app.py copied to `<fixture>/wapp/app.py`,
/// alone in its directory (what `--reload` watches); returns it and the app's path.
fn fixture() -> (Fixture, PathBuf) {
    let fx = Fixture::new(false);
    let dir = fx.path().join("wapp");
    std::fs::create_dir_all(&dir).unwrap();
    let app = dir.join("app.py");
    std::fs::copy(common::repo().join("tests/apps/workers_app.py"), &app).unwrap();
    (fx, app)
}

/// Replace the app's `VERSION = "v1"` line. The new text has another length, so a cached
/// .pyc written in the same second is never taken for current (Python checks mtime + size).
fn edit_app(app: &Path, version_line: &str) {
    let text = std::fs::read_to_string(app).unwrap();
    assert!(text.contains("VERSION = \"v1\""), "{} has no v1 line", app.display());
    let new = text.replace("VERSION = \"v1\"", version_line);
    assert_ne!(new.len(), text.len());
    std::fs::write(app, new).unwrap();
}

// ---------------------------------------------------------------- the load client

/// One request's fate.
#[derive(Debug, Clone)]
struct Outcome {
    start: Instant,
    end: Instant,
    status: Option<u16>,
    body: String,
    error: Option<String>,
}

impl Outcome {
    fn ok(&self) -> bool {
        self.status == Some(200)
    }

    /// (version, pid) from the app's "VERSION PID" answer.
    fn served_by(&self) -> Option<(String, i32)> {
        if !self.ok() {
            return None;
        }
        let (v, p) = self.body.trim().split_once(' ')?;
        Some((v.to_owned(), p.parse().ok()?))
    }

    fn describe(&self, t0: Instant) -> String {
        format!(
            "[{:.3}s..{:.3}s] {} {}",
            self.start.duration_since(t0).as_secs_f64(),
            self.end.duration_since(t0).as_secs_f64(),
            self.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            self.error.clone().unwrap_or_else(|| self.body.split_whitespace().take(12).collect::<Vec<_>>().join(" "))
        )
    }
}

/// One GET through nginx (`Connection: close`); every failure is an outcome, never a panic.
fn fetch(port: u16, path: &str, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let attempt = || -> Result<(u16, String), String> {
        let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut data = Vec::new();
        s.read_to_end(&mut data).map_err(|e| format!("read: {e}"))?;
        if !data.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(format!("no response head: {:?}", String::from_utf8_lossy(&data)));
        }
        let r = http::parse(&data);
        Ok((r.status, r.text()))
    };
    let (status, body, error) = match attempt() {
        Ok((status, body)) => (Some(status), body, None),
        Err(e) => (None, String::new(), Some(e)),
    };
    Outcome { start, end: Instant::now(), status, body, error }
}

/// `threads` threads, each sending sequential GETs of `path` until stopped, until it sent
/// `per_thread` requests, or for 60 s at most.
struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<()>>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
}

const LOAD_THREADS: usize = 4;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Load {
    fn start(port: u16, path: &str, threads: usize, per_thread: usize) -> Load {
        Load::start_with_timeout(port, path, threads, per_thread, REQUEST_TIMEOUT)
    }

    fn start_with_timeout(port: u16, path: &str, threads: usize, per_thread: usize, timeout: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let handles = (0..threads)
            .map(|_| {
                let (stop, outcomes, path) = (stop.clone(), outcomes.clone(), path.to_owned());
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(60);
                    for _ in 0..per_thread {
                        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                            break;
                        }
                        let o = fetch(port, &path, timeout);
                        outcomes.lock().unwrap().push(o);
                    }
                })
            })
            .collect();
        Load { stop, handles, outcomes }
    }

    /// Stop (each thread finishes its request in flight) and return every outcome.
    fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.join().unwrap();
        }
        let mut all = self.outcomes.lock().unwrap().clone();
        all.sort_by_key(|o| o.start);
        all
    }

    /// Wait until every thread has sent its requests (they stop on their own).
    fn join(self) -> Vec<Outcome> {
        for h in self.handles {
            h.join().unwrap();
        }
        let mut all = self.outcomes.lock().unwrap().clone();
        all.sort_by_key(|o| o.start);
        all
    }
}

fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| !o.ok()).collect()
}

fn list(outcomes: &[&Outcome], t0: Instant) -> String {
    outcomes.iter().map(|o| o.describe(t0)).collect::<Vec<_>>().join("\n")
}

/// Probe until an answer satisfies `done` (each probe is recorded in `probes`).
fn probe_until(port: u16, within: Duration, probes: &mut Vec<Outcome>, done: impl Fn(&Outcome) -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let o = fetch(port, "/app/", REQUEST_TIMEOUT);
        let hit = done(&o);
        probes.push(o);
        if hit {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn versions(outcomes: &[Outcome]) -> BTreeSet<String> {
    outcomes.iter().filter_map(Outcome::served_by).map(|(v, _)| v).collect()
}

fn pids(outcomes: &[Outcome]) -> BTreeSet<i32> {
    outcomes.iter().filter_map(Outcome::served_by).map(|(_, p)| p).collect()
}

/// Wait until both workers answered (the app is imported, the socket is served).
fn warm_up(stack: &Stack) {
    let mut probes = Vec::new();
    let ok = probe_until(stack.port(), Duration::from_secs(20), &mut probes, Outcome::ok);
    assert!(ok, "the app never answered: {:?}\n{}", probes.last(), stack.logs());
}

// ---------------------------------------------------------------- the tests

/// SIGKILL one of two workers mid-load: only requests in flight at that moment may fail
/// (at most one per load thread), the zygote forks a replacement, and requests go on.
#[test]
fn sigkill_of_a_worker_under_load() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2"]);
    let before = stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let t0 = Instant::now();
    let load = Load::start(stack.port(), "/app/work?20", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(1000));
    let victim = *before.iter().next().unwrap();
    let killed_at = Instant::now();
    signal(victim, libc::SIGKILL);
    let after = stack.backend.wait_workers(Duration::from_secs(10), "a replacement worker", |w| w.len() == 2 && !w.contains(&victim));
    let replaced_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let outcomes = load.finish();
    let failed = failures(&outcomes);
    eprintln!("[sigkill] {} requests, {} failed; workers {before:?} -> {after:?}", outcomes.len(), failed.len());
    assert!(failed.len() <= LOAD_THREADS, "{} requests failed (at most the {LOAD_THREADS} in flight may):\n{}\n{}", failed.len(), list(&failed, t0), stack.logs());
    let late: Vec<&Outcome> = failed.iter().copied().filter(|o| o.start > killed_at).collect();
    assert!(late.is_empty(), "requests sent after the kill failed:\n{}\n{}", list(&late, t0), stack.logs());
    let later: Vec<&Outcome> = outcomes.iter().filter(|o| o.start > replaced_at).collect();
    assert!(later.len() >= 10, "only {} requests after the replacement", later.len());
    assert!(pids(&outcomes).contains(after.difference(&before).next().unwrap()), "the replacement worker never served");
    assert!(stack.backend.log().contains(&format!("worker {victim} died (killed by signal 9)")), "{}", stack.logs());
}

/// SIGTERM to the supervisor while a slow request is in flight: that request completes,
/// the supervisor exits 0 within the graceful timeout, no process of it remains.
#[test]
fn sigterm_to_the_supervisor_drains_requests_in_flight() {
    let (fx, app) = fixture();
    let mut stack = Stack::start(&fx, &app, &["--workers", "2", "--graceful-timeout", "10"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let family = stack.backend.family();
    assert_eq!(family.len(), 3, "zygote + two workers: {family:?}");
    let port = stack.port();
    let t0 = Instant::now();
    let load = Load::start(port, "/app/work?5", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(700));
    let marker = app.parent().unwrap().join("slow.started");
    let slow = std::thread::spawn(move || fetch(port, "/app/slow?1.5", REQUEST_TIMEOUT));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the slow request never started\n{}", stack.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let term_at = Instant::now();
    signal(stack.backend.pid(), libc::SIGTERM);
    let load_outcomes = load.finish();
    let slow = slow.join().unwrap();
    let status = stack.backend.wait_exit(Duration::from_secs(10));
    let exited_after = term_at.elapsed();
    let answered_before: Vec<&Outcome> = load_outcomes.iter().filter(|o| o.end < term_at).collect();
    let failed_before: Vec<&Outcome> = answered_before.iter().copied().filter(|o| !o.ok()).collect();
    let in_flight_failed: Vec<&Outcome> = load_outcomes.iter().filter(|o| o.start < term_at && o.end >= term_at && !o.ok()).collect();
    eprintln!(
        "[sigterm] {} requests answered before SIGTERM ({} failed); in flight at SIGTERM and failed: {}; slow request {}; exit {status:?} after {exited_after:?}",
        answered_before.len(),
        failed_before.len(),
        in_flight_failed.len(),
        slow.describe(t0)
    );
    assert!(!answered_before.is_empty(), "no load before the SIGTERM");
    assert!(failed_before.is_empty(), "requests failed before the stop:\n{}\n{}", list(&failed_before, t0), stack.logs());
    assert_eq!(slow.served_by().map(|(v, _)| v), Some("v1".to_owned()), "the slow request in flight: {}\n{}", slow.describe(t0), stack.logs());
    let status = status.unwrap_or_else(|| panic!("the supervisor did not exit within the graceful timeout (10 s)\n{}", stack.logs()));
    assert_eq!(status.code(), Some(0), "supervisor exit status\n{}", stack.logs());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<i32> = family.iter().filter(|(p, s)| running(*p, *s)).map(|(p, _)| *p).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes of the stopped instance remain: {left:?}\n{}", stack.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGHUP after the app file changed: no request fails, the answers turn to the new
/// version, and they come from new workers; the old ones drain and exit.
#[test]
fn sighup_reloads_the_changed_app_without_failures() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2"]);
    let old = stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let port = stack.port();
    let t0 = Instant::now();
    let load = Load::start(port, "/app/work?10", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(1000));
    edit_app(&app, "VERSION = \"v2-reloaded\"");
    let hup_at = Instant::now();
    signal(stack.backend.pid(), libc::SIGHUP);
    let mut probes = Vec::new();
    let reloaded = probe_until(port, Duration::from_secs(20), &mut probes, |o| o.served_by().is_some_and(|(v, _)| v == "v2-reloaded"));
    let first_v2 = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    let outcomes = load.finish();
    let all: Vec<Outcome> = outcomes.iter().chain(&probes).cloned().collect();
    let failed = failures(&all);
    eprintln!("[sighup] {} requests, {} failed; versions {:?}; reload seen after {:?}", all.len(), failed.len(), versions(&all), first_v2 - hup_at);
    assert!(reloaded, "no v2 answer within 20 s of SIGHUP\n{}", stack.logs());
    assert!(failed.is_empty(), "requests failed across the reload:\n{}\n{}", list(&failed, t0), stack.logs());
    // Old workers may finish requests they took just before they were told to stop.
    let settled: Vec<Outcome> = all.iter().filter(|o| o.start > first_v2 + Duration::from_millis(1000)).cloned().collect();
    assert!(settled.len() >= 10, "only {} requests after the reload", settled.len());
    assert_eq!(versions(&settled), BTreeSet::from(["v2-reloaded".to_owned()]), "answers after the reload");
    let new_pids = pids(&settled);
    assert!(new_pids.is_disjoint(&old), "old workers {old:?} still serve after the reload: {new_pids:?}");
    let now = stack.backend.wait_workers(Duration::from_secs(15), "the old generation gone", |w| w.len() == 2 && w.is_disjoint(&old));
    assert_eq!(stack.backend.zygotes().len(), 1, "zygotes after the reload");
    eprintln!("[sighup] workers {old:?} -> {now:?}");
}

/// SIGHUP with a syntax error in the app: the new generation is dropped, the old workers
/// keep serving v1 without a failure, and the log says the reload failed.
#[test]
fn sighup_to_a_broken_app_keeps_the_old_workers() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2"]);
    let old = stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let t0 = Instant::now();
    let load = Load::start(stack.port(), "/app/work?10", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(800));
    edit_app(&app, "VERSION = \"v2\"\ndef broken(:\n    pass");
    signal(stack.backend.pid(), libc::SIGHUP);
    let logged = stack.backend.wait_log("reload failed", Duration::from_secs(15));
    let failed_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let outcomes = load.finish();
    let failed = failures(&outcomes);
    let after: Vec<Outcome> = outcomes.iter().filter(|o| o.start > failed_at).cloned().collect();
    eprintln!("[broken reload] {} requests ({} after the failed reload), {} failed; versions {:?}", outcomes.len(), after.len(), failed.len(), versions(&outcomes));
    assert!(logged, "the log does not say the reload failed\n{}", stack.logs());
    assert!(failed.is_empty(), "requests failed:\n{}\n{}", list(&failed, t0), stack.logs());
    assert!(after.len() >= 10, "only {} requests after the failed reload", after.len());
    assert_eq!(versions(&outcomes), BTreeSet::from(["v1".to_owned()]));
    assert!(pids(&after).is_subset(&old), "answers after the failed reload came from {:?}, not the old workers {old:?}", pids(&after));
    assert_eq!(stack.backend.workers(), old, "the old workers are no longer all there\n{}", stack.logs());
    assert!(stack.backend.log().contains("SyntaxError"), "{}", stack.logs());
}

/// `--max-requests 20`: 300 requests under load, none fails, and recycled workers mean
/// more than two distinct worker pids answered.
#[test]
fn max_requests_recycles_workers_without_failures() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2", "--max-requests", "20"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    let t0 = Instant::now();
    let outcomes = Load::start(stack.port(), "/app/work?2", LOAD_THREADS, 75).join();
    let failed = failures(&outcomes);
    let served = pids(&outcomes);
    eprintln!("[max-requests] {} requests, {} failed, {} distinct worker pids", outcomes.len(), failed.len(), served.len());
    assert_eq!(outcomes.len(), 300);
    assert!(failed.is_empty(), "{} requests failed while workers recycled:\n{}\n{}", failed.len(), list(&failed, t0), stack.logs());
    assert!(served.len() > 2, "300 requests with --max-requests 20 came from {served:?} only\n{}", stack.logs());
    assert!(stack.backend.log().contains("recycling after"), "{}", stack.logs());
    stack.backend.wait_workers(Duration::from_secs(10), "two workers after recycling", |w| w.len() == 2);
}

/// `--reload`: editing the app file brings the new code within ~10 s, with no failures.
#[test]
fn reload_flag_picks_up_an_edited_file() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2", "--reload"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let port = stack.port();
    let t0 = Instant::now();
    let load = Load::start(port, "/app/work?10", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(1200));
    edit_app(&app, "VERSION = \"v2-watched\"");
    let edited_at = Instant::now();
    let mut probes = Vec::new();
    let reloaded = probe_until(port, Duration::from_secs(10), &mut probes, |o| o.served_by().is_some_and(|(v, _)| v == "v2-watched"));
    let seen_after = edited_at.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let outcomes = load.finish();
    let all: Vec<Outcome> = outcomes.iter().chain(&probes).cloned().collect();
    let failed = failures(&all);
    eprintln!("[--reload] {} requests, {} failed; new code seen {seen_after:?} after the edit; load saw {:?}", all.len(), failed.len(), versions(&outcomes));
    assert!(reloaded, "the edit was not picked up within 10 s\n{}", stack.logs());
    assert!(failed.is_empty(), "requests failed across the reload:\n{}\n{}", list(&failed, t0), stack.logs());
    assert!(stack.backend.log().contains("app files changed"), "{}", stack.logs());
}

/// A worker that exits (os._exit) or segfaults mid-request: that request fails (502 from
/// nginx), the next one succeeds, the supervisor and zygote live on; a quick crash loop
/// is survived too.
#[test]
fn crashing_workers_are_replaced() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let port = stack.port();
    let zygotes = stack.backend.zygotes();
    let t0 = Instant::now();
    for (path, how) in [("/app/crash", "exit status 3"), ("/app/segv", "killed by signal 11"), ("/app/crash", "exit status 3"), ("/app/crash", "exit status 3")] {
        let before = stack.backend.workers();
        let crash = fetch(port, path, REQUEST_TIMEOUT);
        assert_eq!(crash.status, Some(502), "{path}: {}\n{}", crash.describe(t0), stack.logs());
        let next = fetch(port, "/app/", REQUEST_TIMEOUT);
        assert!(next.ok(), "the request after {path}: {}\n{}", next.describe(t0), stack.logs());
        eprintln!("[crash] {path}: {}; next: {}", crash.describe(t0), next.describe(t0));
        stack.backend.wait_workers(Duration::from_secs(25), "a replacement worker", |w| w.len() == 2 && *w != before);
        assert!(stack.backend.log().contains(how), "{path}: the log does not say {how:?}\n{}", stack.logs());
        if path.ends_with("segv") {
            assert!(stack.backend.log().contains("Fatal Python error: Segmentation fault"), "no faulthandler report\n{}", stack.logs());
        }
    }
    assert!(proc_stat(stack.backend.pid()).is_some_and(|(state, _, _)| state != 'Z'), "the supervisor died\n{}", stack.logs());
    assert_eq!(stack.backend.zygotes(), zygotes, "the zygote was replaced\n{}", stack.logs());
    let outcomes = Load::start(port, "/app/", 2, 10).join();
    assert!(failures(&outcomes).is_empty(), "after the crashes:\n{}", list(&failures(&outcomes), t0));
}

/// Memory a worker does not share: USS (Private_Clean + Private_Dirty in smaps_rollup).
fn uss_kib(pid: i32) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_else(|e| panic!("smaps_rollup of {pid}: {e}"));
    let field = |name: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("Private_Clean:") + field("Private_Dirty:"), field("Rss:"), field("Pss:"))
}

/// The Flask example with two workers: each worker's USS after a few requests.
fn flask_uss(extra: &[&str]) -> Vec<(i32, u64, u64, u64)> {
    let fx = Fixture::new(true);
    let app = fx.examples().join("flask/flaskapp.py");
    let venv = path_str(&fx.venv());
    let mut args = vec!["--workers", "2", "--venv", &venv];
    args.extend(extra);
    let stack = Stack::start(&fx, &app, &args);
    let workers = stack.backend.wait_workers(Duration::from_secs(20), "two workers", |w| w.len() == 2);
    let outcomes = Load::start(stack.port(), "/app/users/7", 2, 20).join();
    let root = Load::start(stack.port(), "/app/", 2, 5).join();
    let failed: Vec<&Outcome> = failures(&outcomes).into_iter().chain(failures(&root)).collect();
    assert!(failed.is_empty(), "Flask requests failed:\n{}\n{}", list(&failed, Instant::now()), stack.logs());
    assert_eq!(stack.backend.workers(), workers, "the workers changed");
    std::thread::sleep(Duration::from_millis(200));
    let mut out: Vec<(i32, u64, u64, u64)> = workers.iter().map(|&p| {
        let (uss, rss, pss) = uss_kib(p);
        (p, uss, rss, pss)
    }).collect();
    for z in stack.backend.zygotes() {
        let (uss, rss, pss) = uss_kib(z);
        eprintln!("[uss {extra:?}] zygote {z}: USS {:.1} MiB, RSS {:.1} MiB, PSS {:.1} MiB", uss as f64 / 1024.0, rss as f64 / 1024.0, pss as f64 / 1024.0);
    }
    for (p, uss, rss, pss) in &out {
        eprintln!("[uss {extra:?}] worker {p}: USS {:.1} MiB, RSS {:.1} MiB, PSS {:.1} MiB", *uss as f64 / 1024.0, *rss as f64 / 1024.0, *pss as f64 / 1024.0);
    }
    out.sort();
    out
}

/// Forked from a zygote that imported Flask (and froze the GC), a worker shares most of
/// its memory: its USS stays small. `--lazy-apps` is measured for comparison.
#[test]
fn zygote_workers_share_memory() {
    let forked = flask_uss(&[]);
    let lazy = flask_uss(&["--lazy-apps"]);
    for (pid, uss, rss, _) in &forked {
        assert!(*uss <= 12 * 1024, "worker {pid}: USS {uss} KiB over 12 MiB (RSS {rss} KiB)");
        assert!(*uss > 0 && *rss > *uss, "worker {pid}: implausible USS {uss} KiB / RSS {rss} KiB");
    }
    for (pid, uss, rss, _) in &lazy {
        assert!(*uss > 0 && *rss >= *uss, "--lazy-apps worker {pid}: implausible USS {uss} KiB / RSS {rss} KiB");
    }
    let max = |v: &[(i32, u64, u64, u64)]| v.iter().map(|x| x.1).max().unwrap() as f64 / 1024.0;
    eprintln!("[uss] largest worker USS: forked {:.1} MiB, --lazy-apps {:.1} MiB", max(&forked), max(&lazy));
}

/// With `--bind` and no `--workers`: one worker per CPU.
#[test]
fn default_worker_count_is_one_per_cpu() {
    let (fx, app) = fixture();
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let stack = Stack::start(&fx, &app, &[]);
    warm_up(&stack);
    if cpus == 1 {
        // One worker is the process itself: no supervisor, no children.
        assert!(stack.backend.zygotes().is_empty(), "one CPU, yet children: {:?}", stack.backend.zygotes());
        return;
    }
    let workers = stack.backend.wait_workers(Duration::from_secs(10), "one worker per CPU", |w| w.len() == cpus);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stack.backend.workers(), workers, "{cpus} CPUs");
    assert!(stack.backend.log().contains(&format!("supervising {cpus} worker(s)")), "{}", stack.logs());
    eprintln!("[default workers] {cpus} CPUs, workers {workers:?}");
}

/// `--lazy-apps` and SIGHUP to a broken app: as without it (README: "If the new app fails
/// to import, the old workers keep serving"), the old workers must keep serving v1.
#[test]
fn lazy_apps_sighup_to_a_broken_app_keeps_the_old_workers() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2", "--lazy-apps"]);
    let old = stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let t0 = Instant::now();
    let load = Load::start_with_timeout(stack.port(), "/app/work?10", LOAD_THREADS, 100_000, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(800));
    edit_app(&app, "VERSION = \"v2\"\ndef broken(:\n    pass");
    signal(stack.backend.pid(), libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(3000));
    let outcomes = load.finish();
    let failed = failures(&outcomes);
    eprintln!("[lazy broken reload] {} requests, {} failed; versions {:?}; workers {old:?} -> {:?}", outcomes.len(), failed.len(), versions(&outcomes), stack.backend.workers());
    assert!(failed.is_empty(), "{} requests failed after a reload to a broken app with --lazy-apps:\n{}\n{}", failed.len(), list(&failed[..failed.len().min(8)], t0), stack.logs());
    assert!(stack.backend.log().contains("reload failed"), "the log does not say the reload failed\n{}", stack.logs());
    assert_eq!(stack.backend.workers(), old, "the old workers are no longer all there\n{}", stack.logs());
}

/// Two SIGHUPs in quick succession (a deploy script, `systemctl reload` twice) while the
/// new app is still importing: both are reloads of a good app, so nothing may fail and the
/// log must not claim that a reload failed.
#[test]
fn second_sighup_during_a_reload_is_not_a_failed_reload() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let port = stack.port();
    let t0 = Instant::now();
    let load = Load::start(port, "/app/work?10", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(500));
    // The new app takes a second to import.
    edit_app(&app, "VERSION = \"v2-slow-import\"\ntime.sleep(1)");
    signal(stack.backend.pid(), libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    signal(stack.backend.pid(), libc::SIGHUP);
    let mut probes = Vec::new();
    let reloaded = probe_until(port, Duration::from_secs(20), &mut probes, |o| o.served_by().is_some_and(|(v, _)| v == "v2-slow-import"));
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = load.finish();
    let all: Vec<Outcome> = outcomes.iter().chain(&probes).cloned().collect();
    let failed = failures(&all);
    eprintln!("[double sighup] {} requests, {} failed; versions {:?}", all.len(), failed.len(), versions(&all));
    assert!(reloaded, "no v2 answer within 20 s\n{}", stack.logs());
    assert!(failed.is_empty(), "requests failed:\n{}\n{}", list(&failed, t0), stack.logs());
    assert!(!stack.backend.log().contains("reload failed"), "a reload of a good app was logged as failed\n{}", stack.logs());
}

/// One process (`--workers 1`, no lifecycle option: no supervisor) sent SIGHUP, as
/// `systemctl reload` would: it must not die of it (reload, or at least ignore it).
#[test]
fn single_process_survives_sighup() {
    let (fx, app) = fixture();
    let mut stack = Stack::start(&fx, &app, &["--workers", "1"]);
    warm_up(&stack);
    signal(stack.backend.pid(), libc::SIGHUP);
    let exit = stack.backend.wait_exit(Duration::from_secs(2));
    use std::os::unix::process::ExitStatusExt;
    assert!(exit.is_none(), "cgi2wsgi --workers 1 died of SIGHUP (exit code {:?}, signal {:?})\n{}", exit.and_then(|e| e.code()), exit.and_then(|e| e.signal()), stack.logs());
    let after = fetch(stack.port(), "/app/", REQUEST_TIMEOUT);
    assert!(after.ok(), "after SIGHUP: {}\n{}", after.describe(Instant::now()), stack.logs());
}

/// `--max-rss`: a worker whose memory passes the limit finishes its request, exits and is
/// replaced, without a failed request.
#[test]
fn max_rss_recycles_a_growing_worker() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2", "--max-rss", "60"]);
    let before = stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let t0 = Instant::now();
    // Each /hog keeps 8 MiB more in the worker that serves it.
    let mut outcomes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stack.backend.log().contains("over --max-rss") && Instant::now() < deadline {
        outcomes.push(fetch(stack.port(), "/app/hog", REQUEST_TIMEOUT));
        std::thread::sleep(Duration::from_millis(100));
    }
    outcomes.extend(Load::start(stack.port(), "/app/", 2, 10).join());
    let failed = failures(&outcomes);
    eprintln!("[max-rss] {} requests, {} failed", outcomes.len(), failed.len());
    assert!(stack.backend.log().contains("over --max-rss"), "no worker was recycled for its RSS\n{}", stack.logs());
    assert!(failed.is_empty(), "requests failed:\n{}\n{}", list(&failed, t0), stack.logs());
    stack.backend.wait_workers(Duration::from_secs(10), "a fresh worker", |w| w.len() == 2 && *w != before);
}

/// `--timeout`: a request stuck past it is answered 504 through nginx, the log shows the
/// Python stack of the stuck frame, its worker is replaced, and the service goes on.
#[test]
fn stuck_request_hits_the_timeout() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2", "--timeout", "2"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let port = stack.port();
    let before = stack.backend.workers();
    let t0 = Instant::now();
    // /slow?30 sleeps 30 s: far past the 2 s timeout.
    let stuck = fetch(port, "/app/slow?30", REQUEST_TIMEOUT);
    assert_eq!(stuck.status, Some(504), "{}\n{}", stuck.describe(t0), stack.logs());
    assert!(stuck.end.duration_since(stuck.start) < Duration::from_secs(20), "the timeout did not cut the request: {}", stuck.describe(t0));
    assert!(stack.backend.wait_log("over --timeout 2 s", Duration::from_secs(5)), "no timeout line\n{}", stack.logs());
    // faulthandler's dump names the app's file and function where it was stuck.
    let frame = format!("File \"{}\"", app.display());
    assert!(stack.backend.wait_log(&frame, Duration::from_secs(5)) && stack.backend.log().contains("in application"), "no Python stack in the log\n{}", stack.logs());
    stack.backend.wait_workers(Duration::from_secs(25), "a replacement worker", |w| w.len() == 2 && *w != before);
    let outcomes = Load::start(port, "/app/", 2, 10).join();
    assert!(failures(&outcomes).is_empty(), "after the timeout:\n{}", list(&failures(&outcomes), t0));
}
