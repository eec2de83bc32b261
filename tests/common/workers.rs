//! The process-model tests' harness (tests/workers*.rs): processes found through /proc,
//! cgi2wsgi behind a real nginx over a unix socket, and a bounded load client that records
//! every outcome.

use super::servers::{self, path_str, Server};
use super::{http, Fixture};
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
pub fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
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
pub fn running(pid: i32, start: u64) -> bool {
    proc_stat(pid).is_some_and(|(state, _, s)| s == start && state != 'Z' && state != 'X')
}

/// Live (not zombie) children of `parent`.
pub fn children(parent: i32) -> BTreeSet<i32> {
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

pub fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: signalling a process this test started (or one of its descendants), by PID.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

// ---------------------------------------------------------------- cgi2wsgi and nginx

/// cgi2wsgi started with `--bind unix:…` as a service manager would; unlike
/// `servers::fastcgi_backend` it keeps the child so a test can signal it and see its exit.
pub struct Backend {
    pub child: Child,
    pub sock: PathBuf,
    pub log: PathBuf,
    pub exit: Option<ExitStatus>,
}

impl Backend {
    /// Start cgi2wsgi serving `app` with `args` (before `--bind`); ready once the socket
    /// accepts a connection (20 s at most).
    pub fn start(fx: &Fixture, app: &Path, args: &[&str]) -> Backend {
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

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn zygotes(&self) -> BTreeSet<i32> {
        children(self.pid())
    }

    /// The workers of every generation (children of the zygotes).
    pub fn workers(&self) -> BTreeSet<i32> {
        self.zygotes().into_iter().flat_map(children).collect()
    }

    /// Every live descendant with its start time (to tell a reused PID apart).
    pub fn family(&self) -> Vec<(i32, u64)> {
        self.zygotes().into_iter().chain(self.workers()).filter_map(|p| proc_stat(p).map(|(_, _, s)| (p, s))).collect()
    }

    /// Wait until `ok` accepts the worker set; returns it, or panics after `within`.
    pub fn wait_workers(&self, within: Duration, what: &str, ok: impl Fn(&BTreeSet<i32>) -> bool) -> BTreeSet<i32> {
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
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
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
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
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
pub struct Stack {
    pub nginx: Server,
    pub backend: Backend,
}

impl Stack {
    pub fn start(fx: &Fixture, app: &Path, args: &[&str]) -> Stack {
        let backend = Backend::start(fx, app, args);
        let port = servers::free_port();
        let site = servers::render_snippet(
            "examples/nginx/unix.conf",
            &[("listen 80;", format!("listen 127.0.0.1:{port};")), ("/run/cgi2wsgi", path_str(backend.sock.parent().unwrap()))],
        );
        let nginx = servers::nginx(fx, port, &site);
        Stack { nginx, backend }
    }

    pub fn port(&self) -> u16 {
        self.nginx.port
    }

    /// Both logs for failure messages: the last 60 lines of each, without the lines of
    /// requests that went well.
    pub fn logs(&self) -> String {
        let tail = |text: String| {
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" -> 200 ")).collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        format!("--- cgi2wsgi log ---\n{}\n--- nginx error log ---\n{}", tail(self.backend.log()), tail(self.nginx.log()))
    }
}

/// A fixture (no venv) with tests/apps/workers_app.py copied to `<fixture>/wapp/app.py`,
/// alone in its directory (what `--reload` watches); returns it and the app's path.
pub fn fixture() -> (Fixture, PathBuf) {
    let fx = Fixture::new(false);
    let dir = fx.path().join("wapp");
    std::fs::create_dir_all(&dir).unwrap();
    let app = dir.join("app.py");
    std::fs::copy(super::repo().join("tests/apps/workers_app.py"), &app).unwrap();
    (fx, app)
}

/// Replace the app's `VERSION = "v1"` line. The new text has another length, so a cached
/// .pyc written in the same second is never taken for current (Python checks mtime + size).
pub fn edit_app(app: &Path, version_line: &str) {
    let text = std::fs::read_to_string(app).unwrap();
    assert!(text.contains("VERSION = \"v1\""), "{} has no v1 line", app.display());
    let new = text.replace("VERSION = \"v1\"", version_line);
    assert_ne!(new.len(), text.len());
    std::fs::write(app, new).unwrap();
}

// ---------------------------------------------------------------- the load client

/// One request's fate.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub start: Instant,
    pub end: Instant,
    pub status: Option<u16>,
    pub body: String,
    pub error: Option<String>,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.status == Some(200)
    }

    /// (version, pid) from the app's "VERSION PID" answer.
    pub fn served_by(&self) -> Option<(String, i32)> {
        if !self.ok() {
            return None;
        }
        let (v, p) = self.body.trim().split_once(' ')?;
        Some((v.to_owned(), p.parse().ok()?))
    }

    pub fn describe(&self, t0: Instant) -> String {
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
pub fn fetch(port: u16, path: &str, timeout: Duration) -> Outcome {
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
pub struct Load {
    pub stop: Arc<AtomicBool>,
    pub handles: Vec<std::thread::JoinHandle<()>>,
    pub outcomes: Arc<Mutex<Vec<Outcome>>>,
}

pub const LOAD_THREADS: usize = 4;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Load {
    pub fn start(port: u16, path: &str, threads: usize, per_thread: usize) -> Load {
        Load::start_with_timeout(port, path, threads, per_thread, REQUEST_TIMEOUT)
    }

    pub fn start_with_timeout(port: u16, path: &str, threads: usize, per_thread: usize, timeout: Duration) -> Load {
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
    pub fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles {
            h.join().unwrap();
        }
        let mut all = self.outcomes.lock().unwrap().clone();
        all.sort_by_key(|o| o.start);
        all
    }

    /// Wait until every thread has sent its requests (they stop on their own).
    pub fn join(self) -> Vec<Outcome> {
        for h in self.handles {
            h.join().unwrap();
        }
        let mut all = self.outcomes.lock().unwrap().clone();
        all.sort_by_key(|o| o.start);
        all
    }
}

pub fn failures(outcomes: &[Outcome]) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| !o.ok()).collect()
}

pub fn list(outcomes: &[&Outcome], t0: Instant) -> String {
    outcomes.iter().map(|o| o.describe(t0)).collect::<Vec<_>>().join("\n")
}

/// Probe until an answer satisfies `done` (each probe is recorded in `probes`).
pub fn probe_until(port: u16, within: Duration, probes: &mut Vec<Outcome>, done: impl Fn(&Outcome) -> bool) -> bool {
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

pub fn versions(outcomes: &[Outcome]) -> BTreeSet<String> {
    outcomes.iter().filter_map(Outcome::served_by).map(|(v, _)| v).collect()
}

pub fn pids(outcomes: &[Outcome]) -> BTreeSet<i32> {
    outcomes.iter().filter_map(Outcome::served_by).map(|(_, p)| p).collect()
}

/// Wait until both workers answered (the app is imported, the socket is served).
pub fn warm_up(stack: &Stack) {
    let mut probes = Vec::new();
    let ok = probe_until(stack.port(), Duration::from_secs(20), &mut probes, Outcome::ok);
    assert!(ok, "the app never answered: {:?}\n{}", probes.last(), stack.logs());
}
