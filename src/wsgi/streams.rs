//! `wsgi.input` (bounded by CONTENT_LENGTH, GIL released while blocking), `wsgi.errors`
//! (to the server's error log) and `wsgi.file_wrapper`.

use pyo3::exceptions::{PyStopIteration, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use std::io::{BufRead, Read};
use std::sync::{Arc, Mutex};

/// A request body source. The gateway bounds it (CONTENT_LENGTH) before handing it over,
/// so reading past the end is simply end-of-file.
pub type Body = Box<dyn BufRead + Send>;

fn io_err(e: std::io::Error) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(format!("reading the request body: {e}"))
}

/// `wsgi.input`.
#[pyclass(module = "cgi2wsgi")]
pub struct Input {
    body: Mutex<Body>,
}

impl Input {
    pub fn new(body: Body) -> Input {
        Input { body: Mutex::new(body) }
    }

    /// Run a blocking read on the body with the GIL released.
    fn with_body<T: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut (dyn BufRead + Send)) -> std::io::Result<T> + Send) -> PyResult<T> {
        let mut guard = self.body.lock().map_err(|_| PyValueError::new_err("wsgi.input is broken"))?;
        let body: &mut (dyn BufRead + Send) = &mut **guard;
        py.detach(move || f(body)).map_err(io_err)
    }
}

fn read_line(body: &mut (dyn BufRead + Send), limit: Option<usize>) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    match limit {
        None => {
            body.read_until(b'\n', &mut line)?;
        }
        Some(n) => {
            body.take(n as u64).read_until(b'\n', &mut line)?;
        }
    }
    Ok(line)
}

fn size_arg(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    /// read(size=-1): up to `size` bytes (fewer only at the end of the body); all that is left if negative.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.with_body(py, move |body| {
            let mut buf = Vec::new();
            match size_arg(size) {
                None => {
                    body.read_to_end(&mut buf)?;
                }
                Some(n) => {
                    body.take(n as u64).read_to_end(&mut buf)?;
                }
            }
            Ok(buf)
        })?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.with_body(py, move |body| read_line(body, size_arg(size)))?;
        Ok(PyBytes::new(py, &line))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(&self, py: Python<'py>, hint: Option<isize>) -> PyResult<Bound<'py, PyList>> {
        let hint = size_arg(hint).filter(|&h| h > 0);
        let lines = self.with_body(py, move |body| {
            let (mut lines, mut total) = (Vec::new(), 0usize);
            loop {
                let line = read_line(body, None)?;
                if line.is_empty() {
                    break;
                }
                total += line.len();
                lines.push(line);
                if hint.is_some_and(|h| total >= h) {
                    break;
                }
            }
            Ok(lines)
        })?;
        PyList::new(py, lines.iter().map(|l| PyBytes::new(py, l)))
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let line = self.readline(py, None)?;
        if line.as_bytes().is_empty() {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(line)
    }
}

/// Where `wsgi.errors` text goes (stderr in CGI, FastCGI STDERR records); called with the
/// GIL released.
pub type ErrorSink = Arc<dyn Fn(&str) + Send + Sync>;

/// `wsgi.errors`: a text stream with write, writelines and flush.
#[pyclass(module = "cgi2wsgi")]
pub struct Errors {
    sink: ErrorSink,
}

impl Errors {
    pub fn new(sink: ErrorSink) -> Errors {
        Errors { sink }
    }
}

#[pymethods]
impl Errors {
    fn write(&self, py: Python<'_>, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        let text: String = text.extract().map_err(|_| PyTypeError::new_err("wsgi.errors.write() takes str"))?;
        // The sink may write to a socket: never with the GIL held.
        let sink = &self.sink;
        py.detach(|| sink(&text));
        Ok(text.chars().count())
    }

    fn writelines(&self, py: Python<'_>, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(py, &line?)?;
        }
        Ok(())
    }

    fn flush(&self) {}
}

/// `wsgi.file_wrapper`: iterates a file-like object in blocks; `close()` closes it.
#[pyclass(module = "cgi2wsgi")]
pub struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 65536))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> FileWrapper {
        // Small blocks cost a round trip each; the server splits big ones itself.
        FileWrapper { filelike, blksize: blksize.max(65536) }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let data = self.filelike.bind(py).call_method1("read", (self.blksize,))?;
        if data.len()? == 0 {
            return Err(PyStopIteration::new_err(()));
        }
        Ok(data)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr("close")? {
            f.call_method0("close")?;
        }
        Ok(())
    }
}
