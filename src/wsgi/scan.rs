//! The app-file scan of the CGI accelerator: which Python files the app imported (its own,
//! not the standard library or installed packages), so a change to one is seen as a deploy.

use pyo3::prelude::*;
use std::ffi::CStr;
use std::path::PathBuf;

/// The app's own Python files (not the standard library, not installed packages): a change
/// to one of them is a deploy.
const APP_FILES: &CStr = c"
import os, sys
def _app_files():
    prefixes = tuple({os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)})
    out = []
    for m in list(sys.modules.values()):
        f = getattr(m, '__file__', None)
        if not isinstance(f, str):
            continue
        f = os.path.realpath(f)
        if f.startswith(prefixes) or 'site-packages' in f or 'dist-packages' in f:
            continue
        out.append(f)
        if len(out) >= 1000:
            break
    return out
files = _app_files()
";

fn files_of(py: Python<'_>) -> Vec<PathBuf> {
    let scope = pyo3::types::PyDict::new(py);
    let found = py.run(APP_FILES, Some(&scope), None).and_then(|()| scope.get_item("files")).and_then(|f| f.map(|f| f.extract::<Vec<PathBuf>>()).transpose());
    match found {
        Ok(files) => files.unwrap_or_default(),
        Err(e) => {
            log::warn!("cannot list the app's files (changes to them will not replace the worker): {}", super::format_exception(py, &e));
            Vec::new()
        }
    }
}

/// The app's own files, as imported so far.
pub fn app_files() -> Vec<PathBuf> {
    Python::attach(files_of)
}

/// The app's own files, only if `sys.modules` has changed size since `*modules` (which is
/// updated): the GIL is taken for a moment and the scan itself is rare.
pub fn app_files_if_new_modules(modules: &mut usize) -> Option<Vec<PathBuf>> {
    Python::attach(|py| {
        let n = py.import("sys").and_then(|sys| sys.getattr("modules")).and_then(|m| m.len()).unwrap_or(0);
        if n == *modules {
            return None;
        }
        *modules = n;
        Some(files_of(py))
    })
}
