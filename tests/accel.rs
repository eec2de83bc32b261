//! The CGI accelerator (`persist = on` in a drop-in): real Apache (mod_cgid under
//! mpm_event, mod_cgi under mpm_prefork) and lighttpd mod_cgi run persist drop-ins: the
//! first request starts a worker, later ones reach it (`wsgi.run_once` is false only
//! there), a burst of cold requests starts one worker, an edit to the app file replaces it,
//! a worker killed mid-response fails that response only, the idle timeout ends it, and a
//! socket planted by another owner is never connected to. Then, without a web server, the
//! binary run as a CGI program: a worker sending malformed records, a private directory
//! that is not ours, a lock left by a crashed process, a stale socket, a peer of another uid.
//!
//! The workers outlive the CGI invocations that start them: each test kills the ones its
//! persist directory lists (by pid, from their stamps) when it ends.

mod common;

use common::servers::{self, ApacheMpm, Server};
use common::{http, scenarios::Checks, Fixture};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WWW_DATA: u32 = 33;

fn alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped by whoever adopted it) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: signalling a worker this test started (its pid comes from its stamp).
    unsafe { libc::kill(pid, sig) };
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The stamps in a persist directory: (stamp path, worker pid, stamp text).
fn stamps(dir: &Path) -> Vec<(PathBuf, i32, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "stamp"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let pid = text.lines().find_map(|l| l.strip_prefix("pid "))?.parse().ok()?;
            Some((p, pid, text))
        })
        .collect()
}

/// The worker serving `drop_in` (its stamp lists the file): (key path without extension, pid).
fn worker_for(dir: &Path, drop_in: &Path) -> Option<(PathBuf, i32)> {
    let needle = std::fs::canonicalize(drop_in).unwrap();
    let needle = format!(" {}\n", needle.display());
    stamps(dir).into_iter().find(|(_, _, text)| text.contains(&needle)).map(|(p, pid, _)| (p.with_extension(""), pid))
}

fn worker_pid(dir: &Path, drop_in: &Path) -> i32 {
    worker_for(dir, drop_in).unwrap_or_else(|| panic!("no worker stamp for {} in {}", drop_in.display(), dir.display())).1
}

/// Kills, when dropped, every worker whose stamp is in the persist directory (before the
/// temp directory holding it, if it owns one, goes).
struct Workers {
    dir: PathBuf,
    _base: Option<tempfile::TempDir>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        let me = std::process::id() as i32;
        // Only processes that are still one of our workers: a stamp may outlive its worker
        // and its pid be reused by an unrelated process.
        let ours = |pid: &i32| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("--persist-worker"));
        let pids: Vec<i32> = stamps(&self.dir).into_iter().map(|(_, pid, _)| pid).filter(|p| *p != me).filter(ours).collect();
        for pid in &pids {
            signal(*pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in pids.iter().filter(|p| alive(**p)) {
            signal(*pid, libc::SIGKILL);
        }
    }
}

/// The persist directory the CGI programs use: made for the user they run as (www-data
/// under a root-started server), 0700.
fn persist_dir(fx: &Fixture) -> (PathBuf, Workers) {
    let dir = fx.path().join("persist");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    if servers::is_root() {
        std::os::unix::fs::chown(&dir, Some(WWW_DATA), Some(WWW_DATA)).unwrap();
    }
    (dir.clone(), Workers { dir, _base: None })
}

/// Install `example` as a persist drop-in (`persist = on` unless it says so itself) with
/// the test's private directory and `settings` added to its header.
fn persist_drop_in(fx: &Fixture, example: &str, dest: &Path, name: &str, dir: &Path, settings: &[&str]) -> PathBuf {
    let path = fx.install_drop_in(example, dest, name);
    let text = std::fs::read_to_string(&path).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let mut extra = format!("# cgi2wsgi: persist-dir = {}\n# cgi2wsgi: log-level = info\n", dir.display());
    if !text.contains("# cgi2wsgi: persist = on") {
        extra.push_str("# cgi2wsgi: persist = on\n");
    }
    for s in settings {
        extra.push_str(&format!("# cgi2wsgi: {s}\n"));
    }
    std::fs::write(&path, format!("{first}\n{extra}{rest}")).unwrap();
    path
}

struct Site {
    // First: the workers are killed before the fixture is removed.
    _workers: Workers,
    fx: Fixture,
    dir: PathBuf,
    cgi_bin: PathBuf,
}

fn site() -> Site {
    let fx = Fixture::new(true);
    let (dir, workers) = persist_dir(&fx);
    let cgi_bin = fx.path().join("cgi-bin");
    persist_drop_in(&fx, "flask-persist.cgi", &cgi_bin, "app.cgi", &dir, &[]);
    persist_drop_in(&fx, "echo.cgi", &cgi_bin, "echo.cgi", &dir, &[]);
    // Its own worker (another key): the burst below must find none running.
    persist_drop_in(&fx, "echo.cgi", &cgi_bin, "burst.cgi", &dir, &["env = BURST=1"]);
    persist_drop_in(&fx, "stream.cgi", &cgi_bin, "stream.cgi", &dir, &[]);
    persist_drop_in(&fx, "hello.cgi", &cgi_bin, "idle.cgi", &dir, &["persist-idle-timeout = 2"]);
    Site { _workers: workers, fx, dir, cgi_bin }
}

fn get_ok(port: u16, path: &str) -> http::HttpResponse {
    let r = http::get(port, path);
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r
}

/// GET `path` (a response streamed over several seconds) and kill `pid` mid-response: once
/// `needle` has arrived, or after 2 s when the server buffers the whole response (lighttpd's
/// default). Returns everything the client received.
fn kill_mid_response(port: u16, path: &str, needle: &str, pid: i32) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    while !String::from_utf8_lossy(&got).contains(needle) && start.elapsed() < Duration::from_secs(2) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    signal(pid, libc::SIGKILL);
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

/// What every server must do with persist drop-ins.
fn accelerator_matrix(server: &Server, s: &Site, c: &mut Checks) {
    let port = server.port;
    let (dir, cgi_bin) = (s.dir.clone(), s.cgi_bin.clone());
    let app = cgi_bin.join("app.cgi");
    c.check("cold, then warm on one worker", || {
        let r = get_ok(port, "/cgi-bin/app.cgi/");
        assert_eq!(r.text(), "Hello from Flask\n");
        let pid = worker_pid(&dir, &app);
        for _ in 0..5 {
            assert_eq!(get_ok(port, "/cgi-bin/app.cgi/").text(), "Hello from Flask\n");
        }
        let r = get_ok(port, "/cgi-bin/app.cgi/users/7");
        assert_eq!(r.json()["link"], "/cgi-bin/app.cgi/users/7");
        assert_eq!(worker_pid(&dir, &app), pid, "the same worker serves the warm requests");
        assert!(alive(pid));
    });
    c.check("the worker serves (run_once false), bodies both ways", || {
        let j = get_ok(port, "/cgi-bin/echo.cgi/x?q=1").json();
        assert_eq!((j["run_once"].as_bool(), j["PATH_INFO"].as_str(), j["QUERY_STRING"].as_str()), (Some(false), Some("/x"), Some("q=1")), "{j}");
        let body = common::test_bytes(1 << 20);
        let r = http::request(port, "POST", "/cgi-bin/echo.cgi", &[("Content-Type", "application/octet-stream")], &body);
        let j = r.json();
        assert_eq!(
            (j["body_length"].as_u64(), j["body_sha256"].as_str(), j["run_once"].as_bool()),
            (Some(1 << 20), Some(common::sha256_hex(&body).as_str()), Some(false))
        );
    });
    c.check("concurrent first requests start one worker", || {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    http::get(port, "/cgi-bin/burst.cgi")
                })
            })
            .collect();
        for t in threads {
            let r = t.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["run_once"], false, "served by the worker, not in-process");
        }
        let (key, _) = worker_for(&dir, &cgi_bin.join("burst.cgi")).expect("a worker");
        let log = std::fs::read_to_string(key.with_extension("log")).unwrap();
        assert_eq!(log.matches("persistent worker (pid").count(), 1, "workers started:\n{log}");
    });
    c.check("an edit to the app file is served by the next request", || {
        let old = worker_pid(&dir, &app);
        let file = s.fx.examples().join("flask/flaskapp.py");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("Hello from Flask", "Hello after deploy")).unwrap();
        assert_eq!(get_ok(port, "/cgi-bin/app.cgi/").text(), "Hello after deploy\n");
        let new = worker_pid(&dir, &app);
        assert_ne!(new, old);
        wait_until("the retired worker exits", Duration::from_secs(15), || !alive(old));
        std::fs::write(&file, text).unwrap();
    });
    c.check("a worker killed mid-response fails that response only", || {
        assert!(get_ok(port, "/cgi-bin/stream.cgi?n=1&delay=0").text().starts_with("chunk 0"));
        let stream = cgi_bin.join("stream.cgi");
        let pid = worker_pid(&dir, &stream);
        let text = kill_mid_response(port, "/cgi-bin/stream.cgi?n=30&delay=0.2", "chunk 1 ", pid);
        assert!(!text.contains("chunk 29"), "the response should be cut short: {text}");
        let r = get_ok(port, "/cgi-bin/stream.cgi?n=2&delay=0");
        assert!(r.text().starts_with("chunk 0") && r.text().contains("chunk 1"), "{}", r.text());
        let new = worker_pid(&dir, &stream);
        assert!(new != pid && alive(new));
    });
    c.check("the idle timeout ends the worker", || {
        let idle = cgi_bin.join("idle.cgi");
        get_ok(port, "/cgi-bin/idle.cgi");
        let (key, pid) = worker_for(&dir, &idle).expect("a worker");
        wait_until("the idle worker exits", Duration::from_secs(30), || !alive(pid));
        assert!(!key.with_extension("sock").exists(), "its socket is removed");
        get_ok(port, "/cgi-bin/idle.cgi");
        assert_ne!(worker_pid(&dir, &idle), pid);
    });
}

fn apache_site(mpm: ApacheMpm) -> (Site, Server) {
    let s = site();
    let rendered = servers::render_snippet("apache/cgi.conf", &[("/usr/lib/cgi-bin", servers::path_str(&s.cgi_bin))]);
    let server = servers::apache(&s.fx, mpm, &rendered);
    (s, server)
}

#[test]
fn apache_mod_cgid_accelerator() {
    let (s, server) = apache_site(ApacheMpm::EventCgid);
    let mut c = Checks::new(&server);
    accelerator_matrix(&server, &s, &mut c);
    c.check("a socket planted by another owner is never connected to", || {
        let echo = s.cgi_bin.join("echo.cgi");
        get_ok(server.port, "/cgi-bin/echo.cgi");
        let (key, pid) = worker_for(&s.dir, &echo).expect("a worker");
        signal(pid, libc::SIGTERM);
        let sock = key.with_extension("sock");
        wait_until("the worker exits", Duration::from_secs(15), || !alive(pid) && !sock.exists());
        // Root (the test) plants a socket where the worker's was; without root, a file.
        let planted = if servers::is_root() {
            let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            l.set_nonblocking(true).unwrap();
            Some(l)
        } else {
            std::fs::write(&sock, "planted").unwrap();
            None
        };
        let j = get_ok(server.port, "/cgi-bin/echo.cgi").json();
        assert_eq!(j["run_once"], false, "a new worker serves");
        if let Some(l) = planted {
            assert!(matches!(l.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "the planted socket got a connection");
        }
        assert!(servers::wait_for_log(&server, "not connecting to", Duration::from_secs(5)), "the refusal is logged");
    });
    c.finish();
}

#[test]
fn apache_mod_cgi_prefork_accelerator() {
    let (s, server) = apache_site(ApacheMpm::PreforkCgi);
    let mut c = Checks::new(&server);
    accelerator_matrix(&server, &s, &mut c);
    c.finish();
}

#[test]
fn lighttpd_mod_cgi_accelerator() {
    let s = site();
    let rendered = servers::render_snippet("lighttpd/cgi.conf", &[("/usr/lib/cgi-bin", servers::path_str(&s.cgi_bin))]);
    let server = servers::lighttpd(&s.fx, &rendered);
    let mut c = Checks::new(&server);
    accelerator_matrix(&server, &s, &mut c);
    c.finish();
}

// ---- Without a web server: the binary as a CGI program, run by the test's own user. ----

/// The echo app as a persist CGI program using `dir`.
fn echo_run(dir: &Path, extra_env: &[(&str, &str)], body: &[u8]) -> common::CgiResponse {
    let echo = common::repo().join("examples/cgi-bin/echo.cgi");
    let dir_arg = dir.display().to_string();
    let args = ["--persist", "--persist-dir", &dir_arg, "--log-level", "info", echo.to_str().unwrap()];
    let len = body.len().to_string();
    let mut extra: Vec<(&str, &str)> = extra_env.to_vec();
    if !body.is_empty() && !extra.iter().any(|(k, _)| *k == "HTTP_TRANSFER_ENCODING") {
        extra.push(("CONTENT_LENGTH", &len));
    }
    let env = common::cgi_env(if body.is_empty() { "GET" } else { "POST" }, "/e", "", &extra);
    common::parse_cgi(&common::cgi_run(&args, &env, body))
}

/// A fresh temp directory; the persist directory is `p` inside it (not created).
fn private_dir() -> (PathBuf, PathBuf, Workers) {
    let base = tempfile::Builder::new().prefix("cgi2wsgi-accel-").tempdir_in("/tmp").unwrap();
    let (path, dir) = (base.path().to_owned(), base.path().join("p"));
    (path, dir.clone(), Workers { dir, _base: Some(base) })
}

#[test]
fn relays_bodies_and_survives_a_stale_socket_and_a_crashed_lock_holder() {
    let (_, dir, _workers) = private_dir();
    let r = echo_run(&dir, &[], b"");
    assert_eq!((r.status, r.json()["run_once"].as_bool()), (200, Some(false)), "{}", r.stderr);
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let body = common::test_bytes(300_000);
    let r = echo_run(&dir, &[], &body);
    assert_eq!(r.json()["body_sha256"], common::sha256_hex(&body));
    let r = echo_run(&dir, &[("HTTP_TRANSFER_ENCODING", "chunked")], &body);
    assert_eq!((r.json()["body_length"].as_u64(), r.json()["run_once"].as_bool()), (Some(300_000), Some(false)), "chunked: read to EOF");

    // A worker killed outright leaves its socket; a lock holder that crashed leaves nothing.
    let (key, pid) = stamps(&dir).into_iter().map(|(p, pid, _)| (p.with_extension(""), pid)).next().unwrap();
    signal(pid, libc::SIGKILL);
    wait_until("the worker dies", Duration::from_secs(10), || !alive(pid));
    assert!(key.with_extension("sock").exists(), "the killed worker's socket stays behind");
    let lock = key.with_extension("lock");
    let held = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg("import fcntl, os, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); os.kill(os.getpid(), 9)")
        .arg(&lock)
        .status()
        .unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&held), Some(9));
    let r = echo_run(&dir, &[], b"");
    assert_eq!((r.status, r.json()["run_once"].as_bool()), (200, Some(false)), "{}", r.stderr);
    assert!(r.stderr.contains("stale socket"), "{}", r.stderr);
    assert_ne!(stamps(&dir)[0].1, pid);

    // Over --max-body: refused (413) by a worker for that setting, the body never relayed.
    let r = echo_run(&dir, &[("CGI2WSGI_MAX_BODY", "1K")], &body);
    assert_eq!(r.status, 413, "{}", r.stderr);
}

/// A fake worker at the socket, of our uid, with a stamp naming it: what it sends decides.
fn fake_worker(dir: &Path, reply: &'static [u8]) -> common::CgiResponse {
    let r = echo_run(dir, &[], b"");
    assert_eq!(r.status, 200);
    let (key, pid) = stamps(dir).into_iter().map(|(p, pid, _)| (p.with_extension(""), pid)).next().unwrap();
    signal(pid, libc::SIGTERM);
    let sock = key.with_extension("sock");
    wait_until("the worker exits", Duration::from_secs(15), || !alive(pid) && !sock.exists());
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::write(key.with_extension("stamp"), format!("cgi2wsgi-stamp 1\npid {}\n", std::process::id())).unwrap();
    let server = std::thread::spawn(move || {
        // Bounded: a client that never connects fails the test instead of hanging it.
        listener.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("the CGI client never connected to the fake worker: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 65536];
        let _ = conn.read(&mut buf);
        let _ = conn.write_all(reply);
    });
    let r = echo_run(dir, &[], b"");
    server.join().unwrap();
    std::fs::remove_file(&sock).unwrap();
    std::fs::remove_file(key.with_extension("stamp")).unwrap();
    r
}

#[test]
fn a_worker_sending_garbage_fails_that_request_with_502() {
    let (_, dir, _workers) = private_dir();
    // Version 9 is not FastCGI.
    let r = fake_worker(&dir, b"\x09\x06\x00\x01\x00\x05\x00\x00hello");
    assert_eq!(r.status, 502, "{}", r.stderr);
    assert!(r.stderr.contains("malformed record"), "{}", r.stderr);
    let (_, dir, _workers) = private_dir();
    let r = fake_worker(&dir, b"");
    assert_eq!(r.status, 502, "{}", r.stderr);
    assert!(r.stderr.contains("closed the connection"), "{}", r.stderr);
}

#[test]
fn a_private_dir_that_is_not_ours_means_in_process() {
    let (base, dir, _workers) = private_dir();
    // A symlink to a directory we own is still refused: someone else may control the link.
    let real = base.join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&real, &dir).unwrap();
    let r = echo_run(&dir, &[], b"");
    assert_eq!((r.status, r.json()["run_once"].as_bool()), (200, Some(true)), "served in-process: {}", r.stderr);
    assert!(r.stderr.contains("symlink"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0, "nothing was created behind the link");
    if servers::is_root() {
        let theirs = base.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(WWW_DATA), Some(WWW_DATA)).unwrap();
        let r = echo_run(&theirs, &[], b"");
        assert_eq!((r.status, r.json()["run_once"].as_bool()), (200, Some(true)), "{}", r.stderr);
        assert!(r.stderr.contains("owned by uid 33"), "{}", r.stderr);
    }
    let long = base.join("d".repeat(100));
    let r = echo_run(&long, &[], b"");
    assert_eq!((r.status, r.json()["run_once"].as_bool()), (200, Some(true)), "{}", r.stderr);
    assert!(r.stderr.contains("too long"), "{}", r.stderr);
}

/// Connect, send a BEGIN_REQUEST, print how many bytes came back (0: closed unanswered).
const PEER_SCRIPT: &str = "import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(bytes([1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]))
except OSError:
    pass
try:
    n = len(s.recv(100))
except OSError:
    n = 0
print(n)
";

#[test]
fn the_worker_refuses_a_peer_of_another_uid() {
    assert!(servers::is_root(), "this test needs root (as CI has) to connect as a second uid");
    let (base, dir, _workers) = private_dir();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(echo_run(&dir, &[], b"").status, 200);
    let (key, _) = stamps(&dir).into_iter().map(|(p, pid, _)| (p.with_extension(""), pid)).next().unwrap();
    let sock = key.with_extension("sock");
    // Open the way for www-data on purpose, to see the worker's own check.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new("/usr/bin/python3").arg("-c").arg(PEER_SCRIPT).arg(&sock).uid(WWW_DATA).gid(WWW_DATA).output().unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "closed without an answer");
    let log = std::fs::read_to_string(key.with_extension("log")).unwrap();
    assert!(log.contains("uid 33: only uid 0 may use this socket"), "{log}");
}

#[test]
fn a_worker_that_cannot_start_means_in_process_logged_once() {
    let (base, dir, _workers) = private_dir();
    let app = base.join("broken.py");
    std::fs::write(&app, "raise RuntimeError('boom at import')\n").unwrap();
    let dir_arg = dir.display().to_string();
    let args = ["--persist", "--persist-dir", &dir_arg, "--log-level", "info", app.to_str().unwrap()];
    let env = common::cgi_env("GET", "/", "", &[]);
    let first = common::parse_cgi(&common::cgi_run(&args, &env, b""));
    // The worker failed to import the app; the invocation served it in-process (which fails
    // the same way, with the usual 500 and the traceback in the log).
    assert_eq!(first.status, 500, "{}", first.stderr);
    assert!(first.stderr.contains("the worker did not start") && first.stderr.contains("logged once"), "{}", first.stderr);
    assert!(first.stderr.contains("boom at import"), "{}", first.stderr);
    let second = common::parse_cgi(&common::cgi_run(&args, &env, b""));
    assert_eq!(second.status, 500);
    assert!(!second.stderr.contains("did not start") && !second.stderr.contains("started worker"), "no retry yet: {}", second.stderr);
    assert!(stamps(&dir).is_empty());
}

/// A tmpfs mounted for one test; unmounted (lazily, if still busy) when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_for_the_private_dir_means_in_process_until_there_is_room() {
    if !servers::is_root() {
        eprintln!("a_full_disk_for_the_private_dir_means_in_process_until_there_is_room needs root (mount): not run");
        return;
    }
    let base = tempfile::Builder::new().prefix("cgi2wsgi-accel-full-").tempdir_in("/tmp").unwrap();
    let mnt = base.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=256k,nr_inodes=64,mode=0700", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(mounted.success(), "cannot mount a tmpfs at {}", mnt.display());
    let _mount = Mount(mnt.clone());
    let dir = mnt.join("p");
    let _workers = Workers { dir: dir.clone(), _base: None };
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Use up every inode and every block.
    let mut fillers = Vec::new();
    for i in 0.. {
        let f = mnt.join(format!("fill{i}"));
        if std::fs::write(&f, vec![0u8; 64 * 1024]).is_err() {
            let _ = std::fs::write(&f, b"");
            if std::fs::write(mnt.join(format!("x{i}")), b"").is_err() {
                break;
            }
        }
        fillers.push(f);
        assert!(i < 10_000, "the tmpfs never filled up");
    }
    let r = echo_run(&dir, &[], b"");
    assert_eq!((r.status, r.json()["run_once"].as_bool()), (200, Some(true)), "served in-process: {}", r.stderr);
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    // Room again: the next request starts a worker.
    for entry in std::fs::read_dir(&mnt).unwrap().flatten() {
        if entry.file_name() != "p" {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let r = echo_run(&dir, &[], b"");
    assert_eq!((r.status, r.json()["run_once"].as_bool()), (200, Some(false)), "served by a worker: {}", r.stderr);
}

/// A module the app imports only on its first request (as Django does with its views) is
/// watched too: editing it after that request replaces the worker on a later request.
#[test]
fn editing_a_lazily_imported_module_is_a_deploy() {
    let (base, dir, _workers) = private_dir();
    let app_dir = base.join("app");
    std::fs::create_dir_all(&app_dir).unwrap();
    let dropin = app_dir.join("lazy.cgi");
    std::fs::write(
        &dropin,
        "#!/usr/local/bin/cgi2wsgi\n# cgi2wsgi: pythonpath = .\n\
         def application(environ, start_response):\n    import lazymod\n    body = lazymod.VALUE.encode()\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [body]\n",
    )
    .unwrap();
    let module = app_dir.join("lazymod.py");
    std::fs::write(&module, "VALUE = 'v1'\n").unwrap();
    let dir_arg = dir.display().to_string();
    let run = || {
        let args = ["--persist", "--persist-dir", &dir_arg, "--log-level", "info", dropin.to_str().unwrap()];
        common::parse_cgi(&common::cgi_run(&args, &common::cgi_env("GET", "/", "", &[("SCRIPT_FILENAME", dropin.to_str().unwrap())]), b""))
    };
    let first = run();
    assert_eq!((first.status, first.body.as_slice()), (200, &b"v1"[..]), "{}", first.stderr);
    let pid = stamps(&dir)[0].1;
    // The worker notices the new module within its rescan period (2 s) and records it.
    wait_until("the stamp lists lazymod.py", Duration::from_secs(15), || stamps(&dir).iter().any(|(_, _, text)| text.contains("lazymod.py")));
    // A different size, so the change shows even within one mtime tick.
    std::fs::write(&module, "VALUE = 'v2, edited'\n").unwrap();
    let after = run();
    assert_eq!((after.status, after.body.as_slice()), (200, &b"v2, edited"[..]), "{}", after.stderr);
    assert_ne!(stamps(&dir)[0].1, pid, "a new worker serves the edited module");
}

// ---- Races and bounds (issue 15): each fails without its fix. ----

/// `app` (Python source) as a persist drop-in in its own directory under `base`.
fn write_app(base: &Path, name: &str, source: &str) -> PathBuf {
    let app_dir = base.join("app");
    std::fs::create_dir_all(&app_dir).unwrap();
    let path = app_dir.join(name);
    std::fs::write(&path, format!("#!/usr/local/bin/cgi2wsgi\n# cgi2wsgi: pythonpath = .\n{source}")).unwrap();
    path
}

/// One CGI request to the drop-in `app` with `--persist --persist-dir DIR` and `flags`.
fn app_run(dir: &Path, app: &Path, flags: &[&str], query: &str) -> common::CgiResponse {
    let dir_arg = dir.display().to_string();
    let mut args = vec!["--persist", "--persist-dir", &dir_arg, "--log-level", "info"];
    args.extend_from_slice(flags);
    args.push(app.to_str().unwrap());
    common::parse_cgi(&common::cgi_run(&args, &common::cgi_env("GET", "/", query, &[("SCRIPT_FILENAME", app.to_str().unwrap())]), b""))
}

/// The one key (file name without extension) in a persist directory, from its lock.
fn only_key(dir: &Path) -> PathBuf {
    let locks: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "lock")).collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    locks[0].with_extension("")
}

/// A worker that sends nothing: after --persist-timeout seconds the relay answers 504 and
/// names the worker's pid (here the test itself plays the worker).
#[test]
fn a_silent_worker_is_answered_504_after_the_persist_timeout() {
    let (_, dir, _workers) = private_dir();
    let env = [("CGI2WSGI_PERSIST_TIMEOUT", "2")];
    assert_eq!(echo_run(&dir, &env, b"").status, 200);
    let (key, pid) = stamps(&dir).into_iter().map(|(p, pid, _)| (p.with_extension(""), pid)).next().unwrap();
    signal(pid, libc::SIGTERM);
    let sock = key.with_extension("sock");
    wait_until("the worker exits", Duration::from_secs(15), || !alive(pid) && !sock.exists());
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::write(key.with_extension("stamp"), format!("cgi2wsgi-stamp 1\npid {}\n", std::process::id())).unwrap();
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let silent = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut sink = Vec::new();
        let _ = conn.read_to_end(&mut sink);
        // Held open, never answered, until the client has given up (bounded).
        let _ = wait_done.recv_timeout(Duration::from_secs(60));
    });
    let t0 = Instant::now();
    let r = echo_run(&dir, &env, b"");
    let took = t0.elapsed();
    done.send(()).unwrap();
    silent.join().unwrap();
    std::fs::remove_file(&sock).unwrap();
    std::fs::remove_file(key.with_extension("stamp")).unwrap();
    assert_eq!(r.status, 504, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("the worker (pid {}) sent nothing for 2 s", std::process::id())), "{}", r.stderr);
    assert!(took < Duration::from_secs(20), "the 504 took {took:?}");
}

/// A worker still importing when --persist-start-timeout passes is killed (with its
/// process group), and the request is served in-process.
#[test]
fn a_worker_that_starts_too_slowly_is_killed() {
    let (base, dir, _workers) = private_dir();
    let pidfile = base.join("worker.pid");
    // Only the first importer (the worker) stalls; the in-process import that follows
    // goes straight through.
    let app = write_app(
        &base,
        "slow.cgi",
        &format!(
            "import os, time\nif not os.path.exists({p:?}):\n    open({p:?}, 'w').write(str(os.getpid()))\n    time.sleep(120)\n\
             def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'in-process']\n",
            p = pidfile.display().to_string()
        ),
    );
    let r = app_run(&dir, &app, &["--persist-start-timeout", "2"], "");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"in-process"[..]), "{}", r.stderr);
    assert!(r.stderr.contains("did not start within 2 s"), "{}", r.stderr);
    let worker: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // Reparented once the CGI exited; gone (or a zombie until init reaps it).
    wait_until("the slow worker is killed", Duration::from_secs(10), || !alive(worker));
}

/// A worker that cannot bind because another one holds the socket leaves that one's stamp
/// alone.
#[test]
fn a_worker_losing_the_bind_keeps_the_winners_stamp() {
    let (_, dir, _workers) = private_dir();
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let sock = dir.join("0123456789abcdef.sock");
    let stamp = dir.join("0123456789abcdef.stamp");
    let _winner = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let text = format!("cgi2wsgi-stamp 1\npid {}\n", std::process::id());
    std::fs::write(&stamp, &text).unwrap();
    let echo = common::repo().join("examples/cgi-bin/echo.cgi");
    let out = Command::new(common::binary())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .arg("--persist-worker")
        .arg(&sock)
        .arg(&echo)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("in use by another process"), "{}: {stderr}", out.status);
    assert_eq!(std::fs::read_to_string(&stamp).ok().as_deref(), Some(text.as_str()), "the winner's stamp: {stderr}");
}

/// A module rewritten while the worker imports the app (here by the import itself) is not
/// taken as current: the next request gets a worker that imported the new text.
#[test]
fn a_module_rewritten_during_the_import_is_not_current() {
    let (base, dir, _workers) = private_dir();
    let app = write_app(
        &base,
        "rewrite.cgi",
        "import os, lazymod\nif lazymod.VALUE == 'v1':\n    with open(os.path.join(os.path.dirname(lazymod.__file__), 'lazymod.py'), 'w') as f:\n        f.write(\"VALUE = 'v2, rewritten'\\n\")\n\
         def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [lazymod.VALUE.encode()]\n",
    );
    let module = app.parent().unwrap().join("lazymod.py");
    std::fs::write(&module, "VALUE = 'v1'\n").unwrap();
    // Older than the worker's import, as a deployed file is.
    std::thread::sleep(Duration::from_millis(100));
    let first = app_run(&dir, &app, &[], "");
    assert_eq!((first.status, first.body.as_slice()), (200, &b"v1"[..]), "{}", first.stderr);
    let second = app_run(&dir, &app, &[], "");
    assert_eq!((second.status, second.body.as_slice()), (200, &b"v2, rewritten"[..]), "{}", second.stderr);
}

/// The app's stdout goes to `K.log` in the private directory: past 10 MiB it is rotated,
/// one old copy kept, and later output lands in a fresh `K.log`.
#[test]
fn the_workers_own_log_is_rotated_by_size() {
    let (base, dir, _workers) = private_dir();
    let app = write_app(
        &base,
        "noisy.cgi",
        "import os\n\
         def application(environ, start_response):\n    n = int(environ.get('QUERY_STRING') or 0)\n    \
         os.write(1, b'x' * n + b'\\n' + ('MARK %d\\n' % n).encode())\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'ok']\n",
    );
    let big = (11 << 20).to_string();
    let r = app_run(&dir, &app, &[], &big);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let key = only_key(&dir);
    let (log, old) = (key.with_extension("log"), key.with_extension("log.1"));
    assert!(std::fs::metadata(&log).unwrap().len() > 11 << 20);
    // The worker looks every 2 s.
    wait_until("K.log is rotated", Duration::from_secs(15), || old.exists());
    assert!(std::fs::metadata(&old).unwrap().len() > 11 << 20);
    let r = app_run(&dir, &app, &[], "7");
    assert_eq!(r.status, 200, "{}", r.stderr);
    let fresh = std::fs::read_to_string(&log).unwrap();
    assert!(fresh.contains("MARK 7") && fresh.len() < 1 << 20, "{} bytes", fresh.len());
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
}

/// A failed start's marker is written while the start-up lock is still held: frozen
/// (the marker is a FIFO no one reads yet) at that write, the invocation still holds it.
#[test]
fn the_failed_start_marker_is_written_under_the_lock() {
    let (base, dir, _workers) = private_dir();
    let app = write_app(&base, "broken.cgi", "raise RuntimeError('boom at import')\n");
    // A first run learns the key (and leaves a regular marker, replaced below).
    assert_eq!(app_run(&dir, &app, &[], "").status, 500);
    let key = only_key(&dir);
    let marker = key.with_extension("fallback");
    std::fs::remove_file(&marker).unwrap();
    let made = Command::new("mkfifo").arg(&marker).status().unwrap();
    assert!(made.success());
    // Old enough not to count as a recent failure.
    let touched = Command::new("touch").args(["-d", "1 hour ago"]).arg(&marker).status().unwrap();
    assert!(touched.success());
    let dir_arg = dir.display().to_string();
    let env = common::cgi_env("GET", "/", "", &[]);
    let mut child = Command::new(common::binary())
        .args(["--persist", "--persist-dir", &dir_arg, "--log-level", "info"])
        .arg(&app)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let blocked = || std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("wait_for_partner"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !blocked() && Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let was_blocked = blocked();
    let lock = std::fs::OpenOptions::new().read(true).write(true).open(key.with_extension("lock")).unwrap();
    // SAFETY: flock on a file this test opened.
    let free = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    drop(lock);
    // Let the writer go on: open the FIFO for reading and drain it.
    let mut reader = std::fs::File::open(&marker).unwrap();
    let mut said = String::new();
    let _ = reader.read_to_string(&mut said);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(was_blocked, "the invocation never wrote the marker: {stderr}");
    assert!(!free, "the lock was free while the marker was being written: {stderr}");
    assert!(said.contains("did not start"), "{said:?}");
}

/// Removes a throwaway account (and what it owns in /tmp) when dropped.
struct Account {
    name: String,
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// Under suEXEC there is no HOME and no XDG_RUNTIME_DIR: the private directory is then
/// `~/.cache/cgi2wsgi` from the password database, so another account creating
/// `/tmp/cgi2wsgi-UID` first does not turn the accelerator off.
#[test]
fn without_home_the_private_dir_comes_from_the_password_database() {
    assert!(servers::is_root(), "this test needs root (as CI has) to make a throwaway account");
    let fx = Fixture::new(false);
    let home = fx.path().join("home");
    std::fs::create_dir(&home).unwrap();
    // A uid no one uses, and an account for it for the length of the test.
    let uid = (52_000..53_000)
        .map(|u| u + std::process::id() % 500)
        .find(|u| Command::new("getent").arg("passwd").arg(u.to_string()).output().is_ok_and(|o| !o.status.success()))
        .unwrap();
    let name = format!("c2wt{uid}");
    let added = Command::new("useradd")
        .args(["-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin", "-u", &uid.to_string(), "-d"])
        .arg(&home)
        .arg(&name)
        .status()
        .unwrap();
    assert!(added.success(), "useradd failed");
    let _account = Account { name };
    std::os::unix::fs::chown(&home, Some(uid), None).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Another account got there first.
    let planted = PathBuf::from(format!("/tmp/cgi2wsgi-{uid}"));
    let _ = std::fs::remove_dir_all(&planted);
    std::fs::create_dir(&planted).unwrap();
    std::os::unix::fs::chown(&planted, Some(WWW_DATA), Some(WWW_DATA)).unwrap();
    struct Planted(PathBuf);
    impl Drop for Planted {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _planted = Planted(planted);
    let private = home.join(".cache/cgi2wsgi");
    let _workers = Workers { dir: private.clone(), _base: None };
    let echo = fx.examples().join("cgi-bin/echo.cgi");
    let env = common::cgi_env("GET", "/e", "", &[("PATH", "/usr/local/bin:/usr/bin:/bin")]);
    let run = || {
        let out = Command::new(fx.bin())
            .args(["--persist", "--log-level", "info"])
            .arg(&echo)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(echo.parent().unwrap())
            .uid(uid)
            .gid(65534)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        common::parse_cgi(&out)
    };
    let r = run();
    assert_eq!((r.status, r.json()["run_once"].as_bool()), (200, Some(false)), "served by a worker: {}", r.stderr);
    assert_eq!(stamps(&private).len(), 1, "the worker's files are in {}: {}", private.display(), r.stderr);
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o700);
    let r = run();
    assert_eq!((r.status, r.json()["run_once"].as_bool()), (200, Some(false)), "{}", r.stderr);
}

/// SIGUSR1 means "reopen the logs" in the accelerator's worker too (it keeps serving);
/// retirement, when the app changes, is SIGWINCH: the old worker exits.
#[test]
fn sigusr1_does_not_retire_a_worker_and_a_deploy_still_does() {
    let (base, dir, _workers) = private_dir();
    let app = write_app(
        &base,
        "plain.cgi",
        "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'one']\n",
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(app_run(&dir, &app, &[], "").body, b"one");
    let pid = stamps(&dir)[0].1;
    signal(pid, libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(alive(pid), "SIGUSR1 ended the worker");
    let r = app_run(&dir, &app, &[], "");
    assert_eq!((r.body.as_slice(), stamps(&dir)[0].1), (&b"one"[..], pid), "{}", r.stderr);
    // The same settings (they are part of the worker's key), another body.
    write_app(
        &base,
        "plain.cgi",
        "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'two, deployed']\n",
    );
    let r = app_run(&dir, &app, &[], "");
    assert_eq!(r.body, b"two, deployed", "{}", r.stderr);
    assert!(r.stderr.contains(&format!("retiring worker {pid}")), "{}", r.stderr);
    wait_until("the retired worker exits", Duration::from_secs(10), || !alive(pid));
}
