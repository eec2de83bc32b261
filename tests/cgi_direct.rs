//! The binary run directly as a CGI program (empty environment + CGI variables, body on
//! stdin, response on stdout), as Apache runs it: the examples and the misbehaving apps in
//! tests/apps/, request and response edge cases, app loading, CLI errors and venvs.

mod common;

use common::{cgi_env, cgi_run, parse_cgi, sha256_hex, test_bytes, CgiResponse};
use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A run that takes longer than this is a hang (the slowest test needs about 2 s).
const DEADLINE: Duration = Duration::from_secs(60);

fn example(name: &str) -> String {
    common::repo().join("examples").join(name).to_str().unwrap().to_owned()
}

fn examples_dir() -> String {
    common::repo().join("examples").to_str().unwrap().to_owned()
}

fn test_app(name: &str) -> String {
    common::repo().join("tests/apps").join(name).to_str().unwrap().to_owned()
}

fn apps_dir() -> String {
    common::repo().join("tests/apps").to_str().unwrap().to_owned()
}

/// GET with the minimal CGI environment plus `extra`.
fn get(args: &[&str], query: &str, extra: &[(&str, &str)]) -> CgiResponse {
    parse_cgi(&cgi_run(args, &cgi_env("GET", "/", query, extra), b""))
}

fn post(args: &[&str], query: &str, body: &[u8]) -> CgiResponse {
    let len = body.len().to_string();
    let env = cgi_env("POST", "/upload", query, &[("CONTENT_LENGTH", &len), ("CONTENT_TYPE", "application/octet-stream")]);
    parse_cgi(&cgi_run(args, &env, body))
}

fn body_text(r: &CgiResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn os_env(env: &[(String, String)]) -> Vec<(OsString, OsString)> {
    env.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
}

/// Spawn, retrying while the program is busy: a drop-in written by this test process can
/// still be open for writing in a child another test thread forked meanwhile (ETXTBSY).
fn spawn(cmd: &mut Command) -> Child {
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
fn run_program(program: &Path, args: &[&str], env: &[(OsString, OsString)], stdin: &[u8], keep_stdin_open: bool) -> Output {
    let mut child = spawn(
        Command::new(program)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
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
fn assert_clean_stderr(r: &CgiResponse) {
    for bad in ["AssertionError", "WSGIWarning", "Traceback"] {
        assert!(!r.stderr.contains(bad), "stderr holds {bad}:\n{}", r.stderr);
    }
}

/// A clean 500: the generic page (no traceback, no detail) and `fault` in the error log.
fn assert_clean_500(r: &CgiResponse, fault: &str) {
    let body = body_text(r);
    assert_eq!(r.status, 500, "body: {body}\nstderr: {}", r.stderr);
    assert!(body.starts_with("500 Internal Server Error"), "{body}");
    assert!(!body.contains("Traceback") && !body.contains(fault), "the 500 page leaks the fault: {body}");
    assert_eq!(r.header("Content-Length"), Some(r.body.len().to_string().as_str()));
    assert!(r.stderr.contains(fault), "stderr does not name the fault {fault:?}:\n{}", r.stderr);
}

fn misbehave(name: &str) -> CgiResponse {
    get(&[&format!("{}:{name}", test_app("misbehave.py"))], "", &[])
}

// 1. The smallest app.

#[test]
fn hello_head_first_crlf_and_exact_body() {
    let out = cgi_run(&[&example("hello.py")], &cgi_env("GET", "/", "", &[]), b"");
    assert!(out.status.success(), "{:?}", out.status);
    let stdout = &out.stdout;
    assert!(stdout.starts_with(b"Status: 200 OK\r\n"), "{:?}", String::from_utf8_lossy(stdout));
    let split = stdout.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head");
    let head = &stdout[..split + 2];
    for (i, _) in head.iter().enumerate().filter(|(_, &b)| b == b'\n') {
        assert_eq!(head[i - 1], b'\r', "bare LF in head {:?}", String::from_utf8_lossy(head));
    }
    let r = parse_cgi(&out);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some("text/plain"));
    assert_eq!(r.header("Content-Length"), Some("12"));
    // parse_cgi's body is everything after the head: nothing follows the app's body.
    assert_eq!(r.body, b"Hello World\n");
}

// 2. The echo app under wsgiref.validate.

#[test]
fn echo_get_with_query_string_is_validator_clean() {
    let r = get(&[&example("echo.py")], "a=1&b=x%20y", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["QUERY_STRING"], "a=1&b=x%20y");
    assert_eq!(j["REQUEST_METHOD"], "GET");
    assert_eq!(j["body_length"], 0);
    assert_clean_stderr(&r);
    assert!(r.stderr.contains("echo: print() from the app goes to the error log"), "{}", r.stderr);
    assert!(r.stderr.contains("echo: a line on wsgi.errors"), "{}", r.stderr);
    assert!(!body_text(&r).contains("print() from the app"));
}

#[test]
fn echo_post_1mib_body_round_trips() {
    let body = test_bytes(1 << 20);
    let out = cgi_run(
        &[&example("echo.py")],
        &cgi_env("POST", "/upload", "", &[("CONTENT_LENGTH", "1048576"), ("CONTENT_TYPE", "application/octet-stream")]),
        &body,
    );
    // The app's print() goes to the error log, never into the response.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("echo: print()") && !stdout.contains("wsgi.errors"), "{stdout}");
    let r = parse_cgi(&out);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["body_length"], 1 << 20);
    assert_eq!(j["body_sha256"], sha256_hex(&body));
    assert_eq!(j["CONTENT_LENGTH"], "1048576");
    assert_clean_stderr(&r);
    assert!(r.stderr.contains("echo: print() from the app goes to the error log"), "{}", r.stderr);
    assert!(r.stderr.contains("echo: a line on wsgi.errors"), "{}", r.stderr);
}

// 3. wsgi.input is bounded.

#[test]
fn input_is_bounded_by_content_length() {
    let body = test_bytes(100);
    let env = cgi_env("POST", "/", "", &[("CONTENT_LENGTH", "10")]);
    // stdin stays open: reading one byte past CONTENT_LENGTH would block until the deadline.
    let r = parse_cgi(&run_program(&common::binary(), &[&example("echo.py")], &os_env(&env), &body, true));
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["body_length"], 10);
    assert_eq!(j["body_sha256"], sha256_hex(&body[..10]));
    assert_clean_stderr(&r);
}

#[test]
fn content_length_larger_than_stdin_is_an_error_not_a_short_body() {
    // The client hung up mid-body: the app must not take 10 bytes for the whole upload.
    let env = cgi_env("POST", "/", "", &[("CONTENT_LENGTH", "100")]);
    let r = parse_cgi(&cgi_run(&[&example("echo.py")], &env, &test_bytes(10)));
    assert_eq!(r.status, 500, "{}", r.stderr);
    assert!(r.stderr.contains("ended after 10 of 100 bytes"), "{}", r.stderr);
    assert!(!body_text(&r).contains("Traceback"), "a traceback in the body without --debug: {}", body_text(&r));
}

#[test]
fn input_without_length_or_chunking_is_empty_and_stdin_is_not_read() {
    let env = cgi_env("POST", "/", "", &[]);
    let r = parse_cgi(&run_program(&common::binary(), &[&example("echo.py")], &os_env(&env), &test_bytes(100), true));
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["body_length"], 0);
    assert_eq!(j["input_terminated"], false);
    assert_clean_stderr(&r);
}

#[test]
fn chunked_input_without_length_reads_to_eof() {
    let body = test_bytes(100 * 1024 + 7);
    let env = cgi_env("POST", "/", "", &[("HTTP_TRANSFER_ENCODING", "chunked")]);
    let r = parse_cgi(&cgi_run(&[&example("echo.py")], &env, &body));
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["body_length"], body.len());
    assert_eq!(j["body_sha256"], sha256_hex(&body));
    assert_eq!(j["input_terminated"], true);
    assert_clean_stderr(&r);
}

#[test]
fn chunked_input_over_max_body_is_an_error_not_an_unbounded_read() {
    let body = test_bytes(64 * 1024);
    let env = cgi_env("POST", "/", "", &[("HTTP_TRANSFER_ENCODING", "chunked")]);
    let r = parse_cgi(&cgi_run(&["--max-body", "16K", &example("echo.py")], &env, &body));
    assert_eq!(r.status, 500, "{}", r.stderr);
    assert!(r.stderr.contains("over --max-body"), "{}", r.stderr);
    // Under the limit the same request passes.
    let r = parse_cgi(&cgi_run(&["--max-body", "1M", &example("echo.py")], &env, &body));
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.json()["body_sha256"], sha256_hex(&body));
}

#[test]
fn input_iterated_by_lines_gives_the_same_bytes() {
    let body = test_bytes(1 << 20);
    let r = post(&[&example("echo.py")], "mode=lines", &body);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["body_length"], 1 << 20);
    assert_eq!(j["body_sha256"], sha256_hex(&body));
    assert_clean_stderr(&r);
}

// 4. Requests refused before the app runs.

#[test]
fn invalid_content_length_is_400() {
    for bad in ["abc", "-5"] {
        let env = cgi_env("POST", "/", "", &[("CONTENT_LENGTH", bad)]);
        let r = parse_cgi(&cgi_run(&[&example("echo.py")], &env, b"hello"));
        assert_eq!(r.status, 400, "CONTENT_LENGTH {bad:?}: {}", body_text(&r));
        assert!(r.stderr.contains("invalid CONTENT_LENGTH"), "{}", r.stderr);
        assert!(!r.stderr.contains("echo: print()"), "the app ran for CONTENT_LENGTH {bad:?}");
    }
}

#[test]
fn body_over_max_body_is_413_and_the_app_is_not_called() {
    let env = cgi_env("POST", "/", "", &[("CONTENT_LENGTH", "2048")]);
    let r = parse_cgi(&cgi_run(&["--max-body", "1K", &example("echo.py")], &env, &test_bytes(2048)));
    assert_eq!(r.status, 413, "{}", body_text(&r));
    assert!(r.stderr.contains("over the limit"), "{}", r.stderr);
    assert!(!r.stderr.contains("echo: print()"), "the app ran:\n{}", r.stderr);
    // At the limit it is accepted.
    let env = cgi_env("POST", "/", "", &[("CONTENT_LENGTH", "1024")]);
    let r = parse_cgi(&cgi_run(&["--max-body", "1K", &example("echo.py")], &env, &test_bytes(1024)));
    assert_eq!(r.status, 200, "{}", r.stderr);
}

// 5. httpoxy.

#[test]
fn httpoxy_proxy_header_stays_out_of_os_environ() {
    let r = get(&[&example("echo.py")], "", &[("HTTP_PROXY", "http://evil:1")]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["HTTP_PROXY"], "http://evil:1");
    assert!(j["os_environ_http_proxy"].is_null(), "{}", j["os_environ_http_proxy"]);
    assert_clean_stderr(&r);
}

// 6. The environ.

#[test]
fn shadow_headers_dropped_and_missing_path_variables_default_to_empty() {
    let mut env = cgi_env(
        "POST",
        "/",
        "",
        &[("HTTP_CONTENT_TYPE", "text/evil"), ("HTTP_CONTENT_LENGTH", "999"), ("CONTENT_TYPE", "text/plain"), ("CONTENT_LENGTH", "3")],
    );
    env.retain(|(k, _)| !["QUERY_STRING", "PATH_INFO", "SCRIPT_NAME"].contains(&k.as_str()));
    let r = parse_cgi(&cgi_run(&[&test_app("environ_dump.py")], &env, b"abc"));
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    let e = &j["environ"];
    assert!(e.get("HTTP_CONTENT_TYPE").is_none(), "{e}");
    assert!(e.get("HTTP_CONTENT_LENGTH").is_none(), "{e}");
    assert_eq!(e["CONTENT_TYPE"], "text/plain");
    assert_eq!(e["CONTENT_LENGTH"], "3");
    for key in ["QUERY_STRING", "PATH_INFO", "SCRIPT_NAME"] {
        assert_eq!(e[key], "", "{key}");
    }
    // Every CGI variable is a native str.
    assert_eq!(j["value_types"], serde_json::json!(["str"]));
}

#[test]
fn https_on_gives_https_scheme_and_run_once() {
    let r = get(&[&example("echo.py")], "", &[("HTTPS", "on")]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["url_scheme"], "https");
    assert_eq!(j["run_once"], true);
    assert_eq!(j["multithread"], false);
    assert_clean_stderr(&r);
    let j = get(&[&example("echo.py")], "", &[]).json();
    assert_eq!(j["url_scheme"], "http");
}

// 7. Bytes-as-str.

#[test]
fn path_info_utf8_bytes_arrive_latin1_decoded() {
    let r = get(&[&example("echo.py")], "", &[("PATH_INFO", "/café")]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["PATH_INFO"], "/caf\u{c3}\u{a9}");
    assert_eq!(j["path_info_utf8"], "/café");
    assert_clean_stderr(&r);
}

#[test]
fn non_utf8_bytes_in_variables_arrive_latin1_decoded() {
    let mut env = os_env(&cgi_env("GET", "/", "", &[]));
    env.retain(|(k, _)| k != "PATH_INFO");
    env.push(("PATH_INFO".into(), OsString::from_vec(b"/\xff\x80".to_vec())));
    env.push(("HTTP_X_TEST".into(), OsString::from_vec(b"caf\xe9".to_vec())));
    let r = parse_cgi(&run_program(&common::binary(), &[&example("echo.py")], &env, b"", false));
    assert_eq!(r.status, 200, "{}", r.stderr);
    let j = r.json();
    assert_eq!(j["PATH_INFO"], "/\u{ff}\u{80}");
    assert_eq!(j["HTTP_X_TEST"], "caf\u{e9}");
    assert_clean_stderr(&r);
}

// 8. Argument injection (CVE-2012-1823) and drop-ins.

#[test]
fn query_words_in_argv_are_not_options_for_a_drop_in() {
    let dir = tempfile::tempdir().unwrap();
    let dropin = dir.path().join("echo.cgi");
    let text = format!("#!{}\n# cgi2wsgi: pythonpath = {}\nfrom echo import application\n", common::binary().display(), examples_dir());
    std::fs::write(&dropin, text).unwrap();
    std::fs::set_permissions(&dropin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dropin_str = dropin.to_str().unwrap();
    // As Apache does: a query string without `=` becomes argv words (decoded) after the
    // script, and the kernel puts the binary and the script in front. Were they parsed,
    // `--mode fastcgi` would fail the run and `--env` would set HTTP_PROXY in os.environ.
    let cases: [(&str, &[&str]); 3] = [
        ("--app+evil:x", &["--app", "evil:x"]),
        ("--mode+fastcgi", &["--mode", "fastcgi"]),
        ("--env+HTTP_PROXY%3Dhttp://evil:1", &["--env", "HTTP_PROXY=http://evil:1"]),
    ];
    for (query, words) in cases {
        let env = cgi_env("GET", "/", query, &[("SCRIPT_FILENAME", dropin_str)]);
        let r = parse_cgi(&run_program(&dropin, words, &os_env(&env), b"", false));
        assert_eq!(r.status, 200, "{query}: {}\n{}", body_text(&r), r.stderr);
        let j = r.json();
        assert_eq!(j["QUERY_STRING"], query);
        assert!(j["os_environ_http_proxy"].is_null(), "{query}: {}", j["os_environ_http_proxy"]);
        assert!(!j["argv"].to_string().contains("evil"), "{query}: argv {}", j["argv"]);
        assert!(!r.stderr.contains("evil") && !r.stderr.contains("fastcgi"), "{query}: {}", r.stderr);
        assert_clean_stderr(&r);
    }
}

#[test]
fn drop_in_module_is_not_main() {
    let dropin = test_app("whoami.cgi");
    let r = get(&[&dropin], "", &[("SCRIPT_FILENAME", &dropin)]);
    assert_eq!(r.status, 200, "{}\n{}", body_text(&r), r.stderr);
    let name = body_text(&r);
    assert!(!name.is_empty() && name != "__main__", "drop-in ran as {name:?}");
}

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

// 16. Loading the app.

#[test]
fn load_module_callable_with_pythonpath() {
    let r = get(&["--pythonpath", &examples_dir(), "hello:application"], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"Hello World\n");
}

#[test]
fn load_file_with_callable() {
    let r = get(&[&format!("{}:application", example("hello.py"))], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"Hello World\n");
}

#[test]
fn load_factory() {
    let r = get(&["--pythonpath", &apps_dir(), "factory:make()"], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"made by the factory\n");
}

#[test]
fn default_callable_falls_back_to_app() {
    let r = get(&[&test_app("only_app.py")], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"fallback to app\n");
    let r = get(&["--pythonpath", &apps_dir(), "only_app"], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"fallback to app\n");
}

#[test]
fn missing_module_is_500_logged_not_shown() {
    let r = get(&["no_such_module_cgi2wsgi_test:application"], "", &[]);
    assert_clean_500(&r, "ModuleNotFoundError");
    assert!(r.stderr.contains("no_such_module_cgi2wsgi_test"), "{}", r.stderr);
}

#[test]
fn no_app_configured_is_500_saying_how_to_configure_one() {
    let r = get(&[], "", &[]);
    assert_eq!(r.status, 500, "{}", r.stderr);
    let body = body_text(&r);
    assert!(body.contains("--app") && body.contains("builtin:doctor"), "{body}");
}

// 17. builtin:doctor.

#[test]
fn doctor_html_warns_about_missing_authorization_under_apache() {
    let r = get(&["--app", "builtin:doctor"], "", &[("SERVER_SOFTWARE", "Apache/2.4")]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert!(r.header("Content-Type").is_some_and(|c| c.starts_with("text/html")), "{:?}", r.headers);
    let body = body_text(&r);
    assert!(body.contains("authorization-header-absent"), "{body}");
    // With the header present, the warning goes away.
    let r = get(&["--app", "builtin:doctor"], "", &[("SERVER_SOFTWARE", "Apache/2.4"), ("HTTP_AUTHORIZATION", "Bearer x")]);
    assert!(!body_text(&r).contains("authorization-header-absent"));
}

#[test]
fn doctor_json_has_the_environ_and_warnings() {
    let r = get(&["--app", "builtin:doctor"], "format=json", &[("SERVER_SOFTWARE", "Apache/2.4")]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert!(r.header("Content-Type").is_some_and(|c| c.starts_with("application/json")), "{:?}", r.headers);
    let j = r.json();
    assert_eq!(j["environ"]["REQUEST_METHOD"], "GET");
    let warnings = j["warnings"].as_array().expect("warnings array");
    assert!(warnings.iter().any(|w| w["code"] == "authorization-header-absent"), "{warnings:?}");
}

// 18. Command-line errors.

#[test]
fn bad_flag_outside_cgi_is_one_line_and_exit_2() {
    let out = cgi_run(&["--bogus-flag", &example("hello.py")], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("cgi2wsgi:") && stderr.contains("--bogus-flag"), "{stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
    assert!(out.stdout.is_empty(), "{:?}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn misspelled_flag_is_one_line_with_clap_tip() {
    let out = cgi_run(&["--thread", "2", &example("hello.py")], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("cgi2wsgi: unexpected argument '--thread'"), "{stderr:?}");
    assert!(stderr.contains("tip: a similar argument exists: '--threads'") && stderr.contains("(see cgi2wsgi --help)"), "{stderr:?}");
    // Under a web server: the same line in the error log, and the 500.
    let r = parse_cgi(&cgi_run(&["--thread", "2", &example("hello.py")], &cgi_env("GET", "/", "", &[]), b""));
    assert_eq!(r.status, 500);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("a similar argument exists: '--threads'"), "{}", r.stderr);
}

#[test]
fn bad_flag_under_cgi_answers_500() {
    let out = cgi_run(&["--bogus-flag", &example("hello.py")], &cgi_env("GET", "/", "", &[]), b"");
    let r = parse_cgi(&out);
    assert_eq!(r.status, 500);
    assert!(body_text(&r).contains("misconfigured"), "{}", body_text(&r));
    assert!(r.stderr.starts_with("cgi2wsgi:") && r.stderr.contains("--bogus-flag"), "{}", r.stderr);
}

#[test]
fn not_started_by_a_server_is_exit_2_naming_gateway_interface() {
    let out = cgi_run(&[&example("hello.py")], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("cgi2wsgi:") && stderr.contains("GATEWAY_INTERFACE"), "{stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn version_names_the_linked_python() {
    let out = cgi_run(&["--version"], &[], b"");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Python 3."), "{stdout:?}");
}

// 19. Venvs.

#[test]
fn venv_packages_are_importable() {
    let venv = common::source_venv();
    let r = get(&["--venv", venv.to_str().unwrap(), &test_app("flask_version.py")], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let body = body_text(&r);
    let (version, file) = body.split_once(' ').unwrap_or_else(|| panic!("{body}"));
    assert!(version.starts_with("3."), "Flask {version}");
    let site = Path::new(file).canonicalize().unwrap();
    assert!(site.starts_with(venv.canonicalize().unwrap()), "flask imported from {file}, not the venv");
    // Without --venv, Flask (absent from the system Python) cannot be imported.
    let r = get(&[&test_app("flask_version.py")], "", &[]);
    assert_clean_500(&r, "ModuleNotFoundError");
}

#[test]
fn venv_without_pyvenv_cfg_is_500_with_a_clear_log() {
    let dir = tempfile::tempdir().unwrap();
    let r = get(&["--venv", dir.path().to_str().unwrap(), &example("hello.py")], "", &[]);
    assert_eq!(r.status, 500, "{}", r.stderr);
    assert!(r.stderr.contains("pyvenv.cfg") && r.stderr.contains(dir.path().to_str().unwrap()), "{}", r.stderr);
    assert!(!body_text(&r).contains("pyvenv.cfg"), "{}", body_text(&r));
}

#[test]
fn venv_of_another_python_version_is_500_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let venv: PathBuf = dir.path().join("venv39");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.9.1\n").unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", venv.join("bin/python3")).unwrap();
    let r = get(&["--venv", venv.to_str().unwrap(), &example("hello.py")], "", &[]);
    assert_eq!(r.status, 500, "{}", r.stderr);
    assert!(r.stderr.contains("3.9"), "{}", r.stderr);
}

// 20. The venv's .pth files are honoured (cgi2wsgi runs them itself; `site` is off).

#[test]
fn venv_pth_files_add_paths_and_run_import_lines() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let status = Command::new("/usr/bin/python3").args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap();
    assert!(status.success());
    let site = std::fs::read_dir(venv.join("lib")).unwrap().next().unwrap().unwrap().path().join("site-packages");
    let extra = dir.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(extra.join("pthmod.py"), "VALUE = 'from a .pth path'\n").unwrap();
    std::fs::write(site.join("a_extra.pth"), format!("# a comment\n{}\nimport sys; sys.cgi2wsgi_pth_ran = True\n", extra.display())).unwrap();
    // A broken line is logged and skipped, as `site` does.
    std::fs::write(site.join("b_broken.pth"), "import no_such_module_xyz\n").unwrap();
    let app = dir.path().join("app.py");
    std::fs::write(
        &app,
        "import sys, pthmod\ndef application(e, sr):\n    sr('200 OK', [('Content-Type', 'text/plain')])\n    return [(pthmod.VALUE + ' ' + str(getattr(sys, 'cgi2wsgi_pth_ran', False)) + ' ' + sys.prefix).encode()]\n",
    )
    .unwrap();
    let r = parse_cgi(&cgi_run(&["--venv", venv.to_str().unwrap(), app.to_str().unwrap()], &cgi_env("GET", "/", "", &[]), b""));
    assert_eq!(r.status, 200, "{}", r.stderr);
    let text = body_text(&r);
    assert!(text.starts_with("from a .pth path True "), "{text}");
    assert!(text.ends_with(&std::fs::canonicalize(&venv).unwrap().display().to_string()), "sys.prefix is not the venv: {text}");
    assert!(r.stderr.contains("b_broken.pth") && r.stderr.contains("no_such_module_xyz"), "{}", r.stderr);
}
