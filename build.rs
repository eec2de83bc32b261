//! Links libpython: statically by default (the `-pic` archive, whole, with its C API exported
//! so extension modules still find it), or as the shared library with the
//! `dynamic-libpython` feature (or `CGI2WSGI_LIBPYTHON=dynamic`).
//!
//! pyo3's own link lines are switched off (`PYO3_BUILD_EXTENSION_MODULE` in
//! `.cargo/config.toml`): it would always link the shared library Debian's sysconfig names.
//! Everything here comes from the interpreter pyo3 builds against (`PYO3_PYTHON`), so building
//! for another CPython 3.x stays one variable.

use std::process::Command;

/// What the interpreter's `sysconfig` says, one `KEY=VALUE` per line.
const QUERY: &str = r#"
import sysconfig, sys
v = sysconfig.get_config_var
print("VERSION=%d.%d" % sys.version_info[:2])
for k in ("LDVERSION", "LIBPL", "LIBDIR", "MODLIBS", "LIBS", "SYSLIBS", "Py_ENABLE_SHARED"):
    print("%s=%s" % (k, v(k) or ""))
"#;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=CGI2WSGI_LIBPYTHON");
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python).args(["-I", "-c", QUERY]).output().unwrap_or_else(|e| panic!("cannot run {python} (PYO3_PYTHON) to find libpython: {e}"));
    assert!(out.status.success(), "{python} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("sysconfig output is UTF-8");
    let var = |key: &str| text.lines().find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('='))).unwrap_or_default().to_owned();
    let ldversion = var("LDVERSION");
    let variant = match std::env::var("CGI2WSGI_LIBPYTHON").as_deref() {
        Ok("dynamic") => "dynamic",
        Ok("static") => "static",
        Ok(other) => panic!("CGI2WSGI_LIBPYTHON={other:?}: expected static or dynamic"),
        Err(_) if std::env::var_os("CARGO_FEATURE_DYNAMIC_LIBPYTHON").is_some() => "dynamic",
        Err(_) => "static",
    };
    // `--version` says which one this binary is.
    println!("cargo:rustc-env=CGI2WSGI_LIBPYTHON_LINK={variant}");
    if variant == "dynamic" {
        let libdir = var("LIBDIR");
        println!("cargo:rustc-link-search=native={libdir}");
        println!("cargo:rustc-link-lib=dylib=python{ldversion}");
        // Debian's libpython is on the loader's path; a Python under /opt or $HOME is not.
        if !["/usr/lib", "/lib", "/usr/lib64", "/lib64"].iter().any(|d| libdir == *d || libdir.starts_with(&format!("{d}/"))) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{libdir}");
        }
        return;
    }
    let libpl = var("LIBPL");
    // Debian's `-pic` archive is position-independent, so the binary stays PIE (it parses
    // hostile input: keep ASLR). Upstream builds ship only libpythonX.Y.a.
    let archive = [format!("python{ldversion}-pic"), format!("python{ldversion}")]
        .into_iter()
        .find(|name| std::path::Path::new(&libpl).join(format!("lib{name}.a")).is_file())
        .unwrap_or_else(|| {
            panic!(
                "no static libpython (lib{}-pic.a or .a) in {libpl}: install the Python's development package \
                 (Debian: apt-get install libpython{}-dev), or link the shared library with \
                 `cargo build --features dynamic-libpython`",
                format_args!("python{ldversion}"),
                var("VERSION")
            )
        });
    println!("cargo:rerun-if-changed={libpl}/lib{archive}.a");
    println!("cargo:rustc-link-search=native={libpl}");
    // Whole archive: extension modules call C API functions cgi2wsgi itself never does.
    // Not bundled into the rlib: the final link takes it from LIBPL.
    println!("cargo:rustc-link-lib=static:+whole-archive,-bundle={archive}");
    // The libraries the built-in modules need (pyexpat: expat, zlib: z, math: m).
    let mut seen = Vec::new();
    for lib in [var("MODLIBS"), var("LIBS"), var("SYSLIBS")].join(" ").split_whitespace().filter_map(|w| w.strip_prefix("-l")) {
        if !seen.contains(&lib) {
            seen.push(lib);
            println!("cargo:rustc-link-lib={lib}");
        }
    }
    // lib-dynload and site-packages extension modules resolve the C API in the executable.
    println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol=Py*");
    println!("cargo:rustc-link-arg=-Wl,--export-dynamic-symbol=_Py*");
}
