//! The protocol-neutral request: CGI meta-variables as raw bytes (from the process
//! environment or FastCGI PARAMS), normalised into the `str` values a WSGI environ holds.

use crate::error::RequestError;
use crate::http::role::Role;

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
    /// What the web server asks of the app (see `serve_as`); the responder unless told.
    pub role: Role,
}

/// Decode bytes as latin-1: every byte maps to the code point of the same value.
#[must_use]
pub fn latin1(bytes: &[u8]) -> String {
    latin1_owned(bytes.to_vec())
}

/// `latin1` taking ownership: ASCII (nearly every name and value) is already valid UTF-8 of
/// the same characters, so the buffer becomes the `String` without a copy.
// Unchecked on purpose, measured: with the checked `String::from_utf8` (a second pass over
// bytes already known to be ASCII) a raw hello costs 34.0k instructions per request instead
// of 31.3k kept-alive, 35.5k instead of 32.8k with a new connection (bench/callgrind.py).
#[allow(unsafe_code)]
pub fn latin1_owned(bytes: Vec<u8>) -> String {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8 (one pass over the bytes instead of two).
        return unsafe { String::from_utf8_unchecked(bytes) };
    }
    bytes.into_iter().map(char::from).collect()
}

/// Decode `%XX` escapes (a malformed escape stays as it is); `+` is left alone.
#[must_use]
pub fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        // Two hex digits exactly (from_str_radix alone would also take "+f").
        let hex = raw
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
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

/// RFC 3986 §5.2.4 on a path: `.` segments dropped, `..` removes the segment before it
/// (never above the root); a trailing `.` or `..` leaves the directory's slash.
#[must_use]
pub fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." | ".." => {
                if *seg == ".." && out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if path.starts_with('/') && !joined.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
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
        let mut req = Request { vars, body: BodyLength::None, scheme: "http", role: Role::Responder };
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

    /// What every gateway does with the CGI variables it received: build the request, mount
    /// it at `--script-name` (when given), or say why it is refused (`RequestError::status`
    /// is the answer's status).
    pub fn from_cgi_vars<N, V>(params: impl IntoIterator<Item = (N, V)>, max_body: Option<u64>, script_name: Option<&str>) -> Result<Request, RequestError>
    where
        N: Into<Vec<u8>>,
        V: Into<Vec<u8>>,
    {
        let mut request = Request::from_params(params, max_body)?;
        if let Some(mount) = script_name {
            request.mount_at(mount);
        }
        Ok(request)
    }

    /// The value of `name` (the last one, if a server sent it twice).
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_owned(), value)),
        }
    }

    /// `--script-name`: where the app is mounted as the browser sees it, for a server that
    /// cannot be made to send it (mod_rewrite routing pretty URLs to `/cgi-bin/app.cgi`,
    /// which sends SCRIPT_NAME=/cgi-bin/app.cgi, PATH_INFO often empty, and the pretty URL
    /// only in REQUEST_URI). The rule: SCRIPT_NAME becomes `mount` (a trailing `/` dropped,
    /// so `/` is the root mount ""); when the request's path (REQUEST_URI without its query,
    /// percent-decoded as PATH_INFO is; else SCRIPT_NAME + PATH_INFO as sent) is `mount` or
    /// lies under `mount/`, PATH_INFO becomes the rest of it; otherwise (a request that
    /// reached the app by another URL) PATH_INFO stays as the server sent it.
    pub fn mount_at(&mut self, mount: &str) {
        let mount = mount.trim_end_matches('/');
        let sent = format!("{}{}", self.get("SCRIPT_NAME").unwrap_or_default(), self.get("PATH_INFO").unwrap_or_default());
        let path = match self.get("REQUEST_URI") {
            Some(uri) if uri.starts_with('/') => {
                let raw = uri.split_once('?').map_or(uri, |(p, _)| p);
                // Latin-1 str back to its bytes, decoded like PATH_INFO.
                let bytes: Vec<u8> = raw.chars().map(|c| c as u32 as u8).collect();
                latin1_owned(percent_decode(&bytes))
            }
            _ => sent,
        };
        if let Some(rest) = path.strip_prefix(mount).filter(|rest| rest.is_empty() || rest.starts_with('/')) {
            let rest = rest.to_owned();
            self.set("PATH_INFO", rest);
        } else {
            log::debug!("--script-name {mount:?}: request path {path:?} is not under it; PATH_INFO kept");
        }
        self.set("SCRIPT_NAME", mount.to_owned());
    }

    /// The role a FastCGI web server asked for: `FCGI_ROLE` is set whether or not the server
    /// sent it (mod_authnz_fcgi does, lighttpd and mod_fcgid do not). An authorizer is asked
    /// about a request whose body belongs to the responder (FastCGI §6.3): it gets none, and
    /// since the server withholds SCRIPT_NAME and PATH_INFO from it (or sends the ones of the
    /// protected resource's handler), it sees the root mount: SCRIPT_NAME '' and PATH_INFO
    /// the percent-decoded path of REQUEST_URI, so it routes on the URL it is asked about
    /// exactly as a responder mounted at the root would. REQUEST_URI is the raw target, so
    /// its `.` and `..` segments are resolved too (after decoding, so `%2e%2e` counts): the
    /// gate must judge the path the server will serve, not `/downloads/../private`.
    /// CONTENT_LENGTH stays as sent: it tells the gate how large the upload it judges is.
    pub fn serve_as(&mut self, role: Role) {
        self.role = role;
        self.set("FCGI_ROLE", role.as_str().to_owned());
        if role == Role::Authorizer {
            self.mount_at("");
            let path = remove_dot_segments(self.get("PATH_INFO").unwrap_or_default());
            self.set("PATH_INFO", path);
            self.body = BodyLength::None;
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

    /// IIS repeats SCRIPT_NAME at the start of PATH_INFO (as `wsgiref.handlers.IISCGIHandler`
    /// fixes), and sends no REQUEST_URI: when its URL Rewrite module routed the request, the
    /// URL the browser asked for is in `HTTP_X_ORIGINAL_URL`, which becomes REQUEST_URI (so
    /// `--script-name` can recompute PATH_INFO from it). A client can send that header
    /// itself on a request that was not rewritten: docs/iis.md refuses direct requests.
    fn fix_iis_path_info(&mut self) {
        let is_iis = self.get("SERVER_SOFTWARE").is_some_and(|s| s.starts_with("Microsoft-IIS"));
        if !is_iis {
            return;
        }
        if self.get("REQUEST_URI").is_none() {
            if let Some(original) = self.get("HTTP_X_ORIGINAL_URL").map(str::to_owned) {
                self.set("REQUEST_URI", original);
            }
        }
        let script = self.get("SCRIPT_NAME").unwrap_or_default().to_owned();
        let path = self.get("PATH_INFO").unwrap_or_default().to_owned();
        if !script.is_empty() && path.starts_with(&script) {
            self.set("PATH_INFO", path[script.len()..].to_owned());
        }
    }

    fn detect_scheme(&self) -> &'static str {
        let https = self.get("HTTPS").map(str::to_ascii_lowercase);
        if matches!(https.as_deref(), Some("on" | "1" | "yes")) {
            return "https";
        }
        match self.get("REQUEST_SCHEME").map(str::to_ascii_lowercase).as_deref() {
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
                let chunked = self.get("HTTP_TRANSFER_ENCODING").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
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
    fn iis_path_info_equal_to_script_name_becomes_empty() {
        let pairs = [("SERVER_SOFTWARE", "Microsoft-IIS/10.0"), ("SCRIPT_NAME", "/app.cgi"), ("PATH_INFO", "/app.cgi")];
        assert_eq!(req(&pairs).unwrap().get("PATH_INFO"), Some(""));
    }

    #[test]
    fn iis_url_rewrite_original_url_becomes_request_uri() {
        // URL Rewrite sent /users/42 to app.cgi: IIS names the script twice, no REQUEST_URI.
        let rewritten =
            [("SERVER_SOFTWARE", "Microsoft-IIS/10.0"), ("SCRIPT_NAME", "/app.cgi"), ("PATH_INFO", "/app.cgi"), ("HTTP_X_ORIGINAL_URL", "/users/42?x=1")];
        let mut r = req(&rewritten).unwrap();
        assert_eq!(r.get("REQUEST_URI"), Some("/users/42?x=1"));
        r.mount_at("/");
        assert_eq!((r.get("SCRIPT_NAME"), r.get("PATH_INFO")), (Some(""), Some("/users/42")));
        // A REQUEST_URI that is there already stays; other servers never use the header.
        let mut with_uri = rewritten.to_vec();
        with_uri.push(("REQUEST_URI", "/kept"));
        assert_eq!(req(&with_uri).unwrap().get("REQUEST_URI"), Some("/kept"));
        let apache = [("SERVER_SOFTWARE", "Apache"), ("HTTP_X_ORIGINAL_URL", "/admin")];
        assert_eq!(req(&apache).unwrap().get("REQUEST_URI"), None);
    }

    #[test]
    fn dot_segments() {
        for (raw, want) in [
            ("/a/b/c", "/a/b/c"),
            ("/downloads/../private/x", "/private/x"),
            ("/downloads/./x", "/downloads/x"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/..", "/"),
            ("/", "/"),
            ("", ""),
            ("/a//../b", "/a/b"),
            ("/a/..b/c", "/a/..b/c"),
        ] {
            assert_eq!(remove_dot_segments(raw), want, "{raw}");
        }
    }

    #[test]
    fn authorizer_role_sees_the_asked_path_and_no_body() {
        let pairs = [("SCRIPT_NAME", "/auth.fcgi"), ("PATH_INFO", "/x"), ("REQUEST_URI", "/downloads/%2e%2e/private/caf%C3%A9?x=1"), ("CONTENT_LENGTH", "12")];
        let mut r = req(&pairs).unwrap();
        assert_eq!(r.body, BodyLength::Exact(12));
        r.serve_as(Role::Authorizer);
        assert_eq!((r.get("SCRIPT_NAME"), r.get("PATH_INFO")), (Some(""), Some("/private/caf\u{c3}\u{a9}")));
        assert_eq!(r.get("FCGI_ROLE"), Some("AUTHORIZER"));
        assert_eq!(r.body, BodyLength::None);
        assert_eq!(r.get("CONTENT_LENGTH"), Some("12"));
        assert_eq!(r.role, Role::Authorizer);
        // No REQUEST_URI: what the server sent, at the root mount.
        let mut r = req(&[("SCRIPT_NAME", "/downloads"), ("PATH_INFO", "/f.txt")]).unwrap();
        r.serve_as(Role::Authorizer);
        assert_eq!((r.get("SCRIPT_NAME"), r.get("PATH_INFO")), (Some(""), Some("/downloads/f.txt")));
        // A responder keeps its mount; FCGI_ROLE replaces whatever the server sent.
        let mut r = req(&[("SCRIPT_NAME", "/app"), ("PATH_INFO", "/x"), ("FCGI_ROLE", "bogus")]).unwrap();
        r.serve_as(Role::Responder);
        assert_eq!((r.get("SCRIPT_NAME"), r.get("PATH_INFO"), r.get("FCGI_ROLE")), (Some("/app"), Some("/x"), Some("RESPONDER")));
    }

    #[test]
    fn root_script_name_moves_into_path_info() {
        let r = req(&[("SCRIPT_NAME", "/"), ("PATH_INFO", "x")]).unwrap();
        assert_eq!((r.get("SCRIPT_NAME"), r.get("PATH_INFO")), (Some(""), Some("/x")));
    }

    fn mounted(pairs: &[(&str, &str)], mount: &str) -> (String, String) {
        let mut r = req(pairs).unwrap();
        r.mount_at(mount);
        (r.get("SCRIPT_NAME").unwrap().to_owned(), r.get("PATH_INFO").unwrap().to_owned())
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_owned(), b.to_owned())
    }

    #[test]
    fn script_name_override_for_mod_rewrite() {
        // RewriteRule ^ app.cgi: no PATH_INFO, the pretty URL only in REQUEST_URI.
        let rewritten = [("SCRIPT_NAME", "/app.cgi"), ("PATH_INFO", ""), ("REQUEST_URI", "/users/42?x=1")];
        assert_eq!(mounted(&rewritten, "/"), pair("", "/users/42"));
        assert_eq!(mounted(&rewritten, ""), pair("", "/users/42"));
        // RewriteRule ^(.*)$ /cgi-bin/app.cgi/$1: PATH_INFO set, REQUEST_URI still wins.
        let with_path = [("SCRIPT_NAME", "/cgi-bin/app.cgi"), ("PATH_INFO", "/users/42"), ("REQUEST_URI", "/blog/users/42")];
        assert_eq!(mounted(&with_path, "/blog/"), pair("/blog", "/users/42"));
        assert_eq!(mounted(&with_path, "/blog"), pair("/blog", "/users/42"));
        // The mount itself, with and without its slash.
        let at_root = [("SCRIPT_NAME", "/app.cgi"), ("REQUEST_URI", "/blog")];
        assert_eq!(mounted(&at_root, "/blog"), pair("/blog", ""));
        let at_root = [("SCRIPT_NAME", "/app.cgi"), ("REQUEST_URI", "/blog/")];
        assert_eq!(mounted(&at_root, "/blog"), pair("/blog", "/"));
        // Decoded as PATH_INFO is (latin-1 bytes-as-str).
        let encoded = [("SCRIPT_NAME", "/app.cgi"), ("REQUEST_URI", "/caf%C3%A9%20x")];
        assert_eq!(mounted(&encoded, "/"), pair("", "/caf\u{c3}\u{a9} x"));
    }

    #[test]
    fn from_cgi_vars_mounts_or_refuses() {
        let vars = [("SCRIPT_NAME", "/cgi-bin/app.cgi"), ("PATH_INFO", ""), ("REQUEST_URI", "/blog/post?x=1")];
        let r = Request::from_cgi_vars(vars.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), None, Some("/blog")).unwrap();
        assert_eq!((r.get("SCRIPT_NAME"), r.get("PATH_INFO")), (Some("/blog"), Some("/post")));
        let unmounted = Request::from_cgi_vars(vars.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), None, None).unwrap();
        assert_eq!(unmounted.get("SCRIPT_NAME"), Some("/cgi-bin/app.cgi"));
        let big = [("CONTENT_LENGTH", "100")];
        let refused = Request::from_cgi_vars(big.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())), Some(10), Some("/blog")).unwrap_err();
        assert_eq!(refused.status(), "413 Content Too Large");
    }

    #[test]
    fn script_name_override_outside_the_mount_keeps_path_info() {
        // /blogger is not under /blog; reached directly at /cgi-bin/app.cgi/x.
        let other = [("SCRIPT_NAME", "/cgi-bin/app.cgi"), ("PATH_INFO", "/x"), ("REQUEST_URI", "/blogger/x")];
        assert_eq!(mounted(&other, "/blog"), pair("/blog", "/x"));
        // No REQUEST_URI (not every server sends it): SCRIPT_NAME + PATH_INFO as sent.
        let no_uri = [("SCRIPT_NAME", "/app"), ("PATH_INFO", "/users/1")];
        assert_eq!(mounted(&no_uri, "/app"), pair("/app", "/users/1"));
        assert_eq!(mounted(&no_uri, "/"), pair("", "/app/users/1"));
        // An absolute-form REQUEST_URI is not a path: fall back likewise.
        let absolute = [("SCRIPT_NAME", "/app"), ("PATH_INFO", "/a"), ("REQUEST_URI", "http://h/app/b")];
        assert_eq!(mounted(&absolute, "/app"), pair("/app", "/a"));
    }
}
