//! The protocol-neutral response: a validated status line and headers, encoded as a CGI
//! response head (`Status:` first, CRLF line ends), the sink every gateway writes to, the
//! error page and the access-log line.

use crate::http::request::Request;
use std::fmt::Write as _;
use std::io;

/// Status and headers as the app gave them, already checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: String,
    pub headers: Vec<(String, String)>,
}

/// Headers a WSGI app must not set (PEP 3333: hop-by-hop headers belong to the server).
const HOP_BY_HOP: [&str; 8] = ["connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers", "transfer-encoding", "upgrade"];

/// Check a status line: three digits, then a space and a reason phrase without control characters.
pub fn check_status(status: &str) -> Result<(), String> {
    let bytes = status.as_bytes();
    let digits = bytes.get(..3).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !digits || bytes.first() == Some(&b'0') {
        return Err(format!("status {status:?} does not start with a three-digit code"));
    }
    if bytes.len() > 3 && bytes[3] != b' ' {
        return Err(format!("status {status:?}: the code must be followed by a space"));
    }
    if status.chars().any(|c| c.is_control() || c as u32 > 0xff) {
        return Err(format!("status {status:?} holds control or non-latin-1 characters"));
    }
    Ok(())
}

fn is_token_byte(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// Check one header: a token name, a latin-1 value with no CR, LF or other control character
/// (tab allowed), and no hop-by-hop name.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(is_token_byte) {
        return Err(format!("header name {name:?} is not an HTTP token"));
    }
    if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!("hop-by-hop header {name:?} is not allowed from a WSGI app"));
    }
    if name.eq_ignore_ascii_case("status") {
        return Err("a 'Status' header is not allowed: give the status to start_response".into());
    }
    if let Some(c) = value.chars().find(|&c| (c.is_control() && c != '\t') || c as u32 > 0xff) {
        return Err(format!("header {name}: value holds the character {c:?} (CR/LF, control or non-latin-1)"));
    }
    Ok(())
}

impl ResponseHead {
    /// The declared Content-Length, if the app gave a valid one.
    pub fn content_length(&self) -> Option<u64> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.trim().parse().ok())
    }

    /// Encode as a CGI response head: `Status:` first, CRLF after every line, blank line last.
    /// Every character is latin-1 (checked), so each becomes one byte.
    pub fn to_cgi_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.headers.len() * 32);
        let mut line = |s: &str| out.extend(s.chars().map(|c| c as u32 as u8));
        line("Status: ");
        line(&self.status);
        line("\r\n");
        for (name, value) in &self.headers {
            line(name);
            line(": ");
            line(value);
            line("\r\n");
        }
        line("\r\n");
        out
    }

    /// A short plain-text error response.
    pub fn error(status: &str, body_len: usize) -> ResponseHead {
        ResponseHead {
            status: status.to_owned(),
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into()), ("Content-Length".into(), body_len.to_string())],
        }
    }
}

/// The short plain-text page every error answer carries (400/413 refusals, 500, 502, 504):
/// the status line, a blank line, the detail.
pub fn error_page(status: &str, detail: &str) -> (ResponseHead, String) {
    let body = format!("{status}\n\n{detail}\n");
    (ResponseHead::error(status, body.len()), body)
}

/// An error page as a whole CGI response (head and body), for a gateway that writes bytes.
pub fn error_response_bytes(status: &str, detail: &str) -> Vec<u8> {
    let (head, body) = error_page(status, detail);
    let mut bytes = head.to_cgi_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Send an error page to a sink and finish the response.
pub fn send_error(sink: &mut dyn ResponseSink, status: &str, detail: &str) -> io::Result<()> {
    let (head, body) = error_page(status, detail);
    sink.send_head(&head)?;
    sink.send_body(body.as_bytes(), true)?;
    sink.finish()
}

/// How one request ended, for the access log and the caller's exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: String,
    pub body_bytes: u64,
    /// The app failed (a 500 was sent, or the response was cut short).
    pub app_error: bool,
    /// The peer went away before the response was complete.
    pub disconnected: bool,
}

impl Outcome {
    /// The access-log line, the same for every gateway: at info level in the log, and in
    /// `--access-log` when one is open. `started`: when the request was ready to run.
    pub fn log(&self, request: &Request, started: std::time::Instant) {
        if crate::sys::access_log_enabled() {
            let line = access_line(self, request, std::time::SystemTime::now(), started.elapsed().as_micros(), std::process::id());
            crate::sys::write_access_line(line.as_bytes());
        }
        log::info!(
            "{} {} -> {} ({} bytes){}",
            request.get("REQUEST_METHOD").unwrap_or("?"),
            request.get("REQUEST_URI").or(request.get("PATH_INFO")).unwrap_or(""),
            self.status,
            self.body_bytes,
            if self.disconnected { ", client gone" } else { "" }
        );
    }
}

/// One `--access-log` line: Apache's combined format plus the time taken in microseconds and
/// the pid of the process that served it:
/// `ADDR - USER [03/Dec/2026:15:16:51 +0000] "GET /path?q HTTP/1.1" 200 1234 "REFERER" "AGENT" 5123 4711`.
/// Times are UTC; a missing value is `-`; quotes, backslashes, control and non-ASCII
/// bytes in quoted values are written `\xHH` (as nginx does), so a line is always one line.
pub fn access_line(outcome: &Outcome, request: &Request, now: std::time::SystemTime, micros: u128, pid: u32) -> String {
    let field = |name: &str| request.get(name).filter(|v| !v.is_empty()).map_or_else(|| "-".to_owned(), escape);
    let uri = if let Some(u) = request.get("REQUEST_URI") {
        u.to_owned()
    } else {
        let mut u = format!("{}{}", request.get("SCRIPT_NAME").unwrap_or(""), request.get("PATH_INFO").unwrap_or(""));
        if let Some(q) = request.get("QUERY_STRING").filter(|q| !q.is_empty()) {
            u.push('?');
            u.push_str(q);
        }
        u
    };
    let line = format!("{} {} {}", request.get("REQUEST_METHOD").unwrap_or("-"), uri, request.get("SERVER_PROTOCOL").unwrap_or("-"));
    let status = outcome.status.get(..3).unwrap_or(&outcome.status);
    format!(
        "{} - {} [{}] \"{}\" {status} {} \"{}\" \"{}\" {micros} {pid}\n",
        field("REMOTE_ADDR"),
        field("REMOTE_USER"),
        clf_time(now),
        escape(&line),
        outcome.body_bytes,
        field("HTTP_REFERER"),
        field("HTTP_USER_AGENT"),
    )
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            // Values are latin-1: one byte each.
            c if c == '"' || c == '\\' || (c as u32) < 0x20 || (c as u32) >= 0x7f => {
                let _ = write!(out, "\\x{:02X}", c as u32 & 0xff);
            }
            c => out.push(c),
        }
    }
    out
}

/// `03/Dec/2026:15:16:51 +0000` (the common log format's time, in UTC).
fn clf_time(t: std::time::SystemTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{day:02}/{}/{year}:{:02}:{:02}:{:02} +0000", MONTHS[(month - 1) as usize], rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Where a response goes: CGI stdout, or FastCGI STDOUT records.
pub trait ResponseSink: Send {
    /// Send the head; called once, before any body.
    fn send_head(&mut self, head: &ResponseHead) -> io::Result<()>;
    /// Send one non-empty body chunk; it should reach the server promptly (streaming).
    /// `last`: no more body follows, so the sink may hold it to leave with `finish`.
    fn send_body(&mut self, chunk: &[u8], last: bool) -> io::Result<()>;
    /// The response is complete.
    fn finish(&mut self) -> io::Result<()>;
    /// The response cannot be completed: the app failed after its head was given, or its
    /// `close()` failed. A responder's stream just ends (the status is out already); an
    /// authorizer's answer becomes a denial.
    fn cut_short(&mut self) -> io::Result<()> {
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_line_format() {
        let request = Request::from_params(
            [
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", "/a b?\"x\""),
                ("SERVER_PROTOCOL", "HTTP/1.1"),
                ("REMOTE_ADDR", "192.0.2.7"),
                ("HTTP_USER_AGENT", "curl/8\u{e9}"),
            ],
            None,
        )
        .unwrap();
        let outcome = Outcome { status: "404 Not Found".into(), body_bytes: 17, app_error: false, disconnected: false };
        // 2026-12-03 15:16:51 UTC.
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_311_011);
        assert_eq!(
            access_line(&outcome, &request, t, 5123, 4711),
            "192.0.2.7 - - [03/Dec/2026:15:16:51 +0000] \"GET /a b?\\x22x\\x22 HTTP/1.1\" 404 17 \"-\" \"curl/8\\xC3\\xA9\" 5123 4711\n"
        );
        assert_eq!(clf_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400)), "29/Feb/2000:00:00:00 +0000");
    }

    #[test]
    fn status_rules() {
        assert!(check_status("200 OK").is_ok());
        assert!(check_status("404").is_ok());
        assert!(check_status("20 OK").is_err());
        assert!(check_status("200OK").is_err());
        assert!(check_status("abc OK").is_err());
        assert!(check_status("099 Low").is_err());
        assert!(check_status("200 OK\r\nX: y").is_err());
        assert!(check_status("200 \u{263a}").is_err());
    }

    #[test]
    fn header_rules() {
        assert!(check_header("Content-Type", "text/html; charset=\u{e9}").is_ok());
        assert!(check_header("X-Tab", "a\tb").is_ok());
        assert!(check_header("Set-Cookie", "a=b\r\nX-Evil: 1").is_err());
        assert!(check_header("X", "line\nbreak").is_err());
        assert!(check_header("Bad Name", "v").is_err());
        assert!(check_header("", "v").is_err());
        assert!(check_header("Connection", "close").is_err());
        assert!(check_header("Transfer-Encoding", "chunked").is_err());
        assert!(check_header("Status", "200 OK").is_err());
        assert!(check_header("X", "\u{263a}").is_err());
    }

    #[test]
    fn cgi_head_encoding() {
        let head = ResponseHead { status: "201 Created".into(), headers: vec![("Content-Type".into(), "text/plain".into()), ("X-L1".into(), "\u{e9}".into())] };
        assert_eq!(head.to_cgi_bytes(), b"Status: 201 Created\r\nContent-Type: text/plain\r\nX-L1: \xe9\r\n\r\n".to_vec());
        assert_eq!(ResponseHead::error("500 Internal Server Error", 7).content_length(), Some(7));
        assert_eq!(
            error_response_bytes("502 Bad Gateway", "gone"),
            b"Status: 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\n\r\n502 Bad Gateway\n\ngone\n".to_vec()
        );
    }
}
