//! The binary as a CGI program running apps that misbehave (tests/apps/): PEP 3333 breaches
//! answered 500, exceptions before and after the body started, exc_info, close() on every
//! path, write(), empty bodies, file_wrapper and streaming.

mod common;

use common::cgi::*;
use common::{cgi_env, cgi_run, parse_cgi, test_bytes, CgiResponse};
use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

// 9. Misbehaving apps.

#[test]
fn str_body_chunk_is_500() {
    assert_clean_500(&misbehave("str_chunk"), "the app yielded a str, but body chunks must be bytes");
}

#[test]
fn start_response_never_called_is_500() {
    assert_clean_500(&misbehave("no_start_response"), "before calling start_response()");
}

#[test]
fn start_response_never_called_with_empty_body_is_500() {
    assert_clean_500(&misbehave("no_start_response_empty"), "before calling start_response()");
}

#[test]
fn start_response_twice_without_exc_info_is_500() {
    assert_clean_500(&misbehave("start_twice"), "start_response() called a second time without exc_info");
}

#[test]
fn header_value_with_crlf_is_500_and_not_split() {
    let out = cgi_run(&[&format!("{}:crlf_header", test_app("misbehave.py"))], &cgi_env("GET", "/", "", &[]), b"");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("X-Evil"), "response splitting: {:?}", String::from_utf8_lossy(&out.stdout));
    let r = parse_cgi(&out);
    assert_clean_500(&r, "Set-Cookie: value holds the character");
    assert!(r.header("Set-Cookie").is_none());
}

#[test]
fn non_latin1_header_value_is_500() {
    let r = misbehave("non_latin1_header");
    assert_clean_500(&r, "X-Smiley: value holds the character");
    assert!(r.header("X-Smiley").is_none());
}

#[test]
fn invalid_status_is_500() {
    assert_clean_500(&misbehave("short_status"), "does not start with a three-digit code");
    assert_clean_500(&misbehave("bytes_status"), "status must be a str");
}

#[test]
fn exception_before_start_response_is_500_with_traceback_logged() {
    let r = misbehave("raise_before_start");
    assert_clean_500(&r, "RuntimeError: misbehave: boom before start_response");
    assert!(r.stderr.contains("Traceback (most recent call last)"), "{}", r.stderr);
}

#[test]
fn exception_in_close_with_empty_body_is_500() {
    let r = misbehave("close_raises");
    assert_clean_500(&r, "RuntimeError: misbehave: boom in close()");
    assert!(r.stderr.contains("close() failed"), "{}", r.stderr);
}

#[test]
fn segfault_in_the_app_is_named_in_the_error_log() {
    // The process dies before any head (the web server answers 500 for "premature end of
    // script headers"); the error log must say what happened and where.
    let env = cgi_env("GET", "/segv", "", &[]);
    let out = cgi_run(&[&test_app("workers_app.py")], &env, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.stdout.is_empty(), "half a response: {:?}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains("Fatal Python error: Segmentation fault"), "{stderr}");
    assert!(stderr.contains("workers_app.py"), "no Python stack: {stderr}");
}

#[test]
fn debug_puts_the_traceback_in_the_500_body() {
    let r = get(&["--debug", &format!("{}:raise_before_start", test_app("misbehave.py"))], "", &[]);
    assert_eq!(r.status, 500);
    let body = body_text(&r);
    assert!(body.contains("Traceback (most recent call last)") && body.contains("misbehave: boom before start_response"), "{body}");
}

#[test]
fn exception_after_the_first_chunk_cuts_the_response_short() {
    let r = misbehave("raise_after_first_chunk");
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"first chunk\n");
    assert!(r.stderr.contains("Traceback") && r.stderr.contains("misbehave: boom after the first chunk"), "{}", r.stderr);
    assert!(r.stderr.contains("cut short"), "{}", r.stderr);
}

#[test]
fn exception_after_an_empty_write_still_sends_a_head() {
    // write(b"") may send the head (PEP 3333); when the app then fails, the server must
    // still get a complete CGI head: a 500 (nothing was on the wire yet) or the app's 200.
    let out = cgi_run(&[&format!("{}:write_empty_then_raise", test_app("misbehave.py"))], &cgi_env("GET", "/", "", &[]), b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("misbehave: boom after write(b'')"), "{stderr}");
    assert!(stdout.starts_with("Status: ") && stdout.contains("\r\n\r\n"), "no CGI head on stdout: {stdout:?}\nstderr: {stderr}");
}

// 10. exc_info.

#[test]
fn exc_info_before_the_body_replaces_the_head() {
    let r = get(&[&format!("{}:replace_before_body", test_app("exc_info.py"))], "", &[]);
    assert_eq!(r.status, 500, "{}", r.stderr);
    assert_eq!(r.body, b"the app's own error page\n");
    assert_eq!(r.header("X-App-Error"), Some("yes"));
    assert!(!r.stderr.contains("Traceback"), "{}", r.stderr);
}

#[test]
fn exc_info_after_the_body_started_is_reraised_into_the_app() {
    let out = cgi_run(&[&format!("{}:after_body", test_app("exc_info.py"))], &cgi_env("GET", "/", "", &[]), b"");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Status: 200 OK\r\n"));
    let r = parse_cgi(&out);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"first chunk\n");
    assert!(r.stderr.contains("Traceback") && r.stderr.contains("ValueError: exc_info: failed after the body started"), "{}", r.stderr);
}

// 11. close() is always called.

fn close_log_run(name: &str) -> (CgiResponse, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("close.log");
    let r = get(&["--env", &format!("CLOSE_LOG={}", log.display()), &format!("{}:{name}", test_app("close_log.py"))], "", &[]);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    (r, text)
}

#[test]
fn close_is_called_after_a_normal_response() {
    let (r, log) = close_log_run("normal");
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"one two\n");
    assert_eq!(log, "closed normal\n");
}

#[test]
fn close_is_called_after_a_wrong_type_chunk() {
    let (r, log) = close_log_run("wrong_type");
    assert_clean_500(&r, "the app yielded a str");
    assert_eq!(log, "closed wrong_type\n");
}

#[test]
fn close_is_called_after_an_exception_mid_iteration() {
    let (r, log) = close_log_run("raise_mid");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"first\n");
    assert!(r.stderr.contains("close_log: boom mid-iteration"), "{}", r.stderr);
    assert_eq!(log, "closed raise_mid\n");
}

// 12–14. write(), empty bodies, file_wrapper.

#[test]
fn write_callable_and_iterable_body_in_order() {
    let r = get(&[&format!("{}:write_then_iterable", test_app("responses.py"))], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(body_text(&r), "one,two,three,four");
}

#[test]
fn empty_204_sends_the_head_alone() {
    let out = cgi_run(&[&format!("{}:no_content", test_app("responses.py"))], &cgi_env("GET", "/", "", &[]), b"");
    assert_eq!(out.stdout, b"Status: 204 No Content\r\n\r\n", "{:?}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let r = parse_cgi(&out);
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
}

#[test]
fn head_is_held_past_an_empty_chunk_so_a_later_error_is_500() {
    let r = misbehave("empty_then_raise");
    assert_clean_500(&r, "misbehave: boom after an empty chunk");
}

#[test]
fn file_wrapper_sends_the_file_and_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = test_bytes(200 * 1024 + 3);
    let file = dir.path().join("payload.bin");
    std::fs::write(&file, &data).unwrap();
    let log = dir.path().join("close.log");
    let r = get(
        &[
            "--env",
            &format!("SERVE_FILE={}", file.display()),
            "--env",
            &format!("CLOSE_LOG={}", log.display()),
            &format!("{}:file_wrapper", test_app("responses.py")),
        ],
        "",
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body.len(), data.len());
    assert!(r.body == data, "the body differs from the file");
    assert_eq!(std::fs::read_to_string(&log).unwrap_or_default(), "file closed\n");
}

// 15. Streaming.

#[test]
fn chunks_reach_stdout_as_they_are_produced() {
    let env = cgi_env("GET", "/", "n=2&delay=1.5", &[]);
    let mut child = Command::new(common::binary())
        .arg(example("stream.py"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let mut stdout = child.stdout.take().unwrap();
    let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
    let (mut first, mut second, mut running_at_first) = (None, None, false);
    let started = Instant::now();
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen);
        if first.is_none() && text.contains("chunk 0") {
            first = Some(Instant::now());
            running_at_first = child.try_wait().unwrap().is_none();
        }
        if second.is_none() && text.contains("chunk 1") {
            second = Some(Instant::now());
        }
        assert!(started.elapsed() < DEADLINE, "stream.py did not finish");
    }
    let status = child.wait().unwrap();
    let stderr = err_reader.join().unwrap();
    assert!(status.success(), "{stderr}");
    let (first, second) = (first.expect("chunk 0 never came"), second.expect("chunk 1 never came"));
    assert!(running_at_first, "chunk 0 only arrived when the process ended");
    let gap = second - first;
    assert!(gap >= Duration::from_secs(1), "chunk 0 was held back: it came only {gap:?} before chunk 1");
    let r = parse_cgi(&Output { status, stdout: seen, stderr: stderr.into_bytes() });
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Accel-Buffering"), Some("no"));
}
