//! The answer of an app in the authorizer role (FastCGI 1.0 §6.3), protocol neutral: a
//! `ResponseSink` wrapper that holds the whole response (at most `MAX_ANSWER` body bytes)
//! and lets it out only once the app is done, so that nothing short of a complete, clean
//! response can ever read as "allow".
//!
//! - 200 allows: only `Status: 200 OK` and the `Variable-NAME` headers go out (the server
//!   ignores the rest and the body, §6.3); a body is dropped with a log line.
//! - Any other status is the denial the client gets, headers and body as the app gave them
//!   (less any `Variable-` header, meant for the server only).
//! - Every failure denies with a 500: the app failed after `start_response` or in
//!   `close()`, a `Variable-` name that is not an environment name, a body over the bound.
//!   A response that never finishes sends nothing: the gateway then denies (see `conn`).

use crate::http::response::{ResponseHead, ResponseSink};
use std::io;

/// The most body an authorizer answer may have (a denial page); more denies with a 500.
pub const MAX_ANSWER: u64 = 64 * 1024;

const PREFIX: &str = "Variable-";

/// Is `name` (after `Variable-`) usable as an environment variable by every server? ASCII
/// letters, digits and `_`, not starting with a digit; `-` is allowed too, as servers turn
/// it into `_` (lighttpd's own tests send `Variable-X-LIGHTTPD-FCGI-AUTH`).
pub fn valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '-') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn variable_name(header: &str) -> Option<&str> {
    let prefix = header.get(..PREFIX.len())?;
    prefix.eq_ignore_ascii_case(PREFIX).then(|| &header[PREFIX.len()..])
}

/// What goes to the web server for a complete response.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: the head holds the status and the `Variable-` headers only.
    Allow(ResponseHead),
    /// The app's own denial.
    Deny(ResponseHead, Vec<u8>),
    /// Something went wrong: a 500, with the reason for the log.
    Fail(String),
}

/// Decide the answer for a complete response (`body_len` counts every byte the app sent,
/// `body` holds them unless over the bound).
pub fn decide(head: Option<&ResponseHead>, body: Vec<u8>, body_len: u64) -> Answer {
    let Some(head) = head else {
        return Answer::Fail("the app gave no status".into());
    };
    if body_len > MAX_ANSWER {
        return Answer::Fail(format!("the answer's body is {body_len} bytes, over the {MAX_ANSWER}-byte bound of an authorizer answer"));
    }
    if head.status.starts_with("200") {
        let mut allow = ResponseHead { status: head.status.clone(), headers: Vec::new() };
        for (name, value) in &head.headers {
            match variable_name(name) {
                Some(var) if valid_variable_name(var) => allow.headers.push((name.clone(), value.clone())),
                Some(var) => {
                    return Answer::Fail(format!(
                        "header {name:?}: {var:?} is not an environment variable name (letters, digits, '_' or '-', not starting with a digit)"
                    ))
                }
                None => log::debug!("authorizer: header {name} of a 200 is not passed on (only Variable- headers are)"),
            }
        }
        if body_len > 0 {
            log::warn!("authorizer: the {body_len}-byte body of a 200 is dropped (an allow has no body: FastCGI 6.3)");
        }
        return Answer::Allow(allow);
    }
    let mut deny = head.clone();
    deny.headers.retain(|(name, _)| variable_name(name).is_none());
    Answer::Deny(deny, body)
}

/// Holds an authorizer's response until it is complete, then sends the answer to `inner`.
pub struct AuthorizerSink {
    inner: Box<dyn ResponseSink>,
    head: Option<ResponseHead>,
    body: Vec<u8>,
    body_len: u64,
    done: bool,
}

impl AuthorizerSink {
    pub fn new(inner: Box<dyn ResponseSink>) -> AuthorizerSink {
        AuthorizerSink { inner, head: None, body: Vec::new(), body_len: 0, done: false }
    }

    fn send(&mut self, head: &ResponseHead, body: &[u8]) -> io::Result<()> {
        self.done = true;
        self.inner.send_head(head)?;
        if !body.is_empty() {
            self.inner.send_body(body, true)?;
        }
        self.inner.finish()
    }

    fn fail(&mut self, why: &str) -> io::Result<()> {
        log::error!("authorizer: denied with 500: {why}");
        let status = "500 Internal Server Error";
        let body = format!("{status}\n\nThe authorizer failed; the details are in the server's error log.\n");
        self.send(&ResponseHead::error(status, body.len()), body.as_bytes())
    }
}

impl ResponseSink for AuthorizerSink {
    fn send_head(&mut self, head: &ResponseHead) -> io::Result<()> {
        self.head = Some(head.clone());
        Ok(())
    }

    fn send_body(&mut self, chunk: &[u8], _last: bool) -> io::Result<()> {
        self.body_len = self.body_len.saturating_add(chunk.len() as u64);
        if self.body_len > MAX_ANSWER {
            // The answer is a 500 now: the bytes are not worth keeping.
            self.body = Vec::new();
        } else {
            self.body.extend_from_slice(chunk);
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        match decide(self.head.as_ref(), std::mem::take(&mut self.body), self.body_len) {
            Answer::Allow(head) => {
                log::debug!("authorizer: allowed ({} Variable- header(s))", head.headers.len());
                self.send(&head, b"")
            }
            Answer::Deny(head, body) => self.send(&head, &body),
            Answer::Fail(why) => self.fail(&why),
        }
    }

    fn cut_short(&mut self) -> io::Result<()> {
        if self.done {
            return Ok(());
        }
        self.fail("the app failed after start_response() (or in close()): an unfinished answer is never an allow")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records what reaches the web server's side.
    #[derive(Clone, Default)]
    struct Wire(Arc<Mutex<Vec<String>>>);

    impl ResponseSink for Wire {
        fn send_head(&mut self, head: &ResponseHead) -> io::Result<()> {
            self.0.lock().unwrap().push(String::from_utf8(head.to_cgi_bytes()).unwrap());
            Ok(())
        }
        fn send_body(&mut self, chunk: &[u8], _last: bool) -> io::Result<()> {
            self.0.lock().unwrap().push(String::from_utf8(chunk.to_vec()).unwrap());
            Ok(())
        }
        fn finish(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().push("<end>".into());
            Ok(())
        }
    }

    fn head(status: &str, headers: &[(&str, &str)]) -> ResponseHead {
        ResponseHead { status: status.into(), headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect() }
    }

    fn answer(h: Option<ResponseHead>, chunks: &[&[u8]], clean: bool) -> Vec<String> {
        let wire = Wire::default();
        let mut sink = AuthorizerSink::new(Box::new(wire.clone()));
        if let Some(h) = &h {
            sink.send_head(h).unwrap();
        }
        for c in chunks {
            sink.send_body(c, false).unwrap();
            // Nothing leaves before the end.
            assert!(wire.0.lock().unwrap().is_empty());
        }
        if clean {
            sink.finish().unwrap();
        } else {
            sink.cut_short().unwrap();
        }
        let out = wire.0.lock().unwrap().clone();
        out
    }

    #[test]
    fn allow_passes_variables_only_and_drops_the_body() {
        let h = head("200 OK", &[("Content-Type", "text/plain"), ("Variable-REMOTE_USER", "ann"), ("variable-X-Group", "staff"), ("Set-Cookie", "a=b")]);
        let out = answer(Some(h), &[b"ignored body"], true);
        assert_eq!(out, vec!["Status: 200 OK\r\nVariable-REMOTE_USER: ann\r\nvariable-X-Group: staff\r\n\r\n".to_string(), "<end>".into()]);
    }

    #[test]
    fn denial_goes_out_whole_without_variables() {
        let h = head("403 Forbidden", &[("Content-Type", "text/plain"), ("Variable-REMOTE_USER", "ann")]);
        let out = answer(Some(h), &[b"no ", b"entry"], true);
        assert_eq!(out, vec!["Status: 403 Forbidden\r\nContent-Type: text/plain\r\n\r\n".to_string(), "no entry".into(), "<end>".into()]);
    }

    #[test]
    fn every_failure_is_a_500() {
        let ok = || Some(head("200 OK", &[("Variable-USER", "x")]));
        // Cut short after start_response('200 OK'): the app failed or close() raised.
        assert!(answer(ok(), &[b"partial"], false)[0].starts_with("Status: 500"));
        // A bad variable name.
        for bad in ["Variable-", "Variable-1X", "Variable-A.B", "Variable-A B", "Variable-É"] {
            let h = head("200 OK", &[(bad, "v")]);
            assert!(answer(Some(h), &[], true)[0].starts_with("Status: 500"), "{bad}");
        }
        // Over the bound, in one chunk or many.
        let big = vec![b'x'; MAX_ANSWER as usize + 1];
        assert!(answer(ok(), &[&big], true)[0].starts_with("Status: 500"));
        let half = vec![b'x'; MAX_ANSWER as usize / 2 + 1];
        assert!(answer(Some(head("403 Forbidden", &[])), &[&half, &half], true)[0].starts_with("Status: 500"));
        // Exactly at the bound is fine.
        let full = vec![b'x'; MAX_ANSWER as usize];
        assert!(answer(Some(head("403 Forbidden", &[])), &[&full], true)[0].starts_with("Status: 403"));
        // No head at all.
        assert!(answer(None, &[], true)[0].starts_with("Status: 500"));
    }

    #[test]
    fn one_answer_only() {
        let wire = Wire::default();
        let mut sink = AuthorizerSink::new(Box::new(wire.clone()));
        sink.send_head(&head("200 OK", &[])).unwrap();
        sink.finish().unwrap();
        sink.cut_short().unwrap();
        sink.finish().unwrap();
        assert_eq!(wire.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn variable_names() {
        for good in ["REMOTE_USER", "X_USER", "X-LIGHTTPD-FCGI-AUTH", "_x", "a1"] {
            assert!(valid_variable_name(good), "{good}");
        }
        for bad in ["", "1A", "A.B", "A=B", "A B", "\u{e9}"] {
            assert!(!valid_variable_name(bad), "{bad}");
        }
    }
}
