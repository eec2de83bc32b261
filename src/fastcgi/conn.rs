//! The only FastCGI I/O: one connection's socket ↔ the sans-IO codec ↔ the WSGI call.
//! A request's STDIN is spooled before the app runs (memory, then a temp file), so a web
//! server that sends the whole body before reading the response (mod_proxy_fcgi) can never
//! deadlock against an app that answers without reading it.

use super::codec::{encode, Config as CodecConfig, Connection, Event};
use super::record::ProtocolStatus;
use crate::error::ConnError;
use crate::request::{BodyLength, Request};
use crate::response::{ResponseHead, ResponseSink};
use crate::server::listen::Stream;
use crate::spool::Spool;
use crate::wsgi::{call, environ, streams};
use pyo3::prelude::*;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// What every connection of this process shares.
pub struct Settings {
    pub codec: CodecConfig,
    pub max_body: Option<u64>,
    pub policy: call::ErrorPolicy,
    pub model: environ::ProcessModel,
}

/// The socket and the codec, shared by the request loop, the response sink and `wsgi.errors`.
struct Shared {
    stream: Stream,
    codec: Connection,
    /// Events read while a response was being written (checked for ABORT), handled next.
    queued: VecDeque<Event>,
    /// The request that the web server aborted while we were answering it.
    aborted: Option<u16>,
    /// The web server shut down its side (it may still read): stop looking for ABORT.
    peer_eof: bool,
    /// FCGI_STDERR was used for the current request, so its stream needs an end record.
    stderr_used: bool,
}

type SharedConn = Arc<Mutex<Shared>>;

fn lock(s: &SharedConn) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

const READ_BUF: usize = 64 * 1024;

impl Shared {
    /// The next event, reading from the socket as needed; `None` at end of stream.
    fn next_event(&mut self) -> Result<Option<Event>, ConnError> {
        let mut buf = [0u8; READ_BUF];
        loop {
            if let Some(e) = self.queued.pop_front() {
                return Ok(Some(e));
            }
            if let Some(e) = self.codec.poll_event()? {
                return Ok(Some(e));
            }
            let n = match self.stream.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Ok(None);
            }
            self.codec.feed(&buf[..n]);
        }
    }

    /// Take in whatever the web server sent while we were writing, without blocking;
    /// notice an ABORT_REQUEST for `id`.
    fn poll_for_abort(&mut self, id: u16) -> io::Result<()> {
        let mut buf = [0u8; 4096];
        while !self.peer_eof {
            match self.stream.read_ready(&mut buf)? {
                // A half-close is not an abort: the web server may still be reading.
                Some(0) => self.peer_eof = true,
                Some(n) => self.codec.feed(&buf[..n]),
                None => break,
            }
        }
        while let Some(e) = self.codec.poll_event().map_err(io::Error::other)? {
            match e {
                Event::Abort { id: a } if a == id => self.aborted = Some(id),
                other => self.queued.push_back(other),
            }
        }
        if self.aborted == Some(id) {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "the web server aborted the request"));
        }
        Ok(())
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Answer a management record or a rejected BEGIN_REQUEST; false if the event is not one.
    fn answer_management(&mut self, event: &Event) -> Result<bool, ConnError> {
        let mut out = Vec::new();
        match event {
            Event::GetValues { names } => {
                let answer = self.codec.config().get_values_answer(names);
                encode::get_values_result(&mut out, &answer).map_err(|e| ConnError::Io(io::Error::other(e)))?;
            }
            Event::UnknownManagementType { record_type } => encode::unknown_type(&mut out, *record_type),
            Event::Reject { id, status, .. } => encode::end_request(&mut out, *id, 0, *status),
            _ => return Ok(false),
        }
        self.send(&out)?;
        Ok(true)
    }
}

/// The response of one request as STDOUT records; the head waits for the first chunk.
struct FastCgiSink {
    conn: SharedConn,
    id: u16,
    pending_head: Vec<u8>,
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl ResponseSink for FastCgiSink {
    fn send_head(&mut self, head: &ResponseHead) -> io::Result<()> {
        self.pending_head = head.to_cgi_bytes();
        Ok(())
    }

    fn send_body(&mut self, chunk: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(self.pending_head.len() + chunk.len() + 64);
        if !self.pending_head.is_empty() {
            let head = std::mem::take(&mut self.pending_head);
            encode::stdout(&mut out, self.id, &head);
        }
        encode::stdout(&mut out, self.id, chunk);
        let mut conn = lock(&self.conn);
        conn.send(&out)?;
        conn.poll_for_abort(self.id)
    }

    fn finish(&mut self) -> io::Result<()> {
        let mut out = Vec::new();
        let head = std::mem::take(&mut self.pending_head);
        encode::stdout(&mut out, self.id, &head);
        let mut conn = lock(&self.conn);
        end_records(&mut out, &mut conn, self.id);
        self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
        conn.send(&out)
    }
}

/// The end records of a request: STDOUT (and STDERR, if used) streams, then END_REQUEST.
fn end_records(out: &mut Vec<u8>, conn: &mut Shared, id: u16) {
    encode::end_stdout(out, id);
    if std::mem::take(&mut conn.stderr_used) {
        encode::end_stderr(out, id);
    }
    encode::end_request(out, id, 0, ProtocolStatus::RequestComplete);
}

fn end_request(conn: &mut Shared, id: u16) -> io::Result<()> {
    let mut out = Vec::new();
    end_records(&mut out, conn, id);
    conn.send(&out)
}


/// Answer a request the app never sees (400/413) with a short page.
fn refuse(conn: &mut Shared, id: u16, status: &str, detail: &str) -> io::Result<()> {
    let body = format!("{status}\n\n{detail}\n");
    let head = ResponseHead::error(status, body.len());
    let mut out = Vec::new();
    let mut bytes = head.to_cgi_bytes();
    bytes.extend_from_slice(body.as_bytes());
    encode::stdout(&mut out, id, &bytes);
    conn.send(&out)?;
    end_request(conn, id)
}

/// Refuse a request the app never sees. Its STDIN is read and dropped first: closing on a
/// web server still sending the body would turn our 413 into its 502, and a kept-alive
/// connection stays usable (FastCGI §5.1).
fn refuse_after_draining(conn: &mut Shared, id: u16, keep_conn: bool, status: &str, detail: &str) -> Result<bool, ConnError> {
    if let Body::Aborted = spool_stdin(conn, id, BodyLength::None, None)? {
        end_request(conn, id)?;
    } else {
        refuse(conn, id, status, detail)?;
    }
    conn.codec.finish(id);
    Ok(keep_conn)
}

/// How reading a request's STDIN ended.
enum Body {
    Complete(Spool),
    Aborted,
    /// STDIN ended before CONTENT_LENGTH bytes: the client hung up mid-body.
    Short { got: u64, want: u64 },
    TooLarge { limit: u64 },
}

fn spool_stdin(conn: &mut Shared, id: u16, body: BodyLength, max_body: Option<u64>) -> Result<Body, ConnError> {
    let mut spool = Spool::default();
    // Bytes past CONTENT_LENGTH are dropped (FastCGI §6.2: read at most CONTENT_LENGTH).
    let want = match body {
        BodyLength::None => 0,
        BodyLength::Exact(n) => n,
        BodyLength::UntilEof => u64::MAX,
    };
    loop {
        let Some(event) = conn.next_event()? else { return Err(ConnError::Closed) };
        match event {
            Event::Stdin { id: i, data } if i == id => {
                let room = want.saturating_sub(spool.len());
                let take = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
                if let (BodyLength::UntilEof, Some(limit)) = (body, max_body) {
                    if spool.len() + take as u64 > limit {
                        return Ok(Body::TooLarge { limit });
                    }
                }
                spool.write(&data[..take])?;
            }
            Event::StdinEnd { id: i } if i == id => break,
            Event::Abort { id: i } if i == id => return Ok(Body::Aborted),
            other => {
                if !conn.answer_management(&other)? {
                    log::debug!("ignoring {other:?} while reading request {id}'s body");
                }
            }
        }
    }
    if let BodyLength::Exact(n) = body {
        if spool.len() < n {
            return Ok(Body::Short { got: spool.len(), want: n });
        }
    }
    Ok(Body::Complete(spool))
}

fn errors_sink(conn: SharedConn, id: u16) -> streams::ErrorSink {
    Arc::new(move |text: &str| {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            log::warn!("wsgi.errors: {line}");
        }
        let mut out = Vec::new();
        encode::stderr(&mut out, id, text.as_bytes());
        if out.is_empty() {
            return;
        }
        // The web server may be gone; the text is in our own log anyway.
        let mut c = lock(&conn);
        c.stderr_used = true;
        let _ = c.send(&out);
    })
}

/// Requests being answered right now in this process (a graceful stop waits for them).
pub static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts a request in flight for as long as it lives.
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serve one request; returns whether the connection stays open.
fn handle_request(conn: &SharedConn, app: &Py<PyAny>, settings: &Settings, id: u16, keep_conn: bool, params: Vec<(Vec<u8>, Vec<u8>)>) -> Result<bool, ConnError> {
    let parsed = Request::from_params(params, settings.max_body);
    let request = match parsed {
        Ok(r) => r,
        Err(e) => {
            log::warn!("request {id} refused: {e}");
            let mut c = lock(conn);
            return refuse_after_draining(&mut c, id, keep_conn, e.status(), &e.to_string());
        }
    };
    let body = {
        let mut c = lock(conn);
        match spool_stdin(&mut c, id, request.body, settings.max_body)? {
            Body::Complete(spool) => spool,
            Body::Aborted => {
                end_request(&mut c, id)?;
                c.codec.finish(id);
                return Ok(keep_conn);
            }
            Body::Short { got, want } => {
                log::warn!("request {id}: STDIN ended after {got} of {want} bytes (CONTENT_LENGTH); the client hung up mid-body");
                refuse(&mut c, id, "400 Bad Request", "The request body is shorter than its Content-Length.")?;
                c.codec.finish(id);
                return Ok(keep_conn);
            }
            Body::TooLarge { limit } => {
                log::warn!("request {id}: chunked body over --max-body ({limit} bytes)");
                return refuse_after_draining(&mut c, id, keep_conn, "413 Content Too Large", "The request body is too large.");
            }
        }
    };
    let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink = FastCgiSink { conn: conn.clone(), id, pending_head: Vec::new(), ended: ended.clone() };
    let outcome = Python::attach(|py| -> PyResult<call::Outcome> {
        let input = Bound::new(py, streams::Input::new(body.into_reader()?))?;
        let errors = Bound::new(py, streams::Errors::new(errors_sink(conn.clone(), id)))?;
        let env = environ::build(py, &request, input, errors, settings.model)?;
        Ok(call::serve(py, app.bind(py), env, Box::new(sink), settings.policy))
    });
    let mut c = lock(conn);
    match outcome {
        Ok(o) => log::info!("{} {} -> {} ({} bytes){}", request.get("REQUEST_METHOD").unwrap_or("?"), request.get("REQUEST_URI").unwrap_or(""), o.status, o.body_bytes, if o.disconnected { ", client gone" } else { "" }),
        Err(e) => log::error!("request {id}: {e}"),
    }
    c.aborted = None;
    if !ended.load(std::sync::atomic::Ordering::SeqCst) {
        // Cut short (abort, app error after the head, client gone): still end the request
        // so the web server is not left waiting; it may already be gone.
        if let Err(e) = end_request(&mut c, id) {
            log::debug!("request {id}: could not send END_REQUEST: {e}");
            c.codec.finish(id);
            return Ok(false);
        }
    }
    c.codec.finish(id);
    Ok(keep_conn)
}

/// Serve one connection until the web server closes it, or a request without
/// FCGI_KEEP_CONN is answered. Protocol errors close this connection only.
pub fn serve(stream: Stream, app: &Py<PyAny>, settings: &Settings) -> Result<(), ConnError> {
    let conn: SharedConn = Arc::new(Mutex::new(Shared { stream, codec: Connection::new(settings.codec.clone()), queued: VecDeque::new(), aborted: None, peer_eof: false, stderr_used: false }));
    loop {
        let event = lock(&conn).next_event()?;
        let Some(event) = event else { return Ok(()) };
        match event {
            Event::Request { id, keep_conn, params } => {
                let _in_flight = InFlight::enter();
                if !handle_request(&conn, app, settings, id, keep_conn, params)? {
                    return Ok(());
                }
            }
            Event::Stdin { .. } | Event::StdinEnd { .. } => {}
            Event::Abort { id } => {
                // Aborted before its params were complete: end it.
                let mut c = lock(&conn);
                end_request(&mut c, id)?;
                c.codec.finish(id);
            }
            other => {
                let reject_close = matches!(other, Event::Reject { keep_conn: false, .. }) && lock(&conn).codec.active_count() == 0;
                lock(&conn).answer_management(&other)?;
                if reject_close {
                    return Ok(());
                }
            }
        }
    }
}
