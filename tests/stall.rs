//! No peer can stall the others: a web server that floods FCGI_GET_VALUES and never reads
//! the answers, or never reads a large response, must not delay requests on its other
//! connections. The event loop never blocks on a peer's socket and never holds the GIL
//! while writing; answers it owes a peer wait in a bounded queue, and a peer whose queue
//! passes the bound is closed. Each test prints the latencies it measured (run with
//! `--nocapture` to see them); the bound asserted is generous (the failure this guards
//! against waited 30-60 s, the send timeout). One worker process, so every connection
//! reaches the same event loops.

mod common;

use cgi2wsgi::fastcgi::client;
use cgi2wsgi::fastcgi::ClientEvent;
use common::fcgi::*;
use std::io::Write;
use std::time::{Duration, Instant};

/// A request on another connection must be answered within this.
const BOUND: Duration = Duration::from_secs(5);
/// How long a probe waits before the test gives up on it (longer than `BOUND`, so the
/// failure message says how long it really took, up to this).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// GET_VALUES records a held-open flood sends: their answers (64 bytes each, ~190 KiB) are
/// more than the socket buffers take, yet under the server's queue bound.
const FLOOD_RECORDS: usize = 3000;

fn stall_app() -> String {
    repo_path("tests/apps/stall.py")
}

fn get_values(records: usize) -> Vec<u8> {
    let mut one = Vec::new();
    client::get_values(&mut one, &["FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS"]).unwrap();
    one.repeat(records)
}

fn set_read_timeout(c: &Conn, t: Duration) {
    match &c.sock {
        Sock::Unix(s) => s.set_read_timeout(Some(t)).unwrap(),
        Sock::Tcp(s) => s.set_read_timeout(Some(t)).unwrap(),
    }
}

/// One GET on a fresh connection; how long until its END_REQUEST. Panics (with the time
/// waited) when no answer comes within `PROBE_TIMEOUT`.
fn probe(s: &Server, i: usize) -> Duration {
    let start = Instant::now();
    let mut c = s.connect();
    set_read_timeout(&c, PROBE_TIMEOUT);
    c.send_request(1, false, &cgi("GET", "/", &format!("probe={i}")), b"");
    let mut stdout = Vec::new();
    loop {
        match c.next() {
            Ok(Some(ClientEvent::Stdout { data, .. })) => stdout.extend_from_slice(&data),
            Ok(Some(ClientEvent::EndRequest { .. })) => break,
            Ok(Some(_)) => {}
            Ok(None) => panic!("probe {i}: the server closed the connection after {:?}\n{}", start.elapsed(), s.diag()),
            Err(e) => panic!("probe {i}: no answer after {:?} ({e})\n{}", start.elapsed(), s.diag()),
        }
    }
    let elapsed = start.elapsed();
    assert!(String::from_utf8_lossy(&stdout).ends_with("\r\n\r\nok\n"), "probe {i}: {:?}", String::from_utf8_lossy(&stdout));
    elapsed
}

/// Five probes one after another: all must be answered within `BOUND`; prints them.
fn probes(s: &Server, what: &str) {
    let times: Vec<Duration> = (0..5).map(|i| probe(s, i)).collect();
    let ms: Vec<String> = times.iter().map(|t| format!("{:.1}", t.as_secs_f64() * 1000.0)).collect();
    println!("{what}: probe latencies (ms): {}", ms.join(", "));
    let worst = times.iter().max().copied().unwrap_or_default();
    assert!(worst < BOUND, "{what}: a request on another connection took {worst:?}\n{}", s.diag());
}

/// A peer that sends `FLOOD_RECORDS` GET_VALUES and never reads: returned still open. The
/// records are written from a thread (a server that stops reading must not hang the test).
fn held_flood(s: &Server) -> Conn {
    let c = s.connect();
    let mut w = c.writer();
    let bytes = get_values(FLOOD_RECORDS);
    let writer = std::thread::spawn(move || w.write_all(&bytes));
    let deadline = Instant::now() + Duration::from_secs(2);
    while !writer.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Time for the server to take the records in and answer as much as the socket holds.
    std::thread::sleep(Duration::from_millis(300));
    c
}

/// The flooding peer starts reading: every answer it was owed arrives, in order, from the
/// queue the loop kept for it.
fn read_flood_answers(mut c: Conn) {
    read_flood_answers_from(&mut c);
}

fn read_flood_answers_from(c: &mut Conn) {
    set_read_timeout(c, PROBE_TIMEOUT);
    for i in 0..FLOOD_RECORDS {
        match c.next() {
            Ok(Some(ClientEvent::GetValuesResult { pairs })) => assert_eq!(pairs.len(), 3, "answer {i}: {pairs:?}"),
            other => panic!("answer {i} of {FLOOD_RECORDS}: {other:?}\n{}", c.diag()),
        }
    }
}

#[test]
fn get_values_flood_unread_one_thread() {
    let s = Server::start(&stall_app(), &["--workers", "1", "--threads", "1"], &[]);
    probes(&s, "--threads 1, no flood");
    let flood = held_flood(&s);
    probes(&s, "--threads 1, GET_VALUES flood unread");
    read_flood_answers(flood);
}

#[test]
fn get_values_flood_unread_two_threads() {
    let s = Server::start(&stall_app(), &["--workers", "1", "--threads", "2"], &[]);
    let flood = held_flood(&s);
    probes(&s, "--threads 2, GET_VALUES flood unread");
    read_flood_answers(flood);
}

#[test]
fn get_values_flood_and_unread_response_two_threads() {
    let s = Server::start(&stall_app(), &["--workers", "1", "--threads", "2"], &[]);
    let _flood = held_flood(&s);
    // 32 MiB that nobody reads: its request thread waits on this peer, GIL released.
    let mut big = s.connect();
    big.send_request(1, false, &cgi("GET", "/big", ""), b"");
    std::thread::sleep(Duration::from_millis(500));
    probes(&s, "--threads 2, GET_VALUES flood and a 32 MiB response unread");
    assert!(!s.log().contains("GET /app/big ->"), "the unread response cannot have completed\n{}", s.diag());
}

#[test]
fn endless_flood_is_closed_at_the_bound() {
    let s = Server::start(&stall_app(), &["--workers", "1", "--threads", "1"], &[]);
    let c = s.connect();
    let mut w = c.writer();
    // Writes until the server closes the connection (or, failing that, for 20 s).
    let flooder = std::thread::spawn(move || {
        let batch = get_values(1000);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sent = 0usize;
        while Instant::now() < deadline {
            match w.write_all(&batch) {
                Ok(()) => sent += batch.len(),
                Err(e) => return (sent, Some(e)),
            }
        }
        (sent, None)
    });
    probes(&s, "--threads 1, endless GET_VALUES flood");
    let (sent, error) = flooder.join().unwrap();
    let error = error.unwrap_or_else(|| panic!("the server kept a peer that never reads open after {sent} bytes of GET_VALUES\n{}", s.diag()));
    assert!(is_closed_error(&error), "flood write: {error}");
    assert!(s.wait_for_log("does not read", Duration::from_secs(5)), "no log line for the closed peer\n{}", s.diag());
    drop(c);
    probes(&s, "--threads 1, after the flood was cut");
}

#[test]
fn queued_answers_keep_their_order_and_the_close_waits_for_them() {
    let s = Server::start(&stall_app(), &["--workers", "1", "--threads", "1", "--max-body", "10"], &[]);
    let c = s.connect();
    // Answers the peer does not read yet, then a request without FCGI_KEEP_CONN that is
    // refused (413): its answer queues behind them, and the close must wait for all of it.
    let mut bytes = get_values(FLOOD_RECORDS);
    bytes.extend(request_bytes(1, false, &post(100), &[b'x'; 100]));
    let mut w = c.writer();
    let writer = std::thread::spawn(move || w.write_all(&bytes));
    std::thread::sleep(Duration::from_millis(300));
    probes(&s, "--threads 1, answers and a refusal queued");
    writer.join().unwrap().unwrap();
    let mut c = c;
    read_flood_answers_from(&mut c);
    let reply = c.reply(1);
    assert_eq!(reply.http().status, 413, "{reply:?}");
    c.expect_closed("after the queued refusal of a request without FCGI_KEEP_CONN");
}
