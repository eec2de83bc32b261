//! Calling the app (PEP 3333): `start_response` with its `exc_info` rules, `write()`,
//! headers held until the first non-empty chunk, `close()` on every path, and app errors
//! turned into a 500 with the traceback in the log.

use super::format_exception;
use crate::http::response::{check_header, check_status, send_error, Outcome, ResponseHead, ResponseSink};
use pyo3::exceptions::{PyAssertionError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use std::sync::{Arc, Mutex, MutexGuard};

/// Response state shared by the driver, `start_response` and `write`.
struct State {
    /// Set by start_response, sent with the first non-empty chunk.
    head: Option<ResponseHead>,
    head_sent: bool,
    /// Taken out while writing with the GIL released.
    sink: Option<Box<dyn ResponseSink>>,
    body_sent: u64,
    /// The body length when the app returned a one-item list and set no Content-Length.
    implied_length: Option<usize>,
    /// The client or server went away: stop producing.
    broken: bool,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a body write stopped.
enum SendError {
    /// The app broke a rule (no start_response, too much body…): an app error.
    App(PyErr),
    /// The peer is gone: stop quietly.
    Gone(std::io::Error),
}

fn send(py: Python<'_>, state: &Shared, chunk: &[u8], last: bool) -> Result<(), SendError> {
    let (mut sink, head, chunk) = {
        let mut st = lock(state);
        if st.broken {
            return Err(SendError::Gone(std::io::ErrorKind::BrokenPipe.into()));
        }
        let head = match (&st.head, st.head_sent) {
            (None, _) => return Err(SendError::App(PyAssertionError::new_err("the app sent body data before calling start_response()"))),
            (Some(h), false) => {
                let mut h = h.clone();
                if let (None, Some(n)) = (h.content_length(), st.implied_length) {
                    h.headers.push(("Content-Length".into(), n.to_string()));
                }
                Some(h)
            }
            (Some(_), true) => None,
        };
        // Never send more body than a Content-Length the app declared (PEP 3333).
        let declared = st.head.as_ref().and_then(ResponseHead::content_length);
        let allowed = declared.map_or(chunk.len() as u64, |d| d.saturating_sub(st.body_sent).min(chunk.len() as u64));
        if (allowed as usize) < chunk.len() {
            log::error!("the app sent more body than its Content-Length of {}; the excess is dropped", declared.unwrap_or(0));
        }
        st.head_sent = true;
        st.body_sent += allowed;
        (st.sink.take(), head, &chunk[..allowed as usize])
    };
    let Some(s) = sink.as_mut() else { return Err(SendError::Gone(std::io::ErrorKind::BrokenPipe.into())) };
    let sink_ref: &mut dyn ResponseSink = &mut **s;
    let result = py.detach(move || -> std::io::Result<()> {
        if let Some(h) = &head {
            sink_ref.send_head(h)?;
        }
        if !chunk.is_empty() {
            sink_ref.send_body(chunk, last)?;
        }
        Ok(())
    });
    let mut st = lock(state);
    st.sink = sink;
    result.map_err(|e| {
        st.broken = true;
        SendError::Gone(e)
    })
}

/// The `start_response` callable handed to the app.
#[pyclass(module = "cgi2wsgi")]
pub struct StartResponse {
    state: Shared,
}

/// The `write()` callable start_response returns (the imperative API, discouraged but required).
#[pyclass(module = "cgi2wsgi")]
pub struct Write {
    state: Shared,
}

fn check_headers(headers: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    if !headers.is_instance_of::<PyList>() {
        return Err(PyTypeError::new_err(format!("response headers must be a list, not {}", headers.get_type().name()?)));
    }
    let mut out = Vec::new();
    for item in headers.try_iter()? {
        let item = item?;
        let pair = item
            .cast::<PyTuple>()
            .map_err(|_| PyTypeError::new_err(format!("header {} is not a tuple", item.repr().map(|r| r.to_string()).unwrap_or_default())))?;
        if pair.len() != 2 {
            return Err(PyTypeError::new_err("a header must be a (name, value) tuple"));
        }
        let (name, value) = (pair.get_item(0)?, pair.get_item(1)?);
        if !name.is_exact_instance_of::<PyString>() || !value.is_exact_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(format!("header {} must hold two str", pair.repr()?)));
        }
        let (name, value): (String, String) = (name.extract()?, value.extract()?);
        check_header(&name, &value).map_err(PyAssertionError::new_err)?;
        out.push((name, value));
    }
    Ok(out)
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(&self, status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>, exc_info: Option<&Bound<'_, PyAny>>) -> PyResult<Write> {
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let st = lock(&self.state);
            match exc_info {
                // After the head went out nothing can be changed: re-raise the app's error.
                Some(info) if st.head_sent => {
                    let value = info.get_item(1)?;
                    let tb = info.get_item(2)?;
                    return Err(PyErr::from_value(value.call_method1("with_traceback", (tb,))?));
                }
                None if st.head.is_some() => {
                    return Err(PyAssertionError::new_err("start_response() called a second time without exc_info"));
                }
                _ => {}
            }
        }
        let status = status.cast::<PyString>().map_err(|_| PyTypeError::new_err("status must be a str"))?.to_str()?.to_owned();
        check_status(&status).map_err(PyAssertionError::new_err)?;
        let headers = check_headers(headers)?;
        lock(&self.state).head = Some(ResponseHead { status, headers });
        Ok(Write { state: self.state.clone() })
    }
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let bytes = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err(format!("write() takes bytes, not {}", data.get_type().name().map(|n| n.to_string()).unwrap_or_default())))?;
        match send(py, &self.state, bytes.as_bytes(), false) {
            Ok(()) => Ok(()),
            Err(SendError::App(e)) => Err(e),
            Err(SendError::Gone(e)) => Err(pyo3::exceptions::PyConnectionError::new_err(format!("the client went away: {e}"))),
        }
    }
}

fn call_close(py: Python<'_>, result: &Bound<'_, PyAny>) -> Option<PyErr> {
    // A plain list or tuple (the common `return [body]`) has no close(); asking costs an
    // AttributeError built and thrown away (~2k instructions) on every request.
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        return None;
    }
    match result.hasattr(pyo3::intern!(py, "close")) {
        Ok(true) => result.call_method0(pyo3::intern!(py, "close")).err(),
        Ok(false) => None,
        Err(e) => Some(e),
    }
    .inspect(|e| log::error!("the app's close() failed:\n{}", format_exception(py, e)))
}

/// What is left once the app is done: the response's last write (its end, or a whole error
/// page), made by `complete` after the GIL is released.
pub(super) struct Served {
    outcome: Outcome,
    sink: Option<Box<dyn ResponseSink>>,
    /// Send this page (status, detail) instead of ending the response.
    error_page: Option<(&'static str, String)>,
}

impl Served {
    fn done(outcome: Outcome) -> Served {
        Served { outcome, sink: None, error_page: None }
    }

    /// An error page for a sink nothing was sent to yet.
    pub(super) fn error_page(sink: Box<dyn ResponseSink>, status: &'static str, detail: String) -> Served {
        let outcome = Outcome { status: status.to_owned(), body_bytes: 0, app_error: true, disconnected: false };
        Served { outcome, sink: Some(sink), error_page: Some((status, detail)) }
    }

    /// Make the last write (call without the GIL) and say how the request ended.
    pub(super) fn complete(self) -> Outcome {
        let Served { mut outcome, sink, error_page } = self;
        let Some(mut sink) = sink else { return outcome };
        let sent = match &error_page {
            Some((status, detail)) => send_error(&mut *sink, status, detail),
            // The app failed after its head, or in close(): the response is not complete.
            None if outcome.app_error => sink.cut_short(),
            None => sink.finish(),
        };
        if let Err(e) = sent {
            log::info!("the client went away at the end of the response: {e}");
            outcome.disconnected = true;
        }
        outcome
    }
}

/// Call the app for one request and stream its response into `sink`; the last write is
/// left to `Served::complete`.
pub(super) fn serve(py: Python<'_>, app: &Bound<'_, PyAny>, environ: Bound<'_, PyDict>, sink: Box<dyn ResponseSink>, show_traceback: bool) -> Served {
    let state: Shared = Arc::new(Mutex::new(State { head: None, head_sent: false, sink: Some(sink), body_sent: 0, implied_length: None, broken: false }));
    let start = match Bound::new(py, StartResponse { state: state.clone() }) {
        Ok(s) => s,
        Err(e) => return fail(py, &state, e, show_traceback),
    };
    let result = match app.call1((environ, start)) {
        Ok(r) => r,
        Err(e) => return fail(py, &state, e, show_traceback),
    };
    // A one-item list (the common `return [body]`) has a known length.
    if let Ok(list) = result.cast::<PyList>() {
        if list.len() == 1 {
            if let Ok(item) = list.get_item(0) {
                lock(&state).implied_length = item.cast::<PyBytes>().ok().map(|b| b.as_bytes().len());
            }
        }
    }
    let iterated = iterate(py, &state, &result);
    let close_error = call_close(py, &result);
    match (iterated, close_error) {
        (Err(SendError::App(e)), _) => fail(py, &state, e, show_traceback),
        (Err(SendError::Gone(e)), _) => {
            log::info!("the client went away mid-response: {e}");
            Served::done(outcome(&state, false, true))
        }
        (Ok(()), Some(e)) if !lock(&state).head_sent => fail(py, &state, e, show_traceback),
        (Ok(()), close_error) => {
            // An empty body: the head goes out now (or the app never called start_response).
            if !lock(&state).head_sent {
                match send(py, &state, b"", true) {
                    Err(SendError::App(e)) => return fail(py, &state, e, show_traceback),
                    Err(SendError::Gone(e)) => {
                        log::info!("the client went away: {e}");
                        return Served::done(outcome(&state, false, true));
                    }
                    Ok(()) => {}
                }
            }
            finish(&state, close_error.is_some())
        }
    }
}

fn iterate(py: Python<'_>, state: &Shared, result: &Bound<'_, PyAny>) -> Result<(), SendError> {
    // A list or tuple (the common `return [body]`) tells which chunk is the last, so the
    // sink can send it together with the end of the response.
    let known_len = if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() { result.len().ok() } else { None };
    let iter = result.try_iter().map_err(SendError::App)?;
    for (i, chunk) in iter.enumerate() {
        let chunk = chunk.map_err(SendError::App)?;
        let bytes = chunk.cast::<PyBytes>().map_err(|_| {
            let kind = chunk.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            SendError::App(PyTypeError::new_err(format!("the app yielded a {kind}, but body chunks must be bytes")))
        })?;
        // Empty chunks are legal and must not force the head out early (PEP 3333).
        if !bytes.as_bytes().is_empty() {
            send(py, state, bytes.as_bytes(), known_len == Some(i + 1))?;
        }
    }
    Ok(())
}

fn outcome(state: &Shared, app_error: bool, disconnected: bool) -> Outcome {
    let st = lock(state);
    Outcome { status: st.head.as_ref().map(|h| h.status.clone()).unwrap_or_default(), body_bytes: st.body_sent, app_error, disconnected }
}

/// The response is complete: its end is written once the GIL is released.
fn finish(state: &Shared, app_error: bool) -> Served {
    let sink = lock(state).sink.take();
    Served { outcome: outcome(state, app_error, false), sink, error_page: None }
}

/// The app failed: log the traceback; answer 500 if the head has not gone out yet,
/// else cut the response short (nothing else is honest once the status is sent).
fn fail(py: Python<'_>, state: &Shared, err: PyErr, show_traceback: bool) -> Served {
    let traceback = format_exception(py, &err);
    log::error!("the app failed:\n{traceback}");
    if lock(state).head_sent {
        log::error!("the response head was already sent: the response is cut short");
        // The head may still sit in the sink (a write(b"") sends it, with no body yet).
        return finish(state, true);
    }
    let detail = if show_traceback { traceback } else { "The application failed; the details are in the server's error log.".to_owned() };
    match lock(state).sink.take() {
        Some(sink) => Served::error_page(sink, "500 Internal Server Error", detail),
        None => Served::done(Outcome { status: "500 Internal Server Error".to_owned(), body_bytes: 0, app_error: true, disconnected: true }),
    }
}
