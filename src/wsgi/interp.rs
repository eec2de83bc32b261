//! Bringing up the embedded CPython: isolated configuration, UTF-8 mode, explicit venv
//! (PyConfig.executable, so `pyvenv.cfg` is honoured), and a fast exit without Py_Finalize.
// The embedding API (PyConfig, the version string) is C: allowed here, each with its SAFETY.
#![allow(unsafe_code)]

use crate::wsgi::EmbedError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyList;
use std::ffi::{CStr, CString};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The version of the libpython actually loaded, e.g. "3.11.2".
pub fn linked_version() -> String {
    // SAFETY: Py_GetVersion returns a static NUL-terminated string and needs no interpreter.
    let full = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) }.to_string_lossy().into_owned();
    full.split_whitespace().next().unwrap_or_default().to_owned()
}

fn major_minor(v: &str) -> String {
    v.split('.').take(2).collect::<Vec<_>>().join(".")
}

/// Check that `venv` is a venv made with the linked Python; return its interpreter path.
fn check_venv(venv: &Path) -> Result<PathBuf, EmbedError> {
    let err = |why: String| EmbedError::Venv { path: venv.to_owned(), why };
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).map_err(|e| err(format!("no readable pyvenv.cfg ({e}); is this a venv?")))?;
    let setting = |keys: &[&str]| {
        cfg.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            keys.contains(&k.trim()).then(|| v.trim().to_owned())
        })
    };
    let linked = linked_version();
    if let Some(venv_version) = setting(&["version", "version_info"]) {
        if major_minor(&venv_version) != major_minor(&linked) {
            // The interpreter the venv was made with (3.11+ records it), else its home's.
            let venv_python = setting(&["executable"])
                .or_else(|| setting(&["home"]).map(|home| format!("{home}/python{}", major_minor(&venv_version))))
                .unwrap_or_else(|| format!("/path/to/python{}", major_minor(&venv_version)));
            let linked_xy = major_minor(&linked);
            return Err(EmbedError::VersionMismatch { path: venv.to_owned(), venv: venv_version, linked, venv_python, linked_xy });
        }
    }
    let exe = ["python3", "python"].iter().map(|n| venv.join("bin").join(n)).find(|p| p.exists());
    exe.ok_or_else(|| err("no bin/python3 in it".into()))
}

fn status_error(status: ffi::PyStatus) -> Option<EmbedError> {
    // SAFETY: PyStatus_Exception only reads the struct; err_msg is NULL or a static C string.
    unsafe {
        if ffi::PyStatus_Exception(status) == 0 {
            return None;
        }
        let msg = if status.err_msg.is_null() { "unknown error".into() } else { CStr::from_ptr(status.err_msg).to_string_lossy().into_owned() };
        Some(EmbedError::Init(msg))
    }
}

/// Initialize CPython once for this process, then release the GIL so `Python::attach` works.
pub fn initialize(venv: Option<&Path>) -> Result<(), EmbedError> {
    // Without a venv, name the interpreter we were built for (if it is there): with no
    // executable at all Python probes the current directory (a CGI's script directory)
    // for pyvenv.cfg and lib/python3.x landmarks.
    let built_for = option_env!("PYO3_PYTHON").map(PathBuf::from).filter(|p| p.is_file());
    let executable = match venv {
        Some(v) => Some(check_venv(v)?),
        None => built_for,
    };
    let executable = executable
        .map(|p| CString::new(p.as_os_str().as_bytes()).map_err(|_| EmbedError::Init(format!("{}: a NUL byte in the path", p.display()))))
        .transpose()?;
    // SAFETY: the standard embedding sequence (PEP 587), run once on this thread before any
    // other Python call; the config structs are initialised by CPython before use and cleared after.
    unsafe {
        let mut pre = MaybeUninit::<ffi::PyPreConfig>::zeroed();
        ffi::PyPreConfig_InitIsolatedConfig(pre.as_mut_ptr());
        let mut pre = pre.assume_init();
        // Apache gives CGI programs an empty environment: without this the locale is ASCII.
        pre.utf8_mode = 1;
        if let Some(e) = status_error(ffi::Py_PreInitialize(&raw const pre)) {
            return Err(e);
        }
        let mut cfg = MaybeUninit::<ffi::PyConfig>::zeroed();
        ffi::PyConfig_InitIsolatedConfig(cfg.as_mut_ptr());
        let cfg = cfg.as_mut_ptr();
        (*cfg).install_signal_handlers = 0;
        (*cfg).parse_argv = 0;
        // Unbuffered stdio (python -u): the app's print() reaches the error log at once and
        // is not lost if the server kills the process after the response.
        (*cfg).buffered_stdio = 0;
        // `site` costs ~3 ms a request (and imports sitecustomize); `add_site_packages`
        // does the part apps need: the site-packages directories and their .pth files.
        (*cfg).site_import = 0;
        // python -X faulthandler: an app that crashes the process (a segfault in a C
        // extension) leaves "Fatal Python error: Segmentation fault" and its Python stack in
        // the error log, instead of a silent death.
        (*cfg).faulthandler = 1;
        if let Some(exe) = &executable {
            for field in [std::ptr::addr_of_mut!((*cfg).executable), std::ptr::addr_of_mut!((*cfg).program_name)] {
                if let Some(e) = status_error(ffi::PyConfig_SetBytesString(cfg, field, exe.as_ptr())) {
                    ffi::PyConfig_Clear(cfg);
                    return Err(e);
                }
            }
        }
        let status = ffi::Py_InitializeFromConfig(cfg);
        ffi::PyConfig_Clear(cfg);
        if let Some(e) = status_error(status) {
            return Err(e);
        }
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// The site-packages directories `site` would add for this prefix: the venv's own, or the
/// system's (with Debian's dist-packages layout), existing ones only.
pub fn site_dirs(prefix: &Path, base_prefix: &Path, version: &str, include_system: bool) -> Vec<PathBuf> {
    let xy = major_minor(version);
    let system = |p: &Path| {
        vec![
            p.join(format!("local/lib/python{xy}/dist-packages")),
            p.join("lib/python3/dist-packages"),
            p.join(format!("lib/python{xy}/dist-packages")),
            p.join(format!("lib/python{xy}/site-packages")),
        ]
    };
    let mut dirs = if prefix == base_prefix {
        system(prefix)
    } else {
        let mut d = vec![prefix.join(format!("lib/python{xy}/site-packages"))];
        if include_system {
            d.extend(system(base_prefix));
        }
        d
    };
    dirs.retain(|d| d.is_dir());
    dirs.dedup();
    dirs
}

/// `.pth` files skipped: setuptools' distutils shim (in every pip-made venv and in Debian's
/// dist-packages) costs ~1.6 ms a request and matters only to build tools, not to web apps.
const SKIPPED_PTH: [&str; 1] = ["distutils-precedence.pth"];

/// What `site` does with one `.pth` file: path lines are appended to sys.path, `import`
/// lines run (editable installs rely on them). A failing line is logged and skipped.
fn process_pth(py: Python<'_>, dir: &Path, name: &str, path: &Bound<'_, PyList>) {
    let Ok(text) = std::fs::read_to_string(dir.join(name)) else { return };
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let result = if line.starts_with("import ") || line.starts_with("import\t") {
            CString::new(line).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string())).and_then(|code| py.run(&code, None, None))
        } else {
            let entry = dir.join(line.trim_end());
            let entry_str = entry.to_string_lossy();
            match path.contains(entry_str.as_ref()) {
                Ok(false) if entry.exists() => path.append(entry_str.as_ref()),
                other => other.map(|_| ()),
            }
        };
        if let Err(e) = result {
            log::warn!("{}: line {}: {e}", dir.join(name).display(), n + 1);
        }
    }
}

/// Add the site-packages directories (and run their `.pth` files), as `site` would.
#[allow(clippy::case_sensitive_file_extension_comparisons, reason = "`site` itself reads lower-case .pth files only")]
pub fn add_site_packages(py: Python<'_>, venv: Option<&Path>) -> PyResult<()> {
    let sys = py.import("sys")?;
    if let Some(venv) = venv {
        // What site.venv() does: the venv becomes sys.prefix (base_prefix stays the system's).
        let venv = std::fs::canonicalize(venv).unwrap_or_else(|_| venv.to_owned());
        // A str, as `site` sets it (a PathBuf would become a pathlib.Path).
        let venv = venv.to_string_lossy();
        sys.setattr("prefix", venv.as_ref())?;
        sys.setattr("exec_prefix", venv.as_ref())?;
    }
    let prefix: PathBuf = sys.getattr("prefix")?.extract()?;
    let base_prefix: PathBuf = sys.getattr("base_prefix")?.extract()?;
    let include_system = venv
        .and_then(|v| std::fs::read_to_string(v.join("pyvenv.cfg")).ok())
        .is_some_and(|cfg| cfg.lines().any(|l| l.replace(' ', "").eq_ignore_ascii_case("include-system-site-packages=true")));
    let path = sys.getattr("path")?.cast_into::<PyList>()?;
    for dir in site_dirs(&prefix, &base_prefix, &linked_version(), include_system) {
        let dir_str = dir.to_string_lossy();
        if !path.contains(dir_str.as_ref())? {
            path.append(dir_str.as_ref())?;
        }
        let mut pth_files: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(std::result::Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        pth_files.retain(|n| n.ends_with(".pth") && !n.starts_with('.') && !SKIPPED_PTH.contains(&n.as_str()));
        pth_files.sort();
        for name in &pth_files {
            process_pth(py, &dir, name, &path);
        }
    }
    Ok(())
}

/// Put directories at the front of `sys.path`, first one first.
pub fn prepend_sys_path(py: Python<'_>, dirs: &[PathBuf]) -> PyResult<()> {
    let path = py.import("sys")?.getattr("path")?.cast_into::<PyList>()?;
    for dir in dirs.iter().rev() {
        let dir = dir.to_string_lossy();
        if !path.contains(dir.as_ref())? {
            path.insert(0, dir.as_ref())?;
        }
    }
    Ok(())
}

/// Run the app's `atexit` handlers and flush Python's stdio; the caller then `_exit`s,
/// skipping Py_Finalize (slow, and it waits for the app's non-daemon threads).
pub fn shutdown() {
    // SAFETY: Py_IsInitialized only reads a flag.
    if unsafe { ffi::Py_IsInitialized() } == 0 {
        return;
    }
    Python::attach(|py| {
        let run = || -> PyResult<()> {
            py.import("atexit")?.call_method0("_run_exitfuncs")?;
            let sys = py.import("sys")?;
            for stream in ["stdout", "stderr"] {
                if let Ok(s) = sys.getattr(stream) {
                    if !s.is_none() {
                        s.call_method0("flush")?;
                    }
                }
            }
            Ok(())
        };
        if let Err(e) = run() {
            log::warn!("at exit: {}", super::format_exception(py, &e));
        }
    });
}
