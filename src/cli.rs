//! The command line as typed: clap derive, every option also read from `CGI2WSGI_<NAME>`
//! (a `#!` line or `FcgidWrapper` passes few arguments). Validation lives in `config`.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// FastCGI if fd 0 is a listening socket, else CGI if GATEWAY_INTERFACE is set.
    Auto,
    /// One request from the environment and stdin, as a cgi-bin program
    Cgi,
    /// A persistent responder on fd 0, --bind or the systemd socket
    Fastcgi,
}

#[derive(Debug, Parser)]
#[command(
    name = "cgi2wsgi",
    about = "Host a Python WSGI app as a CGI program or FastCGI responder",
    after_help = "APP is pkg.module, pkg.module:callable, pkg.module:factory() or path/to/file.py[:callable];\n\
                  the callable defaults to `application`, then `app`.\n\
                  Every option can also be set as CGI2WSGI_<NAME>; a cgi-bin drop-in starts with\n\
                  `#!/path/to/cgi2wsgi` and may hold `# cgi2wsgi: key = value` lines (flag > variable > drop-in).\n\n\
                  Examples:\n  \
                    cgi2wsgi --bind unix:/run/cgi2wsgi/app.sock --socket-group www-data --venv /srv/app/venv /srv/app/app.py\n  \
                    cgi2wsgi --bind 127.0.0.1:9000 --pythonpath /srv/mysite mysite.wsgi:application\n  \
                    cgi2wsgi --app builtin:doctor     (mount it where the app goes: shows what the server sends, with fixes)\n  \
                    cgi2wsgi bench APP                 (per-request CGI against a persistent worker: see cgi2wsgi bench --help)\n\n\
                  Recipes for Apache, nginx, lighttpd, systemd, shared hosting and Django: see the README."
)]
pub struct Cli {
    /// The WSGI app (see below)
    #[arg(value_name = "APP")]
    pub app_arg: Option<String>,

    /// The WSGI app, as an option
    #[arg(long = "app", value_name = "APP", env = "CGI2WSGI_APP")]
    pub app: Option<String>,

    /// How the web server talks to us
    #[arg(long, value_enum, env = "CGI2WSGI_MODE")]
    pub mode: Option<Mode>,

    /// A virtualenv whose packages the app uses (made with the Python cgi2wsgi is linked against)
    #[arg(long, value_name = "DIR", env = "CGI2WSGI_VENV")]
    pub venv: Option<PathBuf>,

    /// A directory put at the front of sys.path (repeatable; ':'-separated in the variable)
    #[arg(long, value_name = "DIR", env = "CGI2WSGI_PYTHONPATH", value_delimiter = ':')]
    pub pythonpath: Vec<PathBuf>,

    /// Change to this directory before loading the app
    #[arg(long, value_name = "DIR", env = "CGI2WSGI_CHDIR")]
    pub chdir: Option<PathBuf>,

    /// Set an environment variable for the app, e.g. DJANGO_SETTINGS_MODULE=site.settings (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", env = "CGI2WSGI_ENV")]
    pub env: Vec<String>,

    /// Refuse request bodies larger than this with 413 (bytes; K, M, G suffixes)
    #[arg(long, value_name = "SIZE", env = "CGI2WSGI_MAX_BODY")]
    pub max_body: Option<String>,

    /// The app's mount point as browsers see it (`/` for the site root), when the server
    /// sends another SCRIPT_NAME (mod_rewrite to a drop-in): PATH_INFO is then taken from
    /// REQUEST_URI below it
    #[arg(long, value_name = "PATH", env = "CGI2WSGI_SCRIPT_NAME")]
    pub script_name: Option<String>,

    /// Log level on stderr: error, warn, info, debug or trace
    #[arg(long, value_name = "LEVEL", env = "CGI2WSGI_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// FastCGI: listen on unix:/path/to.sock (or /path) or HOST:PORT ([::1]:9000 for IPv6)
    #[arg(long, value_name = "ADDR", env = "CGI2WSGI_BIND")]
    pub bind: Option<String>,

    /// Mode of a unix socket we create, in octal (default 0660: owner and group only)
    #[arg(long, value_name = "OCTAL", env = "CGI2WSGI_SOCKET_MODE")]
    pub socket_mode: Option<String>,

    /// Owner (user name or uid) to give a unix socket we create, so the web server can use it
    #[arg(long, value_name = "USER", env = "CGI2WSGI_SOCKET_OWNER")]
    pub socket_owner: Option<String>,

    /// Group (name or gid) to give a unix socket we create (e.g. www-data)
    #[arg(long, value_name = "GROUP", env = "CGI2WSGI_SOCKET_GROUP")]
    pub socket_group: Option<String>,

    /// FastCGI: after binding the socket, run as this user (name or uid; needs root)
    #[arg(long, value_name = "USER", env = "CGI2WSGI_USER")]
    pub user: Option<String>,

    /// FastCGI: after binding the socket, run as this group (default: the user's own)
    #[arg(long, value_name = "GROUP", env = "CGI2WSGI_GROUP")]
    pub group: Option<String>,

    /// FastCGI: close a connection that stops sending in the middle of a request for this
    /// many seconds (slow or stuck clients; 0: never)
    #[arg(long, value_name = "SECONDS", env = "CGI2WSGI_READ_TIMEOUT", default_value_t = 60)]
    pub read_timeout: u64,

    /// FastCGI: append the log (and the app's stdout/stderr) to this file instead of stderr
    #[arg(long, value_name = "PATH", env = "CGI2WSGI_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// FastCGI: worker processes (default: one per CPU with --bind or systemd; 1 when a web
    /// server passed the socket on fd 0, as mod_fcgid and lighttpd multiply processes)
    #[arg(long, value_name = "N", env = "CGI2WSGI_WORKERS")]
    pub workers: Option<usize>,

    /// FastCGI: each worker imports the app itself, instead of forking from one that did
    #[arg(long, env = "CGI2WSGI_LAZY_APPS")]
    pub lazy_apps: bool,

    /// FastCGI: recycle a worker after about this many requests (up to 10% more, at random)
    #[arg(long, value_name = "N", env = "CGI2WSGI_MAX_REQUESTS")]
    pub max_requests: Option<u64>,

    /// FastCGI: recycle a worker whose resident memory passes this many MiB
    #[arg(long, value_name = "MB", env = "CGI2WSGI_MAX_RSS")]
    pub max_rss: Option<u64>,

    /// FastCGI: how long a stop or reload waits for requests in flight, in seconds
    #[arg(long, value_name = "SECONDS", env = "CGI2WSGI_GRACEFUL_TIMEOUT", default_value_t = 30)]
    pub graceful_timeout: u64,

    /// FastCGI: a request running longer than this many seconds is logged with the Python
    /// stacks, answered 504 and its worker replaced (uWSGI's harakiri)
    #[arg(long, value_name = "SECONDS", env = "CGI2WSGI_TIMEOUT")]
    pub timeout: Option<u64>,

    /// FastCGI: reload the app (new workers, old ones drain) when its files change
    #[arg(long, env = "CGI2WSGI_RELOAD")]
    pub reload: bool,

    /// FastCGI: request threads per worker (default 1: no GIL contention)
    #[arg(long, value_name = "N", env = "CGI2WSGI_THREADS", default_value_t = 1)]
    pub threads: usize,

    /// FastCGI: connections kept open per request thread (default 256)
    #[arg(long, value_name = "N", env = "CGI2WSGI_MAX_CONNS")]
    pub max_conns: Option<usize>,

    /// FastCGI: the roles served, from responder and authorizer (default responder); a request
    /// in another role is refused with a 500 that every web server takes as a denial.
    /// `authorizer` lets the app gate requests for lighttpd (mode authorizer) or Apache
    /// (mod_authnz_fcgi, FcgidAuthorizer); the app sees FCGI_ROLE
    #[arg(long, value_name = "ROLE,ROLE", env = "CGI2WSGI_ROLES")]
    pub roles: Option<String>,

    /// Put tracebacks in 500 responses (never in production)
    #[arg(long, env = "CGI2WSGI_DEBUG")]
    pub debug: bool,

    /// CGI: relay each request to a persistent worker for this app, started on demand
    /// (the CGI accelerator; see the README)
    #[arg(long, env = "CGI2WSGI_PERSIST")]
    pub persist: bool,

    /// CGI accelerator: the worker exits after this many seconds without a request (default 300)
    #[arg(long, value_name = "SECONDS", env = "CGI2WSGI_PERSIST_IDLE_TIMEOUT")]
    pub persist_idle_timeout: Option<u64>,

    /// CGI accelerator: the private directory for the worker's socket, lock and log
    /// (default $XDG_RUNTIME_DIR/cgi2wsgi, else /tmp/cgi2wsgi-UID)
    #[arg(long, value_name = "DIR", env = "CGI2WSGI_PERSIST_DIR")]
    pub persist_dir: Option<PathBuf>,

    /// Internal: run as the accelerator's worker on this socket (started by a CGI invocation)
    #[arg(long, value_name = "SOCKET", hide = true)]
    pub persist_worker: Option<PathBuf>,
}
