//! The command line as typed: clap derive, every option also read from `CGI2WSGI_<NAME>`
//! (a `#!` line or `FcgidWrapper` passes few arguments), and its resolution (with the
//! drop-in's settings) into the plain values of `config`. clap's errors become one line here.

pub mod argv;
pub mod check;
pub mod dropin;
pub mod generate;

use crate::cli::dropin::DropIn;
use crate::config::appspec::{AppSpec, AppTarget};
use crate::config::{
    AccelSettings, BindSpec, Config, Gateway, PythonArgs, RunAs, SocketPerms, DEFAULT_IDLE_TIMEOUT, DEFAULT_PERSIST_TIMEOUT, DEFAULT_START_TIMEOUT,
};
use crate::error::ConfigError;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

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
    about = "Host a Python WSGI app as a CGI program or FastCGI responder (and authorizer: --roles)",
    after_help = "APP is pkg.module, pkg.module:callable, pkg.module:factory() or path/to/file.py[:callable];\n\
                  the callable defaults to `application`, then `app`.\n\
                  Every option can also be set as CGI2WSGI_<NAME>; a cgi-bin drop-in starts with\n\
                  `#!/path/to/cgi2wsgi` and may hold `# cgi2wsgi: key = value` lines (flag > variable > drop-in).\n\n\
                  Examples:\n  \
                    cgi2wsgi --bind unix:/run/cgi2wsgi/app.sock --socket-group www-data --venv /srv/app/venv /srv/app/app.py\n  \
                    cgi2wsgi --bind 127.0.0.1:9000 --pythonpath /srv/mysite mysite.wsgi:application\n  \
                    cgi2wsgi --app builtin:doctor     (mount it where the app goes: shows what the server sends, with fixes)\n  \
                    cgi2wsgi check app.cgi             (from a shell: run the app once as a web server would, and say what would go wrong)\n  \
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

    #[command(flatten)]
    pub python: PythonArgs,

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

    /// FastCGI: append the log (and the app's stdout/stderr) to this file instead of stderr;
    /// reopened on SIGUSR1 (logrotate)
    #[arg(long, value_name = "PATH", env = "CGI2WSGI_LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// Append one line per request to this file (remote address, time, request line,
    /// status, bytes, microseconds, pid; see the README); reopened on SIGUSR1. Never stdout
    #[arg(long, value_name = "PATH", env = "CGI2WSGI_ACCESS_LOG")]
    pub access_log: Option<PathBuf>,

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
    #[arg(long, value_name = "N", env = "CGI2WSGI_THREADS")]
    pub threads: Option<usize>,

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
    /// (default $XDG_RUNTIME_DIR/cgi2wsgi, else ~/.cache/cgi2wsgi, else /tmp/cgi2wsgi-UID)
    #[arg(long, value_name = "DIR", env = "CGI2WSGI_PERSIST_DIR")]
    pub persist_dir: Option<PathBuf>,

    /// CGI accelerator: answer 504 when the worker sends nothing for this many seconds
    /// (default 300)
    #[arg(long, value_name = "SECONDS", env = "CGI2WSGI_PERSIST_TIMEOUT")]
    pub persist_timeout: Option<u64>,

    /// CGI accelerator: serve in-process (and stop the worker) when a worker's start takes
    /// longer than this many seconds (default 30)
    #[arg(long, value_name = "SECONDS", env = "CGI2WSGI_PERSIST_START_TIMEOUT")]
    pub persist_start_timeout: Option<u64>,

    /// Internal: run as the accelerator's worker on this socket (started by a CGI invocation)
    #[arg(long, value_name = "SOCKET", hide = true)]
    pub persist_worker: Option<PathBuf>,
}

/// Words that are (or will be) subcommands and so cannot name an app in the first position.
pub const RESERVED: [&str; 2] = ["bench", "check"];

/// Parse `10`, `64K`, `1M`, `2G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let (digits, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    digits.parse::<u64>().ok().and_then(|n| n.checked_mul(mult)).ok_or_else(|| ConfigError::BadSize(s.to_owned()))
}

fn parse_env(pair: &str) -> Result<(String, String), ConfigError> {
    match pair.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => Ok((k.to_owned(), v.to_owned())),
        _ => Err(ConfigError::BadEnv(pair.to_owned())),
    }
}

/// The configuration `cgi2wsgi --mode cgi [PYTHON OPTIONS] APP` would run with, a drop-in's
/// `# cgi2wsgi:` lines included: how `cgi2wsgi bench --compare-wsgiref` sees the app as
/// cgi2wsgi does (handed to `bench` from here, so `bench` never imports the entry layer).
pub fn resolve_cgi_app(app: &str, python: &PythonArgs) -> Result<Config, String> {
    let mut cli = <Cli as Parser>::try_parse_from(["cgi2wsgi", "--mode", "cgi"]).map_err(|e| e.to_string())?;
    cli.app_arg = Some(app.to_owned());
    cli.python = python.clone();
    cli.into_config(true).map_err(|e| e.to_string())
}

impl Cli {
    /// Validate the parsed command line into the configuration. `gateway_interface` is
    /// whether GATEWAY_INTERFACE is set.
    pub fn into_config(self, gateway_interface: bool) -> Result<Config, ConfigError> {
        let cli = self;
        if let Some(word) = cli.app_arg.as_deref().filter(|w| RESERVED.contains(w)) {
            return Err(ConfigError::ReservedWord(word.to_owned()));
        }
        let gateway = cli.gateway(gateway_interface)?;
        let socket_mode = match &cli.socket_mode {
            Some(m) => Some(u32::from_str_radix(m.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o777).ok_or_else(|| ConfigError::BadMode(m.clone()))?),
            None => None,
        };
        let (app, dropin) = cli.app_and_drop_in()?;
        let mut env = dropin.env.iter().map(|p| parse_env(p)).collect::<Result<Vec<_>, _>>()?;
        for pair in &cli.python.env {
            let (k, v) = parse_env(pair)?;
            env.retain(|(old, _)| *old != k);
            env.push((k, v));
        }
        let timeouts = AccelTimeouts { idle: cli.persist_idle_timeout, response: cli.persist_timeout, start: cli.persist_start_timeout };
        let persist = accel_settings(cli.persist_worker.as_ref(), cli.persist, timeouts, cli.persist_dir.clone(), &dropin)?;
        let max_body = match cli.max_body.or(dropin.max_body) {
            Some(s) => Some(parse_size(&s)?),
            None => None,
        };
        // Flags and variables beat the drop-in's lines (a `.fcgi` drop-in under mod_fcgid).
        let max_requests = cli.max_requests.map_or_else(|| dropin_number("max-requests", dropin.max_requests.as_deref()), |n| Ok(Some(n)))?;
        let threads = cli.threads.map_or_else(|| dropin_number("threads", dropin.threads.as_deref()), |n| Ok(Some(n as u64)))?;
        let timeout = cli.timeout.map_or_else(|| dropin_number("timeout", dropin.timeout.as_deref()), |n| Ok(Some(n)))?;
        let roles = match cli.roles.as_deref().or(dropin.roles.as_deref()) {
            Some(list) => crate::http::role::Roles::parse(list).map_err(ConfigError::BadRoles)?,
            None => crate::http::role::Roles::default(),
        };
        let mut pythonpath = cli.python.pythonpath;
        pythonpath.extend(dropin.pythonpath);
        Ok(Config {
            gateway,
            app,
            // Unset anywhere: the venv whose bin/ holds this binary (the wheel's install).
            venv: cli.python.venv.or(dropin.venv).or_else(|| std::env::current_exe().ok().and_then(|exe| crate::config::venv_of_binary(&exe))),
            pythonpath,
            chdir: cli.python.chdir.or(dropin.chdir),
            env,
            max_body,
            script_name: cli.script_name.or(dropin.script_name),
            log_level: cli.log_level.or(dropin.log_level).unwrap_or_else(|| "warn".into()),
            debug: cli.debug || dropin.debug.unwrap_or(false),
            bind: cli.bind.as_deref().map(BindSpec::parse),
            socket_perms: SocketPerms { mode: socket_mode, owner: cli.socket_owner, group: cli.socket_group },
            log_file: cli.log_file,
            access_log: cli.access_log.or_else(|| dropin.access_log.clone()),
            max_conns: cli.max_conns.filter(|n| *n > 0),
            threads: threads.map_or(1, |n| usize::try_from(n).unwrap_or(usize::MAX)).max(1),
            workers: cli.workers,
            lazy_apps: cli.lazy_apps,
            max_requests: max_requests.filter(|n| *n > 0),
            max_rss_mb: cli.max_rss.filter(|n| *n > 0),
            graceful_timeout: Duration::from_secs(cli.graceful_timeout),
            reload: cli.reload,
            timeout: timeout.filter(|t| *t > 0).map(Duration::from_secs),
            read_timeout: Some(cli.read_timeout).filter(|t| *t > 0).map(Duration::from_secs),
            run_as: run_as(cli.user.as_deref(), cli.group.as_deref()).map_err(ConfigError::RunAs)?,
            persist,
            roles,
        })
    }
}

impl Cli {
    /// How this process serves: `--mode`, else what started it.
    fn gateway(&self, gateway_interface: bool) -> Result<Gateway, ConfigError> {
        let systemd = std::env::var("LISTEN_PID").is_ok_and(|p| p == std::process::id().to_string());
        Ok(match self.mode.unwrap_or(Mode::Auto) {
            // The CGI accelerator's worker serves FastCGI on its private socket.
            _ if self.persist_worker.is_some() => Gateway::FastCgi,
            Mode::Cgi => Gateway::Cgi,
            Mode::Fastcgi => Gateway::FastCgi,
            Mode::Auto if self.bind.is_some() || systemd || crate::sys::is_listening_socket(0) => Gateway::FastCgi,
            Mode::Auto if gateway_interface => Gateway::Cgi,
            Mode::Auto => return Err(ConfigError::NoGateway(self.app_arg.clone().or_else(|| self.app.clone()).unwrap_or_else(|| "APP".into()))),
        })
    }

    /// The app and the drop-in file it names (if it is one), whose `app =` and `callable =`
    /// lines refine it.
    fn app_and_drop_in(&self) -> Result<(Option<AppSpec>, DropIn), ConfigError> {
        // The positional APP is a command-line flag in rank; --app/CGI2WSGI_APP come next.
        let mut app = match self.app_arg.as_deref().or(self.app.as_deref()) {
            Some(spec) => Some(AppSpec::parse(spec)?),
            None => None,
        };
        // A drop-in named relative to the current directory (suEXEC runs `app.cgi` in its
        // directory) stays that file after a `chdir` line; a --chdir flag keeps its meaning
        // (a relative file app is taken from that directory).
        if let Some(AppSpec { target: AppTarget::File(path), .. }) = app.as_mut() {
            if path.is_relative() && self.python.chdir.is_none() && path.is_file() {
                if let Ok(abs) = std::path::absolute(&*path) {
                    *path = abs;
                }
            }
        }
        let dropin = match app.as_ref().and_then(AppSpec::file) {
            Some(path) if path.is_file() => DropIn::read(path)?,
            _ => DropIn::default(),
        };
        if let Some(inner) = &dropin.app {
            app = Some(AppSpec::parse(inner)?);
        }
        if let (Some(spec), Some(callable)) = (app.as_mut(), &dropin.callable) {
            if spec.callable.is_none() && matches!(spec.target, AppTarget::File(_)) {
                spec.factory = callable.ends_with("()");
                spec.callable = Some(callable.trim_end_matches("()").to_owned());
            }
        }
        Ok((app, dropin))
    }
}

/// The accelerator's timeouts from flags or variables, in seconds.
struct AccelTimeouts {
    idle: Option<u64>,
    response: Option<u64>,
    start: Option<u64>,
}

/// A number of seconds: the flag's, else the drop-in's text, else the default.
fn seconds(flag: Option<u64>, text: Option<&String>, key: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    let secs = match (flag, text) {
        (Some(s), _) => s,
        (None, Some(text)) => text.trim().parse().map_err(|_| ConfigError::BadSeconds(key, text.clone()))?,
        (None, None) => default.as_secs(),
    };
    Ok(Duration::from_secs(secs.max(1)))
}

/// A whole-number drop-in setting, if the line is there.
fn dropin_number(key: &'static str, text: Option<&str>) -> Result<Option<u64>, ConfigError> {
    text.map(|t| t.trim().parse::<u64>().map_err(|_| ConfigError::BadNumber { key, value: t.to_owned() })).transpose()
}

/// The accelerator's settings: flags and variables beat the drop-in's `persist*` settings.
fn accel_settings(worker: Option<&PathBuf>, flag: bool, t: AccelTimeouts, dir: Option<PathBuf>, dropin: &DropIn) -> Result<AccelSettings, ConfigError> {
    let idle = match (t.idle, &dropin.persist_idle_timeout) {
        (Some(s), _) => s,
        (None, Some(text)) => text.trim().parse().map_err(|_| ConfigError::BadIdleTimeout(text.clone()))?,
        (None, None) => DEFAULT_IDLE_TIMEOUT.as_secs(),
    };
    Ok(AccelSettings {
        enabled: flag || dropin.persist.unwrap_or(false),
        idle_timeout: Duration::from_secs(idle.max(1)),
        dir: dir.or_else(|| dropin.persist_dir.clone()),
        worker_socket: worker.cloned(),
        timeout: seconds(t.response, dropin.persist_timeout.as_ref(), "persist-timeout", DEFAULT_PERSIST_TIMEOUT)?,
        start_timeout: seconds(t.start, dropin.persist_start_timeout.as_ref(), "persist-start-timeout", DEFAULT_START_TIMEOUT)?,
    })
}

/// Resolve `--user` (name or uid) and `--group` (name or gid; default: the user's primary
/// group) while /etc/passwd and /etc/group are still readable.
fn run_as(user: Option<&str>, group: Option<&str>) -> Result<Option<RunAs>, String> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let (mut uid, mut gid) = (crate::sys::euid(), crate::sys::egid());
    let mut name = None;
    if let Some(u) = user {
        match crate::sys::lookup_user(u).map_err(|_| format!("--user {u:?}: bad name"))? {
            Some(found) => {
                uid = found.uid;
                gid = found.gid;
                name = Some(found.name);
            }
            // A bare uid with no passwd entry is allowed (containers); no supplementary groups.
            None => match u.parse::<u32>() {
                Ok(n) => uid = n,
                Err(_) => return Err(format!("--user {u:?}: no such user")),
            },
        }
    }
    if let Some(g) = group {
        gid = crate::sys::lookup_gid(g).map_err(|e| format!("--group: {e}"))?;
    }
    Ok(Some(RunAs { uid, gid, user: name }))
}

/// Why the command line was not turned into arguments.
#[derive(Debug)]
pub enum ArgsExit {
    /// `--help` or `--version`, already printed: exit 0.
    Shown,
    /// One line saying what is wrong, with clap's tip ("a similar argument exists") and
    /// where to read more.
    Error(String),
}

/// Parse `args` with `cmd` (its `bin_name` names it in the message) into `T`, clap's
/// errors reduced to one line.
pub fn parse_args<T: FromArgMatches>(cmd: clap::Command, args: Vec<OsString>) -> Result<T, ArgsExit> {
    let name = cmd.get_bin_name().unwrap_or(cmd.get_name()).to_owned();
    let matches = match cmd.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return Err(ArgsExit::Shown);
        }
        Err(e) => return Err(ArgsExit::Error(format!("{} (see {name} --help)", one_line(&e.to_string())))),
    };
    T::from_arg_matches(&matches).map_err(|e| ArgsExit::Error(one_line(&e.to_string())))
}

/// clap's message on one line: the error and its tips, without the usage block.
pub fn one_line(text: &str) -> String {
    let message = text.split("\nUsage:").next().unwrap_or(text);
    let mut out = String::new();
    for line in message.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("For more information")) {
        if !out.is_empty() {
            // A list after "provided:" and clap's "[possible values: …]" read on; a tip is
            // a clause of its own.
            out.push_str(if out.ends_with(':') || line.starts_with('[') { " " } else { "; " });
        }
        out.push_str(line);
    }
    let out = out.strip_prefix("error: ").unwrap_or(&out).to_owned();
    if out.is_empty() {
        "bad arguments".into()
    } else {
        out
    }
}

impl Cli {
    /// The main command line (with our `--version` text), or why it is not one.
    pub fn from_command_line(args: Vec<OsString>, version: String) -> Result<Cli, ArgsExit> {
        parse_args(Cli::command().version(version), args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10").unwrap(), 10);
        assert_eq!(parse_size("64K").unwrap(), 65536);
        assert_eq!(parse_size("1m").unwrap(), 1 << 20);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert!(parse_size("x").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999G").is_err());
    }

    #[test]
    fn flags_beat_drop_in_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.cgi");
        std::fs::write(&file, "#!/x\n# cgi2wsgi: venv = /from-file\n# cgi2wsgi: env = A=file\n# cgi2wsgi: env = B=file\n").unwrap();
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "cgi", "--venv", "/from-flag", "--env", "A=flag", file.to_str().unwrap()]).unwrap();
        let cfg = cli.into_config(true).unwrap();
        assert_eq!(cfg.venv, Some(PathBuf::from("/from-flag")));
        assert_eq!(cfg.env, vec![("B".into(), "file".into()), ("A".into(), "flag".into())]);
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "cgi", file.to_str().unwrap()]).unwrap();
        assert_eq!(cli.into_config(true).unwrap().venv, Some(PathBuf::from("/from-file")));
    }

    #[test]
    fn accelerator_timeouts_and_access_log_from_the_drop_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.cgi");
        std::fs::write(&file, "#!/x\n# cgi2wsgi: persist-timeout = 7\n# cgi2wsgi: access-log = logs/access.log\n").unwrap();
        let cfg = Cli::try_parse_from(["cgi2wsgi", "--mode", "cgi", file.to_str().unwrap()]).unwrap().into_config(true).unwrap();
        assert_eq!((cfg.persist.timeout, cfg.persist.start_timeout), (Duration::from_secs(7), DEFAULT_START_TIMEOUT));
        assert_eq!(cfg.access_log, Some(dir.path().join("logs/access.log")));
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "cgi", "--persist-timeout", "9", file.to_str().unwrap()]).unwrap();
        assert_eq!(cli.into_config(true).unwrap().persist.timeout, Duration::from_secs(9), "the flag wins");
        std::fs::write(&file, "#!/x\n# cgi2wsgi: persist-start-timeout = soon\n").unwrap();
        let err = Cli::try_parse_from(["cgi2wsgi", "--mode", "cgi", file.to_str().unwrap()]).unwrap().into_config(true).unwrap_err();
        assert_eq!(err.to_string(), "persist-start-timeout \"soon\": expected a whole number of seconds");
    }

    #[test]
    fn fastcgi_drop_in_keys_rank_below_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.fcgi");
        std::fs::write(&file, "#!/x\n# cgi2wsgi: max-requests = 500\n# cgi2wsgi: threads = 4\n# cgi2wsgi: timeout = 30\n").unwrap();
        let f = file.to_str().unwrap();
        let cfg = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", f]).unwrap().into_config(false).unwrap();
        assert_eq!((cfg.max_requests, cfg.threads, cfg.timeout), (Some(500), 4, Some(Duration::from_secs(30))));
        let cfg = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", "--threads", "2", "--max-requests", "9", "--timeout", "0", f])
            .unwrap()
            .into_config(false)
            .unwrap();
        assert_eq!((cfg.max_requests, cfg.threads, cfg.timeout), (Some(9), 2, None));
        std::fs::write(&file, "#!/x\n# cgi2wsgi: threads = many\n").unwrap();
        let err = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", f]).unwrap().into_config(false).unwrap_err().to_string();
        assert!(err.contains("threads") && err.contains("many"), "{err}");
        let cfg = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", "m:app"]).unwrap().into_config(false).unwrap();
        assert_eq!((cfg.max_requests, cfg.threads, cfg.timeout), (None, 1, None));
    }

    #[test]
    fn clap_errors_are_one_line_with_the_tip() {
        let err = |args: &[&str]| match parse_args::<Cli>(Cli::command(), args.iter().map(OsString::from).collect()) {
            Err(ArgsExit::Error(line)) => line,
            other => panic!("{other:?}"),
        };
        let line = err(&["cgi2wsgi", "--thread", "2"]);
        assert!(!line.contains('\n') && line.contains("'--thread'") && line.contains("tip: a similar argument exists: '--threads'"), "{line}");
        assert!(line.ends_with("(see cgi2wsgi --help)") && !line.starts_with("error:"), "{line}");
        assert_eq!(
            one_line("error: the following required arguments were not provided:\n  <APP>\n\nUsage: x <APP>\n"),
            "the following required arguments were not provided: <APP>"
        );
    }

    #[test]
    fn roles_from_flag_or_drop_in() {
        use crate::http::role::Roles;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gate.fcgi");
        std::fs::write(&file, "#!/x\n# cgi2wsgi: roles = authorizer\n").unwrap();
        let path = file.to_str().unwrap();
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", path]).unwrap();
        assert_eq!(cli.into_config(false).unwrap().roles, Roles { responder: false, authorizer: true });
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", "--roles", "responder,authorizer", path]).unwrap();
        assert_eq!(cli.into_config(false).unwrap().roles, Roles { responder: true, authorizer: true });
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", "m:app"]).unwrap();
        assert_eq!(cli.into_config(false).unwrap().roles, Roles::default());
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", "--roles", "responder,filter", "m:app"]).unwrap();
        let err = cli.into_config(false).unwrap_err().to_string();
        assert!(err.starts_with("--roles: ") && err.contains("FILTER"), "{err}");
    }

    #[test]
    fn reserved_word_and_bad_env() {
        let cli = Cli::try_parse_from(["cgi2wsgi", "bench"]).unwrap();
        assert!(matches!(cli.into_config(true), Err(ConfigError::ReservedWord(_))));
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "cgi", "--env", "NOEQUALS", "m:app"]).unwrap();
        assert!(matches!(cli.into_config(true), Err(ConfigError::BadEnv(_))));
    }
}
