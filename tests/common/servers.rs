//! Starting real web servers (Apache, lighttpd, nginx) on free loopback ports with configs
//! rendered from the repo's `apache/`, `lighttpd/` and `examples/nginx/` snippets into the
//! fixture directory, and cgi2wsgi itself as a standalone FastCGI server (`--bind`); each
//! is stopped by PID when dropped.

use super::Fixture;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A running server; killed (SIGTERM, then SIGKILL) and reaped when dropped.
pub struct Server {
    pub name: String,
    pub port: u16,
    /// The logs where the server writes its own errors and its programs' stderr.
    pub logs: Vec<PathBuf>,
    child: Child,
}

impl Server {
    pub fn start(name: &str, cmd: Command, port: u16, logs: Vec<PathBuf>) -> Server {
        Server::start_until(name, cmd, port, logs, &|| TcpStream::connect(("127.0.0.1", port)).is_ok())
    }

    /// Start `cmd` and wait (20 s at most) until `ready` says it serves.
    pub fn start_until(name: &str, mut cmd: Command, port: u16, logs: Vec<PathBuf>, ready: &dyn Fn() -> bool) -> Server {
        // Its own process group: Apache signals its whole group when it shuts down.
        let child = cmd
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e} (is it installed? .ci/run installs it)"));
        let mut server = Server { name: name.to_owned(), port, logs, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("{name} exited at start ({status}); its log:\n{}", server.log());
            }
            assert!(Instant::now() < deadline, "{name} was not ready within 20 s; its log:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn log(&self) -> String {
        self.logs.iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect::<Vec<_>>().join("")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Read a config snippet from the repo and point its example paths into the fixture.
pub fn render_snippet(repo_file: &str, replacements: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(super::repo().join(repo_file)).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{repo_file} no longer mentions {from}");
        text = text.replace(from, to);
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApacheMpm {
    /// mpm_event + mod_cgid (Debian's default)
    EventCgid,
    /// mpm_prefork + mod_cgi
    PreforkCgi,
}

const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

/// Start Apache in the foreground with `site` (a rendered snippet) included; the document
/// root is `htdocs` under the fixture with `AllowOverride All`, as on a shared host.
pub fn apache(fx: &Fixture, mpm: ApacheMpm, site: &str) -> Server {
    let (mpm_module, cgi_module, extra) = match mpm {
        ApacheMpm::EventCgid => ("mpm_event_module mod_mpm_event.so", "cgid_module mod_cgid.so", format!("ScriptSock {}/run/cgid.sock\n", fx.path().display())),
        // mod_cgi does not know ScriptSock.
        ApacheMpm::PreforkCgi => ("mpm_prefork_module mod_mpm_prefork.so", "cgi_module mod_cgi.so", String::new()),
    };
    let modules = [mpm_module, cgi_module, "rewrite_module mod_rewrite.so"];
    start_apache(fx, &format!("apache {mpm:?}"), &modules, &extra, "All", site)
}

/// The Apache config every test server shares: its own runtime dir, pid file, mutexes and
/// log in the fixture, loopback port, www-data workers when root. `modules` are
/// `"name file.so"` pairs on top of the basics (the MPM among them); `extra` is global config;
/// `allow_override` is the document root's AllowOverride.
fn start_apache(fx: &Fixture, name: &str, modules: &[&str], extra: &str, allow_override: &str, site: &str) -> Server {
    let port = free_port();
    let dir = fx.path();
    let basics =
        ["authz_core_module mod_authz_core.so", "alias_module mod_alias.so", "mime_module mod_mime.so", "env_module mod_env.so", "dir_module mod_dir.so"];
    let load: String = modules
        .iter()
        .chain(basics.iter())
        .map(|m| {
            let (name, file) = m.split_once(' ').unwrap();
            format!("LoadModule {name} {APACHE_MODULES}/{file}\n")
        })
        .collect();
    let user = if is_root() { "User www-data\nGroup www-data\n" } else { "" };
    let htdocs = dir.join("htdocs");
    std::fs::create_dir_all(&htdocs).unwrap();
    let conf = format!(
        "ServerRoot {dir}\nDefaultRuntimeDir {dir}/run\nPidFile {dir}/run/httpd.pid\nMutex default:{dir}/run default\n\
         Listen 127.0.0.1:{port}\nServerName 127.0.0.1\n{load}{user}\
         ErrorLog {dir}/logs/error.log\nLogLevel warn\nTypesConfig /etc/mime.types\nTimeout 60\n{extra}\
         <Directory />\n  AllowOverride None\n  Require all denied\n</Directory>\n\
         DocumentRoot {htdocs}\n<Directory {htdocs}>\n  AllowOverride {allow_override}\n  Require all granted\n</Directory>\n\
         {site}\n",
        dir = dir.display(),
        htdocs = htdocs.display(),
    );
    let conf_path = dir.join("apache.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new("/usr/sbin/apache2");
    cmd.arg("-f").arg(&conf_path).arg("-DFOREGROUND");
    Server::start(name, cmd, port, vec![dir.join("logs/error.log")])
}

/// Start lighttpd in the foreground with `site` (a rendered snippet) included.
pub fn lighttpd(fx: &Fixture, site: &str) -> Server {
    lighttpd_wrapped(fx, site, &[])
}

/// `lighttpd`, run through `wrapper` (a command that execs its arguments, e.g. one that
/// hides files in a mount namespace first).
pub fn lighttpd_wrapped(fx: &Fixture, site: &str, wrapper: &[std::ffi::OsString]) -> Server {
    let port = free_port();
    let dir = fx.path();
    let htdocs = dir.join("htdocs");
    std::fs::create_dir_all(&htdocs).unwrap();
    let user = if is_root() { "server.username = \"www-data\"\nserver.groupname = \"www-data\"\n" } else { "" };
    let conf = format!(
        "server.document-root = \"{htdocs}\"\nserver.bind = \"127.0.0.1\"\nserver.port = {port}\n\
         server.errorlog = \"{dir}/logs/error.log\"\nserver.breakagelog = \"{dir}/logs/breakage.log\"\nserver.upload-dirs = ( \"{dir}/tmp\" )\n{user}\
         server.max-request-size = 65536\n\
         mimetype.assign = ( \".txt\" => \"text/plain\", \".html\" => \"text/html\" )\n{site}\n",
        dir = dir.display(),
        htdocs = htdocs.display(),
    );
    let conf_path = dir.join("lighttpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    // lighttpd opens its error log after dropping root: let www-data write there.
    if is_root() {
        let status = Command::new("chown").arg("www-data:www-data").arg(dir.join("logs")).status().unwrap();
        assert!(status.success(), "chown logs failed");
    }
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg("/usr/sbin/lighttpd");
            c
        }
        None => Command::new("/usr/sbin/lighttpd"),
    };
    cmd.arg("-D").arg("-f").arg(&conf_path);
    Server::start("lighttpd", cmd, port, vec![dir.join("logs/error.log"), dir.join("logs/breakage.log")])
}

pub fn wait_for_log(server: &Server, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if server.log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// Start Apache with mpm_event (no CGI module) for the FastCGI recipes: `modules` are
/// `"name file.so"` pairs loaded on top of the basics; `site` is included at server level.
pub fn apache_event(fx: &Fixture, name: &str, modules: &[&str], site: &str) -> Server {
    let mut all = vec!["mpm_event_module mod_mpm_event.so"];
    all.extend_from_slice(modules);
    start_apache(fx, name, &all, "", "None", site)
}

/// `apache_event` with the document root's `AllowOverride All`, as on a shared host.
pub fn apache_event_htaccess(fx: &Fixture, name: &str, modules: &[&str], site: &str) -> Server {
    let mut all = vec!["mpm_event_module mod_mpm_event.so"];
    all.extend_from_slice(modules);
    start_apache(fx, name, &all, "", "All", site)
}

/// Where a standalone cgi2wsgi listens.
#[derive(Debug, Clone)]
pub enum Bind {
    Unix(PathBuf),
    Tcp(u16),
}

impl Bind {
    /// The `--bind` argument.
    pub fn arg(&self) -> String {
        match self {
            Bind::Unix(p) => format!("unix:{}", p.display()),
            Bind::Tcp(port) => format!("127.0.0.1:{port}"),
        }
    }
}

/// Start the fixture's cgi2wsgi as a standalone FastCGI server (`--bind`), as a service
/// manager would, logging to `logs/<name>.log` at info level; `args` come before the
/// `--bind`. A unix socket gets group www-data when we are root (the web server's workers
/// run as www-data), so it stays 0660. Ready when a connection is accepted.
pub fn fastcgi_backend(fx: &Fixture, name: &str, bind: &Bind, args: &[String]) -> Server {
    let log = fx.path().join("logs").join(format!("{name}.log"));
    let mut cmd = Command::new(fx.bin());
    cmd.env_clear().args(args).arg("--bind").arg(bind.arg()).arg("--log-file").arg(&log).arg("--log-level").arg("info");
    if let Bind::Unix(_) = bind {
        if is_root() {
            cmd.arg("--socket-group").arg("www-data");
        }
    }
    let port = match bind {
        Bind::Tcp(p) => *p,
        Bind::Unix(_) => 0,
    };
    let target = bind.clone();
    let ready = move || match &target {
        Bind::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
        Bind::Tcp(port) => TcpStream::connect(("127.0.0.1", *port)).is_ok(),
    };
    Server::start_until(name, cmd, port, vec![log], &ready)
}

/// Start nginx in the foreground with its own prefix (`<fixture>/nginx`: pid, logs and
/// every temp path inside) and `site` (a rendered server block listening on `port`) in
/// the `http` block. `fastcgi_params` is Debian's, copied beside the config so that
/// `include fastcgi_params;` resolves as it does in /etc/nginx.
pub fn nginx(fx: &Fixture, port: u16, site: &str) -> Server {
    let prefix = fx.path().join("nginx");
    std::fs::create_dir_all(&prefix).unwrap();
    std::fs::copy("/etc/nginx/fastcgi_params", prefix.join("fastcgi_params"))
        .unwrap_or_else(|e| panic!("/etc/nginx/fastcgi_params: {e} (apt-get install nginx)"));
    let user = if is_root() { "user www-data;\n" } else { "" };
    let p = prefix.display();
    let log = fx.path().join("logs/nginx-error.log");
    let conf = format!(
        "{user}worker_processes 1;\npid {p}/nginx.pid;\nerror_log {log} warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  default_type application/octet-stream;\n\
         client_body_temp_path {p}/client_body;\n  fastcgi_temp_path {p}/fastcgi;\n  proxy_temp_path {p}/proxy;\n\
         uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\n{site}\n}}\n",
        log = log.display(),
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new("/usr/sbin/nginx");
    // -e: the error log before the config is read (else /var/log/nginx/error.log).
    cmd.arg("-p").arg(&prefix).arg("-c").arg(&conf_path).arg("-e").arg(&log).arg("-g").arg("daemon off; master_process on;");
    Server::start("nginx", cmd, port, vec![log])
}
