//! `builtin:doctor`: judge an environ for classic gateway misconfigurations and render it
//! (HTML or JSON). Pure Rust over string maps, so the warnings are unit-tested directly.

use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
    pub fix: &'static str,
}

fn get<'a>(env: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    env.get(key).map_or("", String::as_str)
}

/// A raw URL path as PATH_INFO holds it: percent-decoded bytes as a latin-1 str.
fn decode_path(raw: &str) -> String {
    crate::http::request::latin1(&crate::http::request::percent_decode(raw.as_bytes()))
}

/// Whether a Host header value carries a port (`host:8080`, `[::1]:8080`; not `[::1]`).
fn host_has_port(host: &str) -> bool {
    match host.rfind(']') {
        Some(end) => host[end + 1..].starts_with(':'),
        None => host.contains(':'),
    }
}

/// Everything that looks wrong, each with the configuration line that fixes it.
pub fn warnings(env: &BTreeMap<String, String>) -> Vec<Warning> {
    let mut out = Vec::new();
    let (script, path) = (get(env, "SCRIPT_NAME"), get(env, "PATH_INFO"));
    if !script.is_empty() && (path == script || path.starts_with(&format!("{script}/"))) {
        out.push(Warning {
            code: "path-info-duplicates-script-name",
            message: format!("PATH_INFO {path:?} repeats SCRIPT_NAME {script:?} (the IIS duplication): routes will not match"),
            fix: "IIS: keep SERVER_SOFTWARE as IIS sends it (cgi2wsgi then strips the copy), or set allowPathInfo=\"true\" on the handler mapping",
        });
    }
    if let Some(uri) = env.get("REQUEST_URI") {
        let uri_path = decode_path(uri.split('?').next().unwrap_or(""));
        let joined = format!("{script}{path}");
        if !uri_path.is_empty() && uri_path != joined && uri_path.trim_end_matches('/') != joined.trim_end_matches('/') {
            out.push(Warning {
                code: "script-name-path-info-disagree",
                message: format!("SCRIPT_NAME + PATH_INFO = {joined:?} but the URL path is {uri_path:?}: links the app builds will point elsewhere"),
                fix: "Apache: mount with ScriptAlias /prefix /path/app.cgi, or behind mod_rewrite set cgi2wsgi's script-name (apache/htaccess-rewrite); nginx: fastcgi_split_path_info ^(/prefix)(/.*)$; plus fastcgi_param PATH_INFO $fastcgi_path_info; (Debian's fastcgi_params sends no PATH_INFO)",
            });
        }
    }
    if script.len() > 1 && script.ends_with('/') {
        out.push(Warning {
            code: "script-name-ends-with-slash",
            message: format!("SCRIPT_NAME {script:?} ends with '/' and PATH_INFO is {path:?}: the whole URL went into SCRIPT_NAME, so every page looks like the app's root"),
            fix: "nginx: fastcgi_split_path_info ^(/prefix)(/.*)$; and fastcgi_param PATH_INFO $fastcgi_path_info; in the location; elsewhere, give cgi2wsgi --script-name /prefix",
        });
    }
    let scheme = get(env, "wsgi.url_scheme");
    let https_hints = get(env, "HTTP_X_FORWARDED_PROTO").eq_ignore_ascii_case("https")
        || get(env, "REQUEST_SCHEME").eq_ignore_ascii_case("https")
        || get(env, "SERVER_PORT") == "443";
    if scheme != "https" && https_hints {
        out.push(Warning {
            code: "https-not-detected",
            message: "the request looks like HTTPS (port 443, REQUEST_SCHEME or X-Forwarded-Proto) but wsgi.url_scheme is http: the app will build http:// links".into(),
            fix: "Apache: SetEnv HTTPS on in the TLS virtual host; nginx: fastcgi_param HTTPS $https if_not_empty; behind a proxy, use a proxy-fix middleware for X-Forwarded-Proto",
        });
    }
    let https_warned = out.last().is_some_and(|w| w.code == "https-not-detected");
    let (host, port) = (get(env, "HTTP_HOST"), get(env, "SERVER_PORT"));
    let default_port = if scheme == "https" || get(env, "HTTPS").eq_ignore_ascii_case("on") { "443" } else { "80" };
    if !host.is_empty() && !port.is_empty() && !host_has_port(host) && port != default_port && !https_warned {
        out.push(Warning {
            code: "http-host-without-port",
            message: format!(
                "HTTP_HOST {host:?} has no port but the server listens on {port}: URLs the app builds lose the port, and Django's CSRF check refuses every POST (Origin http://{host}:{port} is not http://{host}). Debian's fastcgi_params (and scgi_params, uwsgi_params) end with HTTP_HOST $host, which drops the port"
            ),
            fix: "nginx, keeping Debian's $host (the validated name, not the raw client Host): in the http block map $server_port $port_suffix { 80 \"\"; 443 \"\"; default \":$server_port\"; } and in the location, after include fastcgi_params: fastcgi_param HTTP_HOST $host$port_suffix; (nginx 1.30+: fastcgi_param HTTP_HOST $host$is_request_port$request_port;). fastcgi_param HTTP_HOST $http_host; also works but forwards whatever Host the client sent. Behind another proxy SERVER_PORT is not the public port: pass the public Host on instead",
        });
    }
    // Missing HTTP_AUTHORIZATION is a fault only when something says a header was sent:
    // the server authenticated the request (REMOTE_USER / AUTH_TYPE) or the person testing
    // says so (?authorization=sent, with curl -u). Otherwise the client simply sent none.
    let server_authenticated = !get(env, "REMOTE_USER").is_empty() || !get(env, "AUTH_TYPE").is_empty();
    let said_sent = get(env, "QUERY_STRING").split('&').any(|kv| kv == "authorization=sent");
    if !env.contains_key("HTTP_AUTHORIZATION") && (server_authenticated || said_sent) {
        let why = if server_authenticated {
            format!(
                "the server authenticated this request (AUTH_TYPE {:?}, REMOTE_USER {:?}) but passed no HTTP_AUTHORIZATION",
                get(env, "AUTH_TYPE"),
                get(env, "REMOTE_USER")
            )
        } else {
            "the request says it sent an Authorization header (?authorization=sent) but none arrived".to_owned()
        };
        out.push(Warning {
            code: "authorization-header-absent",
            message: format!("{why}: the server hides the Authorization header from CGI and FastCGI apps, so token or Basic auth handled by the app fails"),
            fix: "Apache 2.4.13+: CGIPassAuth On (in the <Directory> or .htaccess); mod_fcgid: FcgidPassHeader Authorization; mod_proxy_fcgi passes it as is",
        });
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub fn render_json(env: &BTreeMap<String, String>, warns: &[Warning]) -> String {
    let warnings: Vec<_> = warns.iter().map(|w| json!({"code": w.code, "message": w.message, "fix": w.fix})).collect();
    let doc = json!({
        "notice": "builtin:doctor exposes the full WSGI environ; do not leave it deployed",
        "environ": env,
        "warnings": warnings,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

pub fn render_html(env: &BTreeMap<String, String>, warns: &[Warning]) -> String {
    let mut h = String::from("<!doctype html><html><head><meta charset=\"utf-8\"><title>cgi2wsgi doctor</title></head><body>\n<h1>cgi2wsgi doctor</h1>\n");
    h.push_str("<p><strong>This page exposes the full WSGI environ (server paths, headers, variables). Do not leave builtin:doctor deployed.</strong> JSON: add <code>?format=json</code>.</p>\n");
    if warns.is_empty() {
        h.push_str("<h2>No warnings</h2>\n");
    } else {
        let _ = write!(h, "<h2>{} warning(s)</h2>\n<ul>\n", warns.len());
        for w in warns {
            let _ = writeln!(h, "<li id=\"{}\"><p>{}</p><p>Fix: <code>{}</code></p></li>", w.code, escape(&w.message), escape(w.fix));
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<h2>environ</h2>\n<table>\n");
    for (k, v) in env {
        let _ = writeln!(h, "<tr><th align=\"left\">{}</th><td><code>{}</code></td></tr>", escape(k), escape(v));
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn codes(pairs: &[(&str, &str)]) -> Vec<&'static str> {
        warnings(&env(pairs)).into_iter().map(|w| w.code).collect()
    }

    #[test]
    fn healthy_environ_has_no_warnings() {
        let ok = [
            ("SCRIPT_NAME", "/app"),
            ("PATH_INFO", "/users/42"),
            ("REQUEST_URI", "/app/users/42?x=1"),
            ("wsgi.url_scheme", "http"),
            ("SERVER_SOFTWARE", "lighttpd/1.4"),
        ];
        assert!(codes(&ok).is_empty(), "{:?}", codes(&ok));
    }

    #[test]
    fn whole_url_in_script_name() {
        // nginx with no split: SCRIPT_NAME is the whole URI, PATH_INFO empty.
        let c = codes(&[("SCRIPT_NAME", "/doctor/"), ("PATH_INFO", ""), ("REQUEST_URI", "/doctor/")]);
        assert_eq!(c, vec!["script-name-ends-with-slash"]);
        assert!(codes(&[("SCRIPT_NAME", "/app"), ("PATH_INFO", "/"), ("REQUEST_URI", "/app/")]).is_empty());
    }

    #[test]
    fn iis_duplication() {
        let c = codes(&[("SCRIPT_NAME", "/app.cgi"), ("PATH_INFO", "/app.cgi/users")]);
        assert!(c.contains(&"path-info-duplicates-script-name"));
    }

    #[test]
    fn uri_disagreement_and_percent_encoding() {
        let c = codes(&[("SCRIPT_NAME", "/app.cgi"), ("PATH_INFO", "/users/42"), ("REQUEST_URI", "/users/42")]);
        assert_eq!(c, vec!["script-name-path-info-disagree"]);
        // PATH_INFO is decoded (latin-1 of the UTF-8 bytes); REQUEST_URI is raw.
        let c = codes(&[("SCRIPT_NAME", ""), ("PATH_INFO", "/caf\u{c3}\u{a9}"), ("REQUEST_URI", "/caf%C3%A9")]);
        assert!(c.is_empty(), "{c:?}");
    }

    #[test]
    fn https_not_detected() {
        let c = codes(&[("wsgi.url_scheme", "http"), ("SERVER_PORT", "443")]);
        assert_eq!(c, vec!["https-not-detected"]);
        assert!(codes(&[("wsgi.url_scheme", "https"), ("SERVER_PORT", "443")]).is_empty());
        assert_eq!(codes(&[("wsgi.url_scheme", "http"), ("HTTP_X_FORWARDED_PROTO", "https")]), vec!["https-not-detected"]);
    }

    #[test]
    fn authorization_absent_only_with_evidence() {
        // No header and nothing saying one was sent: the client sent none, no warning.
        assert!(codes(&[("SERVER_SOFTWARE", "Apache/2.4.62")]).is_empty());
        assert!(codes(&[("SERVER_SOFTWARE", "Apache/2.4.62"), ("QUERY_STRING", "authorization=sentx")]).is_empty());
        // The server authenticated (mod_auth_basic) but stripped the header.
        let basic = [("SERVER_SOFTWARE", "Apache/2.4.62"), ("AUTH_TYPE", "Basic"), ("REMOTE_USER", "ada")];
        assert_eq!(codes(&basic), vec!["authorization-header-absent"]);
        assert!(warnings(&env(&basic))[0].message.contains("\"ada\""));
        assert_eq!(codes(&[("REMOTE_USER", "ada")]), vec!["authorization-header-absent"]);
        // The tester says the request carried one.
        assert_eq!(codes(&[("QUERY_STRING", "format=json&authorization=sent")]), vec!["authorization-header-absent"]);
        // The header arrived: nothing to say.
        assert!(codes(&[("AUTH_TYPE", "Basic"), ("REMOTE_USER", "ada"), ("HTTP_AUTHORIZATION", "Basic eDp5")]).is_empty());
        assert!(codes(&[("QUERY_STRING", "authorization=sent"), ("HTTP_AUTHORIZATION", "Bearer x")]).is_empty());
    }

    #[test]
    fn http_host_without_the_port() {
        let c = |host: &str, port: &str, scheme: &str| codes(&[("HTTP_HOST", host), ("SERVER_PORT", port), ("wsgi.url_scheme", scheme)]);
        // Debian's HTTP_HOST $host behind nginx on :8080.
        assert_eq!(c("example.com", "8080", "http"), vec!["http-host-without-port"]);
        assert_eq!(c("example.com", "8443", "https"), vec!["http-host-without-port"]);
        assert_eq!(c("[::1]", "8080", "http"), vec!["http-host-without-port"]);
        assert_eq!(c("example.com", "443", "http").len(), 1, "port 443 over http is the https warning alone");
        // The scheme's default port, or the port kept.
        assert!(c("example.com", "80", "http").is_empty());
        assert!(c("example.com", "443", "https").is_empty());
        assert!(c("example.com:8080", "8080", "http").is_empty());
        assert!(c("[::1]:8080", "8080", "http").is_empty());
        // Behind a proxy the public port may differ from SERVER_PORT: a port is a port.
        assert!(c("example.com:443", "8080", "http").is_empty());
        // Nothing to compare.
        assert!(codes(&[("SERVER_PORT", "8080")]).is_empty());
        assert!(codes(&[("HTTP_HOST", "example.com")]).is_empty());
        let w = warnings(&env(&[("HTTP_HOST", "example.com"), ("SERVER_PORT", "8080"), ("wsgi.url_scheme", "http")])).remove(0);
        assert!(w.message.contains("http://example.com:8080"), "{}", w.message);
        assert!(w.fix.contains("map $server_port $port_suffix") && w.fix.contains("fastcgi_param HTTP_HOST $host$port_suffix;"), "{}", w.fix);
    }

    #[test]
    fn renders_escape_and_parse() {
        let e = env(&[("HTTP_X", "<script>")]);
        assert!(render_html(&e, &[]).contains("&lt;script&gt;"));
        let v: serde_json::Value = serde_json::from_str(&render_json(&e, &warnings(&e))).unwrap();
        assert_eq!(v["environ"]["HTTP_X"], "<script>");
    }
}
