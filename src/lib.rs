//! cgi2wsgi: host a Python WSGI app as a CGI program or a persistent FastCGI responder.
//!
//! Data flows one way: CGI environment / FastCGI records → `http::request::Request` → WSGI
//! environ → the app → `http::response` → CGI stdout / FastCGI records. `ARCHITECTURE.md`
//! is the map: the layers, what each folder may import, and where `unsafe` may appear
//! (`sys`, the embedding API in `wsgi`, the listeners, one measured conversion in
//! `http::request`), each file allowing it for itself.
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(clippy::pedantic)]
// The docs name CGI variables and protocols (CONTENT_LENGTH, FastCGI) in prose: backticks on each would bury it.
#![allow(clippy::doc_markdown)]
// The bench's statistics turn nanosecond counts and sample sizes (far below 2^52) into f64.
#![allow(clippy::cast_precision_loss)]
// libc's C integers (pid_t, c_int, ssize_t) and the wire format's fixed-width fields are
// converted where they are used, after their range is checked (the codec is fuzzed).
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]
// The public API serves the crate's own tests and fuzz targets; each error enum says its cases.
#![allow(clippy::missing_errors_doc)]
// The CLI and the connection settings hold on/off flags one to one, as the user gives them.
#![allow(clippy::struct_excessive_bools)]
// Errors handed to `map_err(f)` and values moved into threads are taken by value on purpose.
#![allow(clippy::needless_pass_by_value)]
// `#[pymethods]` and the event loop's methods keep `self` for the shape they are called in.
#![allow(clippy::unused_self)]

// Public: what the tests, the fuzz targets and `main` use (the codec, the request, its
// errors); the rest is the crate's own.
pub(crate) mod accel;
pub(crate) mod bench;
pub(crate) mod cli;
pub(crate) mod config;
pub mod error;
pub mod fastcgi;
pub(crate) mod gateway;
pub mod http;
pub(crate) mod server;
pub(crate) mod sys;
pub(crate) mod timings;
pub(crate) mod wsgi;

pub use sys::allocator_release_at_once;

use std::io::Write;

/// `--version`: ours and the Python actually linked (with the interpreter it was built for).
pub(crate) fn version_string() -> String {
    let built_for = option_env!("PYO3_PYTHON").unwrap_or("the default python3");
    // build.rs says how libpython is linked: "static" (the default) or "dynamic".
    let link = env!("CGI2WSGI_LIBPYTHON_LINK");
    format!("{} (Python {}, {link} libpython, built for {built_for})", env!("CARGO_PKG_VERSION"), wsgi::interp::linked_version())
}

fn init_logging(level: &str) {
    env_logger::Builder::new()
        .parse_filters(level)
        // The pid is read per line: workers are forked after the logger is set up.
        .format(|buf, record| writeln!(buf, "cgi2wsgi[{}]: {}: {}", std::process::id(), record.level(), record.args()))
        .target(env_logger::Target::Stderr)
        .init();
}

/// Answer a configuration error: one line on stderr, and a 500 on stdout when a CGI server
/// is waiting for a response (so it logs our reason, not "malformed header").
fn config_failure(message: &str, in_cgi: bool) -> i32 {
    eprintln!("cgi2wsgi: {message}");
    if in_cgi {
        let page = http::response::error_response_bytes("500 Internal Server Error", "cgi2wsgi is misconfigured; the reason is in the server's error log.");
        let mut out = std::io::stdout();
        let _ = out.write_all(&page).and_then(|()| out.flush());
    }
    2
}

/// The whole program; returns the exit status.
pub fn run() -> i32 {
    timings::stamp(timings::Stamp::Main);
    let in_cgi = std::env::var_os("GATEWAY_INTERFACE").is_some();
    let env = |k: &str| std::env::var_os(k);
    let exe = std::env::current_exe().ok();
    let args = cli::argv::strip_server_words(std::env::args_os().collect(), &env, exe.as_deref());
    // `cgi2wsgi bench ...` has its own command line; never under a web server.
    if !in_cgi && args.get(1).is_some_and(|a| a == "bench") {
        let mut bench_args = args;
        bench_args.remove(1);
        return match cli::parse_args::<bench::BenchArgs>(bench::BenchArgs::command_line(version_string()), bench_args) {
            Ok(a) => bench::main(&a, cli::resolve_cgi_app),
            Err(cli::ArgsExit::Shown) => 0,
            Err(cli::ArgsExit::Error(line)) => {
                eprintln!("cgi2wsgi bench: {line}");
                2
            }
        };
    }
    // `cgi2wsgi check APP`: one request as a web server would run it, from a shell.
    if !in_cgi && args.get(1).is_some_and(|a| a == "check") {
        let mut check_args = args;
        check_args.remove(1);
        return cli::check::main(check_args, version_string());
    }
    // `cgi2wsgi --generate man|bash|...` (dev/package): the man page and completions.
    if !in_cgi && args.get(1).is_some_and(|a| a == "--generate") {
        return cli::generate::main(&args);
    }
    let config = match cli::Cli::from_command_line(args.clone(), version_string()) {
        Ok(cli) => cli.into_config(in_cgi),
        Err(cli::ArgsExit::Shown) => return 0,
        Err(cli::ArgsExit::Error(line)) => return config_failure(&line, in_cgi),
    };
    let mut config = match config {
        Ok(c) => c,
        Err(e) => return config_failure(&e.to_string(), in_cgi),
    };
    // `cgi2wsgi check`'s child serves in-process: its log is what check reports.
    if std::env::var_os(cli::check::CHILD_VAR).is_some() {
        config.persist.enabled = false;
    }
    init_logging(&config.log_level);
    if config.persist.worker_socket.is_some() {
        return accel::worker::run(&config);
    }
    match config.gateway {
        // The accelerator, when it can serve the request; else this process serves it.
        config::Gateway::Cgi if config.persist.enabled => accel::client::run(&config, &args).unwrap_or_else(|| gateway::cgi::run(&config)),
        config::Gateway::Cgi => gateway::cgi::run(&config),
        config::Gateway::FastCgi => server::run(&config),
    }
}

pub use wsgi::process::exit;
