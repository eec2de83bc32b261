//! The `cgi2wsgi` binary: everything lives in the library.

/// Rust-side allocations (request parsing, response records) are small and short-lived:
/// mimalloc serves them in a fraction of glibc's instructions and never stalls in
/// malloc_consolidate. Python's own objects still come from pymalloc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = cgi2wsgi::run();
    cgi2wsgi::exit(code)
}
