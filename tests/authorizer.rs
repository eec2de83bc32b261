//! The FastCGI AUTHORIZER role through real web servers, each configured with the repo's
//! recipe as users copy it (only example paths replaced): lighttpd `mode => authorizer`
//! (`lighttpd/authorizer.conf`), Apache mod_authnz_fcgi (`apache/authnz_fcgi.conf`) and
//! mod_fcgid's FcgidAuthorizer / FcgidAuthenticator (`apache/fcgid-authorizer.conf`).
//! Checked: the example app's login gating static files, what lighttpd's own
//! tests/mod-fastcgi.t asks of an authorizer, `Variable-` headers reaching the next phase,
//! and the fail-closed matrix: every way the authorizer can fail gives the client a 5xx or
//! a 403/401, never the protected file. Each cell is printed (`MATRIX server | case | status`).

mod common;

use common::servers::{self, path_str, Bind, Server};
use common::{http, Fixture};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the protected files hold: a client that gets it was let through.
const SECRET: &str = "the protected file\n";

/// The failures of tests/apps/authz.py's authorizer that must each deny with a 500.
const FAILURES: [&str; 6] = ["raise", "raise-after", "close-raises", "bad-status", "bad-var", "big"];

/// Copy `rel` (from the repo) into the fixture's apps/, readable by www-data.
fn install(fx: &Fixture, rel: &str) -> PathBuf {
    let dir = fx.path().join("apps");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dest = dir.join(Path::new(rel).file_name().unwrap());
    std::fs::copy(common::repo().join(rel), &dest).unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).unwrap();
    dest
}

/// `<fixture>/<under>/{downloads,reports,...}/f.txt` hold SECRET; returns that directory.
fn protected_files(fx: &Fixture, under: &str) -> PathBuf {
    let files = fx.path().join(under);
    for dir in ["downloads", "reports", "fcgid"] {
        std::fs::create_dir_all(files.join(dir)).unwrap();
        std::fs::write(files.join(dir).join("f.txt"), SECRET).unwrap();
    }
    let status = std::process::Command::new("chmod").arg("-R").arg("a+rX").arg(&files).status().unwrap();
    assert!(status.success());
    files
}

fn socket(fx: &Fixture, name: &str) -> PathBuf {
    let dir = fx.path().join("run").join("sock");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.join(name)
}

/// cgi2wsgi serving `app` on `bind` with `args` (the roles among them), from the test venv.
fn backend(fx: &Fixture, name: &str, bind: &Bind, app: &Path, args: &[&str]) -> Server {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend(["--venv".to_owned(), path_str(&fx.venv()), path_str(app)]);
    servers::fastcgi_backend(fx, name, bind, &all)
}

/// A request whose answer must not be the protected file; returns its status.
fn denied(port: u16, path: &str, headers: &[(&str, &str)]) -> u16 {
    let r = http::request(port, "GET", path, headers, b"");
    assert!(!r.text().contains(SECRET.trim()), "{path}: the protected content got through ({})", r.status);
    assert_ne!(r.status, 200, "{path}: {}", r.text());
    r.status
}

fn cell(server: &str, case: &str, status: u16) {
    eprintln!("MATRIX {server} | {case} | {status}");
}

/// Retry `path` until it answers `want` (a backend was just replaced: the web server may
/// still hold it as down for a moment).
fn wait_status(port: u16, path: &str, headers: &[(&str, &str)], want: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = http::request(port, "GET", path, headers, b"");
        if r.status == want {
            return;
        }
        assert!(Instant::now() < deadline, "{path} still answers {} (want {want}): {}", r.status, r.text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A URL-encoded form body.
fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    pairs.iter().map(|(k, v)| format!("{k}={}", v.replace('/', "%2F").replace('?', "%3F"))).collect::<Vec<_>>().join("&").into_bytes()
}

fn cookie_of(r: &http::HttpResponse) -> String {
    let set = r
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no Set-Cookie: {:?}", r.headers));
    set.split(';').next().unwrap().to_owned()
}

/// The example app's flow, wherever the server mounts its login at /auth/login and gates
/// `protected` (a file holding SECRET).
fn example_login_flow(port: u16, protected: &str) {
    let r = http::get(port, protected);
    assert_eq!(r.status, 302, "no session: to the login page: {}", r.text());
    assert_eq!(r.header("Location"), Some(format!("/auth/login?next={protected}").as_str()));
    assert!(!r.text().contains(SECRET.trim()));
    let page = http::get(port, "/auth/login");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("<form"), "{}", page.text());
    let form_type = [("Content-Type", "application/x-www-form-urlencoded")];
    let wrong = http::request(port, "POST", "/auth/login", &form_type, &form(&[("user", "ann"), ("password", "nope"), ("next", protected)]));
    assert_eq!(wrong.status, 403, "{}", wrong.text());
    let ok = http::request(port, "POST", "/auth/login", &form_type, &form(&[("user", "ann"), ("password", "ann-pw"), ("next", protected)]));
    assert_eq!(ok.status, 302, "{}", ok.text());
    assert!(ok.header("Location").unwrap_or_default().ends_with(protected), "{:?}", ok.headers);
    let cookie = cookie_of(&ok);
    let r = http::request(port, "GET", protected, &[("Cookie", &cookie)], b"");
    assert_eq!((r.status, r.text()), (200, SECRET.to_owned()));
    // A forged or foreign cookie is no session.
    let forged = format!("{}x", cookie);
    assert_eq!(denied(port, protected, &[("Cookie", &forged)]), 302);
}

// ---------------------------------------------------------------------------------------
// lighttpd
// ---------------------------------------------------------------------------------------

fn lighttpd_site(gate: &Path, app: &Path, files: &Path, extra: &str) -> String {
    let recipe = servers::render_snippet(
        "lighttpd/authorizer.conf",
        &[("/run/cgi2wsgi/gate.sock", path_str(gate)), ("/run/cgi2wsgi/app.sock", path_str(app)), ("/srv/files", path_str(files))],
    );
    format!("{extra}\n{recipe}")
}

#[test]
fn lighttpd_example_app_gates_downloads() {
    let fx = Fixture::new(true);
    let files = protected_files(&fx, "files");
    let (gate_sock, app_sock) = (socket(&fx, "gate.sock"), socket(&fx, "app.sock"));
    let example = install(&fx, "examples/authorizer/app.py");
    let responder = install(&fx, "tests/apps/authz.py");
    let _gate = backend(
        &fx,
        "gate",
        &Bind::Unix(gate_sock.clone()),
        &example,
        &["--roles", "responder,authorizer", "--env", "AUTHZ_SECRET_KEY=test-key", "--env", "AUTHZ_USERS=ann:ann-pw,bob:bob-pw"],
    );
    let _app = backend(&fx, "app", &Bind::Unix(app_sock.clone()), &responder, &[]);
    let server = servers::lighttpd(&fx, &lighttpd_site(&gate_sock, &app_sock, &files, ""));
    example_login_flow(server.port, "/downloads/f.txt");
    // The gate answers only for /downloads: the same session is denied elsewhere.
    assert_eq!(denied(server.port, "/app/x", &[]), 403);
}

#[test]
fn lighttpd_mod_fastcgi_t_cases_and_fail_closed_matrix() {
    let fx = Fixture::new(true);
    let files = protected_files(&fx, "files");
    let sock = socket(&fx, "gate.sock");
    let app = install(&fx, "tests/apps/authz.py");
    // lighttpd's own mod_auth in front of part of /app: its REMOTE_USER and AUTH_TYPE must
    // still reach the authorizer and the responder.
    let users = fx.path().join("users");
    std::fs::write(&users, "ann:ann-pw\n").unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o644)).unwrap();
    let auth = format!(
        "server.modules += ( \"mod_auth\", \"mod_authn_file\" )\nauth.backend = \"plain\"\nauth.backend.plain.userfile = \"{}\"\n\
         auth.require = ( \"/app/private/\" => ( \"method\" => \"basic\", \"realm\" => \"test\", \"require\" => \"valid-user\" ) )",
        users.display()
    );
    // Both roles of one process behind both sockets of the recipe; two workers (so one
    // killed mid-answer is replaced) and --timeout for the hanging authorizer.
    let bind = Bind::Unix(sock.clone());
    let mut be = backend(&fx, "cgi2wsgi", &bind, &app, &["--roles", "responder,authorizer", "--workers", "2", "--timeout", "3"]);
    let server = servers::lighttpd(&fx, &lighttpd_site(&sock, &sock, &files, &auth));
    let port = server.port;
    let name = "lighttpd";

    // tests/mod-fastcgi.t, as cgi2wsgi must pass it.
    let r = http::get(port, "/downloads/f.txt?auth-ok");
    assert_eq!((r.status, r.text()), (200, SECRET.to_owned()), "auth-ok");
    cell(name, "auth-ok", r.status);
    cell(name, "auth-fail", denied(port, "/downloads/f.txt?auth-fail", &[]));
    assert_eq!(http::get(port, "/downloads/f.txt?auth-fail").status, 403);
    let varfail = denied(port, "/app/x?auth-varfail", &[]);
    assert_eq!(varfail, 403);
    cell(name, "auth-varfail (responder behind)", varfail);
    let r = http::get(port, "/app/x?auth-var");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(
        (j["FCGI_ROLE"].as_str(), j["X_LIGHTTPD_FCGI_AUTH"].as_str(), j["X_USER"].as_str()),
        (Some("RESPONDER"), Some("LighttpdTestContent"), Some("ann"))
    );
    cell(name, "auth-var (Variable- reaches the responder)", r.status);
    let basic = [("Authorization", "Basic YW5uOmFubi1wdw==")];
    let r = http::request(port, "GET", "/app/private/x?auth-ok", &basic, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((r.json()["REMOTE_USER"].as_str(), r.json()["AUTH_TYPE"].as_str()), (Some("ann"), Some("Basic")));
    // What the authorizer itself is given (its denial carries the report).
    let r = http::request(port, "GET", "/app/private/a%20b/../x?report", &basic, b"");
    assert_eq!(r.status, 403);
    let j = r.json();
    assert_eq!((j["FCGI_ROLE"].as_str(), j["SCRIPT_NAME"].as_str(), j["PATH_INFO"].as_str()), (Some("AUTHORIZER"), Some(""), Some("/app/private/x")));
    assert_eq!((j["REMOTE_USER"].as_str(), j["AUTH_TYPE"].as_str(), j["body"].as_str()), (Some("ann"), Some("Basic"), Some("")));
    assert_eq!(http::get(port, "/app/private/x?auth-ok").status, 401, "mod_auth still asks first");

    // The fail-closed matrix, in front of static files and of a responder.
    for case in FAILURES {
        for path in [format!("/downloads/f.txt?{case}"), format!("/app/x?{case}")] {
            let status = denied(port, &path, &[]);
            assert_eq!(status, 500, "{path}");
            cell(name, &format!("{case} {}", &path[..4]), status);
        }
    }
    let status = denied(port, "/downloads/f.txt?hang", &[]);
    assert!(status >= 500, "hang: {status}");
    cell(name, "hang past --timeout", status);
    wait_status(port, "/downloads/f.txt?auth-ok", &[], 200);
    let status = denied(port, "/downloads/f.txt?die", &[]);
    assert!(status >= 500, "die: {status}");
    cell(name, "worker killed mid-answer", status);
    wait_status(port, "/downloads/f.txt?auth-ok", &[], 200);
    let log = std::fs::read_to_string(fx.path().join("logs/cgi2wsgi.log")).unwrap();
    assert!(!log.contains("auth-varfail -> 200"), "the responder ran behind a denial:\n{log}");

    // max-requests recycling under load: denials stay denials, allows stay allows.
    drop(be);
    be = backend(&fx, "cgi2wsgi-recycle", &bind, &app, &["--roles", "responder,authorizer", "--workers", "2", "--max-requests", "3"]);
    wait_status(port, "/downloads/f.txt?auth-ok", &[], 200);
    let statuses = under_load(port, 48);
    let allowed: Vec<u16> = statuses.iter().filter(|(deny, _)| !deny).map(|(_, s)| *s).collect();
    assert!(statuses.iter().filter(|(deny, _)| *deny).all(|(_, s)| *s == 403), "{statuses:?}");
    assert!(allowed.iter().all(|s| *s == 200), "{statuses:?}");
    cell(name, "max-requests recycling under load (denials)", 403);
    let recycled = std::fs::read_to_string(fx.path().join("logs/cgi2wsgi-recycle.log")).unwrap();
    assert!(recycled.matches("worker 0 (pid").count() + recycled.matches("worker 1 (pid").count() > 2, "no worker was recycled:\n{recycled}");

    // The role not enabled: a responder-only process (the default) denies.
    drop(be);
    be = backend(&fx, "cgi2wsgi-responder-only", &bind, &app, &[]);
    wait_status(port, "/downloads/f.txt?auth-ok", &[], 500);
    for path in ["/downloads/f.txt?auth-ok", "/app/x?auth-ok"] {
        let r = http::get(port, path);
        assert_eq!(r.status, 500, "{path}: {}", r.text());
        assert!(r.text().contains("does not serve the FastCGI AUTHORIZER role"), "{path}: {}", r.text());
        cell(name, &format!("role not enabled {}", &path[..4]), r.status);
    }

    // The app not importable: the process exits; the server denies.
    drop(be);
    not_importable(&fx, &bind);
    let status = denied(port, "/downloads/f.txt?auth-ok", &[]);
    assert!(status >= 500, "not importable: {status}");
    cell(name, "app not importable", status);
}

/// `n` requests from 4 threads, alternating a denial and an allow: (is a denial, status).
fn under_load(port: u16, n: usize) -> Vec<(bool, u16)> {
    under_load_paths(port, n, "/downloads/f.txt?auth-fail", "/downloads/f.txt?auth-ok")
}

fn under_load_paths(port: u16, n: usize, deny_path: &'static str, allow_path: &'static str) -> Vec<(bool, u16)> {
    under_load_with(port, n, deny_path, allow_path, &[])
}

fn under_load_with(port: u16, n: usize, deny_path: &'static str, allow_path: &'static str, headers: &[(&'static str, &str)]) -> Vec<(bool, u16)> {
    let headers: Vec<(&'static str, String)> = headers.iter().map(|(n, v)| (*n, v.to_string())).collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let headers = headers.clone();
            std::thread::spawn(move || {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
                (0..n / 4)
                    .map(|i| {
                        let deny = (i + t) % 2 == 0;
                        let path = if deny { deny_path } else { allow_path };
                        let r = http::request(port, "GET", path, &headers, b"");
                        if deny {
                            assert!(!r.text().contains(SECRET.trim()), "a denial let the file through");
                        }
                        (deny, r.status)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
}

/// Start cgi2wsgi on `bind` with an app that cannot be imported and wait until it exits.
fn not_importable(fx: &Fixture, bind: &Bind) {
    let broken = fx.path().join("apps/broken.py");
    std::fs::write(&broken, "raise ImportError('this app cannot be imported')\n").unwrap();
    let log = fx.path().join("logs/broken.log");
    let mut cmd = std::process::Command::new(fx.bin());
    cmd.env_clear().args(["--roles", "responder,authorizer", "--bind"]).arg(bind.arg()).arg("--log-file").arg(&log);
    if servers::is_root() {
        cmd.args(["--socket-group", "www-data"]);
    }
    // The previous backend on this port has exited, but on a loaded machine a process of
    // it may still be closing the listener: wait for the port rather than fail to bind.
    if let Bind::Tcp(port) = bind {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpListener::bind(("127.0.0.1", *port)).is_err() {
            let holders = std::process::Command::new("ss")
                .args(["-ltnpH", &format!("sport = :{port}")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            assert!(Instant::now() < deadline, "port {port} is still taken 20 s after its backend stopped: {holders}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut child = cmd.arg(&broken).spawn().unwrap();
    common::wait_exit(&mut child, Duration::from_secs(30), "cgi2wsgi with an app that cannot be imported");
    assert!(std::fs::read_to_string(&log).unwrap_or_default().contains("this app cannot be imported"));
}

// ---------------------------------------------------------------------------------------
// Apache mod_authnz_fcgi
// ---------------------------------------------------------------------------------------

const AUTHNZ_MODULES: [&str; 6] = [
    "authnz_fcgi_module mod_authnz_fcgi.so",
    "authn_core_module mod_authn_core.so",
    "auth_basic_module mod_auth_basic.so",
    "authz_user_module mod_authz_user.so",
    "proxy_module mod_proxy.so",
    "proxy_fcgi_module mod_proxy_fcgi.so",
];

fn basic(user_pw: &str) -> String {
    use base64_lite as b64;
    format!("Basic {}", b64::encode(user_pw.as_bytes()))
}

/// Just enough base64 for a Basic header.
mod base64_lite {
    pub fn encode(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fn authnz_site(port: u16, extra: &str) -> String {
    let recipe = servers::render_snippet("apache/authnz_fcgi.conf", &[("127.0.0.1:9100", format!("127.0.0.1:{port}"))]);
    format!("{recipe}\n{extra}")
}

#[test]
fn apache_authnz_fcgi_example_app() {
    let fx = Fixture::new(true);
    protected_files(&fx, "htdocs");
    let example = install(&fx, "examples/authorizer/app.py");
    let port = servers::free_port();
    let env = ["--env", "AUTHZ_SECRET_KEY=test-key", "--env", "AUTHZ_USERS=ann:ann-pw,bob:bob-pw", "--env", "AUTHZ_STAFF=ann"];
    let mut args = vec!["--roles", "responder,authorizer", "--script-name", "/auth"];
    args.extend(env);
    let _gate = backend(&fx, "gate", &Bind::Tcp(port), &example, &args);
    let server = servers::apache_event(&fx, "apache mod_authnz_fcgi", &AUTHNZ_MODULES, &authnz_site(port, ""));
    example_login_flow(server.port, "/downloads/f.txt");
    // Basic auth checked by the app, then its Require: ann is staff, bob is not.
    let ann = basic("ann:ann-pw");
    let r = http::request(server.port, "GET", "/reports/f.txt", &[("Authorization", &ann)], b"");
    assert_eq!((r.status, r.text()), (200, SECRET.to_owned()));
    let bob = basic("bob:bob-pw");
    cell("apache mod_authnz_fcgi", "Require: a user the app refuses", denied(server.port, "/reports/f.txt", &[("Authorization", &bob)]));
    let wrong = basic("ann:nope");
    assert_eq!(denied(server.port, "/reports/f.txt", &[("Authorization", &wrong)]), 401);
    assert_eq!(denied(server.port, "/reports/f.txt", &[]), 401);
}

#[test]
fn apache_authnz_fcgi_fail_closed_matrix() {
    let fx = Fixture::new(true);
    protected_files(&fx, "htdocs");
    let app = install(&fx, "tests/apps/authz.py");
    let (gate_port, app_port) = (servers::free_port(), servers::free_port());
    let bind = Bind::Tcp(gate_port);
    let mut be = backend(&fx, "cgi2wsgi", &bind, &app, &["--roles", "responder,authorizer", "--workers", "2", "--timeout", "3"]);
    let _responder = backend(&fx, "responder", &Bind::Tcp(app_port), &app, &["--workers", "1"]);
    // A FastCGI responder behind the gate: the allow's Variable- headers reach it.
    let behind = format!(
        "<Location /app/>\n    AuthnzFcgiCheckAuthnProvider GateAuthn Authoritative On RequireBasicAuth Off UserExpr \"%{{reqenv:REMOTE_USER}}\"\n    \
         Require valid-user\n    ProxyPass \"fcgi://127.0.0.1:{app_port}/\"\n</Location>\n"
    );
    let server = servers::apache_event(&fx, "apache mod_authnz_fcgi", &AUTHNZ_MODULES, &authnz_site(gate_port, &behind));
    let port = server.port;
    let name = "apache mod_authnz_fcgi";
    let ann = basic("ann:ann-pw");
    let creds = [("Authorization", ann.as_str())];

    let r = http::get(port, "/downloads/f.txt?auth-user");
    assert_eq!((r.status, r.text()), (200, SECRET.to_owned()), "check_authn allow");
    let r = http::request(port, "GET", "/reports/f.txt?auth-user", &creds, b"");
    assert_eq!((r.status, r.text()), (200, SECRET.to_owned()), "authn + authz allow");
    let r = http::get(port, "/app/x?auth-user");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!((j["FCGI_ROLE"].as_str(), j["REMOTE_USER"].as_str(), j["X_USER"].as_str()), (Some("RESPONDER"), Some("gate-user"), Some("ann")));
    cell(name, "allow (Variable- reaches the responder)", r.status);
    cell(name, "auth-fail (check_authn)", denied(port, "/downloads/f.txt?auth-fail", &[]));
    assert_eq!(denied(port, "/app/x?auth-varfail", &[]), 403);
    cell(name, "auth-fail (AuthBasicProvider)", denied(port, "/reports/f.txt?auth-fail", &creds));
    // What the authorizer is given: the check_authn denial carries the report.
    let r = http::request(port, "GET", "/downloads/a/../f.txt%3F?report", &creds, b"");
    assert_eq!(r.status, 403);
    let j = r.json();
    assert_eq!((j["FCGI_ROLE"].as_str(), j["FCGI_APACHE_ROLE"].as_str(), j["SCRIPT_NAME"].as_str()), (Some("AUTHORIZER"), Some("AUTHENTICATOR"), Some("")));
    assert_eq!(j["PATH_INFO"].as_str(), Some("/downloads/f.txt?"));

    for case in FAILURES {
        let status = denied(port, &format!("/downloads/f.txt?{case}"), &[]);
        assert_eq!(status, 500, "{case}");
        cell(name, &format!("{case} (check_authn)"), status);
        let status = denied(port, &format!("/reports/f.txt?{case}"), &creds);
        assert_eq!(status, 500, "{case}");
        cell(name, &format!("{case} (AuthBasicProvider)"), status);
    }
    let status = denied(port, "/downloads/f.txt?hang", &[]);
    assert!(status >= 500, "hang: {status}");
    cell(name, "hang past --timeout", status);
    wait_status(port, "/downloads/f.txt?auth-user", &[], 200);
    let status = denied(port, "/downloads/f.txt?die", &[]);
    assert!(status >= 500, "die: {status}");
    cell(name, "worker killed mid-answer", status);
    wait_status(port, "/downloads/f.txt?auth-user", &[], 200);
    let log = std::fs::read_to_string(fx.path().join("logs/responder.log")).unwrap();
    assert!(!log.contains("auth-varfail"), "the responder ran behind a denial:\n{log}");

    drop(be);
    be = backend(&fx, "cgi2wsgi-recycle", &bind, &app, &["--roles", "responder,authorizer", "--workers", "2", "--max-requests", "3"]);
    wait_status(port, "/downloads/f.txt?auth-user", &[], 200);
    let statuses = under_load_paths(port, 48, "/downloads/f.txt?auth-fail", "/downloads/f.txt?auth-user");
    assert!(statuses.iter().filter(|(deny, _)| *deny).all(|(_, s)| *s == 403), "{statuses:?}");
    assert!(statuses.iter().filter(|(deny, _)| !deny).all(|(_, s)| *s == 200), "{statuses:?}");
    cell(name, "max-requests recycling under load (denials)", 403);

    drop(be);
    be = backend(&fx, "cgi2wsgi-responder-only", &bind, &app, &[]);
    for (path, headers) in [("/downloads/f.txt?auth-user", &[][..]), ("/reports/f.txt?auth-user", &creds[..])] {
        let status = denied(port, path, headers);
        assert_eq!(status, 500, "{path}");
        cell(name, &format!("role not enabled {}", &path[..4]), status);
    }
    drop(be);
    not_importable(&fx, &bind);
    let status = denied(port, "/downloads/f.txt?auth-user", &[]);
    assert!(status >= 500, "not importable: {status}");
    cell(name, "app not importable", status);
}

// ---------------------------------------------------------------------------------------
// Apache mod_fcgid: FcgidAuthorizer, FcgidAuthenticator
// ---------------------------------------------------------------------------------------

/// mod_fcgid's authenticator hook must run before mod_auth_basic's (see the recipe): it is
/// loaded first.
const FCGID_MODULES: [&str; 5] = [
    "fcgid_module mod_fcgid.so",
    "authn_core_module mod_authn_core.so",
    "auth_basic_module mod_auth_basic.so",
    "authn_file_module mod_authn_file.so",
    "authz_user_module mod_authz_user.so",
];

/// A drop-in `name` in `dir` running cgi2wsgi with `settings` lines; executable.
fn drop_in(fx: &Fixture, dir: &Path, name: &str, settings: &[String]) -> PathBuf {
    let mut text = format!("#!{}\n", fx.bin().display());
    for s in settings {
        text.push_str(&format!("# cgi2wsgi: {s}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// An htpasswd file (SHA-1 entries, as `htpasswd -s` writes) with ann and bob.
fn htpasswd(fx: &Fixture) -> PathBuf {
    let path = fx.path().join("htpasswd");
    for (i, (user, pw)) in [("ann", "ann-pw"), ("bob", "bob-pw")].iter().enumerate() {
        let mut cmd = std::process::Command::new("htpasswd");
        cmd.arg("-bs");
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd.arg(&path).arg(user).arg(pw).stderr(std::process::Stdio::null()).status().expect("htpasswd (apache2-utils)");
        assert!(status.success());
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// mod_fcgid's own run dir in the fixture, then `site`.
fn fcgid_site(fx: &Fixture, site: &str) -> String {
    let run = fx.path().join("run");
    format!("FcgidIPCDir {}/fcgid\nFcgidProcessTableFile {}/fcgid_shm\n{site}", run.display(), run.display())
}

#[test]
fn apache_mod_fcgid_example_gate() {
    let fx = Fixture::new(true);
    let htdocs = protected_files(&fx, "htdocs");
    for dir in ["reports", "staff"] {
        std::fs::create_dir_all(htdocs.join(dir)).unwrap();
        std::fs::write(htdocs.join(dir).join("f.txt"), SECRET).unwrap();
    }
    // The example drop-in as users copy it: only its #! line and venv pointed at the fixture.
    let gate = fx.examples().join("authorizer/gate.fcgi");
    let text = std::fs::read_to_string(&gate).unwrap();
    assert!(text.contains("# cgi2wsgi: roles = authorizer"));
    let text = text.replacen("#!/usr/local/bin/cgi2wsgi", &format!("#!{}", fx.bin().display()), 1).replace("/srv/gate/venv", &path_str(&fx.venv()));
    std::fs::write(&gate, text).unwrap();
    let recipe = servers::render_snippet(
        "apache/fcgid-authorizer.conf",
        &[("/srv/gate/gate.fcgi", path_str(&gate)), ("/etc/apache2/reports.htpasswd", path_str(&htpasswd(&fx)))],
    );
    let server = servers::apache_event(&fx, "apache mod_fcgid", &FCGID_MODULES, &fcgid_site(&fx, &recipe));
    let port = server.port;
    let name = "apache mod_fcgid";
    let (ann, bob, wrong) = (basic("ann:ann-pw"), basic("bob:bob-pw"), basic("ann:nope"));
    for location in ["/reports/f.txt", "/staff/f.txt"] {
        let r = http::request(port, "GET", location, &[("Authorization", &ann)], b"");
        assert_eq!((r.status, r.text()), (200, SECRET.to_owned()), "{location}: {}", server.log());
        let status = denied(port, location, &[("Authorization", &bob)]);
        assert_eq!(status, 401, "{location}: bob is not staff");
        cell(name, &format!("{location}: a user the app refuses"), status);
        assert_eq!(denied(port, location, &[("Authorization", &wrong)]), 401, "{location}");
        assert_eq!(denied(port, location, &[]), 401, "{location}");
    }
    assert!(server.log().contains("Authentication of user ann to access /staff/f.txt failed"), "the app did not check the password:\n{}", server.log());
}

#[test]
fn apache_mod_fcgid_fail_closed_matrix() {
    let fx = Fixture::new(true);
    let htdocs = protected_files(&fx, "htdocs");
    let app = install(&fx, "tests/apps/authz.py");
    let apps = app.parent().unwrap().to_owned();
    std::fs::write(apps.join("broken.py"), "raise ImportError('this app cannot be imported')\n").unwrap();
    let bin = fx.path().join("fcgi-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let common = |app: &str| vec![format!("venv = {}", fx.venv().display()), format!("pythonpath = {}", apps.display()), format!("app = {app}")];
    let mut gate = common("authz:application");
    gate.push("roles = authorizer".into());
    let gate = drop_in(&fx, &bin, "gate.fcgi", &gate);
    let responder_only = drop_in(&fx, &bin, "responder-only.fcgi", &common("authz:application"));
    let mut broken = common("broken:application");
    broken.push("roles = authorizer".into());
    let broken = drop_in(&fx, &bin, "broken.fcgi", &broken);
    let users = htpasswd(&fx);
    let mut site = String::from("FcgidInitialEnv CGI2WSGI_TIMEOUT 3\nFcgidInitialEnv CGI2WSGI_MAX_REQUESTS 3\nFcgidInitialEnv CGI2WSGI_WORKERS 2\n");
    for (location, authorizer, authn) in [("fcgid", &gate, false), ("fcgidn", &gate, true), ("noroles", &responder_only, false), ("broken", &broken, false)] {
        std::fs::create_dir_all(htdocs.join(location)).unwrap();
        std::fs::write(htdocs.join(location).join("f.txt"), SECRET).unwrap();
        let authn = if authn {
            format!("FcgidAuthenticator {}", authorizer.display())
        } else {
            format!("AuthBasicProvider file\n    AuthUserFile {}", users.display())
        };
        site.push_str(&format!(
            "<Location /{location}/>\n    AuthType Basic\n    AuthName \"{location}\"\n    {authn}\n    FcgidAuthorizer {}\n    Require valid-user\n</Location>\n",
            authorizer.display()
        ));
    }
    let status = std::process::Command::new("chmod").arg("-R").arg("a+rX").arg(fx.path()).status().unwrap();
    assert!(status.success());
    let server = servers::apache_event(&fx, "apache mod_fcgid", &FCGID_MODULES, &fcgid_site(&fx, &site));
    let port = server.port;
    let name = "apache mod_fcgid";
    let ann = basic("ann:ann-pw");
    let creds = [("Authorization", ann.as_str())];

    for (location, what) in [("fcgid", "FcgidAuthorizer"), ("fcgidn", "FcgidAuthenticator")] {
        let ok = format!("/{location}/f.txt?auth-user");
        let r = http::request(port, "GET", &ok, &creds, b"");
        assert_eq!((r.status, r.text()), (200, SECRET.to_owned()), "{ok}: {}", server.log());
        cell(name, &format!("auth-fail ({what})"), denied(port, &format!("/{location}/f.txt?auth-fail"), &creds));
        // mod_fcgid answers any denial with its own 401; the log says what the app answered.
        let phase = if location == "fcgid" { "Authorization" } else { "Authentication" };
        for case in FAILURES {
            let status = denied(port, &format!("/{location}/f.txt?{case}"), &creds);
            assert_eq!(status, 401, "{case}");
            cell(name, &format!("{case} ({what})"), status);
        }
        let status = denied(port, &format!("/{location}/f.txt?hang"), &creds);
        assert_eq!(status, 401, "hang");
        cell(name, &format!("hang past --timeout ({what})"), status);
        let log = server.log();
        for answer in ["failed, reason: script returned status 500", "failed, reason: script returned status 504"] {
            assert!(log.contains(&format!("{phase} of user ann to access /{location}/f.txt {answer}")), "{answer}:\n{log}");
        }
        wait_status(port, &ok, &creds, 200);
        let status = denied(port, &format!("/{location}/f.txt?die"), &creds);
        assert!(status >= 500, "die: {status}");
        cell(name, &format!("worker killed mid-answer ({what})"), status);
        wait_status(port, &ok, &creds, 200);
    }
    let statuses = under_load_with(port, 48, "/fcgid/f.txt?auth-fail", "/fcgid/f.txt?auth-user", &creds);
    assert!(statuses.iter().filter(|(deny, _)| *deny).all(|(_, s)| *s == 401), "{statuses:?}");
    assert!(statuses.iter().filter(|(deny, _)| !deny).all(|(_, s)| *s == 200), "{statuses:?}");
    cell(name, "max-requests recycling under load (denials)", 401);
    let status = denied(port, "/noroles/f.txt?auth-user", &creds);
    assert_eq!(status, 401);
    assert!(server.log().contains("to access /noroles/f.txt failed, reason: script returned status 500"), "{}", server.log());
    cell(name, "role not enabled", status);
    let status = denied(port, "/broken/f.txt?auth-user", &creds);
    assert!(status >= 500, "not importable: {status}");
    cell(name, "app not importable", status);
}

// ---------------------------------------------------------------------------------------
// Why a refused role carries a page: a bare FCGI_UNKNOWN_ROLE through each server
// ---------------------------------------------------------------------------------------

/// tests/apps/bare_unknown_role.py listening on `bind`.
fn bare_unknown_role(script: &Path, bind: &Bind) -> Server {
    let mut cmd = std::process::Command::new("/usr/bin/python3");
    let (arg, port) = match bind {
        Bind::Unix(p) => (path_str(p), 0),
        Bind::Tcp(port) => (port.to_string(), *port),
    };
    cmd.arg(script).arg(&arg);
    let target = bind.clone();
    let ready = move || match &target {
        Bind::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
        Bind::Tcp(port) => std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok(),
    };
    Server::start_until("bare UNKNOWN_ROLE", cmd, port, vec![], &ready)
}

#[test]
fn a_bare_unknown_role_through_each_server() {
    let fx = Fixture::new(false);
    let script = install(&fx, "tests/apps/bare_unknown_role.py");
    let name = "bare FCGI_UNKNOWN_ROLE (no STDOUT)";

    // lighttpd 1.4.69 takes it as an allow: the file is served.
    let files = protected_files(&fx, "files");
    let sock = socket(&fx, "bare.sock");
    let fake = bare_unknown_role(&script, &Bind::Unix(sock.clone()));
    let server = servers::lighttpd(&fx, &lighttpd_site(&sock, &sock, &files, ""));
    let r = http::get(server.port, "/downloads/f.txt");
    assert_eq!((r.status, r.text()), (200, SECRET.to_owned()), "lighttpd no longer lets a bare UNKNOWN_ROLE through: update the README");
    cell(&format!("lighttpd, {name}"), "static file", r.status);
    drop((server, fake));

    // mod_authnz_fcgi: no headers, an error (500).
    protected_files(&fx, "htdocs");
    let port = servers::free_port();
    let fake = bare_unknown_role(&script, &Bind::Tcp(port));
    let server = servers::apache_event(&fx, "apache mod_authnz_fcgi", &AUTHNZ_MODULES, &authnz_site(port, ""));
    let status = denied(server.port, "/downloads/f.txt", &[]);
    assert_eq!(status, 500);
    assert!(server.log().contains("Never reached end of script headers"), "{}", server.log());
    cell(&format!("apache mod_authnz_fcgi, {name}"), "check_authn", status);
    drop((server, fake));

    // mod_fcgid: no headers, an error (500).
    let wrapper = fx.path().join("bare.fcgi");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec /usr/bin/python3 {} fd0\n", script.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let users = htpasswd(&fx);
    let site = format!(
        "<Location /fcgid/>\n    AuthType Basic\n    AuthName \"x\"\n    AuthBasicProvider file\n    AuthUserFile {}\n    FcgidAuthorizer {}\n    Require valid-user\n</Location>\n",
        users.display(),
        wrapper.display()
    );
    let server = servers::apache_event(&fx, "apache mod_fcgid", &FCGID_MODULES, &fcgid_site(&fx, &site));
    let ann = basic("ann:ann-pw");
    let status = denied(server.port, "/fcgid/f.txt", &[("Authorization", &ann)]);
    assert_eq!(status, 500);
    assert!(
        server.log().contains("/fcgid/f.txt failed, reason: script returned status 200; error or unexpected condition while parsing response"),
        "{}",
        server.log()
    );
    cell(&format!("apache mod_fcgid, {name}"), "FcgidAuthorizer", status);
}
