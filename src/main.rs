//! The `cgi2wsgi` binary: everything lives in the library.
#![deny(unsafe_code)]

/// Rust-side allocations (request parsing, response records) are small and short-lived:
/// mimalloc serves them in a fraction of glibc's instructions and never stalls in
/// malloc_consolidate. Python's own objects still come from pymalloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // Before any thread exists (see `sys::allocator_release_at_once`).
    cgi2wsgi::allocator_release_at_once();
    let code = cgi2wsgi::run();
    cgi2wsgi::exit(code)
}
