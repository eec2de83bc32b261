//! Settings written in a cgi-bin drop-in file's leading comment block, one per line:
//!
//! ```text
//! #!/usr/local/bin/cgi2wsgi
//! # cgi2wsgi: venv = /home/me/venv
//! # cgi2wsgi: pythonpath = /home/me/myapp
//! # cgi2wsgi: env = DJANGO_SETTINGS_MODULE=mysite.settings
//! from myapp import app as application
//! ```
//!
//! Relative paths are taken from the drop-in's own directory. These settings rank below
//! command-line flags and `CGI2WSGI_*` variables.

use crate::error::ConfigError;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DropIn {
    /// `app = module:callable` (or `builtin:doctor`): the file is then only configuration.
    pub app: Option<String>,
    pub venv: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
    pub chdir: Option<PathBuf>,
    pub env: Vec<String>,
    pub callable: Option<String>,
    pub max_body: Option<String>,
    pub script_name: Option<String>,
    pub log_level: Option<String>,
    pub debug: Option<bool>,
    /// The CGI accelerator: `persist = on`, `persist-idle-timeout = 300`, `persist-dir = DIR`.
    pub persist: Option<bool>,
    pub persist_idle_timeout: Option<String>,
    pub persist_dir: Option<PathBuf>,
    /// `persist-timeout = 300`, `persist-start-timeout = 30`.
    pub persist_timeout: Option<String>,
    pub persist_start_timeout: Option<String>,
    /// `access-log = PATH` (`--access-log`): the one way to set it under suEXEC.
    pub access_log: Option<PathBuf>,
    /// `roles = responder,authorizer` (FastCGI drop-ins under mod_fcgid).
    pub roles: Option<String>,
    /// FastCGI settings a `.fcgi` drop-in under mod_fcgid has no other way to give.
    pub max_requests: Option<String>,
    pub threads: Option<String>,
    pub timeout: Option<String>,
    /// Each setting's key as written and its line number, in file order (for `cgi2wsgi check`).
    pub lines: Vec<(String, usize)>,
}

const MARKER: &str = "cgi2wsgi:";

/// Every key a drop-in line may set.
pub const KEYS: [&str; 20] = [
    "app",
    "venv",
    "pythonpath",
    "chdir",
    "env",
    "callable",
    "max-body",
    "script-name",
    "log-level",
    "debug",
    "persist",
    "persist-idle-timeout",
    "persist-dir",
    "persist-timeout",
    "persist-start-timeout",
    "access-log",
    "roles",
    "max-requests",
    "threads",
    "timeout",
];
/// The comment block is read up to this many bytes; settings further down are not looked for.
const HEADER_LIMIT: u64 = 64 * 1024;

impl DropIn {
    /// Read the settings from `path`'s leading comment block.
    pub fn read(path: &Path) -> Result<DropIn, ConfigError> {
        let file = std::fs::File::open(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut out = DropIn::default();
        for (index, line) in BufReader::new(file.take(HEADER_LIMIT)).split(b'\n').enumerate() {
            let line = line.map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            let line = String::from_utf8_lossy(&line);
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some(comment) = line.strip_prefix('#') else { break };
            let Some(setting) = comment.trim_start().strip_prefix(MARKER) else { continue };
            out.apply(setting.trim(), base).map_err(|why| ConfigError::DropIn { file: path.to_owned(), line: index + 1, why })?;
            let key = setting.split_once('=').map_or("", |(k, _)| k).trim().replace('_', "-");
            out.lines.push((key, index + 1));
        }
        Ok(out)
    }

    fn apply(&mut self, setting: &str, base: &Path) -> Result<(), String> {
        let (key, value) = setting.split_once('=').ok_or_else(|| format!("expected 'key = value', got {setting:?}"))?;
        let (key, value) = (key.trim(), value.trim().to_owned());
        let path = |v: &str| base.join(v);
        match key {
            "app" => self.app = Some(value),
            "venv" => self.venv = Some(path(&value)),
            "pythonpath" => self.pythonpath.push(path(&value)),
            "chdir" => self.chdir = Some(path(&value)),
            "env" => self.env.push(value),
            "callable" => self.callable = Some(value),
            "max-body" | "max_body" => self.max_body = Some(value),
            "script-name" | "script_name" => self.script_name = Some(value),
            "log-level" | "log_level" => self.log_level = Some(value),
            "debug" => self.debug = Some(truthy(&value)),
            "persist" => self.persist = Some(truthy(&value)),
            "persist-idle-timeout" | "persist_idle_timeout" => self.persist_idle_timeout = Some(value),
            "persist-dir" | "persist_dir" => self.persist_dir = Some(path(&value)),
            "persist-timeout" | "persist_timeout" => self.persist_timeout = Some(value),
            "persist-start-timeout" | "persist_start_timeout" => self.persist_start_timeout = Some(value),
            "access-log" | "access_log" => self.access_log = Some(path(&value)),
            "roles" => self.roles = Some(value),
            "max-requests" | "max_requests" => self.max_requests = Some(value),
            "threads" => self.threads = Some(value),
            "timeout" => self.timeout = Some(value),
            _ => return Err(format!("unknown setting {key:?} (known: {})", KEYS.join(", "))),
        }
        Ok(())
    }
}

fn truthy(value: &str) -> bool {
    matches!(value.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn parse(text: &str) -> Result<DropIn, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        DropIn::read(f.path())
    }

    #[test]
    fn reads_header_settings() {
        let d = parse(
            "#!/usr/bin/cgi2wsgi\n# cgi2wsgi: venv = /v\n#cgi2wsgi: pythonpath=lib\n\n# plain comment\n# cgi2wsgi: env = A=b=c\n# cgi2wsgi: debug = on\nimport x\n# cgi2wsgi: venv = /ignored\n",
        )
        .unwrap();
        assert_eq!(d.venv, Some(PathBuf::from("/v")));
        assert!(d.pythonpath[0].ends_with("lib") && d.pythonpath[0].is_absolute());
        assert_eq!(d.env, vec!["A=b=c".to_string()]);
        assert_eq!(d.debug, Some(true));
    }

    #[test]
    fn fastcgi_keys_and_their_lines() {
        let d = parse("#!/x\n# cgi2wsgi: max-requests = 500\n# cgi2wsgi: threads = 4\n# cgi2wsgi: timeout = 30\n# cgi2wsgi: max_body = 1M\n").unwrap();
        assert_eq!((d.max_requests.as_deref(), d.threads.as_deref(), d.timeout.as_deref()), (Some("500"), Some("4"), Some("30")));
        let keys: Vec<(&str, usize)> = d.lines.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        assert_eq!(keys, vec![("max-requests", 2), ("threads", 3), ("timeout", 4), ("max-body", 5)]);
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let err = parse("#!/x\n# cgi2wsgi: vnev = /v\n").unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("vnev"), "{err}");
    }
}
