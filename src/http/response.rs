//! The protocol-neutral response: a validated status line and headers, encoded as a CGI
//! response head (`Status:` first, CRLF line ends), the sink every gateway writes to, the
//! error page and the access-log line.

use crate::http::request::Request;
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
    /// The access-log line, the same for every gateway.
    pub fn log(&self, request: &Request) {
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
