//! A 1 GiB upload over FastCGI reaches the app intact (sha256) while the server's peak RSS
//! grows by at most 32 MiB: request bodies are spooled to disk, never held in memory.

mod common;

use cgi2wsgi::fastcgi::client::{self, ClientDecoder, ClientEvent};
use cgi2wsgi::fastcgi::Role;
use sha2::Digest;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn one_gib_upload_is_spooled_not_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let child = Command::new(common::binary())
        .arg("--bind")
        .arg(format!("unix:{}", sock.display()))
        // One process: the pid measured is the one that reads the body and runs the app.
        .args(["--workers", "1"])
        .arg(common::repo().join("examples/echo.py"))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "the server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = server.0.id();
    assert!(status_kib(pid, "VmRSS:") > 8 * 1024, "pid {pid} is not the Python process serving the upload");
    // The app is imported before the socket accepts, so this is the steady-state baseline.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    let total: u64 = 1 << 30;
    let mut head = Vec::new();
    client::begin_request(&mut head, 1, Role::Responder, false);
    let params = [
        ("REQUEST_METHOD", "POST".to_string()),
        ("CONTENT_LENGTH", total.to_string()),
        ("SCRIPT_NAME", "".into()),
        ("PATH_INFO", "/".into()),
        ("QUERY_STRING", "".into()),
        ("SERVER_NAME", "x".into()),
        ("SERVER_PORT", "80".into()),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
    ];
    client::params(&mut head, 1, &params).unwrap();
    s.write_all(&head).unwrap();
    let baseline = status_kib(pid, "VmRSS:");
    let mut hasher = sha2::Sha256::new();
    let pattern = common::test_bytes(1 << 20);
    let mut sent = 0u64;
    let mut out = Vec::with_capacity(70_000);
    while sent < total {
        for piece in pattern.chunks(65_000) {
            out.clear();
            client::stdin(&mut out, 1, piece);
            s.write_all(&out).unwrap();
            hasher.update(piece);
        }
        sent += pattern.len() as u64;
    }
    out.clear();
    client::end_stdin(&mut out, 1);
    s.write_all(&out).unwrap();
    let mut dec = ClientDecoder::new();
    let mut stdout = Vec::new();
    let mut buf = [0u8; 65536];
    'read: loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before END_REQUEST");
        dec.feed(&buf[..n]);
        while let Some(ev) = dec.poll_event().unwrap() {
            match ev {
                ClientEvent::Stdout { data, .. } => stdout.extend(data),
                ClientEvent::EndRequest { .. } => break 'read,
                _ => {}
            }
        }
    }
    let peak = status_kib(pid, "VmHWM:");
    let text = String::from_utf8_lossy(&stdout);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    let ours: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(json["body_length"], total);
    assert_eq!(json["body_sha256"], ours);
    let growth_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!("RSS before {baseline} KiB, peak {peak} KiB: +{growth_mib} MiB");
    assert!(growth_mib <= 32, "peak RSS grew by {growth_mib} MiB during a 1 GiB upload");
}
