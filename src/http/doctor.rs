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
    if !env.contains_key("HTTP_AUTHORIZATION") && get(env, "SERVER_SOFTWARE").starts_with("Apache") {
        out.push(Warning {
            code: "authorization-header-absent",
            message: "no HTTP_AUTHORIZATION: Apache hides the Authorization header from CGI and FastCGI apps, so token or Basic auth handled by the app fails"
                .into(),
            fix: "Apache 2.4.13+: CGIPassAuth On (in the <Directory> or .htaccess); mod_fcgid: FcgidPassHeader Authorization",
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
    fn apache_without_authorization() {
        assert_eq!(codes(&[("SERVER_SOFTWARE", "Apache/2.4.62")]), vec!["authorization-header-absent"]);
        assert!(codes(&[("SERVER_SOFTWARE", "Apache/2.4.62"), ("HTTP_AUTHORIZATION", "Bearer x")]).is_empty());
    }

    #[test]
    fn renders_escape_and_parse() {
        let e = env(&[("HTTP_X", "<script>")]);
        assert!(render_html(&e, &[]).contains("&lt;script&gt;"));
        let v: serde_json::Value = serde_json::from_str(&render_json(&e, &warnings(&e))).unwrap();
        assert_eq!(v["environ"]["HTTP_X"], "<script>");
    }
}
