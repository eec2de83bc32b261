//! The `cgi2wsgi` binary: everything lives in the library.

fn main() {
    let code = cgi2wsgi::run();
    cgi2wsgi::exit(code)
}
