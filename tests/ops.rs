//! Operations features of the persistent responder, without a web server (the test speaks
//! FastCGI itself): SIGUSR1 reopens `--log-file` and `--access-log` after logrotate moved
//! them (one process, and a supervisor with its workers), the access log's format, and
//! systemd's readiness protocol on a datagram socket the test owns (READY=1 once serving,
//! STOPPING=1 on SIGTERM, and no READY=1 but a failed exit when the app cannot load).

mod common;

use common::fcgi::{self, base_command, temp_dir, Addr, Server};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: signalling a server this test started, by its pid.
    unsafe { libc::kill(pid as i32, sig) };
}

/// One GET with a remote address and a user agent the access log must show.
fn get(server: &Server, path_info: &str) -> fcgi::Http {
    let mut params = fcgi::cgi("GET", path_info, "q=1");
    fcgi::set(&mut params, "REMOTE_ADDR", "192.0.2.9");
    fcgi::set(&mut params, "REQUEST_URI", &format!("{path_info}?q=1"));
    fcgi::set(&mut params, "HTTP_USER_AGENT", "ops-test");
    let h = server.connect().request(1, false, &params, b"").http();
    assert_eq!(h.status, 200, "{h:?}\n{}", server.diag());
    h
}

fn read(path: &Path) -> String {
    fcgi::read_lossy(path)
}

/// Move both logs aside as logrotate does, send SIGUSR1 to the main process, and check
/// that requests after it are logged in new files by that name (within a bound: a
/// supervisor passes the signal on to its workers through the zygote).
fn rotate_and_check(server: &mut Server) {
    let dir = server.dir.path().to_owned();
    let (log, access) = (dir.join("log"), dir.join("access.log"));
    get(server, "/before");
    // The line is written just after the response ends.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !read(&access).contains("/before?q=1") {
        assert!(Instant::now() < deadline, "no access-log line: {:?}\n{}", read(&access), server.diag());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::rename(&log, dir.join("log.1")).unwrap();
    std::fs::rename(&access, dir.join("access.log.1")).unwrap();
    signal(server.child.id(), libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    loop {
        n += 1;
        let path = format!("/after{n}");
        get(server, &path);
        let (new_log, new_access) = (read(&log), read(&access));
        if new_log.contains(&format!("GET {path}?q=1 -> 200")) && new_access.contains(&format!("{path}?q=1")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no request reached the new files within 10 s\nlog: {new_log}\naccess: {new_access}\nold log: {}\nold access: {}\nfds: {:?}",
            read(&dir.join("log.1")),
            read(&dir.join("access.log.1")),
            std::fs::read_dir(format!("/proc/{}/fd", server.child.id())).map(|d| d.flatten().map(|e| std::fs::read_link(e.path()).ok()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.alive(), "SIGUSR1 stopped the server\n{}", server.diag());
    // The old files were let go: the last request is only in the new ones.
    assert!(!read(&dir.join("access.log.1")).contains(&format!("/after{n}?")));
    let line = read(&access).lines().find(|l| l.contains(&format!("/after{n}?"))).unwrap().to_owned();
    // ADDR - USER [TIME] "REQUEST" STATUS BYTES "REFERER" "AGENT" MICROSECONDS PID
    let re_ok =
        line.starts_with("192.0.2.9 - - [") && line.contains(&format!("] \"GET /after{n}?q=1 HTTP/1.1\" 200 ")) && line.contains(" \"-\" \"ops-test\" ");
    assert!(re_ok, "{line}");
    let mut tail = line.rsplit(' ');
    let pid: u32 = tail.next().unwrap().trim().parse().unwrap();
    let micros: u64 = tail.next().unwrap().parse().unwrap();
    assert!(micros > 0 && pid > 0, "{line}");
    assert!(server.alive());
}

#[test]
fn sigusr1_reopens_the_log_and_the_access_log() {
    for workers in ["1", "2"] {
        let mut args = vec!["--log-level", "info", "--access-log"];
        let dir = temp_dir();
        let access = dir.path().join("access.log").display().to_string();
        args.push(&access);
        args.extend(["--workers", workers]);
        let sock = dir.path().join("s.sock");
        let mut cmd = base_command(dir.path(), &fcgi::echo_app());
        cmd.arg("--bind").arg(format!("unix:{}", sock.display())).args(["--socket-mode", "0600", "--log-file"]).arg(dir.path().join("log")).args(&args);
        let mut server = Server::spawn(cmd, dir, Addr::Unix(sock));
        rotate_and_check(&mut server);
        if workers == "2" {
            assert!(server.log().contains("SIGUSR1: log files reopened"), "{}", server.diag());
        }
    }
}

/// The notify socket: a datagram socket the test binds, as systemd does.
struct Notify {
    sock: UnixDatagram,
    path: std::path::PathBuf,
}

impl Notify {
    fn new(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Notify { sock, path }
    }

    /// Datagrams until one holds `needle` (or `within` passes: None).
    fn wait_for(&self, needle: &str, within: Duration, seen: &mut Vec<String>) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.push(msg.clone());
                if msg.lines().any(|l| l == needle) {
                    return Some(msg);
                }
            }
        }
        None
    }
}

#[test]
fn systemd_is_told_ready_once_serving_and_stopping_on_sigterm() {
    for workers in ["1", "2"] {
        let dir = temp_dir();
        let notify = Notify::new(dir.path());
        let sock = dir.path().join("s.sock");
        let mut cmd = base_command(dir.path(), &fcgi::echo_app());
        cmd.arg("--bind")
            .arg(format!("unix:{}", sock.display()))
            .args(["--workers", workers, "--log-file"])
            .arg(dir.path().join("log"))
            .env("NOTIFY_SOCKET", &notify.path);
        let mut child = cmd.spawn().unwrap();
        let mut seen = Vec::new();
        let ready = notify.wait_for("READY=1", Duration::from_secs(30), &mut seen);
        let Some(ready) = ready else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no READY=1 (workers {workers}); got {seen:?}");
        };
        assert!(ready.lines().any(|l| l.starts_with("STATUS=") && l.contains("serving")), "{ready:?}");
        assert!(ready.contains(&format!("MAINPID={}", child.id())), "{ready:?}");
        // Ready means serving: a request right now is answered.
        let mut conn = fcgi::Conn::to(&Addr::Unix(sock.clone()));
        assert_eq!(conn.request(1, false, &fcgi::cgi("GET", "/", ""), b"").http().status, 200);
        signal(child.id(), libc::SIGTERM);
        let stopping = notify.wait_for("STOPPING=1", Duration::from_secs(15), &mut seen);
        let status = child.wait().unwrap();
        assert!(stopping.is_some(), "no STOPPING=1 (workers {workers}); got {seen:?}");
        assert!(status.success(), "{status}");
    }
}

#[test]
fn a_failed_import_exits_nonzero_without_ready() {
    for workers in ["1", "2"] {
        let dir = temp_dir();
        let notify = Notify::new(dir.path());
        let app = dir.path().join("broken.py");
        std::fs::write(&app, "raise RuntimeError('boom at import')\n").unwrap();
        let sock = dir.path().join("s.sock");
        let mut cmd = base_command(dir.path(), app.to_str().unwrap());
        cmd.arg("--bind").arg(format!("unix:{}", sock.display())).args(["--workers", workers]).env("NOTIFY_SOCKET", &notify.path);
        let mut child = cmd.spawn().unwrap();
        let status = common::wait_exit(&mut child, Duration::from_secs(30), &format!("a server whose app cannot load (workers {workers})"));
        assert!(!status.success(), "workers {workers}: {status}");
        let mut seen = Vec::new();
        assert_eq!(notify.wait_for("READY=1", Duration::from_millis(300), &mut seen), None, "{seen:?}");
    }
}
