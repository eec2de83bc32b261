//! The only FastCGI I/O: one connection's non-blocking socket ↔ the sans-IO codec ↔ the
//! WSGI door. The event loop (`server::worker`) feeds a connection whatever is readable;
//! once a request's STDIN is complete the app runs on the loop's thread.
//!
//! What the loop writes on its own behalf (management answers, refusals, END_REQUEST of a
//! request cut short) never blocks: it goes to a bounded per-connection queue, drained when
//! the socket is writable; a peer whose queue passes the bound is closed. Only a request's
//! own response waits on a slow peer (GIL released), after flushing that queue first so
//! records stay in order.
//!
//! A request's STDIN is spooled before the app runs (memory, then a temp file), so a web
//! server that sends the whole body before reading the response (mod_proxy_fcgi) can never
//! deadlock against an app that answers without reading it.

use crate::fastcgi::codec::{Config as CodecConfig, Connection, Event};
use crate::fastcgi::encode;
use crate::fastcgi::record::ProtocolStatus;
use crate::http::request::{BodyLength, Request};
use crate::http::response::error_response_bytes;
use crate::http::role::Role;
use crate::http::spool::Spool;
use crate::sys::Stream;
use crate::wsgi;
use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Why a FastCGI connection ended early (logged; the connection is closed).
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    Protocol(#[from] crate::fastcgi::ProtocolError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the web server does not read its answers ({0} bytes queued for it)")]
    NotReading(usize),
}

/// What every connection of this process shares.
pub struct Settings {
    pub codec: CodecConfig,
    pub max_body: Option<u64>,
    /// `--script-name`: see `Request::mount_at`.
    pub script_name: Option<String>,
    /// How the app is called (the environ's process model, tracebacks in 500 pages).
    pub policy: wsgi::Policy,
    /// `--timeout`: requests are tracked for the watchdog.
    pub timeout: Option<Duration>,
    /// Give the app `FCGI_ROLE` (not in the CGI accelerator's worker, which serves CGI).
    pub fcgi_role: bool,
}

/// How long a response write may wait for the web server to read (and how long queued
/// answers may wait before the connection is closed).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most the loop queues for a peer that does not read: a web server reads its answers,
/// so a few records at most wait here; past this the peer is closed.
const QUEUE_BOUND: usize = 256 * 1024;
/// How much one read takes in; the event loop owns the buffer.
pub const READ_BUF: usize = 64 * 1024;

/// A request whose params are complete and whose STDIN is still arriving.
struct Pending {
    keep_conn: bool,
    /// `Err((status, detail))`: refused; its STDIN is read and dropped, then the refusal sent.
    request: Result<Request, (&'static str, String)>,
    spool: Spool,
}

/// A request ready for the app.
pub struct Ready {
    id: u16,
    keep_conn: bool,
    request: Request,
    spool: Spool,
}

/// What the event loop must do next with a connection.
pub enum Step {
    /// Wait until it is readable again.
    Wait,
    /// Run the app for this request, then call `Conn::after_request`.
    Run(Ready),
    /// Close it (end of stream, no FCGI_KEEP_CONN, or a protocol error already logged).
    Close,
}

/// The socket and the codec, shared by the loop, the response sink and `wsgi.errors`.
struct Shared {
    stream: Stream,
    codec: Connection,
    /// Requests reading their STDIN, by id: one at a time, or several when multiplexing
    /// (`--threads` > 1 advertises FCGI_MPXS_CONNS; they then run one after another here).
    pending: HashMap<u16, Pending>,
    /// Events read while a response was being written (checked for ABORT), handled next.
    queued: VecDeque<Event>,
    /// The request that the web server aborted while we were answering it.
    aborted: Option<u16>,
    /// The web server shut down its side (it may still read): stop looking for ABORT.
    peer_eof: bool,
    /// FCGI_STDERR was used for the current request, so its stream needs an end record.
    stderr_used: bool,
    /// Some STDOUT of the current request has been written (a 504 can no longer be sent).
    stdout_written: bool,
    /// What the loop wrote on its own behalf that the socket has not taken yet.
    out: Vec<u8>,
    /// Since when `out` has waited without the socket taking any of it.
    out_since: Option<Instant>,
    /// Close once `out` is written (the request that ended it had no FCGI_KEEP_CONN).
    closing: bool,
}

/// One FastCGI connection.
#[derive(Clone)]
pub struct Conn(Arc<Mutex<Shared>>);

impl Conn {
    pub fn new(stream: Stream, codec: &CodecConfig) -> Conn {
        Conn(Arc::new(Mutex::new(Shared {
            stream,
            codec: Connection::new(codec.clone()),
            pending: HashMap::new(),
            queued: VecDeque::new(),
            aborted: None,
            peer_eof: false,
            stderr_used: false,
            stdout_written: false,
            out: Vec::new(),
            out_since: None,
            closing: false,
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn fd(&self) -> std::os::fd::RawFd {
        self.lock().stream.fd()
    }

    /// Close the connection now, even if the app still holds a reference to it (through
    /// `wsgi.errors`): then the socket is shut down explicitly; otherwise dropping it is enough.
    pub fn close(self) {
        if Arc::strong_count(&self.0) > 1 {
            self.lock().stream.shutdown(Shutdown::Both);
        }
    }

    /// `--timeout` hit: answer 504 if nothing was sent yet, end the request either way. Only
    /// tries the lock: a thread stuck writing holds it, and then the socket simply closes.
    pub fn answer_timeout(&self, id: u16) {
        let Ok(mut s) = self.0.try_lock() else { return };
        let mut out = Vec::new();
        if s.stdout_written {
            s.end_records(&mut out, id);
        } else {
            s.refusal(&mut out, id, "504 Gateway Timeout", "The application took too long to answer.");
        }
        if let Err(e) = s.send(&out) {
            log::debug!("request {id}: could not answer the timeout: {e}");
        }
    }

    /// True between requests with nothing unread on the socket: nothing is lost if it is
    /// closed now (a request the web server already sent is not idle).
    pub fn is_idle(&self) -> bool {
        let s = self.lock();
        s.pending.is_empty() && s.out.is_empty() && !s.closing && s.codec.active_count() == 0 && !s.codec.has_buffered() && !s.stream.has_unread()
    }

    /// The epoll events this connection waits for: input (unless it is only finishing its
    /// output before closing), and writability while the loop has output queued.
    pub fn interest(&self) -> u32 {
        let s = self.lock();
        let read = if s.closing { 0 } else { libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32 };
        read | if s.out.is_empty() { 0 } else { libc::EPOLLOUT as u32 }
    }

    /// Queued output has waited longer than `limit` with the peer taking none of it.
    pub fn output_stalled(&self, limit: Duration) -> bool {
        self.lock().out_since.is_some_and(|t| t.elapsed() >= limit)
    }

    /// The socket can take more: write what is queued, without blocking.
    pub fn on_writable(&self) -> Step {
        let mut s = self.lock();
        match s.flush_queued() {
            Ok(()) if s.closing && s.out.is_empty() => Step::Close,
            Ok(()) => Step::Wait,
            Err(e) => {
                log::info!("connection write failed: {e}");
                Step::Close
            }
        }
    }

    /// The socket is readable: take in one buffer (`buf`, the loop's, reused) and act on the
    /// events it completes.
    pub fn on_readable(&self, settings: &Settings, buf: &mut [u8]) -> Step {
        let mut s = self.lock();
        match s.stream.read_ready(buf) {
            Ok(Some(0)) => {
                if s.codec.active_count() > 0 {
                    log::warn!("the web server closed the connection mid-request");
                } else if s.codec.has_buffered() {
                    log::warn!("the web server closed the connection in the middle of a record");
                }
                return Step::Close;
            }
            Ok(Some(n)) => s.codec.feed(&buf[..n]),
            Ok(None) => {}
            Err(e) => {
                log::info!("connection read failed: {e}");
                return Step::Close;
            }
        }
        s.step(settings)
    }

    /// The app has answered `ready`: end the request, then go on with what is buffered.
    pub fn after_request(&self, settings: &Settings, id: u16, keep_conn: bool, ended: bool, role: Role) -> Step {
        let mut s = self.lock();
        s.aborted = None;
        if !ended && role == Role::Authorizer {
            // An authorizer's request that ends with no answer on STDOUT reads as "allow" to
            // lighttpd: whatever cut it short, it is a denial.
            if let Err(e) = s.refuse(id, "500 Internal Server Error", "The authorizer gave no answer.") {
                log::warn!("request {id}: could not deny: {e}");
                return Step::Close;
            }
        } else if !ended {
            // Cut short (abort, app error after the head, client gone): still end the
            // request so the web server is not left waiting; it may already be gone.
            if let Err(e) = s.end_request(id) {
                match e {
                    ConnError::NotReading(_) => log::warn!("closing the connection: {e}"),
                    _ => log::debug!("request {id}: could not send END_REQUEST: {e}"),
                }
                return Step::Close;
            }
        }
        if s.finish(id, keep_conn) {
            return s.close_after_output();
        }
        s.step(settings)
    }
}

impl Shared {
    fn next_event(&mut self) -> Result<Option<Event>, ConnError> {
        if let Some(e) = self.queued.pop_front() {
            return Ok(Some(e));
        }
        Ok(self.codec.poll_event()?)
    }

    /// Act on every complete event; stop at a request ready for the app.
    fn step(&mut self, settings: &Settings) -> Step {
        match self.advance(settings) {
            Ok(Step::Close) => self.close_after_output(),
            Ok(step) => step,
            Err(e) => {
                log::warn!("closing the connection: {e}");
                Step::Close
            }
        }
    }

    fn advance(&mut self, settings: &Settings) -> Result<Step, ConnError> {
        while let Some(event) = self.next_event()? {
            let step = match event {
                Event::Request { id, keep_conn, role, params } => self.on_request(settings, id, keep_conn, role, params)?,
                Event::Stdin { id, data } => {
                    self.on_stdin(settings, id, &data)?;
                    None
                }
                Event::StdinEnd { id } => self.on_stdin_end(id)?,
                Event::Abort { id } => {
                    // Before or during its STDIN (an abort during the app is seen by the sink).
                    let keep_conn = self.pending.remove(&id).is_none_or(|p| p.keep_conn);
                    self.end_request(id)?;
                    self.close_if_done(id, keep_conn)
                }
                event @ (Event::GetValues { .. } | Event::UnknownManagementType { .. } | Event::Reject { .. }) => {
                    let close = matches!(event, Event::Reject { keep_conn: false, .. }) && self.codec.active_count() == 0;
                    self.answer_management(&event)?;
                    close.then_some(Step::Close)
                }
            };
            if let Some(step) = step {
                return Ok(step);
            }
        }
        Ok(Step::Wait)
    }

    /// PARAMS are complete: build the request (or its refusal) and wait for its STDIN, or,
    /// for an authorizer, run it now.
    fn on_request(&mut self, settings: &Settings, id: u16, keep_conn: bool, role: Role, params: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Option<Step>, ConnError> {
        let request = Request::from_cgi_vars(params, settings.max_body, settings.script_name.as_deref()).map(|mut r| {
            if settings.fcgi_role || role != Role::Responder {
                r.serve_as(role);
            }
            r
        });
        let request = request.map_err(|e| {
            log::warn!("request {id} refused: {e}");
            (e.status(), e.to_string())
        });
        // An authorizer has no body (FastCGI 6.3) and mod_authnz_fcgi sends no STDIN
        // at all: it is answered now; STDIN records for it are ignored.
        if role == Role::Authorizer {
            return match request {
                Ok(request) => Ok(Some(Step::Run(Ready { id, keep_conn, request, spool: Spool::with_expected(None) }))),
                Err((status, detail)) => self.refuse_and_finish(id, keep_conn, status, &detail),
            };
        }
        let expected = match &request {
            Ok(Request { body: BodyLength::Exact(n), .. }) => Some(*n),
            _ => None,
        };
        self.pending.insert(id, Pending { keep_conn, request, spool: Spool::with_expected(expected) });
        Ok(None)
    }

    /// A STDIN record: spool what CONTENT_LENGTH allows (bytes past it are dropped,
    /// FastCGI §6.2), refuse a chunked body over `--max-body`.
    fn on_stdin(&mut self, settings: &Settings, id: u16, data: &[u8]) -> Result<(), ConnError> {
        let Some(p) = self.pending.get_mut(&id) else { return Ok(()) };
        let Ok(req) = &p.request else { return Ok(()) };
        let want = match req.body {
            BodyLength::None => 0,
            BodyLength::Exact(n) => n,
            BodyLength::UntilEof => u64::MAX,
        };
        let room = want.saturating_sub(p.spool.len());
        let take = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        match (req.body, settings.max_body) {
            (BodyLength::UntilEof, Some(limit)) if p.spool.len() + take as u64 > limit => {
                log::warn!("request {id}: chunked body over --max-body ({limit} bytes)");
                p.request = Err(("413 Content Too Large", "The request body is too large.".into()));
            }
            _ => p.spool.write(&data[..take])?,
        }
        Ok(())
    }

    /// The end of a request's STDIN: run it, or answer its refusal.
    fn on_stdin_end(&mut self, id: u16) -> Result<Option<Step>, ConnError> {
        let Some(p) = self.pending.remove(&id) else { return Ok(None) };
        match p.request {
            Ok(request) => {
                if let BodyLength::Exact(n) = request.body {
                    if p.spool.len() < n {
                        log::warn!("request {id}: STDIN ended after {} of {n} bytes (CONTENT_LENGTH); the client hung up mid-body", p.spool.len());
                        return self.refuse_and_finish(id, p.keep_conn, "400 Bad Request", "The request body is shorter than its Content-Length.");
                    }
                }
                Ok(Some(Step::Run(Ready { id, keep_conn: p.keep_conn, request, spool: p.spool })))
            }
            // Refused: the body was read and dropped first, so a web server still
            // sending it never sees a reset (its 413 would become a 502), and a
            // kept-alive connection stays usable (FastCGI §5.1).
            Err((status, detail)) => self.refuse_and_finish(id, p.keep_conn, status, &detail),
        }
    }

    fn refuse_and_finish(&mut self, id: u16, keep_conn: bool, status: &str, detail: &str) -> Result<Option<Step>, ConnError> {
        self.refuse(id, status, detail)?;
        Ok(self.close_if_done(id, keep_conn))
    }

    /// After a request's END_REQUEST: `Close` if the connection must now close.
    fn close_if_done(&mut self, id: u16, keep_conn: bool) -> Option<Step> {
        self.finish(id, keep_conn).then_some(Step::Close)
    }

    /// The request is over (END_REQUEST sent): true if the connection must now close (no
    /// FCGI_KEEP_CONN and nothing else in progress on it).
    fn finish(&mut self, id: u16, keep_conn: bool) -> bool {
        self.codec.finish(id);
        !keep_conn && self.codec.active_count() == 0
    }

    /// The request's own records: first what the loop queued (records stay in order), then
    /// `bytes`, waiting (bounded) while the web server's side is full. Called by the request
    /// thread with the GIL released.
    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.out.is_empty() {
            let queued = std::mem::take(&mut self.out);
            self.out_since = None;
            self.write_blocking(&queued)?;
        }
        self.write_blocking(bytes)
    }

    /// Queue records the loop writes on its own behalf and write what the socket takes now,
    /// never waiting. A peer whose queue passes `QUEUE_BOUND` is not reading: an error.
    fn queue(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.out.extend_from_slice(bytes);
        self.flush_queued()?;
        if self.out.len() > QUEUE_BOUND {
            return Err(ConnError::NotReading(self.out.len()));
        }
        Ok(())
    }

    /// Write queued output until the socket would block.
    fn flush_queued(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.write(&self.out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..written);
        if self.out.is_empty() || written > 0 {
            self.out_since = (!self.out.is_empty()).then(Instant::now);
        } else if self.out_since.is_none() {
            self.out_since = Some(Instant::now());
        }
        Ok(())
    }

    /// The connection must close: at once if nothing is queued, else once the queue is
    /// written (the loop then waits for writability only).
    fn close_after_output(&mut self) -> Step {
        if self.out.is_empty() {
            return Step::Close;
        }
        self.closing = true;
        Step::Wait
    }

    /// Write everything, waiting (bounded) while the web server's side is full.
    fn write_blocking(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.stream.wait_writable(WRITE_TIMEOUT)? {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the web server stopped reading the response"));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
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

    /// Answer a management record or a rejected BEGIN_REQUEST.
    fn answer_management(&mut self, event: &Event) -> Result<(), ConnError> {
        let mut out = Vec::new();
        match event {
            Event::GetValues { names } => {
                let answer = self.codec.config().get_values_answer(names);
                encode::get_values_result(&mut out, &answer).map_err(|e| ConnError::Io(io::Error::other(e)))?;
            }
            Event::UnknownManagementType { record_type } => encode::unknown_type(&mut out, *record_type),
            Event::Reject { id, role, status, .. } => {
                if let Some((page, detail)) = refusal(*role, *status) {
                    log::warn!("request {id} refused: {detail}");
                    encode::stdout(&mut out, *id, &error_response_bytes(page, &detail));
                    encode::end_stdout(&mut out, *id);
                }
                encode::end_request(&mut out, *id, 0, *status);
            }
            _ => return Ok(()),
        }
        self.queue(&out)
    }

    /// The end records of a request: STDOUT (and STDERR, if used) streams, then END_REQUEST.
    fn end_records(&mut self, out: &mut Vec<u8>, id: u16) {
        encode::end_stdout(out, id);
        if std::mem::take(&mut self.stderr_used) {
            encode::end_stderr(out, id);
        }
        encode::end_request(out, id, 0, ProtocolStatus::RequestComplete);
    }

    /// End a request the app is not answering (aborted, cut short): queued, never blocking.
    fn end_request(&mut self, id: u16) -> Result<(), ConnError> {
        let mut out = Vec::new();
        self.end_records(&mut out, id);
        self.queue(&out)
    }

    /// The records of a short error page answering request `id`, ending it.
    fn refusal(&mut self, out: &mut Vec<u8>, id: u16, status: &str, detail: &str) {
        encode::stdout(out, id, &error_response_bytes(status, detail));
        self.end_records(out, id);
    }

    /// Answer a request the app never sees (400/413) with a short page: queued.
    fn refuse(&mut self, id: u16, status: &str, detail: &str) -> Result<(), ConnError> {
        let mut out = Vec::new();
        self.refusal(&mut out, id, status, detail);
        self.queue(&out)
    }
}

/// The page sent on STDOUT before the END_REQUEST of a refused BEGIN_REQUEST, if any. An
/// END_REQUEST alone is not a denial everywhere: lighttpd (1.4.69) lets an authorizer's
/// request through when the answer has no STDOUT, whatever its protocolStatus. So a role we
/// do not serve gets a 500 page (every server denies on it), as does an authorizer request
/// refused for load (CANT_MPX_CONN, OVERLOADED: a 503). A responder refused for load keeps
/// the bare END_REQUEST the spec describes.
fn refusal(role: u16, status: ProtocolStatus) -> Option<(&'static str, String)> {
    let name = match role {
        1 => "RESPONDER",
        2 => "AUTHORIZER",
        3 => "FILTER",
        _ => "unknown",
    };
    match status {
        ProtocolStatus::UnknownRole => {
            let how = match role {
                1 | 2 => "; start cgi2wsgi with --roles responder,authorizer (or CGI2WSGI_ROLES) to serve it".to_owned(),
                _ => " (cgi2wsgi serves the RESPONDER and AUTHORIZER roles)".to_owned(),
            };
            Some(("500 Internal Server Error", format!("cgi2wsgi does not serve the FastCGI {name} role (role {role}) here{how}.")))
        }
        ProtocolStatus::CantMpxConn | ProtocolStatus::Overloaded if role == 2 => {
            Some(("503 Service Unavailable", format!("cgi2wsgi cannot take this {name} request now ({status:?}).")))
        }
        _ => None,
    }
}

mod respond;
pub use respond::run;
