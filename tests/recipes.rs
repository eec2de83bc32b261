//! The deployment recipes beyond the basic mounts, each against the real server with the
//! repo's files as users copy them: shared hosting with pretty URLs (`apache/htaccess-rewrite`
//! under `AllowOverride All`, mod_cgid and mod_fcgid, `script-name`), a Flask app whose
//! generated links are followed, and HTTP auth passed through by `CGIPassAuth`.

mod common;

use common::servers::{self, path_str, Server};
use common::{http, Fixture};

// ---------------------------------------------------------------- shared hosting

/// What a stylesheet in the document root holds: different from the Flask example's own
/// static/style.css, so a response with it was served by Apache, not by the app.
const SERVED_BY_APACHE: &str = "/* static file served by Apache, not the app */\n";

/// The document root of a shared host: the .htaccess from apache/, the Flask drop-in as
/// `drop_in_name` (the RewriteRule target renamed to it), and a static file.
fn shared_hosting_docroot(fx: &Fixture, drop_in_name: &str) {
    let htdocs = fx.path().join("htdocs");
    fx.install_drop_in("flask-root.cgi", &htdocs, drop_in_name);
    let htaccess = servers::render_snippet("apache/htaccess-rewrite", &[("RewriteRule ^ app.cgi [L]", format!("RewriteRule ^ {drop_in_name} [L]"))]);
    std::fs::write(htdocs.join(".htaccess"), htaccess).unwrap();
    std::fs::create_dir_all(htdocs.join("static")).unwrap();
    std::fs::write(htdocs.join("static/style.css"), SERVED_BY_APACHE).unwrap();
    let status = std::process::Command::new("chmod").arg("-R").arg("a+rX").arg(&htdocs).status().unwrap();
    assert!(status.success());
}

fn shared_hosting_checks(server: &Server) {
    let port = server.port;
    let mut c = common::scenarios::Checks::new(server);
    c.check("/ runs the app", || {
        let r = http::get(port, "/");
        assert_eq!((r.status, r.text().as_str()), (200, "Hello from Flask\n"));
    });
    c.check("pretty URL: SCRIPT_NAME empty, url_for builds the pretty URL", || {
        let r = http::get(port, "/users/42");
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!((j["user"].as_i64(), j["link"].as_str(), j["script_root"].as_str()), (Some(42), Some("/users/42"), Some("")));
    });
    c.check("every link the app generates works when followed", || {
        let r = http::get(port, "/links?a=1&b=%2F");
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["query"], "a=1&b=%2F");
        assert_eq!(j["index"], "/");
        assert_eq!(j["user"], "/users/7");
        assert_eq!(j["style"], "/static/style.css");
        assert_eq!(j["external"], format!("http://127.0.0.1:{port}/users/7"));
        let r = http::get(port, j["user"].as_str().unwrap());
        assert_eq!((r.status, r.json()["link"].as_str()), (200, Some("/users/7")));
        let r = http::get(port, j["index"].as_str().unwrap());
        assert_eq!(r.status, 200);
        // The static file exists in the document root: Apache serves it, the app never sees it.
        let r = http::get(port, j["style"].as_str().unwrap());
        assert_eq!((r.status, r.text().as_str()), (200, SERVED_BY_APACHE));
        assert!(r.header("content-type").is_some_and(|t| t.starts_with("text/css")), "{:?}", r.headers);
    });
    c.check("a URL the app does not know: its 404, not Apache's", || {
        let r = http::get(port, "/no/such/page");
        assert_eq!(r.status, 404);
        assert!(!r.text().contains("Apache"), "{}", r.text());
    });
    c.check("POST through the rewrite", || {
        // Under mod_fcgid's default FcgidMaxRequestLen (128 KiB), which a tenant cannot raise.
        let body = common::test_bytes(100_000);
        let r = http::request(port, "POST", "/upload", &[("Content-Type", "application/octet-stream")], &body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["sha256"], common::sha256_hex(&body));
    });
    c.check("HTTP Basic auth done by the app (CGIPassAuth in .htaccess)", || {
        let r = http::get(port, "/private");
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Basic")), "{:?}", r.headers);
        let wrong = http::request(port, "GET", "/private", &[("Authorization", "Basic ZGVtbzpubw==")], b"");
        assert_eq!(wrong.status, 401);
        let r = http::request(port, "GET", "/private", &[("Authorization", "Basic ZGVtbzpzM2NyZXQ=")], b"");
        assert_eq!((r.status, r.text().as_str()), (200, "hello demo\n"));
    });
    c.check("no Python error in the log", || {
        assert!(!server.log().contains("Traceback"), "a traceback in the log");
    });
    c.finish();
}

/// mod_cgid (mpm_event, Debian's default): a new process per request.
#[test]
fn shared_hosting_htaccess_rewrite_cgi() {
    let fx = Fixture::new(true);
    shared_hosting_docroot(&fx, "app.cgi");
    let server = servers::apache(&fx, servers::ApacheMpm::EventCgid, "");
    shared_hosting_checks(&server);
}

/// A host with mod_fcgid: the same .htaccess, the drop-in named app.fcgi, and no
/// server-level FcgidPassHeader (a shared host's tenant cannot add it): CGIPassAuth in the
/// .htaccess passes Authorization to mod_fcgid's apps too.
#[test]
fn shared_hosting_htaccess_rewrite_fcgid() {
    let fx = Fixture::new(true);
    shared_hosting_docroot(&fx, "app.fcgi");
    let run = fx.path().join("run");
    let site = format!("FcgidIPCDir {run}/fcgid\nFcgidProcessTableFile {run}/fcgid_shm\n", run = path_str(&run));
    let server = servers::apache_event_htaccess(&fx, "apache mod_fcgid + .htaccess", &["fcgid_module mod_fcgid.so", "rewrite_module mod_rewrite.so"], &site);
    shared_hosting_checks(&server);
}
