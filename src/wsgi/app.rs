//! Loading the WSGI callable named by an `AppSpec`: import a module, or run a file
//! (a `.py` or a cgi-bin drop-in) as a module that is not `__main__`.

use crate::config::appspec::{AppSpec, AppTarget, Builtin, DEFAULT_CALLABLES};
use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::prelude::*;
use std::path::Path;

/// The module name a drop-in file runs under: never `__main__`, so an
/// `if __name__ == "__main__": app.run()` block stays inert.
const DROP_IN_MODULE: &str = "cgi2wsgi_app";

fn module_name_for(py: Python<'_>, path: &Path) -> String {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let is_py = path.extension().is_some_and(|e| e == "py");
    let valid = !stem.is_empty() && stem.chars().all(|c| c == '_' || c.is_alphanumeric()) && !stem.starts_with(|c: char| c.is_ascii_digit());
    let taken = py.import("sys").and_then(|s| s.getattr("modules")).and_then(|m| m.contains(stem)).unwrap_or(true);
    // A drop-in named like the package it imports (`myapp.cgi` doing `from myapp import app`)
    // must not shadow it, so only `.py` files get their own stem as module name.
    if is_py && valid && !taken && stem != "__main__" {
        stem.to_owned()
    } else {
        DROP_IN_MODULE.to_owned()
    }
}

fn run_file<'py>(py: Python<'py>, path: &Path) -> PyResult<Bound<'py, PyAny>> {
    let name = module_name_for(py, path);
    let path_str = path.to_string_lossy();
    let sys = py.import("sys")?;
    // The import system's own frozen modules are loaded at start-up; `importlib.machinery`
    // re-exports the same classes but importing it pulls in `importlib` and `warnings`
    // (~1 ms a CGI request), and importlib.util more (~3 ms). SourceFileLoader takes any
    // extension (a drop-in is `app.cgi`) and caches bytecode.
    let modules = sys.getattr("modules")?;
    let (external, bootstrap) = if let (Ok(e), Ok(b)) = (modules.get_item("_frozen_importlib_external"), modules.get_item("_frozen_importlib")) {
        (e, b)
    } else {
        let m = py.import("importlib.machinery")?.into_any();
        (m.clone(), m)
    };
    let loader = external.getattr("SourceFileLoader")?.call1((&name, path_str.as_ref()))?;
    let spec = bootstrap.getattr("ModuleSpec")?.call1((&name, &loader))?;
    spec.setattr("origin", path_str.as_ref())?;
    spec.setattr("has_location", true)?;
    let module = sys.getattr("__class__")?.call1((&name,))?;
    module.setattr("__file__", path_str.as_ref())?;
    module.setattr("__loader__", &loader)?;
    module.setattr("__spec__", &spec)?;
    sys.getattr("modules")?.set_item(&name, &module)?;
    if let Err(e) = loader.call_method1("exec_module", (&module,)) {
        sys.getattr("modules")?.del_item(&name)?;
        return Err(e);
    }
    Ok(module)
}

fn resolve<'py>(module: &Bound<'py, PyAny>, callable: &str) -> PyResult<Bound<'py, PyAny>> {
    callable.split('.').try_fold(module.clone(), |obj, attr| obj.getattr(attr))
}

/// Load the app; a Python exception (import error, missing callable) comes back as `PyErr`.
pub fn load<'py>(py: Python<'py>, spec: &AppSpec) -> PyResult<Bound<'py, PyAny>> {
    let module = match &spec.target {
        AppTarget::Builtin(Builtin::Doctor) => return Ok(Bound::new(py, super::builtin::Doctor)?.into_any()),
        AppTarget::Module(name) => py.import(name.as_str())?.into_any(),
        AppTarget::File(path) => run_file(py, path)?,
    };
    let app = match &spec.callable {
        Some(name) => resolve(&module, name)?,
        None => DEFAULT_CALLABLES.iter().find_map(|name| module.getattr(*name).ok()).ok_or_else(|| {
            PyAttributeError::new_err(format!(
                "{} defines neither `application` nor `app`; name the callable as APP:callable",
                module.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })?,
    };
    let app = if spec.factory { app.call0()? } else { app };
    if !app.is_callable() {
        return Err(PyTypeError::new_err(format!("the app {} is not callable", app.repr()?)));
    }
    Ok(app)
}
