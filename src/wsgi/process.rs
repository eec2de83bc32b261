//! What a process (not a request) needs from Python: a request thread's thread state, the
//! fork protocol, `gc.freeze` before forking workers, the stack dump of `--timeout`, and
//! leaving the process (`exit`).
// The fork hooks are C calls: allowed here, with their SAFETY.
#![allow(unsafe_code)]

use crate::sys::{self, Fork};
use pyo3::prelude::*;

/// Run `f` (a request thread's event loop) without the GIL, with a Python thread state
/// made for this thread once and kept until `f` returns: each `serve` then takes the GIL
/// in a few hundred instructions instead of creating and destroying a thread state.
pub fn detached<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    Python::attach(|py| py.detach(f))
}

/// `sys::fork` under Python's own fork protocol (its locks taken before, its state fixed
/// up after, in parent and child). The same single-thread rule as `sys::fork` applies.
pub fn fork_with_python() -> std::io::Result<Fork> {
    // SAFETY: PyOS_* are called with the GIL held, on the forking thread, around the fork.
    Python::attach(|_py| unsafe {
        pyo3::ffi::PyOS_BeforeFork();
        let forked = sys::fork();
        if forked.as_ref().is_ok_and(|f| *f == Fork::Child) {
            pyo3::ffi::PyOS_AfterFork_Child();
        } else {
            pyo3::ffi::PyOS_AfterFork_Parent();
        }
        forked
    })
}

/// `gc.freeze()`: objects alive now are never collected, so the GC leaves their pages
/// shared between forked workers.
pub fn gc_freeze() {
    Python::attach(|py| {
        if let Err(e) = py.import("gc").and_then(|gc| gc.call_method0("freeze")) {
            log::warn!("gc.freeze: {e}");
        }
    });
}

/// Have faulthandler dump every Python thread's stack on `signal`; its C handler needs no
/// GIL, so this works while a stuck thread holds it.
pub fn register_stack_dump(signal: i32) -> Result<(), String> {
    Python::attach(|py| {
        let fh = py.import("faulthandler")?;
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("all_threads", true)?;
        fh.call_method("register", (signal,), Some(&kwargs)).map(|_| ())
    })
    .map_err(|e| e.to_string())
}

/// Leave the process: run the app's atexit handlers, flush, and `_exit` without
/// `Py_Finalize` (which would wait on the app's threads and can crash in extensions).
pub fn exit(code: i32) -> ! {
    super::interp::shutdown();
    let _ = std::io::Write::flush(&mut std::io::stderr());
    // Everything worth keeping was flushed above.
    sys::exit_now(code)
}
