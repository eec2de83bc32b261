//! Request → WSGI environ: a real `dict` of native `str` (latin-1 bytes-as-str) plus the
//! `wsgi.*` keys. `build` makes one from scratch (CGI: one request per process);
//! `Template` serves a persistent worker, copying a dict learned from earlier requests.

use super::streams::{Errors, FileWrapper, Input};
use crate::http::request::{BodyLength, Request};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyType};
use std::sync::{Arc, Mutex};

/// What the process model tells the app (PEP 3333 `wsgi.multithread` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessModel {
    pub multithread: bool,
    pub multiprocess: bool,
    pub run_once: bool,
}

pub fn build<'py>(py: Python<'py>, req: &Request, input: Bound<'py, Input>, errors: Bound<'py, Errors>, model: ProcessModel) -> PyResult<Bound<'py, PyDict>> {
    let environ = PyDict::new(py);
    for (name, value) in &req.vars {
        environ.set_item(name, value)?;
    }
    set_constants(py, &environ, model)?;
    set_per_request(py, &environ, req, input, errors)?;
    Ok(environ)
}

fn set_constants(py: Python<'_>, environ: &Bound<'_, PyDict>, model: ProcessModel) -> PyResult<()> {
    environ.set_item(intern!(py, "wsgi.version"), (1, 0))?;
    environ.set_item(intern!(py, "wsgi.multithread"), model.multithread)?;
    environ.set_item(intern!(py, "wsgi.multiprocess"), model.multiprocess)?;
    environ.set_item(intern!(py, "wsgi.run_once"), model.run_once)?;
    environ.set_item(intern!(py, "wsgi.file_wrapper"), PyType::new::<FileWrapper>(py))
}

fn set_per_request<'py>(py: Python<'py>, environ: &Bound<'py, PyDict>, req: &Request, input: Bound<'py, Input>, errors: Bound<'py, Errors>) -> PyResult<()> {
    environ.set_item(intern!(py, "wsgi.url_scheme"), req.scheme)?;
    environ.set_item(intern!(py, "wsgi.input"), input)?;
    environ.set_item(intern!(py, "wsgi.errors"), errors)?;
    if req.body == BodyLength::UntilEof {
        // The body has no CONTENT_LENGTH but ends at EOF: apps may read to the end.
        environ.set_item(intern!(py, "wsgi.input_terminated"), true)?;
    }
    Ok(())
}

/// Names learned at most (a web server sends 20-40); longer names are never learned.
const MAX_LEARNED: usize = 128;
const MAX_LEARNED_NAME: usize = 64;
/// Names of a request missing from the template (or template names the request lacks)
/// beyond which the template is learned again from that request.
const RELEARN_AFTER: usize = 4;

/// The environ of a persistent worker, built by copying a dict that already holds the
/// `wsgi.*` constants and the CGI names earlier requests carried. A web server sends the
/// same names in the same order on every request, so each name is matched by position to a
/// ready `str` whose hash is cached, the copy is already sized for the whole environ (no
/// rehashing as it grows), and only the values are new objects. The result is the same
/// dict `build` makes: names this request lacks are deleted from the copy.
pub struct Template {
    model: ProcessModel,
    /// Locked only to take or swap the `Arc`, never across a Python call: Python code can
    /// run inside any allocation (a GC pass calling `__del__`) and hand the GIL to another
    /// request thread, which must not then wait on this lock while holding the GIL.
    learned: Mutex<Option<Arc<Learned>>>,
}

struct Learned {
    dict: Py<PyDict>,
    /// Each name, its key in `dict`, and the value `dict` holds for it (the learning
    /// request's): a value that comes again is already in every copy.
    names: Vec<(String, Py<PyString>, String)>,
}

impl Learned {
    fn from_request(py: Python<'_>, req: &Request, model: ProcessModel) -> PyResult<Learned> {
        let dict = PyDict::new(py);
        set_constants(py, &dict, model)?;
        let none = py.None();
        for key in ["wsgi.url_scheme", "wsgi.input", "wsgi.errors"] {
            dict.set_item(key, &none)?;
        }
        let mut names: Vec<(String, Py<PyString>, String)> = Vec::new();
        for (name, value) in &req.vars {
            if names.len() == MAX_LEARNED || name.len() > MAX_LEARNED_NAME || names.iter().any(|(n, _, _)| n == name) {
                continue;
            }
            let key = PyString::new(py, name);
            dict.set_item(&key, value)?;
            names.push((name.clone(), key.unbind(), value.clone()));
        }
        Ok(Learned { dict: dict.unbind(), names })
    }
}

impl Template {
    pub fn new(model: ProcessModel) -> Template {
        Template { model, learned: Mutex::new(None) }
    }

    pub fn build<'py>(&self, py: Python<'py>, req: &Request, input: Bound<'py, Input>, errors: Bound<'py, Errors>) -> PyResult<Bound<'py, PyDict>> {
        let current = self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let learned = if let Some(l) = current {
            l
        } else {
            let l = Arc::new(Learned::from_request(py, req, self.model)?);
            self.swap(Some(l.clone()));
            l
        };
        let environ = learned.dict.bind(py).copy()?;
        let mut used = [false; MAX_LEARNED];
        let mut misses = 0;
        for (i, (name, value)) in req.vars.iter().enumerate() {
            let slot = match learned.names.get(i) {
                Some((n, _, _)) if n == name => Some(i),
                _ if name.len() <= MAX_LEARNED_NAME => learned.names.iter().position(|(n, _, _)| n == name),
                _ => None,
            };
            if let Some(j) = slot {
                let (_, key, held) = &learned.names[j];
                // Most values come again on every request (SERVER_SOFTWARE, GATEWAY_INTERFACE,
                // FCGI_ROLE…): the copy holds them already, so they cost a comparison, not a
                // new str. A repeated name is always set: its last value wins.
                if used[j] || held != value {
                    environ.set_item(key.bind(py), value)?;
                }
                used[j] = true;
            } else {
                misses += 1;
                environ.set_item(name, value)?;
            }
        }
        for (j, (_, key, _)) in learned.names.iter().enumerate() {
            if !used[j] {
                misses += 1;
                environ.del_item(key.bind(py))?;
            }
        }
        set_per_request(py, &environ, req, input, errors)?;
        if misses > RELEARN_AFTER {
            self.swap(Some(Arc::new(Learned::from_request(py, req, self.model)?)));
        }
        Ok(environ)
    }

    /// Install a new template; the old one is dropped after the lock is released.
    fn swap(&self, new: Option<Arc<Learned>>) {
        let old = std::mem::replace(&mut *self.learned.lock().unwrap_or_else(std::sync::PoisonError::into_inner), new);
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::Request;

    fn request(pairs: &[(&str, &str)]) -> Request {
        Request::from_params(pairs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())), None).unwrap()
    }

    /// Every environ from the template equals the one `build` makes from scratch, whatever
    /// the previous requests carried (same names, fewer, more, other order, duplicates).
    #[test]
    fn template_environ_equals_a_fresh_one() {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| crate::wsgi::interp::initialize(None).unwrap());
        Python::attach(|py| {
            let model = ProcessModel { multithread: false, multiprocess: true, run_once: false };
            let template = Template::new(model);
            let base = [("REQUEST_METHOD", "GET"), ("SCRIPT_NAME", "/app"), ("PATH_INFO", "/x"), ("QUERY_STRING", "a=1"), ("HTTP_HOST", "h")];
            let mut fewer = base.to_vec();
            fewer.retain(|(k, _)| *k != "HTTP_HOST");
            let mut other: Vec<(&str, &str)> = base.iter().rev().copied().collect();
            other.push(("HTTP_X_NEW", "\u{e9}"));
            let many: Vec<(String, String)> = (0..10).map(|i| (format!("HTTP_X_{i}"), i.to_string())).collect();
            let mut many_refs: Vec<(&str, &str)> = base.to_vec();
            many_refs.extend(many.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let mut dup = base.to_vec();
            dup.push(("HTTP_HOST", "second"));
            // The same names with other values, and a repeated name whose first value is the
            // learned one (the copy holds it) but whose last is not, and the reverse.
            let changed: Vec<(&str, &str)> = base.iter().map(|(k, _)| (*k, "changed")).collect();
            let mut dup_first_held = base.to_vec();
            dup_first_held.push(("QUERY_STRING", "b=2"));
            let mut dup_last_held = base.to_vec();
            dup_last_held.insert(0, ("QUERY_STRING", "b=2"));
            for pairs in [base.to_vec(), fewer, other, many_refs.clone(), base.to_vec(), changed, base.to_vec(), dup_first_held, dup_last_held, dup, many_refs]
            {
                let req = request(&pairs);
                let mk_streams = || {
                    let input = Bound::new(py, Input::new(Box::new(std::io::empty()))).unwrap();
                    let errors = Bound::new(py, Errors::new(std::sync::Arc::new(|_: &str| {}))).unwrap();
                    (input, errors)
                };
                let (i1, e1) = mk_streams();
                let fresh = build(py, &req, i1, e1, model).unwrap();
                let (i2, e2) = mk_streams();
                let copied = template.build(py, &req, i2, e2).unwrap();
                let keys = |d: &Bound<'_, PyDict>| {
                    let mut k: Vec<String> = d.keys().iter().map(|k| k.extract::<String>().unwrap()).collect();
                    k.sort();
                    k
                };
                assert_eq!(keys(&fresh), keys(&copied), "{pairs:?}");
                for k in keys(&fresh) {
                    if k == "wsgi.input" || k == "wsgi.errors" {
                        continue;
                    }
                    let (a, b) = (fresh.get_item(&k).unwrap().unwrap(), copied.get_item(&k).unwrap().unwrap());
                    assert!(a.eq(&b).unwrap(), "{k}: {a} != {b} for {pairs:?}");
                    assert!(b.is_exact_instance_of::<PyString>() || k.starts_with("wsgi."), "{k} is not a str");
                }
            }
        });
    }
}
