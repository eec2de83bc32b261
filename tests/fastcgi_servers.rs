//! Real web servers talking FastCGI to cgi2wsgi, each with a recipe from `apache/`,
//! `lighttpd/` or `examples/nginx/` as users copy it (only the example paths replaced):
//! Apache mod_fcgid (the server starts cgi2wsgi, socket on fd 0), Apache mod_proxy_fcgi
//! over a unix socket and TCP, lighttpd mod_fastcgi with `bin-path` and with an external
//! socket, nginx over a unix socket, TCP and kept-alive connections. cgi2wsgi is started
//! by the test with `--bind` where a service manager would start it. Every recipe mounts
//! `scenarios::MOUNT_APP` at /app and runs `scenarios::fastcgi_matrix`.

mod common;

use common::scenarios::{self, Checks};
use common::servers::{self, path_str, Bind, Server};
use common::{http, Fixture};
use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// A fixture with the venv and the /app dispatcher; returns it and the app's path.
fn fixture() -> (Fixture, PathBuf) {
    let fx = Fixture::new(true);
    let app = scenarios::install_mount_app(&fx);
    (fx, app)
}

/// A directory for sockets under the fixture's run/ (searchable by the web server's user).
fn socket_dir(fx: &Fixture, name: &str, owner_www_data: bool) -> PathBuf {
    let dir = fx.path().join("run").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    if owner_www_data && servers::is_root() {
        let status = std::process::Command::new("chown").arg("www-data:www-data").arg(&dir).status().unwrap();
        assert!(status.success(), "chown {}", dir.display());
    }
    dir
}

/// cgi2wsgi on its own (as a service manager would run it) serving the /app dispatcher,
/// with two workers (the default is one per CPU: fixed here, and light on CI).
fn backend(fx: &Fixture, app: &std::path::Path, bind: &Bind) -> Server {
    backend_with(fx, app, bind, &["--workers", "2"])
}

fn backend_with(fx: &Fixture, app: &std::path::Path, bind: &Bind, args: &[&str]) -> Server {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend(["--venv".to_owned(), path_str(&fx.venv()), path_str(app)]);
    servers::fastcgi_backend(fx, "cgi2wsgi", bind, &args)
}

/// The unix socket cgi2wsgi made: 0660, group www-data when we run as root.
fn check_socket_perms(path: &std::path::Path) {
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660, "socket mode of {}", path.display());
    if servers::is_root() {
        let www_data = group_id("www-data");
        assert_eq!(meta.gid(), www_data, "socket group of {}", path.display());
    }
}

fn group_id(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: getgrnam returns NULL or a pointer to a static struct read at once.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    assert!(!gr.is_null(), "no group {name}");
    // SAFETY: non-null, as checked.
    unsafe { (*gr).gr_gid }
}

/// Distinct values of `key` in the `conn` app's reports.
fn distinct(reports: &[serde_json::Value], key: &str) -> usize {
    reports.iter().map(|j| j[key].to_string()).collect::<HashSet<_>>().len()
}

// ---------------------------------------------------------------- Apache mod_fcgid

#[test]
fn apache_mod_fcgid() {
    let (fx, app) = fixture();
    // The drop-in form: the cgi-bin examples, named .fcgi.
    let fcgi_bin = fx.path().join("fcgi-bin");
    fx.install_drop_in("echo.cgi", &fcgi_bin, "echo.fcgi");
    fx.install_drop_in("flask.cgi", &fcgi_bin, "flask.fcgi");
    let recipe = servers::render_snippet(
        "apache/fcgid.conf",
        &[
            ("/usr/local/bin/cgi2wsgi", path_str(&fx.bin())),
            ("/srv/myapp/venv", path_str(&fx.venv())),
            ("/srv/myapp/app.py", path_str(&app)),
            ("/srv/fcgi-bin", path_str(&fcgi_bin)),
        ],
    );
    // mod_fcgid's own sockets and process table (Debian keeps them in /var/lib/apache2/fcgid).
    let run = fx.path().join("run");
    let site = format!("FcgidIPCDir {}/fcgid\nFcgidProcessTableFile {}/fcgid_shm\n{recipe}", run.display(), run.display());
    let server = servers::apache_event(&fx, "apache mod_fcgid", &["fcgid_module mod_fcgid.so"], &site);
    let port = server.port;
    let mut c = Checks::new(&server);
    scenarios::fastcgi_matrix(&server, &mut c);
    c.check("drop-in: SCRIPT_NAME, PATH_INFO, Authorization (FcgidPassHeader)", || {
        let r = http::request(port, "GET", "/fcgi-bin/echo.fcgi/x/y?z=1", &[("Authorization", "Basic eDp5")], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!((j["SCRIPT_NAME"].as_str(), j["PATH_INFO"].as_str()), (Some("/fcgi-bin/echo.fcgi"), Some("/x/y")));
        assert_eq!(j["QUERY_STRING"], "z=1");
        assert_eq!(j["HTTP_AUTHORIZATION"], "Basic eDp5");
        assert_eq!(j["run_once"], false);
    });
    c.check("drop-in: Flask with its venv and pythonpath settings", || {
        let r = http::get(port, "/fcgi-bin/flask.fcgi/users/7");
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["link"], "/fcgi-bin/flask.fcgi/users/7");
        assert_eq!(j["script_root"], "/fcgi-bin/flask.fcgi");
    });
    c.check("drop-in: POST 1 MiB (FcgidMaxRequestLen raised)", || {
        let body = common::test_bytes(1 << 20);
        let r = http::request(port, "POST", "/fcgi-bin/echo.fcgi", &[("Content-Type", "application/octet-stream")], &body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["body_sha256"], common::sha256_hex(&body));
    });
    c.finish();
}

// ---------------------------------------------------------------- Apache mod_proxy_fcgi

const PROXY_FCGI: [&str; 2] = ["proxy_module mod_proxy.so", "proxy_fcgi_module mod_proxy_fcgi.so"];

#[test]
fn apache_proxy_fcgi_unix() {
    let (fx, app) = fixture();
    let sock = socket_dir(&fx, "cgi2wsgi", false).join("app.sock");
    let mut cgi2wsgi = backend(&fx, &app, &Bind::Unix(sock.clone()));
    check_socket_perms(&sock);
    let site = servers::render_snippet("apache/proxy_fcgi.conf", &[("/run/cgi2wsgi", path_str(sock.parent().unwrap())), ("/srv/myapp/app.py", path_str(&app))]);
    let mut server = servers::apache_event(&fx, "apache mod_proxy_fcgi (unix)", &PROXY_FCGI, &site);
    server.logs.append(&mut cgi2wsgi.logs);
    let mut c = Checks::new(&server);
    scenarios::fastcgi_matrix(&server, &mut c);
    c.finish();
}

#[test]
fn apache_proxy_fcgi_tcp() {
    let (fx, app) = fixture();
    let backend_port = servers::free_port();
    let mut cgi2wsgi = backend(&fx, &app, &Bind::Tcp(backend_port));
    let site = servers::render_snippet("apache/proxy_fcgi_tcp.conf", &[("127.0.0.1:9000", format!("127.0.0.1:{backend_port}"))]);
    let mut server = servers::apache_event(&fx, "apache mod_proxy_fcgi (tcp, enablereuse)", &PROXY_FCGI, &site);
    server.logs.append(&mut cgi2wsgi.logs);
    let port = server.port;
    let mut c = Checks::new(&server);
    scenarios::fastcgi_matrix(&server, &mut c);
    c.check("enablereuse: requests share connections", || {
        // Each Apache child keeps its own connections, so there may be a few.
        let reports = scenarios::conn_reports(port, 12);
        let conns = scenarios::connections_seen(&reports);
        eprintln!("[apache enablereuse] 12 sequential requests over {conns} connection(s)");
        assert!(conns < 12, "12 requests came over {conns} connections: none was reused ({reports:?})");
    });
    c.finish();
}

/// Connections a web server keeps open between requests (Apache's enablereuse pools are
/// per child process, nginx's keepalive per worker) must not lock new ones out: at
/// --max-conns the least recently used idle connection is closed to make room (FastCGI
/// allows that between requests; Apache and nginx reconnect), and a connection whose
/// request is already waiting unread is never taken for idle. Shown with one worker,
/// --max-conns 2 and three concurrent requests (three connections), then more.
#[test]
fn apache_proxy_fcgi_idle_connections_beyond_max_conns() {
    let (fx, app) = fixture();
    let backend_port = servers::free_port();
    let mut cgi2wsgi = backend_with(&fx, &app, &Bind::Tcp(backend_port), &["--workers", "1", "--max-conns", "2"]);
    let recipe = servers::render_snippet("apache/proxy_fcgi_tcp.conf", &[("127.0.0.1:9000", format!("127.0.0.1:{backend_port}"))]);
    // Fail in seconds rather than after the 60 s Timeout.
    let site = format!("ProxyTimeout 3\n{recipe}");
    let mut server = servers::apache_event(&fx, "apache mod_proxy_fcgi (tcp, enablereuse, --max-conns 2)", &PROXY_FCGI, &site);
    server.logs.append(&mut cgi2wsgi.logs);
    let port = server.port;
    let mut c = Checks::new(&server);
    c.check("three concurrent requests, then more, with --max-conns 2", || {
        let threads: Vec<_> = (0..3).map(|_| std::thread::spawn(move || http::get(port, "/app/conn?0.3").status)).collect();
        let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let later: Vec<u16> = (0..2).map(|_| http::get(port, "/app/hello").status).collect();
        assert!(
            statuses.iter().chain(&later).all(|s| *s == 200),
            "concurrent: {statuses:?}, then sequential: {later:?} (504: a request waited behind idle kept-alive connections)"
        );
    });
    c.finish();
}

// ---------------------------------------------------------------- lighttpd mod_fastcgi

#[test]
fn lighttpd_fastcgi_bin_path() {
    let (fx, app) = fixture();
    // lighttpd makes the sockets after dropping root: a directory www-data owns.
    let sockets = socket_dir(&fx, "lighttpd", true);
    let site = servers::render_snippet(
        "lighttpd/fastcgi.conf",
        &[
            ("/run/lighttpd", path_str(&sockets)),
            ("/usr/local/bin/cgi2wsgi", path_str(&fx.bin())),
            ("/srv/myapp/venv", path_str(&fx.venv())),
            ("/srv/myapp/app.py", path_str(&app)),
        ],
    );
    let server = servers::lighttpd(&fx, &site);
    let port = server.port;
    let mut c = Checks::new(&server);
    scenarios::fastcgi_matrix(&server, &mut c);
    c.check("max-procs 2: two processes serve at once", || {
        let slow: Vec<_> = (0..2).map(|_| std::thread::spawn(move || http::get(port, "/app/conn?1").json())).collect();
        let reports: Vec<_> = slow.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(distinct(&reports, "pid"), 2, "two concurrent requests, one process: {reports:?}");
    });
    c.finish();
}

#[test]
fn lighttpd_fastcgi_socket() {
    let (fx, app) = fixture();
    let sock = socket_dir(&fx, "cgi2wsgi", false).join("app.sock");
    let mut cgi2wsgi = backend(&fx, &app, &Bind::Unix(sock.clone()));
    check_socket_perms(&sock);
    let site = servers::render_snippet("lighttpd/fastcgi_socket.conf", &[("/run/cgi2wsgi", path_str(sock.parent().unwrap()))]);
    let mut server = servers::lighttpd(&fx, &site);
    server.logs.append(&mut cgi2wsgi.logs);
    let mut c = Checks::new(&server);
    scenarios::fastcgi_matrix(&server, &mut c);
    c.finish();
}

// ---------------------------------------------------------------- nginx

/// Render an examples/nginx recipe onto a free port with cgi2wsgi at `bind`; start both.
/// Returns (cgi2wsgi, nginx): bound in that order, nginx stops first.
fn nginx_with(recipe: &str, fx: &Fixture, app: &std::path::Path, bind: Bind) -> (Server, Server) {
    let mut cgi2wsgi = backend(fx, app, &bind);
    let port = servers::free_port();
    let mut replacements = vec![("listen 80;", format!("listen 127.0.0.1:{port};"))];
    match &bind {
        Bind::Unix(sock) => {
            check_socket_perms(sock);
            replacements.push(("/run/cgi2wsgi", path_str(sock.parent().unwrap())));
        }
        Bind::Tcp(p) => replacements.push(("127.0.0.1:9000", format!("127.0.0.1:{p}"))),
    }
    let site = servers::render_snippet(recipe, &replacements);
    let mut server = servers::nginx(fx, port, &site);
    server.name = format!("nginx {recipe}");
    server.logs.append(&mut cgi2wsgi.logs);
    (cgi2wsgi, server)
}

#[test]
fn nginx_unix() {
    let (fx, app) = fixture();
    let sock = socket_dir(&fx, "cgi2wsgi", false).join("app.sock");
    let (_cgi2wsgi, server) = nginx_with("examples/nginx/unix.conf", &fx, &app, Bind::Unix(sock));
    let port = server.port;
    let mut c = Checks::new(&server);
    scenarios::fastcgi_matrix(&server, &mut c);
    c.check("without keepalive: one connection per request", || {
        // The control for nginx_keepalive's check.
        let reports = scenarios::conn_reports(port, 6);
        assert_eq!(scenarios::connections_seen(&reports), 6, "{reports:?}");
    });
    c.finish();
}

#[test]
fn nginx_tcp() {
    let (fx, app) = fixture();
    let (_cgi2wsgi, server) = nginx_with("examples/nginx/tcp.conf", &fx, &app, Bind::Tcp(servers::free_port()));
    let mut c = Checks::new(&server);
    scenarios::fastcgi_matrix(&server, &mut c);
    c.finish();
}

#[test]
fn nginx_keepalive() {
    let (fx, app) = fixture();
    let sock = socket_dir(&fx, "cgi2wsgi", false).join("app.sock");
    let (_cgi2wsgi, server) = nginx_with("examples/nginx/keepalive.conf", &fx, &app, Bind::Unix(sock));
    let port = server.port;
    let mut c = Checks::new(&server);
    // The matrix (streaming, HEAD, big bodies) over kept connections, then whether they
    // were kept.
    scenarios::fastcgi_matrix(&server, &mut c);
    c.check("fastcgi_keep_conn: requests reuse one connection", || {
        // One nginx worker keeps its idle connection: sequential requests all use it.
        let reports = scenarios::conn_reports(port, 10);
        assert_eq!(scenarios::connections_seen(&reports), 1, "10 sequential requests: {reports:?}");
    });
    c.finish();
}
