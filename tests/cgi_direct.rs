//! The binary run directly as a CGI program (empty environment + CGI variables, body on
//! stdin, response on stdout), as Apache runs it: the examples, the request side (bodies,
//! refusals, httpoxy, the environ, bytes as str, argument injection and drop-ins). The
//! misbehaving apps are tests/cgi_apps.rs; loading, the CLI and venvs tests/cgi_loading.rs;
//! helpers tests/common/cgi.rs.

mod common;

use common::cgi::*;
use common::{cgi_env, cgi_run, parse_cgi, sha256_hex, test_bytes};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;

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
    let out =
        cgi_run(&[&example("echo.py")], &cgi_env("POST", "/upload", "", &[("CONTENT_LENGTH", "1048576"), ("CONTENT_TYPE", "application/octet-stream")]), &body);
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
