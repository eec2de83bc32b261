//! The WSGI side (PEP 3333): the only place pyo3 appears. Request in, app called, response
//! out. Gateways reach Python only through `serve` (the one door: it takes the GIL itself
//! and releases it around every write) and the process-level calls in `process` and `scan`.

mod app;
pub mod boot;
mod builtin;
mod call;
mod environ;
mod hints;
pub mod interp;
pub mod process;
pub mod scan;
mod streams;

pub use crate::http::response::Outcome;
pub use environ::ProcessModel;
pub use streams::{Body, ErrorSink};

use crate::http::authorizer::AuthorizerSink;
use crate::http::request::Request;
use crate::http::response::ResponseSink;
use crate::http::role::Role;
use pyo3::prelude::*;

/// Problems bringing up the embedded interpreter or loading the app.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("venv {path}: {why}")]
    Venv { path: std::path::PathBuf, why: String },
    #[error("the venv {path} is for Python {venv}, but this cgi2wsgi is linked against Python {linked} (a binary embeds one Python version): rebuild it for the venv's Python with `PYO3_PYTHON={venv_python} cargo build --release`, or recreate the venv with Python {linked}: `python{linked_xy} -m venv {path}`")]
    VersionMismatch { path: std::path::PathBuf, venv: String, linked: String, venv_python: String, linked_xy: String },
    #[error("Python initialization failed: {0}")]
    Init(String),
}

/// The loaded WSGI callable. Only `boot` makes one; gateways hold it and hand it to `serve`.
pub struct App(Py<PyAny>);

/// How requests are answered: the environ's process model (and, in a persistent process,
/// the names learned from earlier requests) and whether a 500 shows the traceback.
pub struct Policy {
    /// Put the traceback in the 500 page (`--debug`).
    show_traceback: bool,
    environ: Environ,
}

enum Environ {
    /// One request per process (CGI): the dict is built from scratch.
    Fresh(ProcessModel),
    /// A persistent process: copies of a dict learned from earlier requests.
    Learned(environ::Template),
}

impl Policy {
    /// For a process that serves one request (CGI).
    pub fn one_shot(model: ProcessModel, show_traceback: bool) -> Policy {
        Policy { show_traceback, environ: Environ::Fresh(model) }
    }

    /// For a process that serves many.
    pub fn persistent(model: ProcessModel, show_traceback: bool) -> Policy {
        Policy { show_traceback, environ: Environ::Learned(environ::Template::new(model)) }
    }
}

/// The one door to Python: build the environ for `request` (with `body` as `wsgi.input`
/// and `errors` behind `wsgi.errors`), call the app, stream its response into `sink`,
/// call `close()`. Takes the GIL itself; every write to `sink` happens with it released.
/// An app error becomes a 500 (or a cut-short response) with the traceback in the log.
pub fn serve(app: &App, request: &Request, body: Body, errors: ErrorSink, sink: Box<dyn ResponseSink>, policy: &Policy) -> Outcome {
    // The role is one more input: an authorizer's answer is held until the app is done
    // and can only allow once it finished cleanly (see `authorizer`).
    let sink: Box<dyn ResponseSink> = match request.role {
        Role::Authorizer => Box::new(AuthorizerSink::new(sink)),
        Role::Responder => sink,
    };
    let served = Python::attach(|py| {
        let environ = (|| {
            let input = Bound::new(py, streams::Input::new(body))?;
            let errors = Bound::new(py, streams::Errors::new(errors))?;
            match &policy.environ {
                Environ::Fresh(model) => environ::build(py, request, input, errors, *model),
                Environ::Learned(template) => template.build(py, request, input, errors),
            }
        })();
        match environ {
            Ok(environ) => call::serve(py, app.0.bind(py), environ, sink, policy.show_traceback),
            Err(e) => {
                log::error!("cannot build the environ: {}", format_exception(py, &e));
                call::Served::error_page(sink, "500 Internal Server Error", "cgi2wsgi failed to build the request; see the error log.".into())
            }
        }
    });
    // The GIL is released: the response's last write waits on no Python thread.
    served.complete()
}

/// An exception with its traceback, as Python prints it, for the error log.
pub fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|tb| {
        let lines = tb.call_method1("format_exception", (err.get_type(py), err.value(py), err.traceback(py)))?;
        let text: String = pyo3::types::PyString::new(py, "").call_method1("join", (lines,))?.extract()?;
        Ok(text)
    });
    match formatted {
        Ok(text) => text.trim_end().to_owned(),
        Err(_) => err.to_string(),
    }
}
