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
            panic!("{} scenario(s) failed on {}:\n{}\n--- server error log ---\n{}", self.failures.len(), self.server.name, self.failures.join("\n"), self.server.log());
        }
    }
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
    c.check("POST 1 MiB, sha256 echoed", || {
        let body = test_bytes(1 << 20);
        let r = http::request(port, "POST", "/cgi-bin/echo.cgi", &[("Content-Type", "application/octet-stream")], &body);
        ok(&r);
        let j = r.json();
        assert_eq!(j["body_length"], 1 << 20);
        assert_eq!(j["body_sha256"], sha256_hex(&body));
        assert_eq!(j["CONTENT_TYPE"], "application/octet-stream");
        assert!(j["HTTP_CONTENT_TYPE"].is_null() && j["HTTP_CONTENT_LENGTH"].is_null());
    });
    c.check("chunked POST", || {
        let body = test_bytes(300_000);
        let r = http::post_chunked(port, "/cgi-bin/echo.cgi", &body, 7000);
        ok(&r);
        let j = r.json();
        assert_eq!(j["body_sha256"], sha256_hex(&body), "{j}");
    });
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
    c.check("Flask POST", || {
        let body = test_bytes(100_000);
        let r = http::request(port, "POST", "/app/upload", &[("Content-Type", "application/octet-stream")], &body);
        ok(&r);
        assert_eq!(r.json()["sha256"], sha256_hex(&body));
    });
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
