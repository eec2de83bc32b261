//! Domain errors, one enum per layer; `main` turns them into one-line messages.

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
    #[error("drop-in setting {key} = {value:?}: expected a whole number")]
    BadNumber { key: &'static str, value: String },
    #[error("--roles: {0}")]
    BadRoles(String),
}

/// Problems bringing up the embedded interpreter or loading the app.
#[derive(Debug, Error)]
pub enum EmbedError {
    #[error("venv {path}: {why}")]
    Venv { path: PathBuf, why: String },
    #[error("the venv {path} is for Python {venv}, but this cgi2wsgi is linked against Python {linked} (a binary embeds one Python version): rebuild it for the venv's Python with `PYO3_PYTHON={venv_python} cargo build --release`, or recreate the venv with Python {linked}: `python{linked_xy} -m venv {path}`")]
    VersionMismatch { path: PathBuf, venv: String, linked: String, venv_python: String, linked_xy: String },
    #[error("Python initialization failed: {0}")]
    Init(String),
    #[error("cannot load the app: {0}")]
    Load(String),
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
    pub fn status(&self) -> &'static str {
        match self {
            RequestError::BadContentLength(_) => "400 Bad Request",
            RequestError::BodyTooLarge { .. } => "413 Content Too Large",
        }
    }
}

/// Problems setting up or running the FastCGI server.
#[derive(Debug, Error)]
pub enum ServerError {
    #[error("{0}")]
    Listen(String),
    #[error("no socket to serve: give --bind unix:/path or --bind HOST:PORT, start under a web server that passes a listening socket on fd 0, or use systemd socket activation")]
    NoSocket,
}

/// Why a FastCGI connection ended early (logged; the connection is closed).
#[derive(Debug, Error)]
pub enum ConnError {
    #[error(transparent)]
    Protocol(#[from] crate::fastcgi::ProtocolError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the web server does not read its answers ({0} bytes queued for it)")]
    NotReading(usize),
}
