//! Process start-up shared by both gateways: the process environment, the interpreter,
//! sys.path and the app import. Each gateway decides how to report a failure.

use super::{app, format_exception, interp};
use crate::config::appspec::AppSpec;
use crate::config::Config;
use pyo3::prelude::*;

/// Why the app could not be brought up; `Display` is the log line.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("--chdir {0}")]
    Chdir(String),
    #[error(transparent)]
    Embed(#[from] crate::wsgi::EmbedError),
    /// `hint` is empty or a `\nhint: …` line saying what to do.
    #[error("cannot load the app {spec}:\n{traceback}{hint}")]
    Load { spec: String, traceback: String, hint: String },
}

impl BootError {
    /// What a response may say about it: the traceback only with `--debug`.
    pub fn public_detail(&self, debug: bool) -> String {
        match self {
            BootError::Load { traceback, .. } if debug => traceback.clone(),
            BootError::Load { .. } => "The application could not be loaded; the details are in the server's error log.".into(),
            BootError::Embed(_) => "cgi2wsgi could not start Python; the details are in the server's error log.".into(),
            BootError::Chdir(_) => "cgi2wsgi is misconfigured; the details are in the server's error log.".into(),
        }
    }
}

/// The process environment the app sees: without HTTP_PROXY (httpoxy: the `Proxy:` request
/// header arrives under that name and HTTP libraries would take it as their proxy), plus `--env`.
pub fn prepare_environment(config: &Config) {
    std::env::remove_var("HTTP_PROXY");
    for (k, v) in &config.env {
        std::env::set_var(k, v);
    }
}

/// chdir, start the interpreter, set up sys.path, import the app.
pub fn boot(config: &Config, spec: &AppSpec) -> Result<super::App, BootError> {
    if let Some(dir) = &config.chdir {
        std::env::set_current_dir(dir).map_err(|e| BootError::Chdir(format!("{}: {e}", dir.display())))?;
    }
    interp::initialize(config.venv.as_deref())?;
    crate::timings::stamp(crate::timings::Stamp::Init);
    let mut search_path = config.pythonpath.clone();
    // A file app's own directory comes last, so its sibling modules import.
    if let Some(dir) = spec.file().and_then(|f| f.parent()).filter(|d| !d.as_os_str().is_empty()) {
        search_path.push(dir.to_owned());
    }
    let app = Python::attach(|py| {
        interp::add_site_packages(py, config.venv.as_deref())
            .and_then(|()| interp::prepend_sys_path(py, &search_path))
            .and_then(|()| app::load(py, spec))
            .map(Bound::unbind)
            .map_err(|e| {
                let hint = super::hints::for_load_error(py, &e, spec, config.venv.as_deref()).map(|h| format!("\nhint: {h}")).unwrap_or_default();
                BootError::Load { spec: spec.to_string(), traceback: format_exception(py, &e), hint }
            })
    })?;
    crate::timings::stamp(crate::timings::Stamp::Import);
    Ok(super::App(app))
}
