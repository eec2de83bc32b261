//! The protocol-neutral request: CGI meta-variables as raw bytes (from the process
//! environment or FastCGI PARAMS), normalised into the `str` values a WSGI environ holds.

use crate::error::RequestError;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body: the input is never read.
    None,
    /// Exactly this many bytes (CONTENT_LENGTH).
    Exact(u64),
    /// A chunked body the server streams with no CONTENT_LENGTH: read to end of stream.
    UntilEof,
}

/// Normalised meta-variables of one request, ready to become a WSGI environ.
#[derive(Debug, Clone)]
pub struct Request {
    /// Name/value pairs decoded as latin-1 (bytes-as-str, PEP 3333), in arrival order.
    pub vars: Vec<(String, String)>,
    pub body: BodyLength,
    /// `wsgi.url_scheme`.
    pub scheme: &'static str,
}

/// Decode bytes as latin-1: every byte maps to the code point of the same value.
pub fn latin1(bytes: &[u8]) -> String {
    latin1_owned(bytes.to_vec())
}

/// `latin1` taking ownership: ASCII (nearly every name and value) is already valid UTF-8 of
/// the same characters, so the buffer becomes the `String` without a copy.
pub fn latin1_owned(bytes: Vec<u8>) -> String {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8 (one pass over the bytes instead of two).
        return unsafe { String::from_utf8_unchecked(bytes) };
    }
    bytes.into_iter().map(char::from).collect()
}

/// Decode `%XX` escapes (a malformed escape stays as it is); `+` is left alone.
pub fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        // Two hex digits exactly (from_str_radix alone would also take "+f").
        let hex = raw.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit)).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Variables a server may forward as headers but that must only appear without `HTTP_`.
const SHADOW_HEADERS: [&str; 2] = ["HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"];

impl Request {
    /// Build a request from raw CGI meta-variables (RFC 3875 names, any bytes as values).
    pub fn from_params<N, V>(params: impl IntoIterator<Item = (N, V)>, max_body: Option<u64>) -> Result<Request, RequestError>
    where
        N: Into<Vec<u8>>,
        V: Into<Vec<u8>>,
    {
        let mut vars: Vec<(String, String)> = Vec::with_capacity(48);
        for (name, value) in params {
            let name = name.into();
            if SHADOW_HEADERS.iter().any(|h| h.as_bytes() == name) {
                continue;
            }
            // A duplicate stays in the list; the later one wins, in `get` and in the environ
            // dict alike (a later insert replaces an earlier one).
            vars.push((latin1_owned(name), latin1_owned(value.into())));
        }
        let mut req = Request { vars, body: BodyLength::None, scheme: "http" };
        for key in ["QUERY_STRING", "PATH_INFO", "SCRIPT_NAME"] {
            if req.get(key).is_none() {
                req.set(key, String::new());
            }
        }
        req.fix_root_script_name();
        req.fix_iis_path_info();
        req.scheme = req.detect_scheme();
        req.body = req.body_length()?;
        if let (BodyLength::Exact(length), Some(limit)) = (req.body, max_body) {
            if length > limit {
                return Err(RequestError::BodyTooLarge { length, limit });
            }
        }
        Ok(req)
    }

    /// The value of `name` (the last one, if a server sent it twice).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_owned(), value)),
        }
    }

    /// PEP 3333: SCRIPT_NAME is never "/"; a root mount has SCRIPT_NAME "" and PATH_INFO "/...".
    fn fix_root_script_name(&mut self) {
        if self.get("SCRIPT_NAME") == Some("/") {
            let path = self.get("PATH_INFO").unwrap_or_default();
            let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
            self.set("SCRIPT_NAME", String::new());
            self.set("PATH_INFO", path);
        }
    }

    /// IIS repeats SCRIPT_NAME at the start of PATH_INFO (as `wsgiref.handlers.IISCGIHandler` fixes).
    fn fix_iis_path_info(&mut self) {
        let is_iis = self.get("SERVER_SOFTWARE").is_some_and(|s| s.starts_with("Microsoft-IIS"));
        if !is_iis {
            return;
        }
        let script = self.get("SCRIPT_NAME").unwrap_or_default().to_owned();
        let path = self.get("PATH_INFO").unwrap_or_default().to_owned();
        if !script.is_empty() && path.starts_with(&script) {
            self.set("PATH_INFO", path[script.len()..].to_owned());
        }
    }

    fn detect_scheme(&self) -> &'static str {
        let https = self.get("HTTPS").map(|v| v.to_ascii_lowercase());
        if matches!(https.as_deref(), Some("on" | "1" | "yes")) {
            return "https";
        }
        match self.get("REQUEST_SCHEME").map(|v| v.to_ascii_lowercase()).as_deref() {
            Some("https") => "https",
            _ => "http",
        }
    }

    fn body_length(&self) -> Result<BodyLength, RequestError> {
        match self.get("CONTENT_LENGTH").map(str::trim) {
            Some(raw) if !raw.is_empty() => {
                if !raw.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(RequestError::BadContentLength(raw.to_owned()));
                }
                let n: u64 = raw.parse().map_err(|_| RequestError::BadContentLength(raw.to_owned()))?;
                Ok(if n == 0 { BodyLength::None } else { BodyLength::Exact(n) })
            }
            _ => {
                let chunked = self
                    .get("HTTP_TRANSFER_ENCODING")
                    .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
                Ok(if chunked { BodyLength::UntilEof } else { BodyLength::None })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> Result<Request, RequestError> {
        Request::from_params(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), None)
    }

    #[test]
    fn defaults_and_shadow_headers() {
        let r = req(&[("REQUEST_METHOD", "GET"), ("HTTP_CONTENT_TYPE", "x"), ("HTTP_CONTENT_LENGTH", "3")]).unwrap();
        assert_eq!(r.get("QUERY_STRING"), Some(""));
        assert_eq!(r.get("PATH_INFO"), Some(""));
        assert_eq!(r.get("SCRIPT_NAME"), Some(""));
        assert_eq!(r.get("HTTP_CONTENT_TYPE"), None);
        assert_eq!(r.get("HTTP_CONTENT_LENGTH"), None);
        assert_eq!(r.body, BodyLength::None);
        assert_eq!(r.scheme, "http");
    }

    #[test]
    fn percent_decoding_takes_two_hex_digits_only() {
        assert_eq!(percent_decode(b"/a%2Fb%7e"), b"/a/b~".to_vec());
        // Found by the fuzzer: a sign is not a hex digit.
        assert_eq!(percent_decode(b"%+E%-1%4"), b"%+E%-1%4".to_vec());
    }

    #[test]
    fn duplicates_keep_the_last_value() {
        let r = req(&[("HTTP_X", "first"), ("HTTP_X", "second")]).unwrap();
        assert_eq!(r.get("HTTP_X"), Some("second"));
    }

    #[test]
    fn latin1_bytes_as_str() {
        let r = Request::from_params([(b"PATH_INFO".as_slice(), "/é".as_bytes())], None).unwrap();
        assert_eq!(r.get("PATH_INFO"), Some("/\u{c3}\u{a9}"));
        let r = Request::from_params([(b"X".as_slice(), b"\xff\x00".as_slice())], None).unwrap();
        assert_eq!(r.get("X"), Some("\u{ff}\u{0}"));
    }

    #[test]
    fn content_length_rules() {
        assert_eq!(req(&[("CONTENT_LENGTH", "12")]).unwrap().body, BodyLength::Exact(12));
        assert_eq!(req(&[("CONTENT_LENGTH", "")]).unwrap().body, BodyLength::None);
        assert_eq!(req(&[("CONTENT_LENGTH", "0")]).unwrap().body, BodyLength::None);
        assert!(matches!(req(&[("CONTENT_LENGTH", "abc")]), Err(RequestError::BadContentLength(_))));
        assert!(matches!(req(&[("CONTENT_LENGTH", "-5")]), Err(RequestError::BadContentLength(_))));
        assert!(matches!(req(&[("CONTENT_LENGTH", "+5")]), Err(RequestError::BadContentLength(_))));
        assert!(matches!(req(&[("CONTENT_LENGTH", "99999999999999999999999")]), Err(RequestError::BadContentLength(_))));
        let chunked = req(&[("HTTP_TRANSFER_ENCODING", "chunked")]).unwrap();
        assert_eq!(chunked.body, BodyLength::UntilEof);
        let limited = Request::from_params([("CONTENT_LENGTH", "11")], Some(10));
        assert_eq!(limited.unwrap_err(), RequestError::BodyTooLarge { length: 11, limit: 10 });
    }

    #[test]
    fn scheme_detection() {
        for on in ["on", "ON", "1", "yes"] {
            assert_eq!(req(&[("HTTPS", on)]).unwrap().scheme, "https");
        }
        assert_eq!(req(&[("HTTPS", "off")]).unwrap().scheme, "http");
        assert_eq!(req(&[("REQUEST_SCHEME", "https")]).unwrap().scheme, "https");
    }

    #[test]
    fn iis_path_info_duplication_is_fixed_only_for_iis() {
        let pairs = [("SERVER_SOFTWARE", "Microsoft-IIS/10.0"), ("SCRIPT_NAME", "/app.cgi"), ("PATH_INFO", "/app.cgi/users/1")];
        assert_eq!(req(&pairs).unwrap().get("PATH_INFO"), Some("/users/1"));
        let pairs = [("SERVER_SOFTWARE", "Apache"), ("SCRIPT_NAME", "/app.cgi"), ("PATH_INFO", "/app.cgi/users/1")];
        assert_eq!(req(&pairs).unwrap().get("PATH_INFO"), Some("/app.cgi/users/1"));
    }

    #[test]
    fn root_script_name_moves_into_path_info() {
        let r = req(&[("SCRIPT_NAME", "/"), ("PATH_INFO", "x")]).unwrap();
        assert_eq!((r.get("SCRIPT_NAME"), r.get("PATH_INFO")), (Some(""), Some("/x")));
    }
}
