//! The CGI side of the accelerator, pure Rust (Python is never initialized here): find a
//! current worker for this app (private directory checked, socket owned by us, peer uid
//! and pid checked with SO_PEERCRED, the app's files unchanged since the worker loaded
//! them), start one if there is none, then relay: the CGI environment and stdin go out as
//! one FastCGI request, the worker's STDOUT (already a CGI response, `Status:` first) goes
//! to our stdout as it arrives, its STDERR to our stderr (the server's error log).

use super::spawn::{self, recent_failure};
use super::{check_dir, socket_state, AccelError, Paths, SocketState, Stamp};
use crate::config::Config;
use crate::fastcgi::client as fcgi;
use crate::fastcgi::{ClientDecoder, ClientEvent, Role};
use crate::http::request::{BodyLength, Request};
use crate::sys::{euid, inherited_stdout as stdout, peer_cred};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

/// Serve this CGI request through the worker. `None`: the accelerator cannot be used for
/// it (nothing was read from stdin or written to stdout), so the caller serves in-process.
pub fn run(config: &Config, args: &[OsString]) -> Option<i32> {
    let paths = match Paths::for_config(config) {
        Ok(p) => p,
        Err(e) => {
            log::warn!("--persist: {e}; serving in-process");
            return None;
        }
    };
    let stream = match connect_current(&paths) {
        Some(s) => s,
        None => match spawn::ensure_worker(args, &paths, config.persist.start_timeout) {
            Ok(s) => s,
            Err(e) => {
                note_fallback(&e);
                return None;
            }
        },
    };
    Some(relay(stream, config.max_body, config.persist.timeout))
}

/// Log why the accelerator was not used (a failed start was logged by its starter, once).
fn note_fallback(e: &AccelError) {
    match e {
        AccelError::StartFailed => {}
        AccelError::Backoff => log::debug!("--persist: {e}"),
        _ => log::warn!("--persist: {e}; serving in-process"),
    }
}

/// A connection to the current worker, or `None` (no worker, a stale one, or anything
/// that does not check out: the slow path then sorts it out under the lock).
pub fn connect_current(paths: &Paths) -> Option<UnixStream> {
    connect_checked(paths, true)
}

/// A connection to the worker at the socket, checked as `connect_current` does; `current`:
/// also that its files are unchanged (the worker this invocation has just started is
/// used even if a file changed while it loaded: the next invocation replaces it).
pub fn connect_checked(paths: &Paths, current: bool) -> Option<UnixStream> {
    if check_dir(&paths.dir, false).is_err() {
        return None;
    }
    match socket_state(&paths.sock) {
        SocketState::Ours => {}
        SocketState::Missing => return None,
        SocketState::Foreign(why) => {
            log::warn!("not connecting to {}: it {why}", paths.sock.display());
            return None;
        }
    }
    let stamp = Stamp::read(&paths.stamp)?;
    if current && !stamp.is_current() {
        log::info!("{} changed: the worker will be replaced", stamp.changed_file().map(|p| p.display().to_string()).unwrap_or_default());
        return None;
    }
    let stream = UnixStream::connect(&paths.sock).ok()?;
    let (pid, uid) = peer_cred(stream.as_raw_fd()).ok()?;
    if uid != euid() || pid != stamp.pid {
        log::warn!("{}: the peer is pid {pid} uid {uid}, expected pid {} uid {}; not using it", paths.sock.display(), stamp.pid, euid());
        return None;
    }
    if recent_failure(paths) {
        let _ = std::fs::remove_file(&paths.fallback);
    }
    Some(stream)
}

const CHUNK: usize = 64 * 1024;
const ID: u16 = 1;

/// Send the request and stream back the response. The worker spools the whole body
/// before running the app (see `fastcgi::conn`), so writing it all first cannot deadlock.
/// `timeout` (`--persist-timeout`) bounds every wait on the worker: no byte for that long
/// and the request is answered 504 (or cut short, once the response has begun).
fn relay(mut sock: UnixStream, max_body: Option<u64>, timeout: std::time::Duration) -> i32 {
    let worker = peer_cred(sock.as_raw_fd()).map_or(0, |(pid, _)| pid);
    if let Err(e) = sock.set_read_timeout(Some(timeout)).and_then(|()| sock.set_write_timeout(Some(timeout))) {
        log::warn!("--persist: cannot bound the wait for the worker: {e}");
    }
    let params = crate::sys::process_params();
    // The body's length, as the in-process gateway would read it; a bad CONTENT_LENGTH, or
    // one over --max-body, is forwarded without its body (never read from stdin) and the
    // worker answers 400 or 413.
    let body = Request::from_params(params.iter().cloned(), max_body).map_or(BodyLength::None, |r| r.body);
    let mut out = Vec::with_capacity(4096);
    fcgi::begin_request(&mut out, ID, Role::Responder, false);
    if let Err(e) = fcgi::params(&mut out, ID, &params) {
        log::error!("--persist: the request's environment cannot be encoded: {e}");
        return answer_502(&mut stdout(), "the request could not be relayed");
    }
    let sent = send_request(&mut sock, out, body);
    if let Err(e) = &sent {
        // The worker may have answered early (413) and closed: its answer is still there.
        log::debug!("--persist: sending the request stopped: {e}");
    }
    let _ = sock.shutdown(std::net::Shutdown::Write);
    receive(&mut sock, worker, timeout)
}

fn send_request(sock: &mut UnixStream, mut out: Vec<u8>, body: BodyLength) -> io::Result<()> {
    let mut left = match body {
        BodyLength::None => 0,
        BodyLength::Exact(n) => n,
        BodyLength::UntilEof => u64::MAX,
    };
    let mut stdin = io::stdin().lock();
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        let n = match stdin.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::warn!("--persist: reading the request body: {e}");
                break;
            }
        };
        left -= n as u64;
        fcgi::stdin(&mut out, ID, &buf[..n]);
        if out.len() >= CHUNK {
            sock.write_all(&out)?;
            out.clear();
        }
    }
    fcgi::end_stdin(&mut out, ID);
    sock.write_all(&out)
}

fn answer_502(out: &mut File, why: &str) -> i32 {
    // The web server is waiting: if even this cannot be written, nothing more can be said.
    let _ = out.write_all(&crate::http::response::error_response_bytes("502 Bad Gateway", &format!("{why}; the reason is in the server's error log.")));
    0
}

/// Relay the worker's records until END_REQUEST. A worker that dies or sends garbage fails
/// this request only: 502 if nothing was sent yet, else the response is cut short.
fn receive(sock: &mut UnixStream, worker: i32, timeout: std::time::Duration) -> i32 {
    let mut out = stdout();
    let mut err = io::stderr();
    let mut decoder = ClientDecoder::new();
    let mut buf = vec![0u8; CHUNK];
    let mut sent_any = false;
    let fail = |out: &mut File, sent_any: bool, why: String| {
        log::error!("--persist: {why}");
        if sent_any {
            1
        } else {
            answer_502(out, "the application's worker failed")
        }
    };
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => return fail(&mut out, sent_any, "the worker closed the connection before the response ended".into()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                log::error!(
                    "--persist: the worker (pid {worker}) sent nothing for {} s (--persist-timeout): {}",
                    timeout.as_secs(),
                    if sent_any { "the response is cut short" } else { "answering 504" }
                );
                if sent_any {
                    return 1;
                }
                let _ = out.write_all(&crate::http::response::error_response_bytes(
                    "504 Gateway Timeout",
                    "the application did not answer in time; the reason is in the server's error log.",
                ));
                return 0;
            }
            Err(e) => return fail(&mut out, sent_any, format!("reading from the worker: {e}")),
        };
        decoder.feed(&buf[..n]);
        loop {
            match decoder.poll_event() {
                Ok(None) => break,
                Ok(Some(ClientEvent::Stdout { id: ID, data })) => {
                    if let Err(e) = out.write_all(&data) {
                        // The web server hung up; the worker notices when we close.
                        log::info!("--persist: the client went away: {e}");
                        return 0;
                    }
                    sent_any = true;
                }
                Ok(Some(ClientEvent::Stderr { id: ID, data })) => {
                    let _ = err.write_all(&data);
                }
                Ok(Some(ClientEvent::StdoutEnd { id: ID } | ClientEvent::StderrEnd { id: ID })) => {}
                Ok(Some(ClientEvent::EndRequest { id: ID, .. })) => {
                    if !sent_any {
                        return fail(&mut out, false, "the worker ended the request without a response".into());
                    }
                    return 0;
                }
                Ok(Some(other)) => return fail(&mut out, sent_any, format!("unexpected record from the worker: {other:?}")),
                Err(e) => return fail(&mut out, sent_any, format!("malformed record from the worker: {e}")),
            }
        }
    }
}
