//! The response side of one FastCGI request: the app's response as STDOUT records
//! (`FastCgiSink`), `wsgi.errors` as STDERR records, and `run`, which hands a ready request
//! to the WSGI door and then continues the connection.

use super::{Conn, Ready, Settings, Step};
use crate::fastcgi::encode;
use crate::fastcgi::record::MAX_CONTENT_LEN;
use crate::http::response::{ResponseHead, ResponseSink};
use crate::wsgi;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The response of one request as STDOUT records. The head waits for the first chunk, and
/// the last chunk (when the app's result says which it is) waits for the end records, so a
/// short response leaves in one write.
struct FastCgiSink {
    conn: Conn,
    id: u16,
    pending_head: Vec<u8>,
    /// Encoded records not yet written.
    held: Vec<u8>,
    ended: Arc<AtomicBool>,
}

impl ResponseSink for FastCgiSink {
    fn send_head(&mut self, head: &ResponseHead) -> io::Result<()> {
        self.pending_head = head.to_cgi_bytes();
        Ok(())
    }

    fn send_body(&mut self, chunk: &[u8], last: bool) -> io::Result<()> {
        let head = std::mem::take(&mut self.pending_head);
        let first = !head.is_empty();
        stdout_with_head(&mut self.held, self.id, &head, chunk);
        if last {
            return Ok(());
        }
        let out = std::mem::take(&mut self.held);
        let mut conn = self.conn.lock();
        conn.stdout_written = true;
        conn.send(&out)?;
        // Most responses are one chunk (Flask's too, behind an iterator of unknown length):
        // look for an ABORT from the second chunk on, sparing them a read that finds nothing.
        if first {
            return Ok(());
        }
        conn.poll_for_abort(self.id)
    }

    fn finish(&mut self) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.held);
        let head = std::mem::take(&mut self.pending_head);
        encode::stdout(&mut out, self.id, &head);
        let mut conn = self.conn.lock();
        conn.end_records(&mut out, self.id);
        self.ended.store(true, Ordering::SeqCst);
        conn.send(&out)
    }
}

/// STDOUT records for `head` (maybe empty) and then `chunk`, the head and the start of the
/// chunk sharing the first record: mod_authnz_fcgi passes a denial's body on only when it
/// arrives in the record that ends the headers.
fn stdout_with_head(out: &mut Vec<u8>, id: u16, head: &[u8], chunk: &[u8]) {
    if head.is_empty() {
        return encode::stdout(out, id, chunk);
    }
    let room = MAX_CONTENT_LEN.saturating_sub(head.len()).min(chunk.len());
    let mut first = Vec::with_capacity(head.len() + room);
    first.extend_from_slice(head);
    first.extend_from_slice(&chunk[..room]);
    encode::stdout(out, id, &first);
    encode::stdout(out, id, &chunk[room..]);
}

/// `wsgi.errors`: our own log, and STDERR records (written with the GIL released).
fn errors_sink(conn: Conn, id: u16) -> wsgi::ErrorSink {
    Arc::new(move |text: &str| {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            log::warn!("wsgi.errors: {line}");
        }
        let mut out = Vec::new();
        encode::stderr(&mut out, id, text.as_bytes());
        if out.is_empty() {
            return;
        }
        let mut c = conn.lock();
        // A thread the app left running may write after its request ended: records then
        // belong to no request (and must not wait on the socket under this lock, which the
        // event loop takes), so only the log has them.
        if !c.codec.is_active(id) {
            return;
        }
        // The web server may be gone; the text is in our own log anyway.
        c.stderr_used = true;
        let _ = c.send(&out);
    })
}

impl Ready {
    /// The FastCGI request id.
    pub fn id(&self) -> u16 {
        self.id
    }
}

/// Run the app for a ready request on this thread (through the WSGI door, which takes the
/// GIL); then end it and continue the connection.
pub fn run(conn: &Conn, app: &wsgi::App, settings: &Settings, ready: Ready) -> Step {
    let Ready { id, keep_conn, request, spool } = ready;
    conn.lock().stdout_written = false;
    let ended = Arc::new(AtomicBool::new(false));
    let sink = FastCgiSink { conn: conn.clone(), id, pending_head: Vec::new(), held: Vec::new(), ended: ended.clone() };
    let started = std::time::Instant::now();
    match spool.into_reader() {
        Ok(body) => wsgi::serve(app, &request, body, errors_sink(conn.clone(), id), Box::new(sink), &settings.policy).log(&request, started),
        Err(e) => log::error!("request {id}: {e}"),
    }
    conn.after_request(settings, id, keep_conn, ended.load(Ordering::SeqCst), request.role)
}
