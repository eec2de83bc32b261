//! Request → WSGI environ: a real `dict` of native `str` (latin-1 bytes-as-str) plus the
//! `wsgi.*` keys.

use super::streams::{Errors, FileWrapper, Input};
use crate::request::{BodyLength, Request};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use pyo3::intern;

/// What the process model tells the app (PEP 3333 `wsgi.multithread` and friends).
#[derive(Debug, Clone, Copy)]
pub struct ProcessModel {
    pub multithread: bool,
    pub multiprocess: bool,
    pub run_once: bool,
}

pub fn build<'py>(
    py: Python<'py>,
    req: &Request,
    input: Bound<'py, Input>,
    errors: Bound<'py, Errors>,
    model: ProcessModel,
) -> PyResult<Bound<'py, PyDict>> {
    let environ = PyDict::new(py);
    for (name, value) in &req.vars {
        environ.set_item(name, value)?;
    }
    environ.set_item(intern!(py, "wsgi.version"), (1, 0))?;
    environ.set_item(intern!(py, "wsgi.url_scheme"), req.scheme)?;
    environ.set_item(intern!(py, "wsgi.input"), input)?;
    environ.set_item(intern!(py, "wsgi.errors"), errors)?;
    environ.set_item(intern!(py, "wsgi.multithread"), model.multithread)?;
    environ.set_item(intern!(py, "wsgi.multiprocess"), model.multiprocess)?;
    environ.set_item(intern!(py, "wsgi.run_once"), model.run_once)?;
    environ.set_item(intern!(py, "wsgi.file_wrapper"), PyType::new::<FileWrapper>(py))?;
    if req.body == BodyLength::UntilEof {
        // The body has no CONTENT_LENGTH but ends at EOF: apps may read to the end.
        environ.set_item(intern!(py, "wsgi.input_terminated"), true)?;
    }
    Ok(environ)
}
