//! Installing cgi2wsgi where no compiler and no libpython shared library are: the release
//! binary (static libpython) in a mount namespace with every `libpython3*.so*` hidden under
//! /dev/null, serving CGI and FastCGI and importing C extension modules; the
//! `dynamic-libpython` variant's smoke test; the wheel from `dev/package` pip-installed into
//! a fresh venv behind real lighttpd; the .deb installed with dpkg, one of its recipes under
//! Apache mod_fcgid, its man page and completion, then removed.
//!
//! Release build only: `dev/test` runs this file in its release pass (in a debug run the
//! tests are ignored). They need root (mount namespaces, dpkg), lighttpd, Apache with
//! mod_fcgid, lintian and man: missing ones fail the test.

mod common;

use common::fcgi::{self, Addr};
use common::servers::{self, path_str};
use common::{http, Fixture};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed ({}):\n{}{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

fn require_root(what: &str) {
    assert!(servers::is_root(), "{what} needs root (dev/test runs as root on CI)");
}

/// Every libpython shared library on the machine (real files, symlinks resolved).
fn libpython_files() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for dir in ["/usr/lib", "/usr/local/lib", "/usr/lib64", "/opt"] {
        if !Path::new(dir).is_dir() {
            continue;
        }
        let list = stdout(Command::new("find").args([dir, "-xdev", "-name", "libpython3*.so*"]));
        for line in list.lines() {
            let real = std::fs::canonicalize(line).unwrap_or_else(|_| PathBuf::from(line));
            if real.is_file() && !found.contains(&real) {
                found.push(real);
            }
        }
    }
    found
}

/// A command prefix that runs its arguments in a new mount namespace where /dev/null is
/// bound over every libpython shared library (and checks each now reads empty).
fn hide_libpython() -> Vec<OsString> {
    require_root("hiding libpython in a mount namespace");
    let libs = libpython_files();
    // libpython3.11-dev (needed to build) depends on libpython3.11: there is one to hide.
    assert!(!libs.is_empty(), "no libpython3*.so* found: the hiding would prove nothing");
    let script = r#"n=$1; shift
while [ "$n" -gt 0 ]; do mount --bind /dev/null "$1"; [ ! -s "$1" ] || { echo "still readable: $1" >&2; exit 1; }; shift; n=$((n-1)); done
exec "$@""#;
    let mut prefix: Vec<OsString> = ["unshare", "-m", "sh", "-ec", script, "hide-libpython"].iter().map(OsString::from).collect();
    prefix.push(libs.len().to_string().into());
    prefix.extend(libs.into_iter().map(OsString::from));
    prefix
}

fn command(prefix: &[OsString], program: &Path) -> Command {
    match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn extensions_app() -> String {
    fcgi::repo_path("tests/apps/extensions.py")
}

/// The body of tests/apps/extensions.py: each module loaded from the expected place.
fn assert_extensions(body: &str, venv: &Path) {
    let venv = venv.canonicalize().unwrap();
    for name in ["_ssl", "_sqlite3", "_ctypes"] {
        let line = body.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} missing: {body}"));
        assert!(line.contains("/lib-dynload/") && line.ends_with(".so"), "{line}");
    }
    let line = body.lines().find(|l| l.starts_with("markupsafe._speedups ")).unwrap_or_else(|| panic!("{body}"));
    let file = Path::new(line.split_once(' ').unwrap().1).canonicalize().unwrap();
    assert!(file.starts_with(&venv) && file.extension().is_some_and(|e| e == "so"), "{line} is not a C extension in {}", venv.display());
}

/// One CGI request of the extensions app through `prefix` + `binary`.
fn cgi_extensions(prefix: &[OsString], binary: &Path, venv: &Path) -> common::CgiResponse {
    let out = command(prefix, binary)
        .args(["--venv", &path_str(venv), &extensions_app()])
        .env_clear()
        .envs(common::cgi_env("GET", "/", "", &[]))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let r = common::parse_cgi(&out);
    assert_eq!(r.status, 200, "{}", r.stderr);
    r
}

/// One FastCGI request of the extensions app: `binary --bind` through `prefix`.
fn fastcgi_extensions(prefix: &[OsString], binary: &Path, venv: &Path) -> String {
    let dir = fcgi::temp_dir();
    let sock = dir.path().join("s.sock");
    let mut cmd = command(prefix, binary);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["--workers", "1", "--venv", &path_str(venv), "--log-file"])
        .arg(dir.path().join("log"))
        .arg("--bind")
        .arg(format!("unix:{}", sock.display()))
        .arg(extensions_app())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap());
    let server = fcgi::Server::spawn(cmd, dir, Addr::Unix(sock));
    server.get_ok("/", "").text()
}

fn glibc_floor(binary: &Path) -> String {
    let dump = stdout(Command::new("objdump").arg("-T").arg(binary));
    let mut versions: Vec<Vec<u32>> = dump
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let v: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let parts: Vec<u32> = v.trim_end_matches('.').split('.').filter_map(|p| p.parse().ok()).collect();
            (!parts.is_empty()).then_some(parts)
        })
        .collect();
    versions.sort();
    versions.last().map(|v| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".")).expect("no GLIBC_ versions")
}

// ---------------------------------------------------------------- the static binary

#[test]
#[cfg_attr(debug_assertions, ignore = "release binary: dev/test runs this file in its release pass")]
fn static_binary_serves_without_any_libpython_shared_library() {
    let bin = common::binary();
    let version = stdout(Command::new(&bin).arg("--version"));
    assert!(version.contains("static libpython"), "{version}");
    let ldd = stdout(Command::new("ldd").arg(&bin));
    assert!(!ldd.contains("libpython"), "the static binary still needs libpython:\n{ldd}");
    // PIE (ET_DYN), as it parses hostile input.
    let head = std::fs::read(&bin).unwrap();
    assert_eq!(u16::from_le_bytes([head[16], head[17]]), 3, "not a position-independent executable");
    // The C API is exported for extension modules.
    let dynsym = stdout(Command::new("objdump").arg("-T").arg(&bin));
    for sym in ["PyModule_Create2", "_Py_NoneStruct", "PyExc_TypeError"] {
        assert!(dynsym.lines().any(|l| l.ends_with(&format!(" {sym}"))), "{sym} is not exported");
    }
    eprintln!("static binary: {} bytes, glibc floor {}", head.len(), glibc_floor(&bin));

    let venv = common::source_venv();
    let hide = hide_libpython();
    let r = cgi_extensions(&hide, &bin, &venv);
    assert_extensions(&String::from_utf8_lossy(&r.body), &venv);
    assert_extensions(&fastcgi_extensions(&hide, &bin, &venv), &venv);
}

// ---------------------------------------------------------------- the dynamic variant

/// Build with `--features dynamic-libpython` into its own target dir (the main one's binary
/// stays the static build the other tests use). A debug build: this is a smoke test.
fn dynamic_binary() -> PathBuf {
    let target = common::repo().join("target/dynamic-libpython");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo)
        .current_dir(common::repo())
        .args(["build", "--locked", "--quiet", "--features", "dynamic-libpython", "--bin", "cgi2wsgi", "--target-dir"])
        .arg(&target));
    target.join("debug/cgi2wsgi")
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release binary: dev/test runs this file in its release pass")]
fn dynamic_variant_smoke_test() {
    let bin = dynamic_binary();
    let version = stdout(Command::new(&bin).arg("--version"));
    assert!(version.contains("dynamic libpython"), "{version}");
    let ldd = stdout(Command::new("ldd").arg(&bin));
    assert!(ldd.contains("libpython3"), "the dynamic variant does not link libpython:\n{ldd}");
    let venv = common::source_venv();
    let r = cgi_extensions(&[], &bin, &venv);
    assert_extensions(&String::from_utf8_lossy(&r.body), &venv);
    assert_extensions(&fastcgi_extensions(&[], &bin, &venv), &venv);
    // The other side of the static test: with libpython hidden, this one cannot start.
    let out = command(&hide_libpython(), &bin).arg("--version").output().unwrap();
    assert!(!out.status.success(), "the dynamic variant started with libpython hidden: the hiding hides nothing");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("libpython"), "{stderr}");
    eprintln!("dynamic binary (debug): {} bytes, glibc floor {}", std::fs::metadata(&bin).unwrap().len(), glibc_floor(&bin));
}

// ---------------------------------------------------------------- dev/package

struct Packages {
    wheel: PathBuf,
    deb: PathBuf,
}

/// `dev/package` once for the tests below, from the release binary under test.
fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        // Beside target/dist (which dev/package fills for people), replaced on each run.
        let dir = common::repo().join("target/dist-test");
        let list = stdout(Command::new(common::repo().join("dev/package")).arg("--binary").arg(common::binary()).arg("--out").arg(&dir).arg("--no-lint"));
        let find =
            |suffix: &str| PathBuf::from(list.lines().find(|l| l.ends_with(suffix)).unwrap_or_else(|| panic!("no {suffix} in dev/package's output:\n{list}")));
        Packages { wheel: find(".whl"), deb: find(".deb") }
    })
}

/// A PATH without cargo (or rustc) on it: the install must not need a compiler.
fn path_without_cargo() -> String {
    let dirs = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];
    let kept: Vec<&str> = dirs.into_iter().filter(|d| !["cargo", "rustc"].iter().any(|t| Path::new(d).join(t).exists())).collect();
    assert!(kept.contains(&"/usr/bin"), "cargo or rustc is in /usr/bin: this test cannot hide it");
    kept.join(":")
}

#[test]
#[cfg_attr(debug_assertions, ignore = "release binary: dev/test runs this file in its release pass")]
fn wheel_in_a_fresh_venv_serves_flask_through_lighttpd() {
    let p = packages();
    let name = p.wheel.file_name().unwrap().to_string_lossy().into_owned();
    let floor = glibc_floor(&common::binary()).replace('.', "_");
    assert_eq!(name, format!("cgi2wsgi-{}-cp311-cp311-manylinux_{floor}_x86_64.whl", env!("CARGO_PKG_VERSION")));

    // Without the repo's venv or binary: examples only, and a venv made here.
    let fx = Fixture::new(false);
    let venv = fx.path().join("appvenv");
    run(Command::new("/usr/bin/python3").arg("-m").arg("venv").arg(&venv));
    let path = path_without_cargo();
    run(Command::new(venv.join("bin/pip"))
        .env_clear()
        .env("PATH", &path)
        .env("HOME", std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
        .args(["install", "-q", "--disable-pip-version-check"])
        .arg(&p.wheel)
        .arg("flask"));
    let installed = venv.join("bin/cgi2wsgi");
    assert!(installed.metadata().unwrap().permissions().mode() & 0o111 != 0, "not executable");
    assert!(venv.join("share/man/man1/cgi2wsgi.1").is_file(), "the man page is not in the venv");
    // www-data cannot write __pycache__: precompile, as the README says.
    run(Command::new(venv.join("bin/python3")).args(["-m", "compileall", "-q"]).arg(venv.join("lib")));
    run(Command::new("chmod").arg("-R").arg("a+rX").arg(fx.path()));

    // Drop-ins whose shebang points into the venv, with no venv line: the binary's own venv.
    let cgi_bin = fx.path().join("cgi-bin");
    std::fs::create_dir_all(&cgi_bin).unwrap();
    let write_drop_in = |file: &str, text: String| {
        assert!(!text.contains("venv ="), "{text}");
        std::fs::write(cgi_bin.join(file), text).unwrap();
        std::fs::set_permissions(cgi_bin.join(file), std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let flask_example = std::fs::read_to_string(common::repo().join("examples/cgi-bin/flask.cgi")).unwrap();
    let body: String = flask_example.lines().skip(1).filter(|l| !l.starts_with("# cgi2wsgi: venv =")).map(|l| format!("{l}\n")).collect();
    let body = body.replace("# cgi2wsgi: pythonpath = ../flask", &format!("# cgi2wsgi: pythonpath = {}", path_str(&fx.examples().join("flask"))));
    write_drop_in("app.cgi", format!("#!{}\n{body}", installed.display()));
    std::fs::copy(common::repo().join("tests/apps/flask_version.py"), cgi_bin.join("flask_version.py")).unwrap();
    write_drop_in("where.cgi", format!("#!{}\nfrom flask_version import application\n", installed.display()));
    run(Command::new("chmod").arg("-R").arg("a+rX").arg(&cgi_bin));

    let site = servers::render_snippet("lighttpd/cgi.conf", &[("/usr/lib/cgi-bin", path_str(&cgi_bin))]);
    let server = servers::lighttpd_wrapped(&fx, &site, &hide_libpython());
    let r = http::get(server.port, "/app/users/42");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(r.json()["link"], "/app/users/42");
    let r = http::get(server.port, "/cgi-bin/where.cgi");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    let flask_file = PathBuf::from(r.text().split_once(' ').unwrap().1);
    assert!(flask_file.starts_with(&venv), "Flask came from {}, not the wheel's venv", flask_file.display());
    drop(server);

    // The README's shared-hosting drop-in and its "test it over SSH" line, as printed there.
    let readme = std::fs::read_to_string(common::repo().join("README.md")).unwrap();
    let block = |start: &str| {
        let at = readme.find(start).unwrap_or_else(|| panic!("the README lost {start:?}"));
        readme[at..].split("\n```").next().unwrap().to_owned()
    };
    let public_html = fx.path().join("public_html");
    std::fs::create_dir_all(&public_html).unwrap();
    let drop_in = block("#!/home/me/myapp/venv/bin/cgi2wsgi")
        .replace("/home/me/myapp/venv", &path_str(&venv))
        .replace("/home/me/myapp", &path_str(&fx.examples().join("flask")));
    std::fs::write(public_html.join("app.cgi"), drop_in + "\n").unwrap();
    std::fs::set_permissions(public_html.join("app.cgi"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let line = block("cd ~/public_html && env -i").replace("\\\n", " ").replace("~/public_html", &path_str(&public_html));
    let out = stdout(Command::new("bash").args(["-c", &line]));
    assert!(out.starts_with("Status: 200 OK\r\n"), "{line}\n{out}");
}

// ---------------------------------------------------------------- the .deb

/// Removes the package when the test ends, however it ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-r", "cgi2wsgi"]).stdout(Stdio::null()).status();
    }
}

const DEB_FILES: [&str; 9] = [
    "/etc/cgi2wsgi",
    "/usr/bin/cgi2wsgi",
    "/usr/share/man/man1/cgi2wsgi.1.gz",
    "/usr/share/bash-completion/completions/cgi2wsgi",
    "/usr/share/zsh/vendor-completions/_cgi2wsgi",
    "/usr/share/fish/vendor_completions.d/cgi2wsgi.fish",
    "/lib/systemd/system/cgi2wsgi@.service",
    "/lib/systemd/system/cgi2wsgi@.socket",
    "/usr/share/doc/cgi2wsgi/examples/apache/fcgid.conf",
];

#[test]
#[cfg_attr(debug_assertions, ignore = "release binary: dev/test runs this file in its release pass")]
fn deb_installs_serves_through_mod_fcgid_and_removes_cleanly() {
    require_root("dpkg -i");
    let p = packages();
    let lint = Command::new("lintian")
        .args(["--fail-on", "error"])
        .arg(&p.deb)
        .output()
        .unwrap_or_else(|e| panic!("lintian: {e} (apt-get install lintian; dev/test installs it)"));
    let said = String::from_utf8_lossy(&lint.stdout);
    assert!(lint.status.success() && !said.contains("E: "), "lintian found errors:\n{said}{}", String::from_utf8_lossy(&lint.stderr));
    eprintln!("lintian: {}", if said.trim().is_empty() { "nothing" } else { said.trim() });

    let installed = Installed;
    run(Command::new("dpkg").arg("-i").arg(&p.deb));
    for f in DEB_FILES {
        assert!(Path::new(f).exists(), "{f} not installed");
    }
    let version = stdout(Command::new("/usr/bin/cgi2wsgi").arg("--version"));
    assert!(version.contains("static libpython"), "{version}");

    // The recipe as installed, with the example paths pointed into a fixture.
    let fx = Fixture::new(true);
    let doc = Path::new("/usr/share/doc/cgi2wsgi/examples");
    let mut recipe = std::fs::read_to_string(doc.join("apache/fcgid.conf")).unwrap();
    let app = doc.join("flask/flaskapp.py");
    for (from, to) in [
        ("/usr/local/bin/cgi2wsgi", "/usr/bin/cgi2wsgi".to_owned()),
        ("/srv/myapp/venv", path_str(&fx.venv())),
        ("/srv/myapp/app.py", path_str(&app)),
        ("/srv/fcgi-bin", path_str(&fx.path().join("fcgi-bin"))),
    ] {
        assert!(recipe.contains(from), "the installed fcgid.conf no longer mentions {from}");
        recipe = recipe.replace(from, &to);
    }
    let run_dir = fx.path().join("run");
    let site = format!("FcgidIPCDir {0}/fcgid\nFcgidProcessTableFile {0}/fcgid_shm\n{recipe}", run_dir.display());
    let server = servers::apache_event(&fx, "apache mod_fcgid (.deb)", &["fcgid_module mod_fcgid.so"], &site);
    let r = http::get(server.port, "/app/users/42");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), server.log());
    assert_eq!(r.json()["link"], "/app/users/42");
    drop(server);

    let page =
        stdout(Command::new("man").args(["-l", "/usr/share/man/man1/cgi2wsgi.1.gz"]).env("LC_ALL", "C.UTF-8").env("MANWIDTH", "100").env("MANPAGER", "cat"));
    assert!(page.contains("NAME") && page.contains("cgi2wsgi") && page.contains("--venv") && page.contains("CGI2WSGI_VENV"), "{page}");
    let completion = stdout(Command::new("bash").args(["-c", "source /usr/share/bash-completion/completions/cgi2wsgi; complete -p cgi2wsgi"]));
    assert!(completion.contains("_cgi2wsgi") && completion.trim_end().ends_with("cgi2wsgi"), "{completion}");

    // The systemd templates, as one app's instance: systemd's own checker has nothing to say.
    let verify = run(Command::new("systemd-analyze").args(["verify", "cgi2wsgi@demo.socket", "cgi2wsgi@demo.service"]));
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");

    // An example run in place as root leaves __pycache__ there: removal must still be clean.
    let hello = common::cgi_env("GET", "/", "", &[]);
    run(Command::new("/usr/bin/cgi2wsgi").arg(doc.join("hello.py")).env_clear().envs(hello).stdout(Stdio::null()));
    assert!(doc.join("__pycache__").is_dir(), "the example run wrote no __pycache__: this checks nothing");

    run(Command::new("dpkg").args(["-r", "cgi2wsgi"]));
    std::mem::forget(installed);
    for f in DEB_FILES {
        assert!(!Path::new(f).exists(), "{f} left behind by dpkg -r");
    }
    assert!(!Path::new("/usr/share/doc/cgi2wsgi").exists(), "/usr/share/doc/cgi2wsgi left behind");
    let status = Command::new("dpkg-query").args(["-W", "-f", "${db:Status-Abbrev}", "cgi2wsgi"]).output().unwrap();
    let abbrev = String::from_utf8_lossy(&status.stdout);
    assert!(!status.status.success() || abbrev.starts_with("un"), "dpkg still lists cgi2wsgi: {abbrev:?}");
}

// ---------------------------------------------------------------- dev/setup

/// dev/setup on a machine without chromium and systemd installs exactly those, with
/// services kept from starting (policy-rc.d): run with stand-ins for dpkg-query and
/// apt-get first on PATH, so nothing is really installed or removed.
#[test]
fn dev_setup_installs_what_is_missing() {
    require_root("dev/setup's policy-rc.d");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("apt.log");
    let stub = |name: &str, body: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // dpkg-query -W -f FORMAT PACKAGE
    stub("dpkg-query", r#"case "$4" in chromium|systemd) echo "dpkg-query: no packages found matching $4" >&2; exit 1 ;; *) printf installed ;; esac"#.into());
    stub(
        "apt-get",
        format!(r#"p=no; [ -x /usr/sbin/policy-rc.d ] && /usr/sbin/policy-rc.d; [ $? = 101 ] && p=yes; echo "policy-rc=$p $*" >> '{}'"#, log.display()),
    );
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    let had_policy = Path::new("/usr/sbin/policy-rc.d").exists();

    let listed = stdout(Command::new(common::repo().join("dev/setup")).arg("--list").env("PATH", &path));
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["systemd", "chromium"]);
    run(Command::new(common::repo().join("dev/setup")).env("PATH", &path));
    let calls = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    assert!(lines[0].ends_with("update -qq"), "{calls}");
    assert!(lines[1].starts_with("policy-rc=yes ") && lines[1].ends_with("install -y -qq --no-install-recommends systemd chromium"), "{calls}");
    assert_eq!(Path::new("/usr/sbin/policy-rc.d").exists(), had_policy, "policy-rc.d not restored");
}
