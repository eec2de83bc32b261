//! The deployment recipes beyond the basic mounts, each against the real server with the
//! repo's files as users copy them (only example paths replaced): shared hosting with
//! pretty URLs (`apache/htaccess-rewrite` under `AllowOverride All`, mod_cgid and
//! mod_fcgid, `script-name`, HTTP auth through `CGIPassAuth`), the systemd units under
//! `systemd-socket-activate`, scale-out over two backends with one killed (nginx
//! `upstream`, Apache `mod_proxy_balancer`), the Django example through mod_fcgid and
//! nginx, the doctor page in headless chromium, mod_fcgid with `--max-requests`, and the
//! venv/linked-Python mismatch message.

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

// ---------------------------------------------------------------- systemd

/// `Key=Value` lines of a unit file (comments and section headers skipped), in order.
fn unit_settings(file: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(common::repo().join(file)).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn unit_value(settings: &[(String, String)], key: &str, file: &str) -> String {
    settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("{file} has no {key}="))
}

/// A unit's ExecStart as argv, its example paths pointed into the fixture (the app at
/// `app`, sockets under `run`); `--socket-group www-data` dropped when not root.
fn exec_start(file: &str, fx: &Fixture, app: &std::path::Path, run: &std::path::Path) -> Vec<String> {
    let line = unit_value(&unit_settings(file), "ExecStart", file);
    let line = line
        .replace("/usr/local/bin/cgi2wsgi", &path_str(&fx.bin()))
        .replace("/srv/myapp/venv", &path_str(&fx.venv()))
        .replace("/srv/myapp/app.py", &path_str(app))
        .replace("/run/cgi2wsgi", &path_str(run));
    let mut argv: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    assert_eq!(argv[0], path_str(&fx.bin()), "{file}: ExecStart does not run /usr/local/bin/cgi2wsgi");
    if !servers::is_root() {
        if let Some(i) = argv.iter().position(|a| a == "--socket-group") {
            argv.drain(i..i + 2);
        }
    }
    argv
}

/// nginx in front of `sock` with examples/nginx/unix.conf; `backend_log` joins its logs.
fn nginx_unix(fx: &Fixture, sock: &std::path::Path, backend_log: std::path::PathBuf) -> Server {
    let port = servers::free_port();
    let site = servers::render_snippet(
        "examples/nginx/unix.conf",
        &[("listen 80;", format!("listen 127.0.0.1:{port};")), ("/run/cgi2wsgi", path_str(sock.parent().unwrap()))],
    );
    let mut server = servers::nginx(fx, port, &site);
    server.logs.push(backend_log);
    server
}

/// A directory for the socket, as RuntimeDirectory= makes it.
fn runtime_dir(fx: &Fixture) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let run = fx.path().join("run/cgi2wsgi");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    run
}

/// Sends SIGTERM to a process group we started (systemd-socket-activate forks the service
/// into its own group), so the service is stopped with its launcher.
struct GroupGuard(i32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // SAFETY: signalling the process group of a child we started.
        unsafe { libc::kill(-self.0, libc::SIGTERM) };
    }
}

/// examples/systemd/cgi2wsgi.socket + cgi2wsgi.service under `systemd-socket-activate`
/// (systemd's own tool: it listens on ListenStream, and on the first connection starts
/// ExecStart with the socket as fd 3, LISTEN_FDS=1 and LISTEN_PID set, as systemd does);
/// SocketMode/SocketGroup applied as systemd would. nginx in front (unix.conf) runs the
/// FastCGI matrix; the service's stderr stands for the journal.
#[test]
fn systemd_socket_activation() {
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new(true);
    let app = common::scenarios::install_mount_app(&fx);
    let run = runtime_dir(&fx);
    let socket_unit = unit_settings("examples/systemd/cgi2wsgi.socket");
    let listen = unit_value(&socket_unit, "ListenStream", "cgi2wsgi.socket");
    assert!(listen.starts_with("/run/cgi2wsgi/"), "ListenStream={listen}");
    let sock = std::path::PathBuf::from(listen.replace("/run/cgi2wsgi", &path_str(&run)));
    let argv = exec_start("examples/systemd/cgi2wsgi.service", &fx, &app, &run);
    assert!(!argv.iter().any(|a| a == "--bind"), "a socket-activated service must not --bind: {argv:?}");
    let journal = fx.path().join("logs/journal.log");
    let mut cmd = std::process::Command::new("systemd-socket-activate");
    cmd.arg("-l").arg(&sock).args(&argv).stderr(std::fs::File::create(&journal).unwrap());
    let probe = sock.clone();
    let launcher = Server::start_until("systemd-socket-activate", cmd, 0, vec![journal.clone()], &move || probe.exists());
    let _group = GroupGuard(launcher.pid() as i32);
    // What systemd does with SocketUser/SocketGroup/SocketMode after binding.
    if servers::is_root() {
        let owner = format!("{}:{}", unit_value(&socket_unit, "SocketUser", "cgi2wsgi.socket"), unit_value(&socket_unit, "SocketGroup", "cgi2wsgi.socket"));
        assert!(std::process::Command::new("chown").arg(&owner).arg(&sock).status().unwrap().success());
    }
    let mode = unit_value(&socket_unit, "SocketMode", "cgi2wsgi.socket");
    assert!(std::process::Command::new("chmod").arg(&mode).arg(&sock).status().unwrap().success());
    let inode = std::fs::metadata(&sock).unwrap().ino();

    let server = nginx_unix(&fx, &sock, journal);
    let mut c = common::scenarios::Checks::new(&server);
    common::scenarios::fastcgi_matrix(&server, &mut c);
    c.check("cgi2wsgi served the socket systemd passed, with a worker per CPU", || {
        let log = server.log();
        assert!(log.contains("serving the socket systemd passed (LISTEN_FDS)"), "no socket-activation line in the journal");
        let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
        assert!(log.contains(&format!("{cpus} worker(s) serving")), "expected {cpus} workers");
        assert_eq!(std::fs::metadata(&sock).unwrap().ino(), inode, "the socket was replaced: cgi2wsgi bound its own");
    });
    c.finish();
}

/// examples/systemd/cgi2wsgi-unix.service: cgi2wsgi makes its own socket (0660, group
/// www-data) in the RuntimeDirectory; nginx in front (unix.conf) runs the FastCGI matrix.
#[test]
fn systemd_plain_service_unix_socket() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fx = Fixture::new(true);
    let app = common::scenarios::install_mount_app(&fx);
    let run = runtime_dir(&fx);
    let file = "examples/systemd/cgi2wsgi-unix.service";
    let settings = unit_settings(file);
    assert_eq!(unit_value(&settings, "RuntimeDirectory", file), "cgi2wsgi");
    let argv = exec_start(file, &fx, &app, &run);
    let bind = argv.iter().position(|a| a == "--bind").map(|i| argv[i + 1].clone()).expect("--bind in ExecStart");
    let sock = std::path::PathBuf::from(bind.strip_prefix("unix:").expect("--bind unix:"));
    let journal = fx.path().join("logs/journal.log");
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.env_clear().args(&argv[1..]).stderr(std::fs::File::create(&journal).unwrap());
    let probe = sock.clone();
    let _service =
        Server::start_until("cgi2wsgi-unix.service", cmd, 0, vec![journal.clone()], &move || std::os::unix::net::UnixStream::connect(&probe).is_ok());
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let server = nginx_unix(&fx, &sock, journal);
    let mut c = common::scenarios::Checks::new(&server);
    common::scenarios::fastcgi_matrix(&server, &mut c);
    if servers::is_root() {
        c.check("the socket belongs to group www-data", || {
            let www = std::ffi::CString::new("www-data").unwrap();
            // SAFETY: getgrnam returns NULL or a static struct read at once.
            let gid = unsafe { libc::getgrnam(www.as_ptr()).as_ref().map(|g| g.gr_gid) };
            assert_eq!(Some(meta.gid()), gid);
        });
    }
    c.finish();
}

// ---------------------------------------------------------------- scale-out

/// The /app dispatcher, plus `/app/whoami`: which backend (`BACKEND` from `--env`) answered.
const WHOAMI_APP: &str = r#""""Which backend answered: /whoami; everything else to the /app dispatcher."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import app as mount


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/whoami":
        body = json.dumps({"backend": os.environ.get("BACKEND"), "pid": os.getpid()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    return mount.application(environ, start_response)
"#;

/// One request of the load: when it was sent, its status and which backend answered.
struct Outcome {
    sent: std::time::Instant,
    status: u16,
    backend: Option<String>,
}

/// `threads` clients sending GET /app/whoami one after another (5 ms apart) until `stop`, at most
/// `limit` requests in all.
fn load(port: u16, threads: usize, limit: usize, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<Outcome>>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let sent = std::sync::Arc::new(AtomicUsize::new(0));
    (0..threads)
        .map(|_| {
            let (stop, sent) = (stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) && sent.fetch_add(1, Ordering::Relaxed) < limit {
                    let at = std::time::Instant::now();
                    let r = http::get(port, "/app/whoami");
                    let backend = if r.status == 200 { r.json()["backend"].as_str().map(str::to_owned) } else { None };
                    out.push(Outcome { sent: at, status: r.status, backend });
                    // Paced: a steady load over the whole run, not a burst that ends early.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                out
            })
        })
        .collect()
}

/// Two cgi2wsgi backends on two TCP ports behind `front` (a web server configured with
/// the recipe); under load, backend a is killed with SIGKILL (its whole process group:
/// supervisor, zygote and workers, as a host going down). Requests sent after the kill
/// must all succeed, answered by b.
fn scale_out(front: &dyn Fn(&Fixture, u16, u16) -> Server) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let fx = Fixture::new(true);
    common::scenarios::install_mount_app(&fx);
    let whoami = fx.path().join("apps/whoami.py");
    std::fs::write(&whoami, WHOAMI_APP).unwrap();
    let status = std::process::Command::new("chmod").arg("a+r").arg(&whoami).status().unwrap();
    assert!(status.success());
    let backend = |name: &str| {
        let port = servers::free_port();
        let args: Vec<String> = ["--workers", "2", "--env", &format!("BACKEND={name}"), "--venv", &path_str(&fx.venv()), &path_str(&whoami)]
            .iter()
            .map(|s| s.to_string())
            .collect();
        (servers::fastcgi_backend(&fx, &format!("backend-{name}"), &servers::Bind::Tcp(port), &args), port)
    };
    let (a, port_a) = backend("a");
    let (b, port_b) = backend("b");
    let mut server = front(&fx, port_a, port_b);
    server.logs.extend(a.logs.iter().chain(b.logs.iter()).cloned());
    let port = server.port;
    let mut c = common::scenarios::Checks::new(&server);
    c.check("the Flask app's links through the pool", || {
        let r = http::get(port, "/app/users/42");
        assert_eq!((r.status, r.json()["link"].as_str()), (200, Some("/app/users/42")), "{}", r.text());
    });
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let clients = load(port, 4, 20_000, stop.clone());
    // Until both backends have answered (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let both = loop {
        let seen: std::collections::HashSet<String> =
            (0..20).filter_map(|_| http::get(port, "/app/whoami").json()["backend"].as_str().map(str::to_owned)).collect();
        if seen.len() == 2 || Instant::now() > deadline {
            break seen.len() == 2;
        }
    };
    std::thread::sleep(Duration::from_secs(1)); // mid-load
    let killed_at = Instant::now();
    // SAFETY: SIGKILL to the process group of a backend we started (its own group).
    let rc = unsafe { libc::kill(-(a.pid() as i32), libc::SIGKILL) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    drop(a); // reaps the supervisor
             // Requests sent within this margin may have met a process still exiting.
    let settled = killed_at + Duration::from_secs(1);
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let outcomes: Vec<Outcome> = clients.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let before: Vec<&Outcome> = outcomes.iter().filter(|o| o.sent < killed_at).collect();
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.sent >= settled).collect();
    let failed = outcomes.iter().filter(|o| o.status != 200).count();
    eprintln!(
        "[{}] {} requests: {} before the kill, {} sent 1 s or more after it, {failed} failed in all",
        server.name,
        outcomes.len(),
        before.len(),
        after.len()
    );
    c.check("both backends served before the kill", || {
        assert!(both, "the load never reached both backends");
    });
    c.check("after the kill every request succeeds, through b", || {
        assert!(after.len() >= 20, "only {} requests after the kill", after.len());
        let bad: Vec<String> =
            after.iter().filter(|o| o.status != 200 || o.backend.as_deref() != Some("b")).map(|o| format!("{} {:?}", o.status, o.backend)).collect();
        assert!(bad.is_empty(), "{} of {} requests after the kill failed or came from a: {:?}", bad.len(), after.len(), &bad[..bad.len().min(10)]);
    });
    c.finish();
    drop(b);
    let _ = port_b;
}

/// examples/nginx/upstream.conf with its two hosts pointed at two loopback ports.
#[test]
fn scale_out_nginx_upstream() {
    scale_out(&|fx, a, b| {
        let port = servers::free_port();
        let site = servers::render_snippet(
            "examples/nginx/upstream.conf",
            &[("listen 80;", format!("listen 127.0.0.1:{port};")), ("10.0.0.11:9000", format!("127.0.0.1:{a}")), ("10.0.0.12:9000", format!("127.0.0.1:{b}"))],
        );
        let mut server = servers::nginx(fx, port, &site);
        server.name = "nginx upstream".into();
        server
    });
}

/// apache/balancer.conf (mod_proxy_balancer) with its two members on loopback ports.
#[test]
fn scale_out_apache_balancer() {
    scale_out(&|fx, a, b| {
        let site =
            servers::render_snippet("apache/balancer.conf", &[("10.0.0.11:9000", format!("127.0.0.1:{a}")), ("10.0.0.12:9000", format!("127.0.0.1:{b}"))]);
        let modules = [
            "proxy_module mod_proxy.so",
            "proxy_fcgi_module mod_proxy_fcgi.so",
            "proxy_balancer_module mod_proxy_balancer.so",
            "slotmem_shm_module mod_slotmem_shm.so",
            "lbmethod_byrequests_module mod_lbmethod_byrequests.so",
        ];
        servers::apache_event(fx, "apache mod_proxy_balancer", &modules, &site)
    });
}

// ---------------------------------------------------------------- Django

/// The Django example (examples/django) copied into the fixture with its static files
/// collected (`manage.py collectstatic`, as a deploy does); returns the project directory.
fn django_project(fx: &Fixture) -> std::path::PathBuf {
    let project = fx.examples().join("django");
    let out = std::process::Command::new(fx.venv().join("bin/python3"))
        .arg("manage.py")
        .arg("collectstatic")
        .arg("--noinput")
        .current_dir(&project)
        .output()
        .unwrap();
    assert!(out.status.success(), "collectstatic: {}", String::from_utf8_lossy(&out.stderr));
    let status = std::process::Command::new("chmod").arg("-R").arg("a+rX").arg(&project).status().unwrap();
    assert!(status.success());
    project
}

/// `name=value` of the first Set-Cookie for `name`.
fn cookie(r: &http::HttpResponse, name: &str) -> Option<String> {
    r.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.split(';').next())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The value of the hidden csrfmiddlewaretoken input in a page.
fn csrf_token(html: &str) -> Option<String> {
    let at = html.find("name=\"csrfmiddlewaretoken\"")?;
    let rest = &html[at..];
    let value = rest.find("value=\"")? + 7;
    Some(rest[value..].split('"').next()?.to_owned())
}

/// The Django example mounted at /app with /static/ served by the web server.
fn django_checks(server: &Server, project: &std::path::Path) {
    let port = server.port;
    let style = std::fs::read_to_string(project.join("mysite/static/mysite/style.css")).unwrap();
    let mut c = common::scenarios::Checks::new(server);
    c.check("form page: CSRF cookie and token, links with the mount", || {
        let r = http::get(port, "/app/");
        assert_eq!(r.status, 200, "{}", r.text());
        let html = r.text();
        assert!(html.contains("action=\"/app/\""), "form action without the mount: {html}");
        assert!(html.contains("href=\"/static/mysite/style.css\""), "{html}");
        assert!(cookie(&r, "csrftoken").is_some(), "no csrftoken cookie: {:?}", r.headers);
        assert!(csrf_token(&html).is_some(), "no csrfmiddlewaretoken in {html}");
    });
    c.check("POST with the CSRF token, cookie and a browser's Origin succeeds", || {
        let page = http::get(port, "/app/");
        let (cookie, token) = (cookie(&page, "csrftoken").unwrap(), csrf_token(&page.text()).unwrap());
        let body = format!("csrfmiddlewaretoken={token}&name=Ada");
        // A browser sends Origin with the port (the server listens on a free, non-default
        // one): Django compares it with HTTP_HOST, so a front end that drops the port
        // (Debian's fastcgi_params: HTTP_HOST $host) gets a 403 here.
        let origin = format!("http://127.0.0.1:{port}");
        let headers = [("Cookie", cookie.as_str()), ("Content-Type", "application/x-www-form-urlencoded"), ("Origin", &origin)];
        let r = http::request(port, "POST", "/app/", &headers, body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("Thanks, Ada!"), "{}", r.text());
    });
    c.check("POST without the CSRF token is refused (403)", || {
        let r = http::request(port, "POST", "/app/", &[("Content-Type", "application/x-www-form-urlencoded")], b"name=Eve");
        assert_eq!(r.status, 403, "{}", r.text());
        let page = http::get(port, "/app/");
        let cookie = cookie(&page, "csrftoken").unwrap();
        let r = http::request(
            port,
            "POST",
            "/app/",
            &[("Cookie", &cookie), ("Content-Type", "application/x-www-form-urlencoded")],
            b"csrfmiddlewaretoken=forged&name=Eve",
        );
        assert_eq!(r.status, 403, "a forged token passed: {}", r.text());
    });
    c.check("reverse() includes SCRIPT_NAME", || {
        let r = http::get(port, "/app/users/42");
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!((j["link"].as_str(), j["script_name"].as_str()), (Some("/app/users/42"), Some("/app")));
    });
    c.check("the static file is served by the web server from STATIC_ROOT", || {
        let r = http::get(port, "/static/mysite/style.css");
        // (Its Content-Type is the server's business: the test nginx has no mime.types.)
        assert_eq!((r.status, r.text()), (200, style.clone()));
    });
    c.check("no traceback in the logs", || {
        assert!(!server.log().contains("Traceback"));
    });
    c.finish();
}

/// examples/django/apache-fcgid.conf: mod_fcgid starts cgi2wsgi with the Django project.
#[test]
fn django_apache_mod_fcgid() {
    let fx = Fixture::with_django();
    let project = django_project(&fx);
    let recipe = servers::render_snippet(
        "examples/django/apache-fcgid.conf",
        &[("/usr/local/bin/cgi2wsgi", path_str(&fx.bin())), ("/srv/mysite/venv", path_str(&fx.venv())), ("/srv/mysite", path_str(&project))],
    );
    let run = fx.path().join("run");
    let site = format!("FcgidIPCDir {run}/fcgid\nFcgidProcessTableFile {run}/fcgid_shm\n{recipe}", run = path_str(&run));
    let server = servers::apache_event(&fx, "apache mod_fcgid (Django)", &["fcgid_module mod_fcgid.so"], &site);
    django_checks(&server, &project);
}

/// examples/django/nginx.conf: cgi2wsgi on a unix socket with the command its comment gives.
#[test]
fn django_nginx_fastcgi() {
    let fx = Fixture::with_django();
    let project = django_project(&fx);
    let run = runtime_dir(&fx);
    let sock = run.join("mysite.sock");
    let args: Vec<String> =
        ["--venv", &path_str(&fx.venv()), "--pythonpath", &path_str(&project), "--env", "DJANGO_SECRET_KEY=test-only", "mysite.wsgi:application"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let backend = servers::fastcgi_backend(&fx, "cgi2wsgi-django", &servers::Bind::Unix(sock.clone()), &args);
    let port = servers::free_port();
    let site = servers::render_snippet(
        "examples/django/nginx.conf",
        &[("listen 80;", format!("listen 127.0.0.1:{port};")), ("/run/cgi2wsgi", path_str(&run)), ("/srv/mysite", path_str(&project))],
    );
    let mut server = servers::nginx(&fx, port, &site);
    server.name = "nginx (Django)".into();
    server.logs.extend(backend.logs.iter().cloned());
    django_checks(&server, &project);
}

// ---------------------------------------------------------------- the doctor in a browser

/// Run Debian's headless chromium on `url` with `args` (--dump-dom or --screenshot=...);
/// its stdout. Bounded: its process group is killed after 90 s.
fn chromium(url: &str, args: &[String], profile: &std::path::Path) -> String {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    let mut cmd = std::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]);
    if servers::is_root() {
        cmd.arg("--no-sandbox"); // chromium refuses to run as root with its sandbox
    }
    let mut child = cmd
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start chromium: {e} (apt-get install chromium; .ci/run installs it)"));
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // SAFETY: killing the process group of the browser we started.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Its helpers (zygote, renderer) share its group and may outlive it briefly.
    // SAFETY: as above.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let out = reader.join().unwrap();
    assert!(status.success(), "chromium {args:?} {url}: {status}");
    out
}

/// builtin:doctor behind nginx, loaded by a real browser: under a deliberately broken
/// mount (fastcgi_split_path_info without `fastcgi_param PATH_INFO`, the classic omission
/// with Debian's fastcgi_params) the page a person sees shows the environ table and the
/// warning with its fix; under the correct mount (examples/nginx/unix.conf's location), no
/// warning. A screenshot of the broken one is left in target/doctor.png for humans.
#[test]
fn doctor_in_headless_chromium() {
    let fx = Fixture::new(false);
    let run = runtime_dir(&fx);
    let sock = run.join("app.sock");
    let backend =
        servers::fastcgi_backend(&fx, "cgi2wsgi-doctor", &servers::Bind::Unix(sock.clone()), &["--workers".into(), "1".into(), "builtin:doctor".into()]);
    let port = servers::free_port();
    // The recipe's server block, with a second, broken location beside its /app one.
    let broken = format!(
        "    location ~ ^/broken(/|$) {{\n        include fastcgi_params;\n        fastcgi_split_path_info ^(/broken)(/.*)$;\n        fastcgi_pass unix:{};\n    }}\n\n    location ~ ^/app(/|$) {{",
        sock.display()
    );
    let site = servers::render_snippet(
        "examples/nginx/unix.conf",
        &[("listen 80;", format!("listen 127.0.0.1:{port};")), ("/run/cgi2wsgi", path_str(&run)), ("    location ~ ^/app(/|$) {", broken)],
    );
    let mut server = servers::nginx(&fx, port, &site);
    server.logs.extend(backend.logs.iter().cloned());
    let profile = fx.path().join("chromium-profile");
    let mut c = common::scenarios::Checks::new(&server);
    c.check("broken mount: the environ table and the PATH_INFO warning", || {
        let dom = chromium(&format!("http://127.0.0.1:{port}/broken/users/42?x=1"), &["--dump-dom".into()], &profile);
        assert!(dom.contains("<h1>cgi2wsgi doctor</h1>"), "not the doctor page: {dom}");
        // Both omissions of a bare `include fastcgi_params;`: PATH_INFO, and the port that
        // Debian's HTTP_HOST $host drops (the recipe's location fixes both).
        assert!(dom.contains("<h2>2 warning(s)</h2>"), "{dom}");
        assert!(dom.contains("id=\"script-name-path-info-disagree\""), "{dom}");
        assert!(dom.contains("id=\"http-host-without-port\""), "{dom}");
        assert!(dom.contains("fastcgi_param HTTP_HOST $host$port_suffix;"), "the fix is not shown: {dom}");
        assert!(dom.contains("links the app builds will point elsewhere"), "{dom}");
        assert!(dom.contains("fastcgi_param PATH_INFO $fastcgi_path_info;"), "the fix is not shown: {dom}");
        // The environ table: a row per variable, values as the app sees them.
        assert!(dom.contains("<h2>environ</h2>") && dom.contains("<table>"), "{dom}");
        for row in [
            "<th align=\"left\">REQUEST_URI</th><td><code>/broken/users/42?x=1</code></td>",
            "<th align=\"left\">SCRIPT_NAME</th><td><code>/broken</code></td>",
            "<th align=\"left\">QUERY_STRING</th><td><code>x=1</code></td>",
        ] {
            assert!(dom.contains(row), "no row {row} in {dom}");
        }
    });
    c.check("correct mount: no warning", || {
        let dom = chromium(&format!("http://127.0.0.1:{port}/app/users/42"), &["--dump-dom".into()], &profile);
        assert!(dom.contains("<h2>No warnings</h2>"), "{dom}");
        assert!(dom.contains("<th align=\"left\">PATH_INFO</th><td><code>/users/42</code></td>"), "{dom}");
    });
    c.check("a screenshot for humans: target/doctor.png", || {
        let png = common::repo().join("target/doctor.png");
        let _ = std::fs::remove_file(&png);
        chromium(
            &format!("http://127.0.0.1:{port}/broken/users/42?x=1"),
            &[format!("--screenshot={}", png.display()), "--window-size=1200,1000".into(), "--hide-scrollbars".into()],
            &profile,
        );
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5000, "not a PNG of a page ({} bytes)", bytes.len());
    });
    c.finish();
}

// ---------------------------------------------------------------- distribution

/// A venv made with another Python (3.9 here, pyvenv.cfg as `python3.9 -m venv` writes it):
/// the error names the exact rebuild command for that Python, and the venv command for the
/// linked one.
#[test]
fn venv_of_another_python_names_the_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv39");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::fs::write(
        venv.join("pyvenv.cfg"),
        "home = /opt/py39/bin\ninclude-system-site-packages = false\nversion = 3.9.18\nexecutable = /opt/py39/bin/python3.9\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", venv.join("bin/python3")).unwrap();
    let app = common::repo().join("examples/hello.py");
    let env = common::cgi_env("GET", "/", "", &[]);
    let out = common::cgi_run(&["--venv", venv.to_str().unwrap(), app.to_str().unwrap()], &env, b"");
    let r = common::parse_cgi(&out);
    assert_eq!(r.status, 500, "{}", r.stderr);
    assert!(r.stderr.contains("is for Python 3.9.18"), "{}", r.stderr);
    assert!(r.stderr.contains("`PYO3_PYTHON=/opt/py39/bin/python3.9 cargo build --release`"), "{}", r.stderr);
    assert!(r.stderr.contains(&format!(" -m venv {}`", venv.display())), "{}", r.stderr);
    // Without `executable` (Python before 3.11): from `home`.
    std::fs::write(venv.join("pyvenv.cfg"), "home = /opt/py38/bin\nversion = 3.8.10\n").unwrap();
    let r = common::parse_cgi(&common::cgi_run(&["--venv", venv.to_str().unwrap(), app.to_str().unwrap()], &env, b""));
    assert!(r.stderr.contains("`PYO3_PYTHON=/opt/py38/bin/python3.8 cargo build --release`"), "{}", r.stderr);
}

// ---------------------------------------------------------------- mod_fcgid recycling

/// apache/fcgid.conf with `--max-requests 3` added to the wrapper line: cgi2wsgi recycles
/// its worker under mod_fcgid (fresh pids, every request answered) while the process
/// mod_fcgid started stays the same.
#[test]
fn apache_mod_fcgid_with_max_requests() {
    let fx = Fixture::new(true);
    let app = common::scenarios::install_mount_app(&fx);
    let recipe = servers::render_snippet(
        "apache/fcgid.conf",
        &[
            ("\"/usr/local/bin/cgi2wsgi --venv", format!("\"{} --max-requests 3 --log-level info --venv", path_str(&fx.bin()))),
            ("/usr/local/bin/cgi2wsgi", path_str(&fx.bin())),
            ("/srv/myapp/venv", path_str(&fx.venv())),
            ("/srv/myapp/app.py", path_str(&app)),
            ("/srv/fcgi-bin", path_str(&fx.path().join("fcgi-bin"))),
        ],
    );
    let run = fx.path().join("run");
    // One process, so every request meets the same cgi2wsgi.
    let site = format!("FcgidIPCDir {run}/fcgid\nFcgidProcessTableFile {run}/fcgid_shm\nFcgidMaxProcesses 1\n{recipe}", run = path_str(&run));
    let server = servers::apache_event(&fx, "apache mod_fcgid --max-requests 3", &["fcgid_module mod_fcgid.so"], &site);
    let port = server.port;
    let mut c = common::scenarios::Checks::new(&server);
    c.check("20 requests: all answered, by several recycled workers", || {
        let reports = common::scenarios::conn_reports(port, 20);
        let pids: std::collections::HashSet<String> = reports.iter().map(|j| j["pid"].to_string()).collect();
        // About 3 requests each (up to 10% more): at least 5 workers for 20 requests.
        assert!(pids.len() >= 5, "{} worker pid(s) for 20 requests: {reports:?}", pids.len());
        assert!(reports.iter().all(|j| j["served"].as_u64().unwrap() <= 4), "a worker served more than 3 (+10%): {reports:?}");
    });
    c.check("mod_fcgid started one cgi2wsgi: the supervisor kept it", || {
        let log = server.log();
        assert_eq!(log.matches("supervising 1 worker(s)").count(), 1, "mod_fcgid restarted cgi2wsgi");
    });
    c.finish();
}

/// `--script-name` and `CGI2WSGI_SCRIPT_NAME` on a bare CGI request shaped like
/// mod_rewrite's (SCRIPT_NAME of the drop-in, the pretty URL only in REQUEST_URI); the
/// flag beats the variable.
#[test]
fn script_name_flag_and_variable() {
    let app = common::repo().join("examples/echo.py");
    let app = app.to_str().unwrap();
    let env =
        common::cgi_env("GET", "", "a=1", &[("SCRIPT_NAME", "/cgi-bin/app.cgi"), ("REQUEST_URI", "/blog/users/42?a=1"), ("CGI2WSGI_SCRIPT_NAME", "/blog/")]);
    let r = common::parse_cgi(&common::cgi_run(&[app], &env, b""));
    let j = r.json();
    assert_eq!((j["SCRIPT_NAME"].as_str(), j["PATH_INFO"].as_str(), j["QUERY_STRING"].as_str()), (Some("/blog"), Some("/users/42"), Some("a=1")));
    let r = common::parse_cgi(&common::cgi_run(&["--script-name", "/", app], &env, b""));
    let j = r.json();
    assert_eq!((j["SCRIPT_NAME"].as_str(), j["PATH_INFO"].as_str()), (Some(""), Some("/blog/users/42")));
}
