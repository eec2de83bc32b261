//! FastCGI on the wire: the built binary as a persistent responder (unix socket, TCP, an
//! inherited fd 0, systemd fd 3), driven record by record with the crate's own client
//! encoder and `ClientDecoder`; framing, keep-conn, management records, roles, malformed
//! input, aborts, vanished clients, app errors, stdio safety and body limits. The ways a
//! listener reaches the responder are tests/fastcgi_listeners.rs.

mod common;

use cgi2wsgi::fastcgi::client;
use cgi2wsgi::fastcgi::{ClientEvent, Role};
use common::fcgi::*;
use common::{sha256_hex, test_bytes};
use std::io::Write;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// 1. Basic GET
// ---------------------------------------------------------------------------------------

#[test]
fn get_through_echo() {
    let s = Server::start(&echo_app(), &[], &[]);
    let mut p = cgi("GET", "", "a=1&b=%20c");
    // A server that forwards every header also sends these two; they must not reach the app.
    p.retain(|(n, _)| n != "PATH_INFO");
    set(&mut p, "HTTP_CONTENT_TYPE", "text/evil");
    set(&mut p, "HTTP_CONTENT_LENGTH", "99");
    set(&mut p, "HTTP_X_TEST", "yes");
    let mut c = s.connect();
    let r = c.request(1, false, &p, b"");
    assert_eq!(r.app_status, 0);
    let h = r.http();
    assert_eq!(h.status, 200, "{h:?}\n{}", s.diag());
    assert_eq!(h.header("Content-Type"), Some("application/json"));
    let j = h.json();
    assert_eq!(j["REQUEST_METHOD"], "GET");
    assert_eq!(j["QUERY_STRING"], "a=1&b=%20c");
    assert_eq!(j["PATH_INFO"], "", "a missing PATH_INFO becomes \"\"");
    assert_eq!(j["SCRIPT_NAME"], "/app");
    assert_eq!(j["HTTP_X_TEST"], "yes");
    assert_eq!(j["HTTP_CONTENT_TYPE"], serde_json::Value::Null);
    assert_eq!(j["HTTP_CONTENT_LENGTH"], serde_json::Value::Null);
    assert_eq!(j["CONTENT_LENGTH"], serde_json::Value::Null);
    assert_eq!(j["run_once"], false);
    assert_eq!(j["multithread"], false, "one request thread by default");
    assert_eq!(j["multiprocess"], true);
    assert_eq!(j["body_length"], 0);
    assert_eq!(j["url_scheme"], "http");

    // Raw bytes in PARAMS arrive as latin-1 str (PEP 3333); a 150,000-byte value straddles
    // PARAMS records.
    let mut p = cgi("GET", "/caf\u{e9}", "");
    let long = "x".repeat(150_000);
    set(&mut p, "HTTP_X_TEST", &long);
    let mut c = s.connect();
    let j = c.request(1, false, &p, b"").http().json();
    assert_eq!(j["path_info_utf8"], "/caf\u{e9}");
    assert_eq!(j["PATH_INFO"], "/caf\u{c3}\u{a9}");
    assert_eq!(j["HTTP_X_TEST"].as_str().map(str::len), Some(150_000));
    assert!(j["HTTP_X_TEST"] == long.as_str());

    // With --threads 2 the app is told it is multithreaded.
    let threaded = Server::start(&echo_app(), &["--threads", "2"], &[]);
    let j = threaded.get_ok("/x/y", "").json();
    assert_eq!(j["PATH_INFO"], "/x/y");
    assert_eq!(j["multithread"], true);
}

// ---------------------------------------------------------------------------------------
// 2. Request bodies
// ---------------------------------------------------------------------------------------

#[test]
fn post_bodies_and_content_length() {
    let s = Server::start(&echo_app(), &[], &[]);
    let mut c = s.connect();

    // 1 MiB in 64 KiB STDIN records.
    let body = test_bytes(1 << 20);
    let mut bytes = begin_bytes(1, Role::Responder, true);
    bytes.extend(params_bytes(1, &post(body.len())));
    for chunk in body.chunks(64 * 1024) {
        client::stdin(&mut bytes, 1, chunk);
    }
    client::end_stdin(&mut bytes, 1);
    c.send(&bytes);
    let j = c.reply(1).http().json();
    assert_eq!(j["body_length"], 1 << 20);
    assert_eq!(j["body_sha256"], sha256_hex(&body));
    assert_eq!(j["CONTENT_LENGTH"], "1048576");

    // STDIN carrying more than CONTENT_LENGTH: the app sees exactly CONTENT_LENGTH bytes.
    let extra = b"0123456789abcdefghijklmnopqrst";
    let mut bytes = begin_bytes(2, Role::Responder, true);
    bytes.extend(params_bytes(2, &post(10)));
    client::stdin(&mut bytes, 2, &extra[..15]);
    client::stdin(&mut bytes, 2, &extra[15..]);
    client::end_stdin(&mut bytes, 2);
    c.send(&bytes);
    let j = c.reply(2).http().json();
    assert_eq!(j["body_length"], 10);
    assert_eq!(j["body_sha256"], sha256_hex(&extra[..10]));

    // STDIN shorter than CONTENT_LENGTH, then its end: 400, and the app never runs.
    let r = c.request(3, true, &post(100), &[7u8; 40]);
    let h = r.http();
    assert_eq!(h.status, 400, "{h:?}");
    assert!(!h.text().contains("body_sha256"));

    // The connection still serves.
    let j = c.request(4, false, &post(5), b"hello").http().json();
    assert_eq!(j["body_sha256"], sha256_hex(b"hello"));
}

// ---------------------------------------------------------------------------------------
// 3. Output framing, checked on the raw records
// ---------------------------------------------------------------------------------------

#[test]
fn big_chunk_framing_on_raw_records() {
    let s = Server::start(&wire_app(), &[], &[]);
    let mut c = s.connect();
    c.send_request(1, false, &cgi("GET", "/big", ""), b"");
    // Without keep-conn the server closes after END_REQUEST: read the raw bytes to EOF.
    let raw = c.raw_until_eof();
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        assert!(raw.len() - pos >= 8, "a truncated header at byte {pos}");
        let h = &raw[pos..pos + 8];
        assert_eq!(h[0], 1, "version byte of the record at {pos}");
        let record_type = h[1];
        let id = u16::from_be_bytes([h[2], h[3]]);
        let len = usize::from(u16::from_be_bytes([h[4], h[5]]));
        let pad = usize::from(h[6]);
        assert!(raw.len() >= pos + 8 + len + pad, "a truncated record at byte {pos}");
        records.push((record_type, id, raw[pos + 8..pos + 8 + len].to_vec()));
        pos += 8 + len + pad;
    }
    let summary: Vec<(u8, u16, usize)> = records.iter().map(|(t, i, c)| (*t, *i, c.len())).collect();
    let stdout: Vec<&(u8, u16, Vec<u8>)> = records.iter().filter(|r| r.0 == RECORD_STDOUT).collect();
    assert!(records.iter().all(|r| r.1 == 1), "all records are for request 1: {summary:?}");
    assert!(stdout.iter().all(|r| r.2.len() <= 65535));
    // The terminating empty STDOUT is the only empty one, and it is the last STDOUT record.
    let empties: Vec<usize> = records.iter().enumerate().filter(|(_, r)| r.0 == RECORD_STDOUT && r.2.is_empty()).map(|(i, _)| i).collect();
    let last_stdout = records.iter().rposition(|r| r.0 == RECORD_STDOUT).unwrap();
    assert_eq!(empties, vec![last_stdout], "exactly one empty STDOUT record, the terminating one: {summary:?}");
    // Then END_REQUEST, last, with protocol status 0.
    let (t, _, body) = records.last().unwrap();
    assert_eq!(*t, RECORD_END_REQUEST, "{summary:?}");
    assert_eq!(body.len(), 8);
    assert_eq!(body[4], 0, "protocol status REQUEST_COMPLETE");
    assert_eq!(last_stdout, records.len() - 2, "END_REQUEST follows the empty STDOUT: {summary:?}");
    assert!(records.iter().filter(|r| r.0 == RECORD_STDERR).all(|r| !r.2.is_empty()));
    // The 66,000 bytes needed at least two records, and arrive intact.
    let data: Vec<u8> = stdout.iter().flat_map(|r| r.2.iter().copied()).collect();
    let r = Reply { events: Vec::new(), stdout: data, stderr: Vec::new(), app_status: 0, protocol_status: 0 };
    let h = r.http();
    assert_eq!(h.status, 200);
    let want: Vec<u8> = (0..66000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(h.body.len(), want.len());
    assert!(h.body == want, "body bytes differ");
    assert!(stdout.iter().filter(|r| !r.2.is_empty()).count() >= 2, "{summary:?}");
}

// ---------------------------------------------------------------------------------------
// 4. Keep-conn and GET_VALUES
// ---------------------------------------------------------------------------------------

#[test]
fn keep_conn_and_get_values() {
    let s = Server::start(&hello_app(), &["--max-conns", "8", "--threads", "2", "--workers", "3"], &[]);
    let mut c = s.connect();
    for id in 1..=3u16 {
        let h = c.request(id, true, &cgi("GET", "/", ""), b"").http();
        assert_eq!((h.status, h.body.as_slice()), (200, &b"Hello World\n"[..]), "request {id}");
        if id == 2 {
            let mut out = Vec::new();
            client::get_values(&mut out, &["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS", "FCGI_NO_SUCH_VALUE"]).unwrap();
            c.send(&out);
            let ClientEvent::GetValuesResult { pairs } = c.event() else { panic!("expected GET_VALUES_RESULT") };
            let mut got: Vec<(String, String)> = pairs.iter().map(|(n, v)| (String::from_utf8_lossy(n).into(), String::from_utf8_lossy(v).into())).collect();
            got.sort();
            // 8 connections per thread × 2 threads × 3 workers; one request at a time per thread.
            // With --threads > 1, multiplexed connections are accepted.
            let want = [("FCGI_MAX_CONNS", "48"), ("FCGI_MAX_REQS", "6"), ("FCGI_MPXS_CONNS", "1")];
            let want: Vec<(String, String)> = want.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            assert_eq!(got, want);
        }
    }
    // Without FCGI_KEEP_CONN the server closes after END_REQUEST.
    let h = c.request(4, false, &cgi("GET", "/", ""), b"").http();
    assert_eq!(h.status, 200);
    c.expect_closed("after a request without FCGI_KEEP_CONN");
}

// ---------------------------------------------------------------------------------------
// 5. Unknown management record type
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_management_type() {
    let s = Server::start(&hello_app(), &[], &[]);
    let mut c = s.connect();
    c.send(&record(1, 200, 0, b"whatever"));
    assert_eq!(c.event(), ClientEvent::UnknownType { record_type: 200 });
    let h = c.request(1, false, &cgi("GET", "/", ""), b"").http();
    assert_eq!(h.status, 200);
}

// ---------------------------------------------------------------------------------------
// 6. Roles: RESPONDER, AUTHORIZER (opt-in), FILTER (refused)
// ---------------------------------------------------------------------------------------

/// tests/apps/authz.py: a responder reporting what it saw, and an authorizer.
fn authz_app() -> String {
    repo_path("tests/apps/authz.py")
}

/// BEGIN_REQUEST in `role` and its PARAMS; no STDIN (mod_authnz_fcgi sends none).
fn role_request(id: u16, role: Role, keep_conn: bool, params: &[(String, String)]) -> Vec<u8> {
    let mut bytes = begin_bytes(id, role, keep_conn);
    bytes.extend(params_bytes(id, params));
    bytes
}

/// A refusal every web server takes as a denial: a 500 page on STDOUT naming the role and
/// the fix, then END_REQUEST with UNKNOWN_ROLE (a bare UNKNOWN_ROLE is an allow to lighttpd).
fn assert_role_refused(r: &Reply, what: &str, names: &str) {
    assert_eq!(r.protocol_status, 3, "{what}: END_REQUEST with UNKNOWN_ROLE: {r:?}");
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(text.starts_with("Status: 500 Internal Server Error\r\n"), "{what}: {text}");
    assert!(text.contains(names), "{what}: {text}");
}

#[test]
fn authorizer_and_filter_roles_are_refused_unless_enabled() {
    let s = Server::start(&authz_app(), &[], &[]);
    let mut c = s.connect();
    for (id, role, names) in
        [(1u16, Role::Authorizer, "AUTHORIZER role (role 2) here; start cgi2wsgi with --roles responder,authorizer"), (2, Role::Filter, "FILTER role (role 3)")]
    {
        // What a web server sends for such a request: BEGIN, then PARAMS and STDIN.
        let mut bytes = role_request(id, role, true, &cgi("GET", "/", "auth-ok"));
        client::end_stdin(&mut bytes, id);
        c.send(&bytes);
        assert_role_refused(&c.reply(id), &format!("{role:?}"), names);
    }
    // An unknown role number too.
    let mut bytes = record(1, 1, 3, &[0, 9, 1, 0, 0, 0, 0, 0]);
    bytes.extend(params_bytes(3, &cgi("GET", "/", "")));
    c.send(&bytes);
    assert_role_refused(&c.reply(3), "role 9", "role 9");
    // Those were keep-conn: the connection still serves a RESPONDER request.
    let h = c.request(4, true, &cgi("GET", "/", ""), b"").http();
    assert_eq!((h.status, h.json()["FCGI_ROLE"].as_str()), (200, Some("RESPONDER")));
    // A refused role without keep-conn, nothing else active: answered, then closed.
    c.send(&begin_bytes(5, Role::Authorizer, false));
    assert_role_refused(&c.reply(5), "no keep-conn", "AUTHORIZER");
    c.expect_closed("after a refused role without keep-conn");
}

#[test]
fn authorizer_role_answers() {
    let s = Server::start(&authz_app(), &["--roles", "responder,authorizer"], &[]);
    let mut c = s.connect();
    // Allow: only the status and the Variable- headers, the body dropped.
    c.send(&role_request(1, Role::Authorizer, true, &cgi("GET", "/downloads/f.txt", "auth-var")));
    let r = c.reply(1);
    assert_eq!(r.protocol_status, 0);
    assert_eq!(String::from_utf8_lossy(&r.stdout), "Status: 200 OK\r\nVariable-X-LIGHTTPD-FCGI-AUTH: LighttpdTestContent\r\nVariable-X_USER: ann\r\n\r\n");
    c.send(&role_request(2, Role::Authorizer, true, &cgi("GET", "/", "auth-ok")));
    assert_eq!(String::from_utf8_lossy(&c.reply(2).stdout), "Status: 200 OK\r\n\r\n");
    // A denial is the app's response, whole; the environ of the authorizer role.
    let mut p = cgi("GET", "/ignored", "report");
    set(&mut p, "REQUEST_URI", "/downloads/a%20b/../f.txt?report");
    set(&mut p, "CONTENT_LENGTH", "5");
    c.send(&role_request(3, Role::Authorizer, true, &p));
    let h = c.reply(3).http();
    assert_eq!(h.status, 403);
    let j = h.json();
    assert_eq!((j["FCGI_ROLE"].as_str(), j["SCRIPT_NAME"].as_str(), j["PATH_INFO"].as_str()), (Some("AUTHORIZER"), Some(""), Some("/downloads/f.txt")));
    assert_eq!((j["body"].as_str(), j["CONTENT_LENGTH"].as_str()), (Some(""), Some("5")), "no body in the authorizer role");
    // Every failure denies with a 500, never an allow.
    for (id, case) in [(4u16, "raise"), (5, "raise-after"), (6, "close-raises"), (7, "bad-status"), (8, "bad-var"), (9, "big")] {
        c.send(&role_request(id, Role::Authorizer, true, &cgi("GET", "/", case)));
        let h = c.reply(id).http();
        assert_eq!(h.status, 500, "{case}: {}\n{}", h.text(), s.diag());
    }
    // The connection goes on; a responder sees FCGI_ROLE even when the server sent none.
    let h = c.request(10, true, &cgi("POST", "/r", ""), b"").http();
    assert_eq!((h.status, h.json()["FCGI_ROLE"].as_str()), (200, Some("RESPONDER")));
}

#[test]
fn authorizer_with_stdin_and_multiplexed() {
    // --threads 2 advertises FCGI_MPXS_CONNS: authorizer and responder requests interleave.
    let s = Server::start(&authz_app(), &["--roles", "responder,authorizer", "--threads", "2"], &[]);
    let mut c = s.connect();
    // An authorizer has no body: STDIN data sent anyway is never seen by the app, and the
    // answer does not wait for it.
    let mut bytes = role_request(1, Role::Authorizer, true, &cgi("GET", "/x", "report"));
    client::stdin(&mut bytes, 1, b"smuggled");
    client::end_stdin(&mut bytes, 1);
    // A responder request interleaved with it, on the same connection.
    bytes.extend(begin_bytes(2, Role::Responder, true));
    bytes.extend(params_bytes(2, &post(4)));
    client::stdin(&mut bytes, 2, b"body");
    client::end_stdin(&mut bytes, 2);
    bytes.extend(role_request(3, Role::Authorizer, true, &cgi("GET", "/", "auth-fail")));
    c.send(&bytes);
    let (mut statuses, mut bodies) = (std::collections::BTreeMap::new(), std::collections::BTreeMap::new());
    while statuses.len() < 3 {
        match c.event() {
            ClientEvent::Stdout { id, data } => bodies.entry(id).or_insert_with(Vec::new).extend(data),
            ClientEvent::EndRequest { id, protocol_status, .. } => {
                statuses.insert(id, protocol_status);
            }
            _ => {}
        }
    }
    assert!(statuses.values().all(|p| *p == 0), "{statuses:?}");
    let text = |id: u16| String::from_utf8_lossy(&bodies[&id]).into_owned();
    assert!(text(1).starts_with("Status: 403") && text(1).contains(r#""body": """#), "{}", text(1));
    assert!(text(2).starts_with("Status: 200") && text(2).contains(r#""body": "body""#), "{}", text(2));
    assert!(text(3).starts_with("Status: 403"), "{}", text(3));
    // Without multiplexing, a second BEGIN for an authorizer is refused with a 503 page
    // (CANT_MPX_CONN alone would read as an allow to lighttpd).
    let s = Server::start(&authz_app(), &["--roles", "responder,authorizer"], &[]);
    let mut c = s.connect();
    let mut bytes = begin_bytes(1, Role::Responder, true);
    bytes.extend(role_request(2, Role::Authorizer, true, &cgi("GET", "/", "auth-ok")));
    c.send(&bytes);
    let r = c.reply(2);
    assert_eq!(r.protocol_status, 1, "CANT_MPX_CONN: {r:?}");
    assert!(String::from_utf8_lossy(&r.stdout).starts_with("Status: 503"), "{r:?}");
}

#[test]
fn authorizer_only_process_refuses_responders() {
    let s = Server::start(&authz_app(), &["--log-level", "info"], &[("CGI2WSGI_ROLES", "authorizer")]);
    let mut c = s.connect();
    let r = c.request(1, true, &cgi("GET", "/", ""), b"");
    assert_role_refused(&r, "responder", "RESPONDER role (role 1)");
    c.send(&role_request(2, Role::Authorizer, true, &cgi("GET", "/", "auth-ok")));
    assert_eq!(c.reply(2).http().status, 200);
    assert!(s.log().contains("roles authorizer"), "{}", s.log());
}

// ---------------------------------------------------------------------------------------
// 7. No multiplexing
// ---------------------------------------------------------------------------------------

#[test]
fn second_request_on_a_busy_connection_gets_cant_mpx_conn() {
    let s = Server::start(&stream_app(), &[], &[]);
    let mut c = s.connect();
    // Six chunks 0.3 s apart: the second BEGIN surely arrives while request 1 is answered.
    c.send_request(1, true, &cgi("GET", "/", "n=6&delay=0.3"), b"");
    let first = c.event();
    assert!(matches!(first, ClientEvent::Stdout { id: 1, .. }), "{first:?}");
    // Request 1 is mid-response: a second id on the same connection.
    c.send_request(2, true, &cgi("GET", "/", "n=1&delay=0"), b"");
    let mut stdout1 = match first {
        ClientEvent::Stdout { data, .. } => data,
        _ => unreachable!(),
    };
    let (mut end1, mut end2) = (None, None);
    while end1.is_none() || end2.is_none() {
        match c.event() {
            ClientEvent::Stdout { id: 1, data } => stdout1.extend(data),
            ClientEvent::EndRequest { id: 1, protocol_status, .. } => end1 = Some(protocol_status),
            ClientEvent::EndRequest { id: 2, protocol_status, .. } => end2 = Some(protocol_status),
            ClientEvent::StdoutEnd { id: 1 } | ClientEvent::Stderr { id: 1, .. } => {}
            other => panic!("unexpected {other:?}\n{}", s.diag()),
        }
    }
    assert_eq!(end2, Some(1), "request 2: CANT_MPX_CONN");
    assert_eq!(end1, Some(0), "request 1: REQUEST_COMPLETE");
    let r1 = Reply { events: Vec::new(), stdout: stdout1, stderr: Vec::new(), app_status: 0, protocol_status: 0 };
    let h = r1.http();
    assert_eq!(h.status, 200);
    let text = h.text();
    for i in 0..6 {
        assert!(text.contains(&format!("chunk {i} at")), "chunk {i} missing: {text}");
    }
    // Both were keep-conn: the connection goes on.
    let h = c.request(3, false, &cgi("GET", "/", "n=2&delay=0"), b"").http();
    assert_eq!(h.status, 200);
    assert!(h.text().contains("chunk 1 at"));
}

/// With --threads > 1 (FCGI_MPXS_CONNS=1) a web server may interleave requests on one
/// connection: records of two requests arrive mixed, and each gets its own answer.
#[test]
fn interleaved_requests_on_one_connection_with_threads() {
    let s = Server::start(&echo_app(), &["--threads", "2", "--workers", "1"], &[]);
    let mut c = s.connect();
    let (body1, body2) = (b"hello".to_vec(), b"abc".to_vec());
    let mut p1 = cgi("POST", "/one", "");
    p1.push(("CONTENT_LENGTH".into(), body1.len().to_string()));
    let mut p2 = cgi("POST", "/two", "");
    p2.push(("CONTENT_LENGTH".into(), body2.len().to_string()));
    let mut out = Vec::new();
    client::begin_request(&mut out, 1, Role::Responder, true);
    client::params(&mut out, 1, &p1).unwrap();
    client::begin_request(&mut out, 2, Role::Responder, true);
    client::params(&mut out, 2, &p2).unwrap();
    client::stdin(&mut out, 2, &body2);
    client::end_stdin(&mut out, 2);
    client::stdin(&mut out, 1, &body1);
    client::end_stdin(&mut out, 1);
    c.send(&out);
    let mut stdout: std::collections::HashMap<u16, Vec<u8>> = Default::default();
    let mut ended = Vec::new();
    while ended.len() < 2 {
        match c.event() {
            ClientEvent::Stdout { id, data } => stdout.entry(id).or_default().extend(data),
            ClientEvent::EndRequest { id, protocol_status, .. } => {
                assert_eq!(protocol_status, 0, "request {id} was not completed");
                ended.push(id);
            }
            _ => {}
        }
    }
    for (id, path, body) in [(1u16, "/one", &body1), (2, "/two", &body2)] {
        let r = Reply { events: Vec::new(), stdout: stdout.remove(&id).unwrap_or_default(), stderr: Vec::new(), app_status: 0, protocol_status: 0 };
        let j = r.http().json();
        assert_eq!(j["PATH_INFO"], path, "request {id}");
        assert_eq!(j["body_sha256"], sha256_hex(body), "request {id}");
    }
    // The connection goes on.
    assert_eq!(c.request(3, false, &cgi("GET", "/three", ""), b"").http().status, 200);
}

// ---------------------------------------------------------------------------------------
// 8. Malformed input closes that connection only
// ---------------------------------------------------------------------------------------

#[test]
fn malformed_input_closes_only_the_bad_connection() {
    let s = Server::start(&hello_app(), &[], &[]);
    // Opened before any bad connection, used after each one.
    let mut good = s.connect();
    let mut good_id = 0u16;
    let mut check_good = |good: &mut Conn, after: &str| {
        good_id += 1;
        let h = good.request(good_id, true, &cgi("GET", "/", ""), b"").http();
        assert_eq!(h.status, 200, "the good connection after {after}");
    };

    // Version 2.
    let mut bad = s.connect();
    let mut bytes = begin_bytes(1, Role::Responder, true);
    bytes[0] = 2;
    bad.send(&bytes);
    bad.expect_closed("a version-2 record");
    check_good(&mut good, "a version-2 record");

    // Records for an inactive id are ignored; the connection stays usable.
    let mut c = s.connect();
    let mut bytes = Vec::new();
    client::stdin(&mut bytes, 9, b"stray body");
    bytes.extend(params_bytes(9, &cgi("GET", "/", "")));
    client::abort(&mut bytes, 9);
    c.send(&bytes);
    let h = c.request(1, false, &cgi("GET", "/", ""), b"").http();
    assert_eq!(h.status, 200, "after records for an inactive id");

    // BEGIN_REQUEST twice for the same id.
    let mut bad = s.connect();
    let mut bytes = begin_bytes(1, Role::Responder, true);
    bytes.extend(begin_bytes(1, Role::Responder, true));
    bad.send(&bytes);
    bad.expect_closed("BEGIN_REQUEST twice for id 1");
    check_good(&mut good, "a duplicate BEGIN_REQUEST");

    // A name length of 2^31-1 in PARAMS.
    let mut bad = s.connect();
    let mut bytes = begin_bytes(1, Role::Responder, true);
    bytes.extend(record(1, 4, 1, &[0xff, 0xff, 0xff, 0xff, 0x01, b'x', b'y']));
    bad.send(&bytes);
    bad.expect_closed("a PARAMS name length of 2^31-1");
    check_good(&mut good, "a huge declared PARAMS length");

    // More than 1 MiB of PARAMS.
    let mut bad = s.connect();
    let value = "v".repeat(60_000);
    let mut p = cgi("GET", "/", "");
    for i in 0..20 {
        p.push((format!("HTTP_X_BIG_{i}"), value.clone()));
    }
    let mut bytes = begin_bytes(1, Role::Responder, true);
    bytes.extend(params_bytes(1, &p));
    client::end_stdin(&mut bytes, 1);
    // The server may close while we are still writing.
    let _ = bad.try_send(&bytes);
    bad.expect_closed("PARAMS over 1 MiB");
    check_good(&mut good, "PARAMS over 1 MiB");

    let mut s = s;
    assert!(s.alive(), "the server survives malformed connections");
}

// ---------------------------------------------------------------------------------------
// 9. ABORT_REQUEST
// ---------------------------------------------------------------------------------------

#[test]
fn abort_mid_response_and_before_stdin_ends() {
    let s = Server::start(&stream_app(), &[], &[]);
    let mut c = s.connect();
    let started = Instant::now();
    c.send_request(1, false, &cgi("GET", "/", "n=50&delay=0.2"), b"");
    let first = c.event();
    assert!(matches!(first, ClientEvent::Stdout { id: 1, .. }), "{first:?}");
    let mut out = Vec::new();
    client::abort(&mut out, 1);
    c.send(&out);
    let mut stdout = Vec::new();
    loop {
        match c.event() {
            ClientEvent::Stdout { id: 1, data } => stdout.extend(data),
            ClientEvent::StdoutEnd { id: 1 } | ClientEvent::Stderr { id: 1, .. } => {}
            ClientEvent::EndRequest { id: 1, protocol_status, .. } => {
                assert_eq!(protocol_status, 0);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "END_REQUEST after {elapsed:?}: the abort was not noticed");
    assert!(!String::from_utf8_lossy(&stdout).contains("chunk 49 at"), "the whole response was sent");
    c.expect_closed("after an aborted request without keep-conn");
    let h = s.get_ok("/", "n=2&delay=0");
    assert!(h.text().contains("chunk 1 at"));

    // ABORT while the body is still arriving: END_REQUEST, the app never runs, and with
    // keep-conn the connection goes on.
    let e = Server::start(&echo_app(), &[], &[]);
    let mut c = e.connect();
    let mut bytes = begin_bytes(1, Role::Responder, true);
    bytes.extend(params_bytes(1, &post(100)));
    client::stdin(&mut bytes, 1, &[1u8; 10]);
    client::abort(&mut bytes, 1);
    c.send(&bytes);
    let r = c.reply(1);
    assert_eq!(r.protocol_status, 0, "{r:?}");
    assert!(r.stdout.is_empty(), "the app ran: {:?}", String::from_utf8_lossy(&r.stdout));
    let j = c.request(2, true, &post(3), b"abc").http().json();
    assert_eq!(j["body_sha256"], sha256_hex(b"abc"));

    // ABORT before the PARAMS stream is complete: END_REQUEST too, the connection goes on.
    let mut bytes = begin_bytes(3, Role::Responder, true);
    let mut p = Vec::new();
    client::params(&mut p, 3, &cgi("GET", "/", "")).unwrap();
    // Only the first PARAMS record (non-empty), not the terminating one.
    let first_len = usize::from(u16::from_be_bytes([p[4], p[5]])) + usize::from(p[6]) + 8;
    bytes.extend_from_slice(&p[..first_len]);
    client::abort(&mut bytes, 3);
    c.send(&bytes);
    let r = c.reply(3);
    assert_eq!(r.protocol_status, 0, "{r:?}");
    assert!(r.stdout.is_empty());
    let j = c.request(4, false, &post(2), b"ok").http().json();
    assert_eq!(j["body_sha256"], sha256_hex(b"ok"));
}

// ---------------------------------------------------------------------------------------
// 10. The web server hangs up mid-response
// ---------------------------------------------------------------------------------------

#[test]
fn client_vanishing_mid_response() {
    let mut s = Server::start(&stream_app(), &["--log-level", "info"], &[]);
    {
        let mut c = s.connect();
        c.send_request(1, true, &cgi("GET", "/gone", "n=40&delay=0.05"), b"");
        let first = c.event();
        assert!(matches!(first, ClientEvent::Stdout { id: 1, .. }), "{first:?}");
        // Dropped here: the socket closes after the first chunk.
    }
    let h = s.get_ok("/", "n=2&delay=0");
    assert!(h.text().contains("chunk 1 at"));
    assert!(s.wait_for_log("client gone", Duration::from_secs(10)), "the abandoned request was not logged as such\n{}", s.diag());
    let h = s.get_ok("/", "n=1&delay=0");
    assert!(h.text().contains("chunk 0 at"));
    assert!(s.alive());
    let all = format!("{}{}", s.log(), s.stderr());
    assert!(!all.contains("panicked"), "a panic in the server:\n{all}");
}

// ---------------------------------------------------------------------------------------
// 11. App errors, wsgi.errors
// ---------------------------------------------------------------------------------------

#[test]
fn app_exception_is_a_500_and_the_worker_goes_on() {
    let s = Server::start(&wire_app(), &[], &[]);
    let mut c = s.connect();
    let r = c.request(1, true, &cgi("GET", "/raise", ""), b"");
    let h = r.http();
    assert_eq!(h.status, 500, "{h:?}");
    assert!(!h.text().contains("boom"), "no traceback in the page without --debug");
    let needle = "fcgi_wire: boom before start_response";
    let in_stderr = r.stderr_text().contains(needle);
    assert!(in_stderr || s.wait_for_log(needle, Duration::from_secs(5)), "the traceback is neither in FCGI_STDERR nor in the log\n{}", s.diag());
    assert!(in_stderr || s.log().contains("Traceback"), "{}", s.diag());
    // Same connection, same worker: still serving.
    let h = c.request(2, false, &cgi("GET", "/ok", ""), b"").http();
    assert_eq!((h.status, h.body.as_slice()), (200, &b"ok\n"[..]));
}

#[test]
fn wsgi_errors_arrive_as_fcgi_stderr() {
    let s = Server::start(&echo_app(), &[], &[]);
    let mut c = s.connect();
    let r = c.request(1, false, &cgi("GET", "/", ""), b"");
    assert!(r.events.iter().any(|e| matches!(e, ClientEvent::Stderr { id: 1, .. })));
    assert!(r.stderr_text().contains("echo: a line on wsgi.errors"), "FCGI_STDERR: {:?}", r.stderr_text());
    let h = r.http();
    assert_eq!(h.status, 200);
    // print() goes to the log, never into the response.
    assert!(!h.text().contains("print() from the app"));
    assert!(!r.stderr_text().contains("print() from the app"));
    assert!(s.wait_for_log("echo: print() from the app goes to the error log", Duration::from_secs(5)), "{}", s.diag());
}

// ---------------------------------------------------------------------------------------
// 16. Bad CONTENT_LENGTH, --max-body
// ---------------------------------------------------------------------------------------

#[test]
fn bad_content_length_and_max_body() {
    let s = Server::start(&echo_app(), &["--max-body", "1K"], &[]);
    let mut p = post(0);
    set(&mut p, "CONTENT_LENGTH", "abc");
    let mut c = s.connect();
    let h = c.request(1, false, &p, b"abc").http();
    assert_eq!(h.status, 400, "{h:?}");
    assert!(!h.text().contains("body_sha256"));

    let body = test_bytes(4096);
    let mut c = s.connect();
    let h = c.request(1, false, &post(body.len()), &body).http();
    assert_eq!(h.status, 413, "{h:?}");
    assert!(!h.text().contains("body_sha256"));

    // Within the limit: served.
    let mut c = s.connect();
    let j = c.request(1, false, &post(1024), &body[..1024]).http().json();
    assert_eq!(j["body_sha256"], sha256_hex(&body[..1024]));
}

// ---------------------------------------------------------------------------------------
// 17. A body spooled to disk
// ---------------------------------------------------------------------------------------

#[test]
fn three_mib_body_spooled_to_disk() {
    let s = Server::start(&echo_app(), &[], &[]);
    let body = test_bytes(3 << 20);
    for mode in ["", "lines"] {
        let mut c = s.connect();
        let mut p = post(body.len());
        set(&mut p, "QUERY_STRING", mode);
        let j = c.request(1, false, &p, &body).http().json();
        assert_eq!(j["body_length"], 3 << 20, "read mode {mode:?}");
        assert_eq!(j["body_sha256"], sha256_hex(&body), "read mode {mode:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Found while writing these tests (see each test's comment)
// ---------------------------------------------------------------------------------------

/// A web server sends the whole request (nginx buffers the body, then writes it all) before
/// it reads the answer. A request refused for its size must not be cut off by closing the
/// socket under the web server's writes: the writer gets EPIPE/ECONNRESET and nginx then
/// answers 502 instead of the 413 (over TCP the RST can even destroy the 413 itself).
/// The server should read and drop the rest of the STDIN stream before closing.
#[test]
fn refused_upload_is_drained_not_cut_off() {
    let s = Server::start(&echo_app(), &["--max-body", "1K"], &[]);
    let c = s.connect();
    let body = test_bytes(4 << 20);
    let bytes = request_bytes(1, false, &post(body.len()), &body);
    let mut w = c.writer();
    let writer = std::thread::spawn(move || w.write_all(&bytes));
    let mut c = c;
    let r = c.reply(1);
    let h = r.http();
    assert_eq!(h.status, 413, "{h:?}");
    let sent = writer.join().unwrap();
    assert!(sent.is_ok(), "the web server could not finish sending the request: {sent:?} (the server closed the connection with the body unread)");
}

/// FastCGI §5.1: with FCGI_KEEP_CONN the application does not close the connection after
/// responding. A request refused before its body is read (bad CONTENT_LENGTH, over
/// --max-body) closes it anyway, although the rest of its STDIN is easy to skip: its id is
/// finished, so its records are ignored.
#[test]
fn refused_request_keeps_a_keep_conn_connection() {
    let s = Server::start(&echo_app(), &["--max-body", "1K"], &[]);
    let mut c = s.connect();
    let mut p = post(0);
    set(&mut p, "CONTENT_LENGTH", "abc");
    let h = c.request(1, true, &p, b"abc").http();
    assert_eq!(h.status, 400, "{h:?}");
    let body = test_bytes(4096);
    let h = c.request(2, true, &post(body.len()), &body).http();
    assert_eq!(h.status, 413, "{h:?}");
    let j = c.request(3, false, &post(2), b"ok").http().json();
    assert_eq!(j["body_sha256"], sha256_hex(b"ok"));
}

/// A web server that has sent its whole request (no keep-conn) may shut down its write
/// side. That is not an abort: the response must still arrive whole. The server takes
/// the EOF it reads while answering (poll_for_abort) for a vanished client and cuts a
/// streamed response short, yet ends it with END_REQUEST/REQUEST_COMPLETE, so the
/// truncation is silent.
#[test]
fn half_closed_web_server_still_gets_the_whole_response() {
    let s = Server::start(&stream_app(), &[], &[]);
    let mut c = s.connect();
    c.send_request(1, false, &cgi("GET", "/", "n=3&delay=0.1"), b"");
    c.shutdown_write();
    let r = c.reply(1);
    let h = r.http();
    assert_eq!(h.status, 200);
    let text = h.text();
    for i in 0..3 {
        assert!(text.contains(&format!("chunk {i} at")), "chunk {i} missing from {text:?}\n{}", s.diag());
    }
}

/// FastCGI §3.3: a stream ends with an empty record; the spec's responder example (and
/// libfcgi) closes FCGI_STDERR with an empty record when anything was written to it. The
/// server sends wsgi.errors text as FCGI_STDERR but never ends that stream.
#[test]
fn used_stderr_stream_is_terminated() {
    let s = Server::start(&echo_app(), &[], &[]);
    let mut c = s.connect();
    let r = c.request(1, false, &cgi("GET", "/", ""), b"");
    assert!(!r.stderr.is_empty());
    let ends: Vec<usize> = r.events.iter().enumerate().filter(|(_, e)| matches!(e, ClientEvent::StderrEnd { .. })).map(|(i, _)| i).collect();
    let last_data = r.events.iter().rposition(|e| matches!(e, ClientEvent::Stderr { .. })).unwrap();
    let order = summary(&r.events);
    assert_eq!(ends.len(), 1, "one empty FCGI_STDERR record after the stderr data: {order:?}");
    assert!(ends[0] > last_data && ends[0] < r.events.len() - 1, "{order:?}");
}

/// Several request threads and an app whose garbage collection runs Python code that
/// releases the GIL inside any allocation: no lock of ours may be held across such a call
/// (a thread would wait on it while holding the GIL, and the worker would hang).
#[test]
fn request_threads_survive_gc_that_switches_threads() {
    let s = Server::start(&repo_path("tests/apps/gc_heavy.py"), &["--threads", "4"], &[]);
    let addr = s.addr.clone();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = Conn::to(&addr);
                for id in 1..=150u16 {
                    let h = c.request(id, true, &cgi("GET", "/", ""), b"").http();
                    assert_eq!(h.status, 200);
                }
            })
        })
        .collect();
    for c in clients {
        assert!(c.join().is_ok(), "a client failed or timed out (a hung worker?)\n{}", s.diag());
    }
}
