//! Load and leak checks (release build; `dev/test` runs them after the main suite with
//! `cargo test --release --test leaks -- --ignored`, one at a time): real nginx with kept-alive
//! upstream connections in front of cgi2wsgi with two forked workers. After a warm-up, a
//! long run must leave every response 2xx and each worker's resident memory within
//! max(5%, 4 MiB) of what it was after the warm-up, with the same worker processes (no
//! recycling hides a leak). Outcomes are asserted, never speed.

mod common;

use common::servers::{self, path_str, Bind, Server};
use common::Fixture;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous: the whole run must end long before CI's limit, whatever the machine.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

/// Dropped in field order: nginx stops first, then cgi2wsgi, then the fixture goes.
struct Stack {
    nginx: Server,
    backend: Server,
    _fx: Fixture,
}

impl Stack {
    fn start(app: &str) -> Stack {
        let fx = Fixture::new(false);
        let sock = fx.path().join("run/app.sock");
        let app = fx.examples().join(app);
        let backend = servers::fastcgi_backend(&fx, "cgi2wsgi", &Bind::Unix(sock.clone()), &["--workers".into(), "2".into(), path_str(&app)]);
        let port = servers::free_port();
        let site = servers::render_snippet(
            "examples/nginx/keepalive.conf",
            &[("listen 80;", format!("listen 127.0.0.1:{port};")), ("/run/cgi2wsgi", path_str(sock.parent().unwrap()))],
        );
        let nginx = servers::nginx(&fx, port, &site);
        Stack { nginx, backend, _fx: fx }
    }

    fn logs(&self) -> String {
        format!("--- cgi2wsgi ---\n{}\n--- nginx ---\n{}", tail(&self.backend.log()), tail(&self.nginx.log()))
    }

    /// The worker processes: the supervisor's grandchildren (supervisor → zygote → workers).
    fn workers(&self) -> Vec<i32> {
        let mut out: Vec<i32> = children(self.backend.pid() as i32).into_iter().flat_map(children).collect();
        out.sort();
        out
    }

    fn wait_workers(&self) -> Vec<i32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let w = self.workers();
            if w.len() == 2 {
                return w;
            }
            assert!(Instant::now() < deadline, "two workers did not appear: {w:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn children(parent: i32) -> Vec<i32> {
    let text = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// A worker's resident memory once it is idle: the least of a few samples over half a
/// second, so memory an allocator is still handing back does not count as growth.
fn settled_rss_kib(pid: i32) -> u64 {
    (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            rss_kib(pid)
        })
        .min()
        .unwrap()
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap()
}

/// One kept-alive HTTP/1.1 client connection to nginx.
struct Client {
    reader: BufReader<TcpStream>,
    port: u16,
}

impl Client {
    fn connect(port: u16) -> std::io::Result<Client> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_write_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        Ok(Client { reader: BufReader::with_capacity(64 * 1024, s), port })
    }

    /// Send one request; returns the status and the body.
    fn exchange(&mut self, path: &str, body: Option<&[u8]>) -> std::io::Result<(u16, Vec<u8>)> {
        let head = match body {
            Some(b) => format!(
                "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                self.port,
                b.len()
            ),
            None => format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", self.port),
        };
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes())?;
        if let Some(b) = body {
            s.write_all(b)?;
        }
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status: u16 =
            line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            let value = value.trim();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => close = value.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; n + 2];
                self.reader.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = length {
            out.resize(n, 0);
            self.reader.read_exact(&mut out)?;
        } else {
            self.reader.read_to_end(&mut out)?;
            close = true;
        }
        if close {
            *self = Client::connect(self.port)?;
        }
        Ok((status, out))
    }
}

/// `total` requests from `concurrency` kept-alive connections; returns the failures
/// (anything but a 2xx whose body passes `check`), at most 20 of them described.
fn load(port: u16, path: &str, body: Option<Arc<Vec<u8>>>, total: usize, concurrency: usize, check: fn(&[u8]) -> bool) -> (usize, Vec<String>) {
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new((0usize, Vec::new())));
    let deadline = Instant::now() + RUN_DEADLINE;
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (next, failures, body, path) = (next.clone(), failures.clone(), body.clone(), path.to_owned());
            std::thread::spawn(move || {
                let mut client = None;
                while next.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                    let result = match client.as_mut() {
                        Some(c) => Client::exchange(c, &path, body.as_deref().map(Vec::as_slice)),
                        None => Client::connect(port).and_then(|mut c| {
                            let r = c.exchange(&path, body.as_deref().map(Vec::as_slice));
                            client = Some(c);
                            r
                        }),
                    };
                    let fault = match result {
                        Ok((status, b)) if (200..300).contains(&status) && check(&b) => None,
                        Ok((status, b)) => Some(format!("status {status}: {}", String::from_utf8_lossy(&b[..b.len().min(200)]))),
                        Err(e) => {
                            client = None;
                            Some(format!("i/o: {e}"))
                        }
                    };
                    if let Some(f) = fault {
                        let mut g = failures.lock().unwrap();
                        g.0 += 1;
                        if g.1.len() < 20 {
                            g.1.push(f);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(Instant::now() < deadline, "the load did not finish within {RUN_DEADLINE:?}");
    let g = failures.lock().unwrap();
    (g.0, g.1.clone())
}

/// Each worker's RSS after the run against after the warm-up.
fn assert_no_growth(stack: &Stack, workers: &[i32], before: &[u64], what: &str) {
    assert_eq!(stack.workers(), workers, "{what}: the workers changed during the run (a crash or a recycle)\n{}", stack.logs());
    for (pid, b) in workers.iter().zip(before) {
        let after = settled_rss_kib(*pid);
        let allowed = (b / 20).max(4096);
        eprintln!(
            "[leaks] {what}: worker {pid}: RSS {:.1} MiB after the warm-up, {:.1} MiB after the run (allowed +{:.1} MiB)",
            *b as f64 / 1024.0,
            after as f64 / 1024.0,
            allowed as f64 / 1024.0
        );
        assert!(after <= b + allowed, "{what}: worker {pid} grew from {b} KiB to {after} KiB (allowed +{allowed} KiB)\n{}", stack.logs());
    }
}

fn hello_ok(body: &[u8]) -> bool {
    body == b"Hello World\n"
}

fn echo_ok(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok_and(|t| t.contains("\"body_length\": 1048576"))
}

#[test]
#[ignore = "heavy: dev/test runs it in a release build after the main suite"]
fn two_hundred_thousand_requests_through_nginx_do_not_grow_the_workers() {
    let stack = Stack::start("hello.py");
    let workers = stack.wait_workers();
    let port = stack.nginx.port;
    let t0 = Instant::now();
    let (failed, examples) = load(port, "/app/", None, 20_000, 64, hello_ok);
    assert_eq!(failed, 0, "warm-up failures: {examples:#?}\n{}", stack.logs());
    let before: Vec<u64> = workers.iter().map(|&p| settled_rss_kib(p)).collect();
    let (failed, examples) = load(port, "/app/", None, 200_000, 64, hello_ok);
    eprintln!("[leaks] 220,000 requests in {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(failed, 0, "{failed} of 200,000 requests failed, e.g. {examples:#?}\n{}", stack.logs());
    assert_no_growth(&stack, &workers, &before, "200,000 GETs");
}

#[test]
#[ignore = "heavy: dev/test runs it in a release build after the main suite"]
fn one_mib_uploads_do_not_grow_the_workers() {
    let stack = Stack::start("echo.py");
    let workers = stack.wait_workers();
    let port = stack.nginx.port;
    let body = Arc::new(common::test_bytes(1 << 20));
    let t0 = Instant::now();
    let (failed, examples) = load(port, "/app/upload", Some(body.clone()), 1_000, 16, echo_ok);
    assert_eq!(failed, 0, "warm-up failures: {examples:#?}\n{}", stack.logs());
    let before: Vec<u64> = workers.iter().map(|&p| settled_rss_kib(p)).collect();
    let (failed, examples) = load(port, "/app/upload", Some(body), 3_000, 16, echo_ok);
    eprintln!("[leaks] 4,000 uploads of 1 MiB in {:.1} s", t0.elapsed().as_secs_f64());
    assert_eq!(failed, 0, "{failed} of 3,000 uploads failed, e.g. {examples:#?}\n{}", stack.logs());
    assert_no_growth(&stack, &workers, &before, "3,000 uploads of 1 MiB");
}
