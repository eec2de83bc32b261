//! The resolved configuration as plain values: what every layer above reads, never a place
//! that imports them. Turning the command line, `CGI2WSGI_*` variables and drop-in lines
//! into these values is the entry layer's work (`cli`).

pub mod appspec;

use crate::config::appspec::AppSpec;
use clap::Args;
use std::ffi::{CString, OsString};
use std::path::PathBuf;
use std::time::Duration;

/// The app's Python options, shared by serving and `cgi2wsgi bench` (which passes them on
/// to every run it starts): plain values that clap fills in, flattened into both commands
/// (`cli::Cli`, `bench::BenchArgs`), so they live here, below both.
#[derive(Debug, Clone, Default, Args)]
pub struct PythonArgs {
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
}

impl PythonArgs {
    /// The options as flags, to pass on to another cgi2wsgi; APP goes after them (a
    /// drop-in path ends a CGI argv).
    pub fn to_flags(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        if let Some(venv) = &self.venv {
            v.extend(["--venv".into(), venv.into()]);
        }
        for p in &self.pythonpath {
            v.extend(["--pythonpath".into(), p.into()]);
        }
        if let Some(dir) = &self.chdir {
            v.extend(["--chdir".into(), dir.into()]);
        }
        for e in &self.env {
            v.extend(["--env".into(), e.into()]);
        }
        v
    }
}

/// The resolved way this process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    Cgi,
    FastCgi,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub gateway: Gateway,
    /// `None`: nothing configured; CGI mode answers with an error page saying how to configure one.
    pub app: Option<AppSpec>,
    pub venv: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
    pub chdir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub max_body: Option<u64>,
    /// `--script-name`: see `Request::mount_at`.
    pub script_name: Option<String>,
    pub log_level: String,
    pub debug: bool,
    pub bind: Option<BindSpec>,
    pub socket_perms: SocketPerms,
    pub log_file: Option<PathBuf>,
    /// `--access-log`: one line per request, appended (never stdout).
    pub access_log: Option<PathBuf>,
    pub max_conns: Option<usize>,
    pub threads: usize,
    pub workers: Option<usize>,
    pub lazy_apps: bool,
    pub max_requests: Option<u64>,
    pub max_rss_mb: Option<u64>,
    pub graceful_timeout: Duration,
    pub reload: bool,
    pub timeout: Option<Duration>,
    /// `--read-timeout`: a request that stops arriving mid-way is dropped after this long.
    pub read_timeout: Option<Duration>,
    /// `--user` / `--group`, resolved.
    pub run_as: Option<RunAs>,
    /// The CGI accelerator (`--persist`), and whether this process is its worker.
    pub persist: AccelSettings,
    /// `--roles`: the FastCGI roles served.
    pub roles: crate::http::role::Roles,
}

/// `--bind` as written: `unix:/path`, `/path`, or `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSpec {
    Unix(PathBuf),
    Tcp(String),
}

impl BindSpec {
    pub fn parse(s: &str) -> BindSpec {
        match s.strip_prefix("unix:") {
            Some(p) => BindSpec::Unix(PathBuf::from(p)),
            None if s.starts_with('/') || s.starts_with("./") => BindSpec::Unix(PathBuf::from(s)),
            None => BindSpec::Tcp(s.to_owned()),
        }
    }
}

/// Ownership and permissions for a unix socket we create.
#[derive(Debug, Clone, Default)]
pub struct SocketPerms {
    /// Default 0660: the web server reaches it through the group, never the world.
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// `--user` / `--group`, resolved while /etc/passwd and /etc/group are still readable: the
/// account a responder started as root becomes right after binding.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Set when a user was named: its supplementary groups are taken too (initgroups).
    pub user: Option<CString>,
}

/// A CGI accelerator's worker with no request for this long exits.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the relay waits for a byte of the worker's response before answering 504
/// (Apache's own default `Timeout`).
pub const DEFAULT_PERSIST_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a worker's start (the app's import) may take before the request is served
/// in-process and the starting worker killed.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The CGI accelerator: `--persist` and friends, resolved; `worker_socket` is set only in
/// its worker.
#[derive(Debug, Clone)]
pub struct AccelSettings {
    pub enabled: bool,
    pub idle_timeout: Duration,
    pub dir: Option<PathBuf>,
    pub worker_socket: Option<PathBuf>,
    /// `--persist-timeout`: the relay's wait for the worker's response.
    pub timeout: Duration,
    /// `--persist-start-timeout`: the wait for a starting worker.
    pub start_timeout: Duration,
}

impl Default for AccelSettings {
    fn default() -> Self {
        AccelSettings {
            enabled: false,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            dir: None,
            worker_socket: None,
            timeout: DEFAULT_PERSIST_TIMEOUT,
            start_timeout: DEFAULT_START_TIMEOUT,
        }
    }
}

/// The venv a binary installed in its `bin/` belongs to (`pip install cgi2wsgi` puts it
/// there): that venv is the default, as it is for the venv's own `python`. `exe` is the
/// resolved executable (`/proc/self/exe`), so the accelerator's worker, started from that path,
/// resolves the same venv.
pub fn venv_of_binary(exe: &std::path::Path) -> Option<PathBuf> {
    let venv = exe.parent().filter(|bin| bin.file_name().is_some_and(|n| n == "bin"))?.parent()?;
    venv.join("pyvenv.cfg").is_file().then(|| venv.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_in_a_venvs_bin_uses_that_venv() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let exe = dir.path().join("bin/cgi2wsgi");
        assert_eq!(venv_of_binary(&exe), None, "no pyvenv.cfg: not a venv");
        std::fs::write(dir.path().join("pyvenv.cfg"), "home = /usr/bin\n").unwrap();
        assert_eq!(venv_of_binary(&exe), Some(dir.path().to_owned()));
        assert_eq!(venv_of_binary(&dir.path().join("cgi2wsgi")), None, "only from bin/");
    }

    #[test]
    fn bind_spec_forms() {
        assert_eq!(BindSpec::parse("unix:/run/a.sock"), BindSpec::Unix("/run/a.sock".into()));
        assert_eq!(BindSpec::parse("/run/a.sock"), BindSpec::Unix("/run/a.sock".into()));
        assert_eq!(BindSpec::parse("127.0.0.1:9000"), BindSpec::Tcp("127.0.0.1:9000".into()));
        assert_eq!(BindSpec::parse("[::1]:9000"), BindSpec::Tcp("[::1]:9000".into()));
    }
}
