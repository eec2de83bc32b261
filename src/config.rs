//! Raw `Cli` + environment + drop-in settings → a validated `Config`, including mode detection.
//! Precedence: command-line flag > `CGI2WSGI_*` variable > drop-in setting > default.

use crate::appspec::{AppSpec, AppTarget};
use crate::cli::{Cli, Mode};
use crate::dropin::DropIn;
use crate::error::ConfigError;
use crate::server::listen::{BindSpec, SocketPerms};
use std::path::PathBuf;

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
    pub max_conns: Option<usize>,
    pub threads: usize,
    pub workers: Option<usize>,
    pub lazy_apps: bool,
    pub max_requests: Option<u64>,
    pub max_rss_mb: Option<u64>,
    pub graceful_timeout: std::time::Duration,
    pub reload: bool,
    pub timeout: Option<std::time::Duration>,
    /// `--read-timeout`: a request that stops arriving mid-way is dropped after this long.
    pub read_timeout: Option<std::time::Duration>,
    /// `--user` / `--group`, resolved.
    pub run_as: Option<crate::server::privs::Target>,
    /// The CGI accelerator (`--persist`), and whether this process is its worker.
    pub persist: crate::accel::Settings,
    /// `--roles`: the FastCGI roles served.
    pub roles: crate::role::Roles,
}

/// Words that are (or will be) subcommands and so cannot name an app in the first position.
pub const RESERVED: [&str; 1] = ["bench"];

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

/// Is fd 0 a listening socket (FCGI_LISTENSOCK_FILENO)? A connected socket or a pipe is not.
pub fn stdin_is_listening_socket() -> bool {
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `val`, which is that large.
    let rc = unsafe { libc::getsockopt(0, libc::SOL_SOCKET, libc::SO_ACCEPTCONN, (&mut val as *mut libc::c_int).cast(), &mut len) };
    rc == 0 && val != 0
}

impl Config {
    /// Validate the parsed command line. `gateway_interface` is whether GATEWAY_INTERFACE is set.
    pub fn from_cli(cli: Cli, gateway_interface: bool) -> Result<Config, ConfigError> {
        if let Some(word) = cli.app_arg.as_deref().filter(|w| RESERVED.contains(w)) {
            return Err(ConfigError::ReservedWord(word.to_owned()));
        }
        let systemd = std::env::var("LISTEN_PID").is_ok_and(|p| p == std::process::id().to_string());
        let gateway = match cli.mode.unwrap_or(Mode::Auto) {
            // The CGI accelerator's worker serves FastCGI on its private socket.
            _ if cli.persist_worker.is_some() => Gateway::FastCgi,
            Mode::Cgi => Gateway::Cgi,
            Mode::Fastcgi => Gateway::FastCgi,
            Mode::Auto if cli.bind.is_some() || systemd || stdin_is_listening_socket() => Gateway::FastCgi,
            Mode::Auto if gateway_interface => Gateway::Cgi,
            Mode::Auto => return Err(ConfigError::NoGateway),
        };
        let socket_mode = match &cli.socket_mode {
            Some(m) => Some(u32::from_str_radix(m.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o777).ok_or_else(|| ConfigError::BadMode(m.clone()))?),
            None => None,
        };
        // The positional APP is a command-line flag in rank; --app/CGI2WSGI_APP come next.
        let mut app = match cli.app_arg.as_deref().or(cli.app.as_deref()) {
            Some(spec) => Some(AppSpec::parse(spec)?),
            None => None,
        };
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
        let mut env = dropin.env.iter().map(|p| parse_env(p)).collect::<Result<Vec<_>, _>>()?;
        for pair in &cli.env {
            let (k, v) = parse_env(pair)?;
            env.retain(|(old, _)| *old != k);
            env.push((k, v));
        }
        let persist = crate::accel::Settings::resolve(&cli.persist_worker, cli.persist, cli.persist_idle_timeout, cli.persist_dir.clone(), &dropin)?;
        let max_body = match cli.max_body.or(dropin.max_body) {
            Some(s) => Some(parse_size(&s)?),
            None => None,
        };
        let roles = match cli.roles.as_deref().or(dropin.roles.as_deref()) {
            Some(list) => crate::role::Roles::parse(list).map_err(ConfigError::BadRoles)?,
            None => crate::role::Roles::default(),
        };
        let mut pythonpath = cli.pythonpath;
        pythonpath.extend(dropin.pythonpath);
        Ok(Config {
            gateway,
            app,
            venv: cli.venv.or(dropin.venv),
            pythonpath,
            chdir: cli.chdir.or(dropin.chdir),
            env,
            max_body,
            script_name: cli.script_name.or(dropin.script_name),
            log_level: cli.log_level.or(dropin.log_level).unwrap_or_else(|| "warn".into()),
            debug: cli.debug || dropin.debug.unwrap_or(false),
            bind: cli.bind.as_deref().map(BindSpec::parse),
            socket_perms: SocketPerms { mode: socket_mode, owner: cli.socket_owner, group: cli.socket_group },
            log_file: cli.log_file,
            max_conns: cli.max_conns.filter(|n| *n > 0),
            threads: cli.threads.max(1),
            workers: cli.workers,
            lazy_apps: cli.lazy_apps,
            max_requests: cli.max_requests.filter(|n| *n > 0),
            max_rss_mb: cli.max_rss.filter(|n| *n > 0),
            graceful_timeout: std::time::Duration::from_secs(cli.graceful_timeout),
            reload: cli.reload,
            timeout: cli.timeout.filter(|t| *t > 0).map(std::time::Duration::from_secs),
            read_timeout: Some(cli.read_timeout).filter(|t| *t > 0).map(std::time::Duration::from_secs),
            run_as: crate::server::privs::resolve(cli.user.as_deref(), cli.group.as_deref()).map_err(|e| ConfigError::RunAs(e.to_string()))?,
            persist,
            roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Roles;
    use clap::Parser;

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
        let cfg = Config::from_cli(cli, true).unwrap();
        assert_eq!(cfg.venv, Some(PathBuf::from("/from-flag")));
        assert_eq!(cfg.env, vec![("B".into(), "file".into()), ("A".into(), "flag".into())]);
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "cgi", file.to_str().unwrap()]).unwrap();
        assert_eq!(Config::from_cli(cli, true).unwrap().venv, Some(PathBuf::from("/from-file")));
    }

    #[test]
    fn roles_from_flag_or_drop_in() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gate.fcgi");
        std::fs::write(&file, "#!/x\n# cgi2wsgi: roles = authorizer\n").unwrap();
        let path = file.to_str().unwrap();
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", path]).unwrap();
        assert_eq!(Config::from_cli(cli, false).unwrap().roles, Roles { responder: false, authorizer: true });
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", "--roles", "responder,authorizer", path]).unwrap();
        assert_eq!(Config::from_cli(cli, false).unwrap().roles, Roles { responder: true, authorizer: true });
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", "m:app"]).unwrap();
        assert_eq!(Config::from_cli(cli, false).unwrap().roles, Roles::default());
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "fastcgi", "--roles", "responder,filter", "m:app"]).unwrap();
        let err = Config::from_cli(cli, false).unwrap_err().to_string();
        assert!(err.starts_with("--roles: ") && err.contains("FILTER"), "{err}");
    }

    #[test]
    fn reserved_word_and_bad_env() {
        let cli = Cli::try_parse_from(["cgi2wsgi", "bench"]).unwrap();
        assert!(matches!(Config::from_cli(cli, true), Err(ConfigError::ReservedWord(_))));
        let cli = Cli::try_parse_from(["cgi2wsgi", "--mode", "cgi", "--env", "NOEQUALS", "m:app"]).unwrap();
        assert!(matches!(Config::from_cli(cli, true), Err(ConfigError::BadEnv(_))));
    }
}
