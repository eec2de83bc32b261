//! The request matrix every CGI server test runs against a real server: each scenario is
//! checked and failures are collected, so one run reports everything that broke.

use super::http::{self, HttpResponse};
use super::servers::Server;
use super::{sha256_hex, test_bytes};

/// Collects scenario failures; panics with all of them (and the server log) at the end.
pub struct Checks<'a> {
    server: &'a Server,
    failures: Vec<String>,
}

impl<'a> Checks<'a> {
    pub fn new(server: &'a Server) -> Checks<'a> {
        Checks { server, failures: Vec::new() }
    }

    /// Run one scenario; a panic inside it is recorded as a failure with its name.
    pub fn check(&mut self, name: &str, f: impl FnOnce() + std::panic::UnwindSafe) {
        eprintln!("[{}] {name}", self.server.name);
        if let Err(e) = std::panic::catch_unwind(f) {
            let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            self.failures.push(format!("{name}: {msg}"));
        }
    }

    pub fn finish(self) {
        if !self.failures.is_empty() {
            panic!(
                "{} scenario(s) failed on {}:\n{}\n--- server error log ---\n{}",
                self.failures.len(),
                self.server.name,
                self.failures.join("\n"),
                self.server.log()
            );
        }
    }
}

/// Request bodies through the echo app at `echo`: 1 MiB with Content-Length, then chunked.
fn body_checks(c: &mut Checks, port: u16, echo: &'static str) {
    c.check("POST 1 MiB, sha256 echoed", || {
        let body = test_bytes(1 << 20);
        let r = http::request(port, "POST", echo, &[("Content-Type", "application/octet-stream")], &body);
        ok(&r);
        let j = r.json();
        assert_eq!(j["body_length"], 1 << 20);
        assert_eq!(j["body_sha256"], sha256_hex(&body));
        assert_eq!(j["CONTENT_TYPE"], "application/octet-stream");
        assert!(j["HTTP_CONTENT_TYPE"].is_null() && j["HTTP_CONTENT_LENGTH"].is_null());
    });
    c.check("chunked POST", || {
        let body = test_bytes(300_000);
        let r = http::post_chunked(port, echo, &body, 7000);
        ok(&r);
        let j = r.json();
        assert_eq!(j["body_sha256"], sha256_hex(&body), "{j}");
        assert_eq!(j["body_length"], 300_000);
    });
}

/// The Flask example mounted at /app: links built with the prefix, only /app mounted, a POST.
fn flask_checks(c: &mut Checks, port: u16) {
    c.check("Flask prefix mount", || {
        let r = http::get(port, "/app/");
        ok(&r);
        assert_eq!(r.text(), "Hello from Flask\n");
        let r = http::get(port, "/app/users/42");
        ok(&r);
        let j = r.json();
        assert_eq!(j["user"], 42);
        assert_eq!(j["link"], "/app/users/42");
        assert_eq!(j["script_root"], "/app");
    });
    c.check("/appx is not under the mount", || {
        let r = http::get(port, "/appx/y");
        assert_eq!(r.status, 404, "{}", r.text());
    });
    c.check("Flask HTTP Basic auth (Authorization passed on)", || {
        let r = http::get(port, "/app/private");
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")), "{:?}", r.headers);
        // demo:s3cret
        let r = http::request(port, "GET", "/app/private", &[("Authorization", "Basic ZGVtbzpzM2NyZXQ=")], b"");
        ok(&r);
        assert_eq!(r.text(), "hello demo\n");
    });
    c.check("Flask POST", || {
        let body = test_bytes(100_000);
        let r = http::request(port, "POST", "/app/upload", &[("Content-Type", "application/octet-stream")], &body);
        ok(&r);
        assert_eq!(r.json()["sha256"], sha256_hex(&body));
    });
}

fn ok(r: &HttpResponse) {
    assert_eq!(r.status, 200, "status {} body {}", r.status, r.text());
}

/// The CGI matrix: expects hello.cgi, echo.cgi, doctor.cgi under /cgi-bin/ and the Flask
/// drop-in mounted at /app.
pub fn cgi_matrix(server: &Server, c: &mut Checks) {
    let port = server.port;
    c.check("GET hello", || {
        let r = http::get(port, "/cgi-bin/hello.cgi");
        ok(&r);
        assert_eq!(r.text(), "Hello World\n");
    });
    c.check("GET with query and path", || {
        let r = http::request(port, "GET", "/cgi-bin/echo.cgi/some/path?a=1&b=two", &[("X-Test", "yes")], b"");
        ok(&r);
        let j = r.json();
        assert_eq!(j["QUERY_STRING"], "a=1&b=two");
        assert_eq!(j["PATH_INFO"], "/some/path");
        assert_eq!(j["SCRIPT_NAME"], "/cgi-bin/echo.cgi");
        assert_eq!(j["HTTP_X_TEST"], "yes");
        assert_eq!(j["run_once"], true);
        assert_eq!(j["body_length"], 0);
    });
    body_checks(c, port, "/cgi-bin/echo.cgi");
    c.check("HEAD", || {
        let r = http::request(port, "HEAD", "/cgi-bin/hello.cgi", &[], b"");
        ok(&r);
        assert!(r.body.is_empty(), "HEAD got a body: {:?}", r.text());
    });
    c.check("percent-encoded UTF-8 path", || {
        let r = http::get(port, "/cgi-bin/echo.cgi/caf%C3%A9/%E2%82%AC");
        ok(&r);
        let j = r.json();
        assert_eq!(j["path_info_utf8"], "/café/€");
        assert_eq!(j["PATH_INFO"], "/caf\u{c3}\u{a9}/\u{e2}\u{82}\u{ac}");
    });
    c.check("ISINDEX query words are not options", || {
        let r = http::get(port, "/cgi-bin/echo.cgi?--app+evil:x+--mode+fastcgi");
        ok(&r);
        let j = r.json();
        assert_eq!(j["QUERY_STRING"], "--app+evil:x+--mode+fastcgi");
        assert_eq!(j["name"], "echo");
    });
    flask_checks(c, port);
    c.check("doctor JSON", || {
        let r = http::get(port, "/cgi-bin/doctor.cgi?format=json");
        ok(&r);
        assert!(r.header("content-type").unwrap_or("").starts_with("application/json"));
        let j = r.json();
        assert_eq!(j["environ"]["REQUEST_METHOD"], "GET");
        assert!(j["warnings"].is_array());
    });
    c.check("no validator or Python error in the log", || {
        let log = server.log();
        for bad in ["AssertionError", "WSGIWarning", "Traceback"] {
            assert!(!log.contains(bad), "{bad} in the server log");
        }
        // The app's print() went to the log, not into a response.
        assert!(log.contains("print() from the app goes to the error log"), "the app's print() did not reach the error log");
    });
}

/// The app every FastCGI recipe mounts at /app (the recipes' `/srv/myapp/app.py`): it
/// hands `/echo`, `/stream`, `/hello` and `/conn` to those apps (moving the segment from
/// PATH_INFO to SCRIPT_NAME, as a dispatcher middleware does) and everything else to the
/// Flask example, which so sees SCRIPT_NAME=/app exactly as the recipe sets it.
pub const MOUNT_APP: &str = r#""""Test dispatcher mounted at /app by the FastCGI recipe tests."""
import json
import os
import socket
import sys
import threading
import time

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
sys.path[:0] = [EXAMPLES, os.path.join(EXAMPLES, "flask")]

import echo
import hello
import stream
from flaskapp import app as flask_app

_lock = threading.Lock()
_served = 0


def connections():
    """The connections (sockets but listening ones) this process holds, by inode: a
    connection kept open across requests keeps its inode; a new one gets a new inode."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if not target.startswith("socket:"):
            continue
        dup = socket.fromfd(int(fd), socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listening = dup.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        finally:
            dup.close()
        if not listening:
            found.add(target)
    return sorted(found)


def conn(environ, start_response):
    """This process and its connections. `?SECONDS` sleeps first."""
    global _served
    with _lock:
        _served += 1
        served = _served
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    body = json.dumps({
        "pid": os.getpid(),
        "served": served,
        "connections": connections(),
        "run_once": environ["wsgi.run_once"],
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


MOUNTS = {"echo": echo.application, "stream": stream.application, "hello": hello.application, "conn": conn}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    name = path[1:].split("/", 1)[0]
    if name in MOUNTS:
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/" + name
        environ["PATH_INFO"] = path[len(name) + 1:]
        return MOUNTS[name](environ, start_response)
    return flask_app(environ, start_response)
"#;

/// Write `MOUNT_APP` into the fixture (`apps/app.py`, beside `examples/`); returns its path.
pub fn install_mount_app(fx: &super::Fixture) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = fx.path().join("apps");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.py");
    std::fs::write(&path, MOUNT_APP).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// When each `chunk N` line of examples/stream.py reached us, from the moment the request
/// was sent; also the status line's code.
pub fn chunk_arrivals(port: u16, path: &str, n: usize) -> (u16, Vec<std::time::Duration>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let start = std::time::Instant::now();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let (mut data, mut buf, mut seen) = (Vec::new(), [0u8; 65536], Vec::new());
    loop {
        let got = s.read(&mut buf).unwrap();
        if got == 0 {
            break;
        }
        data.extend_from_slice(&buf[..got]);
        let text = String::from_utf8_lossy(&data);
        while seen.len() < n && text.contains(&format!("chunk {} at", seen.len())) {
            seen.push(start.elapsed());
        }
    }
    let r = http::parse(&data);
    assert_eq!(seen.len(), n, "not all chunks arrived: {}", r.text());
    (r.status, seen)
}

/// How many connections the `conn` reports saw (distinct socket inodes). Sequential
/// requests over one kept-alive connection: 1; a new connection per request: one each.
pub fn connections_seen(reports: &[serde_json::Value]) -> usize {
    let all: std::collections::HashSet<&str> = reports.iter().flat_map(|j| j["connections"].as_array().unwrap().iter().map(|s| s.as_str().unwrap())).collect();
    all.len()
}

/// `n` sequential requests to the `conn` app; its JSON reports.
pub fn conn_reports(port: u16, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|_| {
            let r = http::get(port, "/app/conn");
            ok(&r);
            r.json()
        })
        .collect()
}

/// The FastCGI matrix: expects `MOUNT_APP` mounted at /app, a recipe that streams, and
/// cgi2wsgi's stderr (the app's print()) in one of `server.logs`.
pub fn fastcgi_matrix(server: &Server, c: &mut Checks) {
    let port = server.port;
    c.check("GET hello", || {
        let r = http::get(port, "/app/hello");
        ok(&r);
        assert_eq!(r.text(), "Hello World\n");
    });
    c.check("GET with query and path", || {
        let r = http::request(port, "GET", "/app/echo/some/path?a=1&b=two", &[("X-Test", "yes")], b"");
        ok(&r);
        let j = r.json();
        assert_eq!(j["QUERY_STRING"], "a=1&b=two");
        assert_eq!(j["SCRIPT_NAME"], "/app/echo");
        assert_eq!(j["PATH_INFO"], "/some/path");
        assert_eq!(j["HTTP_X_TEST"], "yes");
        assert_eq!(j["REQUEST_METHOD"], "GET");
        assert_eq!(j["run_once"], false);
        assert_eq!(j["multiprocess"], true);
        assert_eq!(j["body_length"], 0);
    });
    c.check("Authorization reaches the app", || {
        let r = http::request(port, "GET", "/app/echo", &[("Authorization", "Bearer t0ken")], b"");
        ok(&r);
        assert_eq!(r.json()["HTTP_AUTHORIZATION"], "Bearer t0ken");
    });
    body_checks(c, port, "/app/echo");
    c.check("HEAD", || {
        let r = http::request(port, "HEAD", "/app/hello", &[], b"");
        ok(&r);
        assert!(r.body.is_empty(), "HEAD got a body: {:?}", r.text());
    });
    c.check("percent-encoded UTF-8 path under the mount", || {
        let r = http::get(port, "/app/echo/caf%C3%A9/%E2%82%AC");
        ok(&r);
        let j = r.json();
        assert_eq!(j["SCRIPT_NAME"], "/app/echo");
        assert_eq!(j["path_info_utf8"], "/café/€");
        assert_eq!(j["PATH_INFO"], "/caf\u{c3}\u{a9}/\u{e2}\u{82}\u{ac}");
    });
    flask_checks(c, port);
    c.check("the app process persists across requests", || {
        let reports = conn_reports(port, 4);
        assert!(reports.iter().all(|j| j["run_once"] == false), "{reports:?}");
        let most = reports.iter().filter_map(|j| j["served"].as_u64()).max().unwrap();
        assert!(most >= 2, "no process served two requests: {reports:?}");
    });
    c.check("streaming: chunks arrive as the app yields them", || {
        let (status, at) = chunk_arrivals(port, "/app/stream?n=3&delay=1", 3);
        assert_eq!(status, 200);
        let spread = at[2] - at[0];
        assert!(spread >= std::time::Duration::from_millis(1500), "the 3 chunks (1 s apart) arrived within {spread:?} of each other: buffered ({at:?})");
    });
    c.check("no validator or Python error in the logs", || {
        let log = server.log();
        for bad in ["AssertionError", "WSGIWarning", "Traceback"] {
            assert!(!log.contains(bad), "{bad} in the logs");
        }
        assert!(log.contains("print() from the app goes to the error log"), "the app's print() did not reach the log");
    });
}
