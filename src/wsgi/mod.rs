//! The WSGI side (PEP 3333): the only place pyo3 appears. Request in, app called, response out.

pub mod app;
pub mod boot;
pub mod builtin;
pub mod call;
pub mod environ;
pub mod interp;
pub mod streams;

use pyo3::prelude::*;

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
