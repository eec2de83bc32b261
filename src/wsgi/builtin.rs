//! Apps built into cgi2wsgi: `builtin:doctor` (the environ as the app sees it, with warnings).

use crate::http::doctor;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use std::collections::BTreeMap;

#[pyclass(module = "cgi2wsgi")]
pub struct Doctor;

#[pymethods]
impl Doctor {
    fn __call__<'py>(&self, py: Python<'py>, environ: &Bound<'py, PyDict>, start_response: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let mut env = BTreeMap::new();
        for (k, v) in environ.iter() {
            let value = match v.cast::<PyString>() {
                Ok(s) => s.to_str()?.to_owned(),
                Err(_) => v.repr()?.to_string(),
            };
            env.insert(k.str()?.to_str()?.to_owned(), value);
        }
        let warns = doctor::warnings(&env);
        let query = env.get("QUERY_STRING").map_or("", String::as_str);
        let accept = env.get("HTTP_ACCEPT").map_or("", String::as_str);
        let json = query.split('&').any(|p| p == "format=json") || accept.contains("application/json");
        let (body, ctype) =
            if json { (doctor::render_json(&env, &warns), "application/json") } else { (doctor::render_html(&env, &warns), "text/html; charset=utf-8") };
        let headers = vec![("Content-Type", ctype.to_owned()), ("Content-Length", body.len().to_string()), ("Cache-Control", "no-store".to_owned())];
        start_response.call1(("200 OK", headers))?;
        PyList::new(py, [PyBytes::new(py, body.as_bytes())])
    }
}
