//! The bad-input matrix against the running binary as a FastCGI responder: each hostile or
//! broken input gets the answer it deserves (a clean error status, or that connection
//! closed), and a good request that was already in progress on another connection when the
//! bad input arrived is still answered 200 afterwards (a "bystander"). Also: slow clients
//! (`--read-timeout`), misbehaving apps over FastCGI, `--user`/`--group`.
//! The CGI-mode rows of the matrix live in tests/cgi_direct.rs (see the README's threat model).

mod common;

use cgi2wsgi::fastcgi::client;
use cgi2wsgi::fastcgi::{ClientEvent, Role};
use common::fcgi::*;
use common::{sha256_hex, test_bytes};
use std::time::{Duration, Instant};

fn misbehave_app() -> String {
    repo_path("tests/apps/misbehave_fcgi.py")
}

/// A POST to echo whose last record (the end of STDIN) is held back: the request is in
/// progress on its own connection while the bad input arrives on another.
struct Bystander {
    conn: Conn,
    held: Vec<u8>,
    body: Vec<u8>,
}

impl Bystander {
    const ID: u16 = 7;

    fn start(s: &Server) -> Bystander {
        let body = test_bytes(5000);
        let mut bytes = request_bytes(Self::ID, false, &post(body.len()), &body);
        let held = bytes.split_off(bytes.len() - 8);
        let mut conn = s.connect();
        conn.send(&bytes);
        Bystander { conn, held, body }
    }

    /// Send the rest; the answer must be the echo of the whole body.
    fn finish(mut self, s: &Server, after: &str) {
        self.conn.send(&self.held);
        let h = self.conn.reply(Self::ID).http();
        assert_eq!(h.status, 200, "the bystander after {after}: {h:?}\n{}", s.diag());
        assert_eq!(h.json()["body_sha256"], sha256_hex(&self.body), "the bystander's body after {after}");
        // And a fresh connection works too.
        s.get_ok("/after", "");
    }
}

/// Run `bad` against a fresh echo server with a bystander in progress.
fn with_bystander(args: &[&str], what: &str, bad: impl FnOnce(&Server)) {
    let s = Server::start(&echo_app(), args, &[]);
    let b = Bystander::start(&s);
    bad(&s);
    b.finish(&s, what);
    let mut s = s;
    assert!(s.alive(), "the server died after {what}\n{}", s.diag());
}

fn shutdown_and_expect_closed(mut c: Conn, what: &str) {
    c.shutdown_write();
    c.expect_closed(what);
}

#[test]
fn truncated_record_header() {
    with_bystander(&[], "a truncated header", |s| {
        let mut c = s.connect();
        c.send(&begin_bytes(1, Role::Responder, false)[..5]);
        shutdown_and_expect_closed(c, "5 bytes of a record header, then EOF");
        assert!(s.wait_for_log("in the middle of a record", Duration::from_secs(5)), "nothing logged\n{}", s.diag());
    });
}

#[test]
fn version_other_than_1() {
    with_bystander(&[], "version 2", |s| {
        let mut c = s.connect();
        let mut bytes = begin_bytes(1, Role::Responder, false);
        bytes[0] = 2;
        c.send(&bytes);
        c.expect_closed("a version-2 record");
        assert!(s.wait_for_log("version", Duration::from_secs(5)), "the log does not name the bad version\n{}", s.diag());
    });
}

#[test]
fn unknown_record_types() {
    with_bystander(&[], "unknown record types", |s| {
        let mut c = s.connect();
        // Management (id 0): answered FCGI_UNKNOWN_TYPE. Application (id 1, type 99): skipped.
        c.send(&record(1, 99, 0, b"whatever"));
        match c.event() {
            ClientEvent::UnknownType { record_type } => assert_eq!(record_type, 99),
            other => panic!("expected UNKNOWN_TYPE, got {other:?}"),
        }
        let mut bytes = begin_bytes(1, Role::Responder, true);
        bytes.extend(record(1, 99, 1, b"from the future"));
        bytes.extend(params_bytes(1, &cgi("GET", "/", "")));
        client::end_stdin(&mut bytes, 1);
        c.send(&bytes);
        assert_eq!(c.reply(1).http().status, 200, "a request with an unknown record type inside it");
    });
}

#[test]
fn records_for_an_inactive_request_id() {
    with_bystander(&[], "records for an inactive id", |s| {
        let mut c = s.connect();
        let mut bytes = Vec::new();
        client::stdin(&mut bytes, 9, b"stray body");
        bytes.extend(params_bytes(9, &cgi("GET", "/", "")));
        client::end_stdin(&mut bytes, 9);
        client::abort(&mut bytes, 9);
        c.send(&bytes);
        let h = c.request(1, false, &cgi("GET", "/", ""), b"").http();
        assert_eq!(h.status, 200, "the same connection after records for id 9");
    });
}

#[test]
fn begin_request_twice_for_one_id() {
    with_bystander(&[], "BEGIN_REQUEST twice", |s| {
        let mut c = s.connect();
        let mut bytes = begin_bytes(1, Role::Responder, true);
        bytes.extend(begin_bytes(1, Role::Responder, true));
        c.send(&bytes);
        c.expect_closed("BEGIN_REQUEST twice for id 1");
    });
}

#[test]
fn params_shorter_than_their_declared_lengths() {
    with_bystander(&[], "a truncated name-value pair", |s| {
        // A pair declaring a 100-byte value with 10 bytes present, then the end of PARAMS.
        let mut c = s.connect();
        let mut bytes = begin_bytes(1, Role::Responder, false);
        let mut content = vec![4u8, 100];
        content.extend_from_slice(b"NAME");
        content.extend_from_slice(&[b'v'; 10]);
        bytes.extend(record(1, 4, 1, &content));
        bytes.extend(record(1, 4, 1, b""));
        c.send(&bytes);
        c.expect_closed("a name-value pair cut short by the end of PARAMS");
    });
}

#[test]
fn record_longer_than_what_is_sent() {
    with_bystander(&[], "a record cut short by EOF", |s| {
        // The header declares 100 content bytes; 30 arrive, then the web server hangs up.
        let mut c = s.connect();
        let mut bytes = begin_bytes(1, Role::Responder, false);
        let full = record(1, 4, 1, &[b'x'; 100]);
        bytes.extend_from_slice(&full[..8 + 30]);
        c.send(&bytes);
        shutdown_and_expect_closed(c, "a PARAMS record cut short by EOF");
    });
}

#[test]
fn params_over_the_bound() {
    with_bystander(&[], "PARAMS over 1 MiB", |s| {
        let mut c = s.connect();
        let mut p = cgi("GET", "/", "");
        for i in 0..20 {
            p.push((format!("HTTP_X_BIG_{i}"), "v".repeat(60_000)));
        }
        let mut bytes = begin_bytes(1, Role::Responder, false);
        bytes.extend(params_bytes(1, &p));
        client::end_stdin(&mut bytes, 1);
        // The server may close while this is still being written.
        let _ = c.try_send(&bytes);
        c.expect_closed("PARAMS over 1 MiB");
        assert!(s.wait_for_log("closing the connection", Duration::from_secs(5)), "{}", s.diag());
    });
}

#[test]
fn a_single_64_kib_header_is_served() {
    with_bystander(&[], "a 64 KiB header", |s| {
        let value = "h".repeat(64 * 1024);
        let mut p = cgi("GET", "/", "");
        set(&mut p, "HTTP_X_TEST", &value);
        let h = s.connect().request(1, false, &p, b"").http();
        assert_eq!(h.status, 200, "{}", s.diag());
        assert_eq!(h.json()["HTTP_X_TEST"].as_str().map(str::len), Some(value.len()), "the app saw the whole header");
    });
}

#[test]
fn bad_content_lengths() {
    with_bystander(&["--max-body", "8K"], "bad CONTENT_LENGTHs", |s| {
        for (declared, sent, want) in [("abc", 5, 400), ("-5", 5, 400), ("100", 10, 400), ("10000", 10000, 413)] {
            let mut p = post(0);
            set(&mut p, "CONTENT_LENGTH", declared);
            let r = s.connect().request(1, false, &p, &test_bytes(sent));
            let h = r.http();
            assert_eq!(h.status, want, "CONTENT_LENGTH {declared} with {sent} bytes sent: {h:?}");
            assert!(!h.text().contains("echo"), "the app ran for CONTENT_LENGTH {declared}");
        }
        assert!(s.log().contains("invalid CONTENT_LENGTH") && s.log().contains("hung up mid-body") && s.log().contains("--max-body"), "{}", s.diag());
    });
}

#[test]
fn odd_path_info_and_script_name() {
    with_bystander(&[], "odd PATH_INFO values", |s| {
        // Empty PATH_INFO; and the php-fpm CVE-2019-11043 shape: a PATH_INFO shorter than
        // the part of the script path it is supposed to be a suffix of, with and without
        // the IIS fix-up (which strips SCRIPT_NAME from the front of PATH_INFO).
        let cases: [(&str, &str, &str); 5] = [
            ("", "/app", ""),
            ("", "/app/index.php/x", ""),
            ("/x", "/app/index.php/long/script/name", "Microsoft-IIS/10.0"),
            ("/a", "/a/b", "Microsoft-IIS/10.0"),
            ("/a\nb", "/app", ""),
        ];
        for (path_info, script_name, software) in cases {
            let mut p = cgi("GET", path_info, "");
            set(&mut p, "PATH_INFO", path_info);
            set(&mut p, "SCRIPT_NAME", script_name);
            if !software.is_empty() {
                set(&mut p, "SERVER_SOFTWARE", software);
            }
            let h = s.connect().request(1, false, &p, b"").http();
            assert_eq!(h.status, 200, "PATH_INFO {path_info:?} SCRIPT_NAME {script_name:?}: {}", s.diag());
            let j = h.json();
            assert_eq!(j["PATH_INFO"], path_info, "PATH_INFO {path_info:?} under {script_name:?} {software}");
            assert_eq!(j["SCRIPT_NAME"], script_name);
        }
    });
}

#[test]
fn non_utf8_bytes_in_every_param() {
    with_bystander(&[], "non-UTF-8 params", |s| {
        // Every value (and one header name) carries bytes that are not UTF-8; the app
        // (behind wsgiref's validator) must see them as latin-1 str.
        let odd: Vec<u8> = vec![b'/', 0xff, 0xfe, 0x80, b'a', 0xc3, 0x28, 0xe9];
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = cgi("GET", "/", "")
            .into_iter()
            .map(|(k, v)| {
                let mut v = v.into_bytes();
                if k != "REQUEST_METHOD" && k != "SERVER_PORT" && k != "CONTENT_LENGTH" {
                    v.extend_from_slice(&odd);
                }
                (k.into_bytes(), v)
            })
            .collect();
        pairs.push((b"HTTP_X_TEST".to_vec(), odd.clone()));
        pairs.push((b"HTTP_X_\xff\xfe".to_vec(), odd.clone()));
        let mut bytes = begin_bytes(1, Role::Responder, false);
        client::params(&mut bytes, 1, &pairs).unwrap();
        client::end_stdin(&mut bytes, 1);
        let mut c = s.connect();
        c.send(&bytes);
        let h = c.reply(1).http();
        assert_eq!(h.status, 200, "{}", s.diag());
        let latin1: String = odd.iter().map(|&b| char::from(b)).collect();
        let j = h.json();
        assert_eq!(j["HTTP_X_TEST"], latin1);
        assert_eq!(j["PATH_INFO"], format!("/{latin1}"));
        assert!(!s.log().contains("AssertionError"), "wsgiref's validator objected:\n{}", s.diag());
    });
}

#[test]
fn client_closing_mid_response() {
    let s = Server::start(&wire_app(), &[], &[]);
    let mut good = s.connect();
    for round in 0..3 {
        // /big answers 66,000 bytes; the web server reads one record, then hangs up.
        let mut c = s.connect();
        c.send_request(1, false, &cgi("GET", "/big", ""), b"");
        let _ = c.event();
        drop(c);
        let h = good.request(round + 1, true, &cgi("GET", "/", ""), b"").http();
        assert_eq!(h.status, 200, "the good connection after a hang-up mid-response\n{}", s.diag());
    }
    let mut s = s;
    assert!(s.alive());
}

/// Slowloris: partial requests then silence are closed after `--read-timeout`; meanwhile the
/// one request thread keeps serving others; an idle kept-alive connection is not closed.
#[test]
fn slow_clients_are_closed_after_the_read_timeout() {
    let s = Server::start(&echo_app(), &["--read-timeout", "2"], &[]);
    let t0 = Instant::now();
    // Half a PARAMS record.
    let mut half_record = s.connect();
    let mut bytes = begin_bytes(1, Role::Responder, false);
    bytes.extend_from_slice(&params_bytes(1, &cgi("GET", "/", ""))[..20]);
    half_record.send(&bytes);
    // Whole params, then 10 of 100 body bytes.
    let mut half_body = s.connect();
    let mut bytes = begin_bytes(1, Role::Responder, false);
    bytes.extend(params_bytes(1, &post(100)));
    client::stdin(&mut bytes, 1, &[b'x'; 10]);
    half_body.send(&bytes);
    // Connected, sent nothing (a web server's pooled connection).
    let mut idle = s.connect();
    // While they sit there, the single request thread serves others.
    for _ in 0..5 {
        s.get_ok("/meanwhile", "");
    }
    half_record.expect_closed("half a PARAMS record, then silence");
    half_body.expect_closed("half a body, then silence");
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(1900), "closed after {waited:?}, before --read-timeout 2");
    assert!(s.log().contains("--read-timeout"), "{}", s.diag());
    // The idle connection outlived the timeout and still works.
    std::thread::sleep(Duration::from_secs(3).saturating_sub(t0.elapsed()));
    let h = idle.request(1, false, &cgi("GET", "/", ""), b"").http();
    assert_eq!(h.status, 200, "the idle connection after the read timeout");
}

/// Each PEP 3333 breach over FastCGI: a clean 500 (or a response cut short once its head is
/// out), the log naming the fault, no traceback in the body, and the next request on the
/// same kept-alive connection answered normally — never a mixed or corrupted response.
#[test]
fn misbehaving_apps_over_fastcgi() {
    let s = Server::start(&misbehave_app(), &[], &[]);
    let mut c = s.connect();
    let mut id = 0u16;
    let cases: [(&str, u16, &str); 12] = [
        ("str_chunk", 500, "body chunks must be bytes"),
        ("no_start_response", 500, "before calling start_response()"),
        ("no_start_response_empty", 500, "before calling start_response()"),
        ("start_twice", 500, "start_response() called a second time without exc_info"),
        ("crlf_header", 500, "Set-Cookie: value holds the character"),
        ("non_latin1_header", 500, "X-Smiley: value holds the character"),
        ("short_status", 500, "does not start with a three-digit code"),
        ("bytes_status", 500, "status must be a str"),
        ("raise_before_start", 500, "misbehave: boom before start_response"),
        ("close_raises", 500, "misbehave: boom in close()"),
        ("raise_after_first_chunk", 200, "misbehave: boom after the first chunk"),
        ("stdio", 200, "misbehave_fcgi: sys.stderr.write"),
    ];
    for (name, status, logged) in cases {
        id += 1;
        let r = c.request(id, true, &cgi("GET", &format!("/{name}"), ""), b"");
        let h = r.http();
        assert_eq!(h.status, status, "{name}: {h:?}\n{}", s.diag());
        let body = h.text();
        assert!(!body.contains("Traceback") && !body.contains("RuntimeError"), "{name}: internals in the body: {body}");
        assert!(!h.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("X-Evil") || n.eq_ignore_ascii_case("X-Smiley")), "{name}: {h:?}");
        match name {
            "raise_after_first_chunk" => assert_eq!(h.body, b"first chunk\n", "cut short after the first chunk"),
            "stdio" => assert_eq!(h.body, b"stdio body\n", "print() must never reach the response"),
            _ => {}
        }
        assert!(s.wait_for_log(logged, Duration::from_secs(5)), "{name}: the log does not say {logged:?}\n{}", s.diag());
        // The next request on the same connection is served normally.
        id += 1;
        let next = c.request(id, true, &cgi("GET", "/", ""), b"").http();
        assert_eq!((next.status, next.text().as_str()), (200, "ok\n"), "after {name}");
    }
    assert!(s.log().contains("misbehave_fcgi: print() to stdout"), "print() output belongs in the log\n{}", s.diag());
}

/// `--debug` puts the traceback in the 500 page; without it only the log has it.
#[test]
fn tracebacks_reach_the_body_only_with_debug() {
    for (args, shown) in [(&[][..], false), (&["--debug"][..], true)] {
        let s = Server::start(&misbehave_app(), args, &[]);
        let h = s.connect().request(1, false, &cgi("GET", "/raise_before_start", ""), b"").http();
        assert_eq!(h.status, 500);
        assert_eq!(h.text().contains("Traceback (most recent call last)"), shown, "{args:?}: {}", h.text());
        assert!(s.wait_for_log("Traceback (most recent call last)", Duration::from_secs(5)), "{}", s.diag());
    }
}

/// Started as root, the responder binds, then runs the app as www-data.
#[test]
fn user_and_group_drop_root_after_binding() {
    assert!(common::servers::is_root(), "this test needs root, as CI has: it checks that root is dropped");
    // www-data must be able to read the app: copy it (and misbehave.py) to a 0755 temp dir.
    let fx = common::Fixture::new(false);
    for f in ["misbehave_fcgi.py", "misbehave.py"] {
        std::fs::copy(repo_path(&format!("tests/apps/{f}")), fx.path().join(f)).unwrap();
    }
    std::process::Command::new("chmod").arg("-R").arg("a+rX").arg(fx.path()).status().unwrap();
    let app = fx.path().join("misbehave_fcgi.py").display().to_string();
    let s = Server::start(&app, &["--user", "www-data", "--log-level", "info"], &[]);
    let h = s.get_ok("/whoami", "");
    let text = h.text();
    let ids: Vec<&str> = text.split_whitespace().collect();
    let uid = users_id("www-data", "-u");
    let gid = users_id("www-data", "-g");
    assert_eq!(ids[0], uid, "uid: {text}");
    assert_eq!(ids[1], gid, "gid: {text}");
    assert!(!text.contains("[0") && !text.contains(" 0,"), "still in root's group: {text}");
    assert!(s.log().contains(&format!("running as uid {uid}")), "{}", s.diag());
    // --group overrides the user's own.
    let s = Server::start(&app, &["--user", "www-data", "--group", "nogroup"], &[]);
    let text = s.get_ok("/whoami", "").text();
    assert_eq!(text.split_whitespace().nth(1), Some(users_group_id("nogroup").as_str()), "{text}");
}

#[test]
fn unknown_user_is_a_one_line_error() {
    let out = std::process::Command::new(common::binary())
        .args(["--bind", "unix:/tmp/never-bound.sock", "--user", "no-such-user-xyz", &echo_app()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--user \"no-such-user-xyz\": no such user"), "{err}");
}

fn users_id(user: &str, flag: &str) -> String {
    let out = std::process::Command::new("id").arg(flag).arg(user).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn users_group_id(group: &str) -> String {
    let out = std::process::Command::new("getent").args(["group", group]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split(':').nth(2).unwrap_or("?").to_owned()
}
