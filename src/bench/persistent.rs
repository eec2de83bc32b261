//! The persistent side: this binary serving the app over FastCGI on a private unix socket
//! (`--workers`, `--threads` as asked), driven by an in-process FastCGI client, one kept-alive
//! connection per client thread, at each concurrency level for a bounded time.

use super::progress::Progress;
use super::{last_line, BenchError, Target};
use crate::fastcgi::client;
use crate::fastcgi::{ClientDecoder, ClientEvent, Role};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One concurrency level's latencies (ns, requests started in the measured window).
#[derive(Debug, Clone)]
pub struct Level {
    pub concurrency: usize,
    pub latencies: Vec<u64>,
    pub seconds: f64,
}

impl Level {
    pub fn req_per_s(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds.max(1e-9)
    }
}

#[derive(Debug, Clone)]
pub struct PersistentResult {
    pub workers: usize,
    pub threads: usize,
    pub levels: Vec<Level>,
}

/// The worker process; stopped by PID (SIGTERM, then SIGKILL) however the bench ends.
struct Worker {
    child: Child,
    log: PathBuf,
    stderr: PathBuf,
}

impl Worker {
    fn log_tail(&self) -> String {
        let mut text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(&self.log).unwrap_or_default());
        // The traceback's last line when the app failed to load, else the last line.
        format!("log: {}", last_line(&text).unwrap_or("nothing was logged"))
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // Our own child, which has not been reaped yet.
        crate::sys::kill(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(target: &Target, dir: &Path, workers: usize, threads: usize) -> Result<(Worker, PathBuf), BenchError> {
    let sock = dir.join("fcgi.sock");
    let log = dir.join("worker.log");
    let stderr = dir.join("worker.stderr");
    let err_file = std::fs::File::create(&stderr).map_err(BenchError::io("cannot make the worker's log"))?;
    let mut cmd = Command::new(&target.exe);
    cmd.args(["--mode", "fastcgi", "--bind"])
        .arg(format!("unix:{}", sock.display()))
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--log-file")
        .arg(&log)
        .args(target.python.to_flags())
        .arg(&target.app);
    // Not CGI variables: the worker must not think a web server started it per request.
    cmd.env_remove("GATEWAY_INTERFACE").env_remove(crate::timings::VAR);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(err_file);
    let child = cmd.spawn().map_err(BenchError::io("cannot start the FastCGI worker"))?;
    Ok((Worker { child, log, stderr }, sock))
}

/// The request every client thread sends, over and over: one kept-alive GET.
#[allow(clippy::expect_used, reason = "the 12 names and values are short constants: they always encode")]
fn request_bytes(target: &Target) -> Vec<u8> {
    let params = target.request_vars();
    let mut out = Vec::new();
    client::begin_request(&mut out, 1, Role::Responder, true);
    client::params(&mut out, 1, &params).expect("short names and values encode");
    client::end_stdin(&mut out, 1);
    out
}

/// A kept-alive FastCGI connection that sends `request` and reads the answer to its end.
struct Conn {
    stream: UnixStream,
    decoder: ClientDecoder,
    buf: Vec<u8>,
}

impl Conn {
    fn open(sock: &Path, timeout: Duration) -> std::io::Result<Conn> {
        let stream = UnixStream::connect(sock)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Conn { stream, decoder: ClientDecoder::new(), buf: vec![0; 64 * 1024] })
    }

    /// One request; returns the status line when it is not 2xx.
    fn exchange(&mut self, request: &[u8]) -> Result<Result<(), String>, String> {
        self.stream.write_all(request).map_err(|e| format!("sending a request: {e}"))?;
        let mut head: Vec<u8> = Vec::new();
        loop {
            loop {
                match self.decoder.poll_event() {
                    Ok(Some(ClientEvent::Stdout { data, .. })) => {
                        if head.len() < 8192 {
                            head.extend_from_slice(&data);
                        }
                    }
                    Ok(Some(ClientEvent::EndRequest { .. })) => {
                        return Ok(match super::cgi_runs::cgi_status(&head) {
                            Some((s, _)) if (200..300).contains(&s) => Ok(()),
                            Some((_, line)) => Err(line),
                            None => Err("no response headers".into()),
                        });
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => return Err(format!("protocol error from the worker: {e}")),
                }
            }
            let n = self.stream.read(&mut self.buf).map_err(|e| format!("reading a response: {e}"))?;
            if n == 0 {
                return Err("the worker closed the connection".into());
            }
            self.decoder.feed(&self.buf[..n]);
        }
    }
}

/// Wait until the worker accepts and answers a first request 2xx (it imports the app first).
fn ready(worker: &mut Worker, sock: &Path, request: &[u8], target: &Target) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = worker.child.try_wait() {
            return Err(BenchError::Worker(format!("exited ({status}) before serving: {}", worker.log_tail())));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Worker(format!("no answer within 60 s: {}", worker.log_tail())));
        }
        match Conn::open(sock, Duration::from_secs(60)) {
            Ok(mut conn) => {
                return match conn.exchange(request) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(status)) => Err(BenchError::AppFailed(format!(
                        "FastCGI: the app answered {status} to GET {}; a benchmark needs a 2xx answer ({})",
                        target.path_info,
                        worker.log_tail()
                    ))),
                    Err(e) => Err(BenchError::Worker(format!("{e} ({})", worker.log_tail()))),
                };
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Drive one level: `c` threads, each a connection, warm up, then record until the end.
fn level(sock: &Path, request: &[u8], c: usize, length: Duration, label: &str, bar: &mut Progress) -> Result<Level, String> {
    let warm = (length / 5).min(Duration::from_secs(2));
    let start = Instant::now();
    let (measure_from, end) = (start + warm, start + length);
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..c)
        .map(|_| {
            let (sock, request, stop) = (sock.to_owned(), request.to_vec(), stop.clone());
            std::thread::spawn(move || -> Result<Vec<u64>, String> {
                let run = || {
                    let mut conn = Conn::open(&sock, Duration::from_secs(30)).map_err(|e| format!("connecting: {e}"))?;
                    let mut lat = Vec::new();
                    loop {
                        let now = Instant::now();
                        if now >= end || stop.load(Ordering::Relaxed) {
                            return Ok(lat);
                        }
                        let t0 = Instant::now();
                        if let Err(status) = conn.exchange(&request)? {
                            return Err(format!("the app answered {status} under load"));
                        }
                        if t0 >= measure_from {
                            lat.push(t0.elapsed().as_nanos() as u64);
                        }
                    }
                };
                let result = run();
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })
        })
        .collect();
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        bar.update(label, start.elapsed().as_secs_f64() / length.as_secs_f64());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut latencies = Vec::new();
    let mut error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(e)) => error = error.or(Some(e)),
            Err(_) => error = error.or(Some("a client thread panicked".into())),
        }
    }
    // Requests in flight at `end` finish after it: count the window they started in.
    let seconds = (end - measure_from).as_secs_f64();
    match error {
        Some(e) => Err(e),
        None => Ok(Level { concurrency: c, latencies, seconds }),
    }
}

pub fn measure(
    target: &Target,
    dir: &Path,
    workers: usize,
    threads: usize,
    levels: &[usize],
    per_level: Duration,
    bar: &mut Progress,
) -> Result<PersistentResult, BenchError> {
    bar.update("FastCGI worker: starting", 0.0);
    let (mut worker, sock) = start(target, dir, workers, threads)?;
    let request = request_bytes(target);
    ready(&mut worker, &sock, &request, target)?;
    let mut out = Vec::new();
    for &c in levels {
        let label = format!("FastCGI {workers}w×{threads}t: concurrency {c}");
        let result = level(&sock, &request, c, per_level, &label, bar).map_err(|e| BenchError::Worker(format!("{e} ({})", worker.log_tail())))?;
        if result.latencies.is_empty() {
            return Err(BenchError::Worker(format!("no request completed at concurrency {c} ({})", worker.log_tail())));
        }
        out.push(result);
    }
    drop(worker);
    Ok(PersistentResult { workers, threads, levels: out })
}
