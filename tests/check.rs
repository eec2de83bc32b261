//! Running a drop-in as suEXEC does (by its bare name, in its directory) and
//! `cgi2wsgi check APP`: the resolved settings and where each came from, the one request,
//! the file problems a server would trip on, and the hints for the classic mistakes.

mod common;

use common::cgi::{body_text, example, examples_dir, os_env, run_program, test_app};
use common::{binary, cgi_env, parse_cgi, CgiResponse};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A world-readable temp dir (the drop-ins' directory).
fn site() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("cgi2wsgi-check-").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// Write an executable drop-in whose `#!` line runs the binary under test.
fn drop_in(dir: &Path, name: &str, lines: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let text = format!("#!{}\n{}\n", binary().display(), lines.join("\n"));
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Exec `name` by its bare name in `dir`, as suEXEC does (`execv("app.cgi", ...)`): the
/// kernel reads the `#!` line and runs `cgi2wsgi app.cgi WORDS...`.
fn exec_bare(dir: &Path, name: &str, words: &[&str], query: &str) -> CgiResponse {
    let script = dir.join(name);
    let uri = format!("/{name}{}{query}", if query.is_empty() { "" } else { "?" });
    let extra = [("SCRIPT_NAME", format!("/{name}")), ("SCRIPT_FILENAME", script.display().to_string()), ("REQUEST_URI", uri), ("PATH_INFO", String::new())];
    let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut env = cgi_env("GET", "", query, &extra);
    env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    // The exec happens in `dir`: python3 changes there, then execs the bare name.
    let code = "import os, sys; os.chdir(sys.argv[1]); os.execv(sys.argv[2], sys.argv[2:])";
    let mut args = vec!["-I", "-c", code, dir.to_str().unwrap(), name];
    args.extend_from_slice(words);
    parse_cgi(&run_program(Path::new("/usr/bin/python3"), &args, &os_env(&env), b"", false))
}

// 1. The bare-name bug: `cgi2wsgi app.cgi` is that file, not module `app`, submodule `cgi`.

#[test]
fn drop_ins_run_by_their_bare_name_answer_200() {
    let dir = site();
    let pythonpath = format!("# cgi2wsgi: pythonpath = {}", examples_dir());
    drop_in(dir.path(), "app.cgi", &[&pythonpath, "from hello import application"]);
    drop_in(dir.path(), "hello.cgi", &[&pythonpath, "from hello import application as app"]);
    drop_in(dir.path(), "doctor.cgi", &["# cgi2wsgi: app = builtin:doctor"]);
    for name in ["app.cgi", "hello.cgi"] {
        let r = exec_bare(dir.path(), name, &[], "");
        assert_eq!(r.status, 200, "{name}: {}", r.stderr);
        assert_eq!(r.body, b"Hello World\n", "{name}");
    }
    let r = exec_bare(dir.path(), "doctor.cgi", &[], "format=json");
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.json()["environ"]["SCRIPT_NAME"], "/doctor.cgi");
    // Query-string words Apache appends after the bare name are still never options.
    let r = exec_bare(dir.path(), "app.cgi", &["--app", "evil:x"], "--app+evil:x");
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"Hello World\n");
}

#[test]
fn a_bare_name_drop_in_keeps_its_directory_after_a_chdir_line() {
    let dir = site();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sibling.py"), "def application(e, sr):\n    sr('200 OK', [('Content-Type', 'text/plain')])\n    return [b'sibling']\n").unwrap();
    drop_in(dir.path(), "site.cgi", &["# cgi2wsgi: chdir = sub", "from sibling import application"]);
    let r = exec_bare(dir.path(), "site.cgi", &[], "");
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(body_text(&r), "sibling");
}

// 4. Hints for the classic mistakes, in the error log after the traceback.

fn hint(r: &CgiResponse) -> String {
    assert_eq!(r.status, 500, "{}", r.stderr);
    r.stderr.lines().find_map(|l| l.strip_prefix("hint: ")).unwrap_or_else(|| panic!("no hint line in:\n{}", r.stderr)).to_owned()
}

#[test]
fn wfastcgi_dotted_handler_gets_did_you_mean() {
    let r = get(&["--pythonpath", &examples_dir(), "hello.application"]);
    assert!(r.stderr.contains("ModuleNotFoundError"), "{}", r.stderr);
    assert!(hint(&r).starts_with("did you mean `hello:application`?"), "{}", r.stderr);
}

#[test]
fn factory_call_on_a_wsgi_app_says_drop_the_parentheses() {
    let venv = common::source_venv();
    let r = get(&["--venv", venv.to_str().unwrap(), &format!("{}:app()", example("flask/flaskapp.py"))]);
    let h = hint(&r);
    assert!(h.contains("drop the `()`") && h.contains("factory form is for functions that return the app"), "{h}");
    assert!(h.contains(&format!("{}:app`", example("flask/flaskapp.py"))), "{h}");
}

#[test]
fn missing_package_names_the_python_and_venv_used() {
    let r = get(&[&example("flask/flaskapp.py")]);
    assert!(r.stderr.contains("No module named 'flask'"), "{}", r.stderr);
    let h = hint(&r);
    assert!(h.contains("Python 3.") && h.contains("no venv") && h.contains("cgi2wsgi: venv =") && h.contains("--venv"), "{h}");
    // With a venv that lacks it, the venv is named, and its pip.
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("v");
    assert!(std::process::Command::new("/usr/bin/python3").args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap().success());
    let r = get(&["--venv", venv.to_str().unwrap(), &example("flask/flaskapp.py")]);
    let h = hint(&r);
    assert!(h.contains(&format!("the venv {}", venv.display())) && h.contains(&format!("{}/bin/pip install flask", venv.display())), "{h}");
}

fn get(args: &[&str]) -> CgiResponse {
    common::cgi::get(args, "", &[])
}
