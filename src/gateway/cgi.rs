//! CGI gateway (RFC 3875): the process environment and stdin become a `Request`; the
//! response goes to stdout. fd 1 is moved aside first so nothing the app prints (Python's
//! `print`, a C extension, a subprocess) can corrupt the response.

use crate::config::Config;
use crate::http::request::{BodyLength, Request};
use crate::http::response::{send_error, ResponseHead, ResponseSink};
use crate::wsgi;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;

/// The response channel: the original stdout, written without buffering so every chunk
/// reaches the server as soon as the app produces it. The head waits for the first chunk
/// so the two leave in one write.
///
/// The fd is never closed before the process exits: some servers (lighttpd) kill the CGI
/// program once its stdout reaches EOF, which would skip the app's atexit handlers.
pub struct CgiSink {
    out: std::mem::ManuallyDrop<File>,
    pending: Vec<u8>,
}

impl CgiSink {
    pub fn new(out: File) -> CgiSink {
        CgiSink { out: std::mem::ManuallyDrop::new(out), pending: Vec::new() }
    }
}

impl ResponseSink for CgiSink {
    fn send_head(&mut self, head: &ResponseHead) -> io::Result<()> {
        self.pending = head.to_cgi_bytes();
        Ok(())
    }

    fn send_body(&mut self, chunk: &[u8], _last: bool) -> io::Result<()> {
        if self.pending.is_empty() {
            return self.out.write_all(chunk);
        }
        let mut head = std::mem::take(&mut self.pending);
        if chunk.len() <= 64 * 1024 {
            head.extend_from_slice(chunk);
            self.out.write_all(&head)
        } else {
            self.out.write_all(&head)?;
            self.out.write_all(chunk)
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        let head = std::mem::take(&mut self.pending);
        if !head.is_empty() {
            self.out.write_all(&head)?;
        }
        self.out.flush()
    }
}

fn respond_error(sink: &mut dyn ResponseSink, status: &str, detail: &str) -> i32 {
    if let Err(e) = send_error(sink, status, detail) {
        log::warn!("could not send the error response: {e}");
    }
    0
}

/// The request body as the app may read it: bounded by CONTENT_LENGTH, or to EOF for a
/// chunked body, or nothing at all (stdin is then never touched).
fn body_reader(body: BodyLength, max_body: Option<u64>) -> wsgi::Body {
    const BUF: usize = 64 * 1024;
    match (body, max_body) {
        (BodyLength::None, _) => Box::new(io::empty()),
        (BodyLength::Exact(n), _) => Box::new(BufReader::with_capacity(BUF, Exact { inner: io::stdin(), declared: n, left: n })),
        (BodyLength::UntilEof, None) => Box::new(BufReader::with_capacity(BUF, io::stdin())),
        (BodyLength::UntilEof, Some(limit)) => Box::new(BufReader::with_capacity(BUF, Capped { inner: io::stdin(), left: limit })),
    }
}

/// Exactly CONTENT_LENGTH bytes of stdin. Stdin ending sooner means the client hung up
/// mid-body: an error the app sees (wsgiref would hand it a silently short body).
struct Exact<R> {
    inner: R,
    declared: u64,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            let got = self.declared - self.left;
            log::warn!("the request body ended after {got} of {} bytes (CONTENT_LENGTH): the client hung up mid-body", self.declared);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the request body ended after {got} of {} bytes (CONTENT_LENGTH)", self.declared),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A chunked body has no length to check up front: reading past `--max-body` is an error
/// the app sees (and usually answers with a 500), instead of an unbounded read.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            log::warn!("the chunked request body is over --max-body");
            return Err(io::Error::other("the request body is over --max-body"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn stderr_sink() -> wsgi::ErrorSink {
    Arc::new(|text: &str| {
        let _ = io::stderr().write_all(text.as_bytes());
    })
}

/// Serve one CGI request. Returns the process exit status.
pub fn run(config: &Config) -> i32 {
    let params = crate::sys::process_params();
    let mut sink = match crate::sys::claim_stdout() {
        Ok(out) => CgiSink::new(out),
        Err(e) => {
            log::error!("cannot set up stdout: {e}");
            return 1;
        }
    };
    if let Some(path) = &config.access_log {
        // The response goes out either way: a log that cannot be opened is only a warning.
        if let Err(e) = crate::sys::open_access_log(path) {
            log::warn!("--access-log {}: {e}", path.display());
        }
    }
    // Captured above: HTTP_PROXY stays in the environ as the header it is.
    wsgi::boot::prepare_environment(config);
    let request = match Request::from_cgi_vars(params, config.max_body, config.script_name.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            log::warn!("refused: {e}");
            return respond_error(&mut sink, e.status(), &e.to_string());
        }
    };
    let Some(spec) = &config.app else {
        let e = crate::error::ConfigError::NoApp;
        log::error!("{e}");
        return respond_error(&mut sink, "500 Internal Server Error", &e.to_string());
    };
    let app = match wsgi::boot::boot(config, spec) {
        Ok(app) => app,
        Err(e) => {
            log::error!("{e}");
            return respond_error(&mut sink, "500 Internal Server Error", &e.public_detail(config.debug));
        }
    };
    let policy = wsgi::Policy::one_shot(wsgi::ProcessModel { multithread: false, multiprocess: true, run_once: true }, config.debug);
    let started = std::time::Instant::now();
    let outcome = wsgi::serve(&app, &request, body_reader(request.body, config.max_body), stderr_sink(), Box::new(sink), &policy);
    crate::timings::stamp(crate::timings::Stamp::Response);
    outcome.log(&request, started);
    // Unread body bytes are left to the server, which discards them.
    0
}
