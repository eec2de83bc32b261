//! The ground's errors: bad configuration values and a request refused before the app
//! sees it. Each layer above has its own enum beside its code (`wsgi::EmbedError`,
//! `server::ServerError`, `gateway::fastcgi::ConnError`, `bench::BenchError`); the entry
//! layer turns each into one line.

use std::path::PathBuf;
use thiserror::Error;

/// Problems with the command line, the environment variables or a drop-in file's settings.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("no WSGI app configured: give APP (module, module:callable or path/to/file.py), --app or CGI2WSGI_APP (try --app builtin:doctor to see what the server sends)")]
    NoApp,
    #[error("invalid app {spec:?}: {why}")]
    BadAppSpec { spec: String, why: String },
    #[error("not started by a web server: fd 0 is not a listening socket and GATEWAY_INTERFACE is unset; to try the app from a shell as a server would run it, use `cgi2wsgi check {0}`; to serve, run cgi2wsgi as a CGI program (cgi-bin or a '#!' drop-in) or a FastCGI responder (--bind), or force --mode cgi|fastcgi")]
    NoGateway(String),
    #[error("--socket-mode {0:?}: expected an octal mode such as 0660")]
    BadMode(String),
    #[error("'{0}' is a subcommand (cgi2wsgi {0} APP, first on the command line, not under a web server); an app module with that name is written ./{0}.py or {0}:application")]
    ReservedWord(String),
    #[error("--env {0:?}: expected KEY=VALUE")]
    BadEnv(String),
    #[error("{file}:{line}: {why}")]
    DropIn { file: PathBuf, line: usize, why: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("--chdir {path}: {source}")]
    Chdir { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    RunAs(String),
    #[error("invalid size {0:?}: expected a number of bytes with an optional K, M or G suffix")]
    BadSize(String),
    #[error("persist-idle-timeout {0:?}: expected a whole number of seconds")]
    BadIdleTimeout(String),
    #[error("{0} {1:?}: expected a whole number of seconds")]
    BadSeconds(&'static str, String),
    #[error("drop-in setting {key} = {value:?}: expected a whole number")]
    BadNumber { key: &'static str, value: String },
    #[error("--roles: {0}")]
    BadRoles(String),
}

/// A request the gateway must refuse before the app sees it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("invalid CONTENT_LENGTH {0:?}")]
    BadContentLength(String),
    #[error("request body of {length} bytes is over the limit of {limit} bytes (--max-body)")]
    BodyTooLarge { length: u64, limit: u64 },
}

impl RequestError {
    /// The HTTP status that answers this error.
    #[must_use]
    pub fn status(&self) -> &'static str {
        match self {
            RequestError::BadContentLength(_) => "400 Bad Request",
            RequestError::BodyTooLarge { .. } => "413 Content Too Large",
        }
    }
}
