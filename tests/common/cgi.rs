//! The CGI tests' helpers (tests/cgi_*.rs): paths of the examples and test apps, GET and
//! POST through the binary as a bare CGI program, any program run with raw-bytes
//! variables and a deadline, and the checks a clean response passes.

use super::{cgi_env, cgi_run, parse_cgi, CgiResponse};
use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A run that takes longer than this is a hang (the slowest test needs about 2 s).
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn example(name: &str) -> String {
    super::repo().join("examples").join(name).to_str().unwrap().to_owned()
}

pub fn examples_dir() -> String {
    super::repo().join("examples").to_str().unwrap().to_owned()
}

pub fn test_app(name: &str) -> String {
    super::repo().join("tests/apps").join(name).to_str().unwrap().to_owned()
}

pub fn apps_dir() -> String {
    super::repo().join("tests/apps").to_str().unwrap().to_owned()
}

/// GET with the minimal CGI environment plus `extra`.
pub fn get(args: &[&str], query: &str, extra: &[(&str, &str)]) -> CgiResponse {
    parse_cgi(&cgi_run(args, &cgi_env("GET", "/", query, extra), b""))
}

pub fn post(args: &[&str], query: &str, body: &[u8]) -> CgiResponse {
    let len = body.len().to_string();
    let env = cgi_env("POST", "/upload", query, &[("CONTENT_LENGTH", &len), ("CONTENT_TYPE", "application/octet-stream")]);
    parse_cgi(&cgi_run(args, &env, body))
}

pub fn body_text(r: &CgiResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

pub fn os_env(env: &[(String, String)]) -> Vec<(OsString, OsString)> {
    env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
}

/// Spawn, retrying while the program is busy: a drop-in written by this test process can
/// still be open for writing in a child another test thread forked meanwhile (ETXTBSY).
pub fn spawn(cmd: &mut Command) -> Child {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Ok(child) => return child,
            Err(e) if e.kind() == ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{cmd:?}: {e}"),
        }
    }
}

/// Like `common::cgi_run`, for any program and raw-bytes variables, with a deadline. With
/// `keep_stdin_open` the body is written but stdin is not closed until the process exits,
/// so a gateway that reads past the body it was told about hangs (and fails the deadline).
pub fn run_program(program: &Path, args: &[&str], env: &[(OsString, OsString)], stdin: &[u8], keep_stdin_open: bool) -> Output {
    let mut child = spawn(
        Command::new(program).args(args).env_clear().envs(env.iter().map(|(k, v)| (k, v))).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()),
    );
    let mut input = child.stdin.take().unwrap();
    let body = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The app may not read it all; a broken pipe then is fine.
        let _ = input.write_all(&body);
        keep_stdin_open.then_some(input)
    });
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} did not finish within {DEADLINE:?} (blocked reading stdin?)", program.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(writer.join().unwrap());
    Output { status, stdout: out_reader.join().unwrap(), stderr: err_reader.join().unwrap() }
}

/// The validator in examples/echo.py raises on any PEP 3333 breach; nothing may be logged.
pub fn assert_clean_stderr(r: &CgiResponse) {
    for bad in ["AssertionError", "WSGIWarning", "Traceback"] {
        assert!(!r.stderr.contains(bad), "stderr holds {bad}:\n{}", r.stderr);
    }
}

/// A clean 500: the generic page (no traceback, no detail) and `fault` in the error log.
pub fn assert_clean_500(r: &CgiResponse, fault: &str) {
    let body = body_text(r);
    assert_eq!(r.status, 500, "body: {body}\nstderr: {}", r.stderr);
    assert!(body.starts_with("500 Internal Server Error"), "{body}");
    assert!(!body.contains("Traceback") && !body.contains(fault), "the 500 page leaks the fault: {body}");
    assert_eq!(r.header("Content-Length"), Some(r.body.len().to_string().as_str()));
    assert!(r.stderr.contains(fault), "stderr does not name the fault {fault:?}:\n{}", r.stderr);
}

pub fn misbehave(name: &str) -> CgiResponse {
    get(&[&format!("{}:{name}", test_app("misbehave.py"))], "", &[])
}
