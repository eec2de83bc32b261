//! What to do about an app that failed to load, for the classic mistakes: wfastcgi's
//! `pkg.module.app` spelling, `module:app()` on an object that already is the app, and a
//! module missing from the Python and venv actually used. One line each, after the traceback.

use crate::config::appspec::{AppSpec, AppTarget};
use pyo3::exceptions::{PyModuleNotFoundError, PyTypeError};
use pyo3::prelude::*;
use std::path::Path;

/// The hint for `err`, raised while loading `spec` with `venv`, if one applies.
pub fn for_load_error(py: Python<'_>, err: &PyErr, spec: &AppSpec, venv: Option<&Path>) -> Option<String> {
    if err.is_instance_of::<PyTypeError>(py) && spec.factory {
        let message = err.value(py).to_string();
        // Calling a WSGI app with no arguments: `__call__(environ, start_response)` missing both.
        if message.contains("start_response") || message.contains("missing 2 required positional arguments") {
            let callable = spec.callable.as_deref().unwrap_or("app");
            return Some(format!(
                "`{callable}` is already a WSGI app: drop the `()` (write `{}`); the factory form is for functions that return the app",
                AppSpec { factory: false, ..spec.clone() }
            ));
        }
    }
    if !err.is_instance_of::<PyModuleNotFoundError>(py) {
        return None;
    }
    let missing: String = err.value(py).getattr("name").and_then(|n| n.extract()).ok()?;
    if let (AppTarget::Module(target), None) = (&spec.target, &spec.callable) {
        if *target == missing {
            if let Some(hint) = dotted_callable(py, target) {
                return Some(hint);
            }
        }
    }
    Some(missing_module(py, &missing, venv))
}

/// `pkg.module.app` where `pkg.module` imports and has `app`: wfastcgi's WSGI_HANDLER style.
fn dotted_callable(py: Python<'_>, target: &str) -> Option<String> {
    let (module, attr) = target.rsplit_once('.')?;
    let found = py.import(module).ok()?.hasattr(attr).ok()?;
    found.then(|| {
        format!("did you mean `{module}:{attr}`? A colon separates the module from the callable (`pkg.module.app` is wfastcgi's WSGI_HANDLER spelling)")
    })
}

/// Which Python and venv looked for `missing`, and how to point cgi2wsgi at the right one.
fn missing_module(py: Python<'_>, missing: &str, venv: Option<&Path>) -> String {
    let version = py.import("sys").and_then(|s| s.getattr("version")).map(|v| v.to_string()).unwrap_or_default();
    let version = version.split_whitespace().next().unwrap_or("?");
    let top = missing.split('.').next().unwrap_or(missing);
    let used = match venv {
        Some(v) => format!("Python {version} with the venv {}", v.display()),
        None => format!("Python {version} with no venv (only the system's packages)"),
    };
    let pip = match venv {
        Some(v) => format!("`{}/bin/pip install {top}`", v.display()),
        None => format!("`pip install {top}` in a venv made with python3.11"),
    };
    format!(
        "{used} found no module '{missing}'. A package: install it ({pip}) or name the venv that has it \
         (`# cgi2wsgi: venv = /path/to/venv` in the drop-in, or --venv; CGI2WSGI_VENV set in a shell does not reach a web server's run). \
         Your own code: add its directory (`# cgi2wsgi: pythonpath = DIR` or --pythonpath). `cgi2wsgi check APP` shows the settings a server's run uses"
    )
}
