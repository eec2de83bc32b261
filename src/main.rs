//! The `cgi2wsgi` binary: everything lives in the library.

/// Rust-side allocations (request parsing, response records) are small and short-lived:
/// mimalloc serves them in a fraction of glibc's instructions and never stalls in
/// malloc_consolidate. Python's own objects still come from pymalloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc 2.x (the version is pinned by Cargo.lock).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() {
    // Give freed memory back to the OS at once: a worker that spooled a 1 MiB body must not
    // keep holding it (tests/leaks.rs bounds each worker's RSS growth).
    // SAFETY: sets a process-wide option before any thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let code = cgi2wsgi::run();
    cgi2wsgi::exit(code)
}
