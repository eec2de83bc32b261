//! Running a drop-in as suEXEC does (by its bare name, in its directory) and
//! `cgi2wsgi check APP`: the resolved settings and where each came from, the one request,
//! the file problems a server would trip on, and the hints for the classic mistakes.

mod common;

use common::cgi::{body_text, example, examples_dir, os_env, run_program};
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

/// The accelerator's workers whose stamps are in `dir`: every one seen is stopped by pid
/// when dropped (a worker retired by a newer one has no stamp left, but may still run).
struct Workers(PathBuf, std::cell::RefCell<Vec<i32>>);

impl Workers {
    fn pids(&self) -> Vec<i32> {
        let pids = self.current();
        self.1.borrow_mut().extend(&pids);
        pids
    }

    fn current(&self) -> Vec<i32> {
        let stamps = std::fs::read_dir(&self.0).into_iter().flatten().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "stamp"));
        let pids = stamps.filter_map(|p| std::fs::read_to_string(p).ok()?.lines().find_map(|l| l.strip_prefix("pid "))?.parse().ok());
        // Only processes that still are workers (a pid may be reused).
        pids.filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("--persist-worker"))).collect()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.pids();
        let seen = self.1.borrow().clone();
        for &pid in &seen {
            if std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("--persist-worker")) {
                // SAFETY: a worker this test started (its pid came from its stamp, its cmdline checked).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        // Gone before the next test looks for workers (a killed one's cmdline empties at once).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while seen.iter().any(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

#[test]
fn a_bare_name_drop_in_with_persist_starts_its_worker_and_is_relayed() {
    let dir = site();
    let persist = dir.path().join("persist");
    let workers = Workers(persist.clone(), std::cell::RefCell::default());
    let pythonpath = format!("# cgi2wsgi: pythonpath = {}", examples_dir());
    let persist_line = format!("# cgi2wsgi: persist-dir = {}", persist.display());
    drop_in(dir.path(), "app.cgi", &[&pythonpath, "# cgi2wsgi: persist = on", &persist_line, "from hello import application"]);
    // Deployed a while ago: a file written within a clock tick of the worker's import counts
    // as changed since (never stale code), which would replace the worker on the next request.
    let ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(dir.path().join("app.cgi")).unwrap().set_modified(ago).unwrap();
    for _ in 0..2 {
        let r = exec_bare(dir.path(), "app.cgi", &[], "");
        assert_eq!(r.status, 200, "{}", r.stderr);
        assert_eq!(r.body, b"Hello World\n");
        assert!(!r.stderr.contains("--persist:"), "served in-process: {}", r.stderr);
        workers.pids();
    }
    assert_eq!(workers.pids().len(), 1, "one worker, started by the first request and relayed to by the second");
    assert_eq!(
        workers.1.borrow().iter().collect::<std::collections::BTreeSet<_>>().len(),
        1,
        "the second request was relayed to the first worker, not a replacement"
    );
}

#[test]
fn a_bare_name_drop_in_keeps_its_directory_after_a_chdir_line() {
    let dir = site();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sibling.py"), "def application(e, sr):\n    sr('200 OK', [('Content-Type', 'text/plain')])\n    return [b'sibling']\n")
        .unwrap();
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

// 2. `cgi2wsgi check APP`.

/// `cgi2wsgi check ARGS` in `dir`, from a shell whose environment is `shell` (plus PATH).
fn check(dir: &Path, args: &[&str], shell: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(binary());
    cmd.arg("check").args(args).current_dir(dir).env_clear().env("PATH", "/usr/local/bin:/usr/bin:/bin").envs(shell.iter().copied());
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = common::cgi::spawn(&mut cmd);
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let started = std::time::Instant::now();
    while !waiter.is_finished() {
        if started.elapsed() > common::cgi::DEADLINE {
            // SAFETY: our own child, not yet reaped (the waiter has not finished).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("cgi2wsgi check {args:?} did not finish within {:?}", common::cgi::DEADLINE);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = waiter.join().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The settings table's row for `key`: (value, source).
fn row(report: &str, key: &str) -> (String, String) {
    let line = report.lines().find(|l| l.trim_start().starts_with(&format!("{key} "))).unwrap_or_else(|| panic!("no {key} row in:\n{report}"));
    let rest = line.trim_start()[key.len()..].trim();
    let (value, source) = rest.rsplit_once("  [").unwrap_or_else(|| panic!("{line}"));
    (value.to_owned(), source.trim_end_matches(']').to_owned())
}

#[test]
fn check_runs_a_drop_in_as_a_server_would_and_says_where_settings_came_from() {
    let dir = site();
    let venv = common::source_venv();
    let flask = common::repo().join("examples/flask");
    drop_in(
        dir.path(),
        "flask.cgi",
        &[
            &format!("# cgi2wsgi: venv = {}", venv.display()),
            &format!("# cgi2wsgi: pythonpath = {}", flask.display()),
            "# cgi2wsgi: threads = 4",
            "# cgi2wsgi: persist = on",
            "from flaskapp import app as application",
        ],
    );
    // What a shell may hold but Apache's CGI and suEXEC never pass: none of it may be used.
    let shell = [("CGI2WSGI_VENV", "/no/such/venv"), ("CGI2WSGI_DEBUG", "1"), ("CGI2WSGI_APP", "nothing:here")];
    let (code, out, err) = check(dir.path(), &["--max-requests", "7", "flask.cgi"], &shell);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("Response: 200 OK") && out.contains("| Hello from Flask"), "{out}");
    assert!(out.contains("Content-Type: text/html"), "{out}");
    assert_eq!(row(&out, "venv"), (venv.display().to_string(), "drop-in line 2".into()));
    assert_eq!(row(&out, "pythonpath"), (flask.display().to_string(), "drop-in line 3".into()));
    assert_eq!(row(&out, "threads"), ("4".into(), "drop-in line 4".into()));
    assert_eq!(row(&out, "persist"), ("on".into(), "drop-in line 5".into()));
    assert_eq!(row(&out, "max-requests"), ("7".into(), "flag --max-requests".into()));
    assert_eq!(row(&out, "debug"), ("off".into(), "default".into()));
    assert_eq!(row(&out, "app").1, "argument");
    let ignored = out.split("Not passed by a web server").nth(1).unwrap_or_else(|| panic!("{out}"));
    for (k, v) in shell {
        assert!(ignored.contains(&format!("{k}={v}")), "{k} not named:\n{out}");
    }
    assert!(out.contains("Doctor: no warnings"), "{out}");
    assert!(!out.contains("File problems"), "{out}");
    // persist = on: check served in-process, so no accelerator worker was started.
    let (code, _, _) = check(dir.path(), &["flask.cgi"], &[]);
    assert_eq!(code, Some(0));
    let ps = std::process::Command::new("pgrep").args(["-f", &format!("{}.*--persist-worker", binary().display())]).output().unwrap();
    assert!(ps.stdout.is_empty(), "an accelerator worker was left running: {}", String::from_utf8_lossy(&ps.stdout));
}

#[test]
fn check_fails_with_the_traceback_and_the_hint() {
    let dir = site();
    drop_in(
        dir.path(),
        "app.cgi",
        &[&format!("# cgi2wsgi: pythonpath = {}", common::repo().join("examples/flask").display()), "from flaskapp import app as application"],
    );
    let (code, out, _) = check(dir.path(), &["app.cgi"], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("Response: 500") && out.contains("Traceback (most recent call last)"), "{out}");
    assert!(out.contains("No module named 'flask'") && out.contains("hint: Python 3."), "{out}");
    assert!(out.contains("FAILED"), "{out}");
}

#[test]
fn check_warns_about_what_a_server_or_suexec_refuses() {
    let dir = site();
    let path = dir.path().join("app.cgi");
    std::fs::write(&path, format!("#!/usr/local/bin/no-such-cgi2wsgi\r\n# cgi2wsgi: pythonpath = {}\r\nfrom hello import application\r\n", examples_dir()))
        .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
    let (code, out, _) = check(dir.path(), &["app.cgi"], &[]);
    // The app itself works (check runs it through this binary): the file is the problem.
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("| Hello World"), "{out}");
    let problems = out.split("File problems").nth(1).unwrap_or_else(|| panic!("{out}"));
    for needle in [
        "(CRLF) line endings",
        "/usr/local/bin/no-such-cgi2wsgi, which does not exist",
        "is not executable (mode 0664)",
        "suexec policy violation",
        "is writable by group or others (mode 0775)",
    ] {
        assert!(problems.contains(needle), "{needle:?} missing:\n{out}");
    }
}

#[test]
fn check_takes_a_path_and_any_app_spec() {
    let dir = site();
    std::fs::write(dir.path().join("where.py"), "def application(e, sr):\n    sr('200 OK', [('Content-Type', 'text/plain')])\n    return [('%s|%s|%s' % (e['SCRIPT_NAME'], e['PATH_INFO'], e['QUERY_STRING'])).encode()]\n").unwrap();
    let (code, out, _) = check(dir.path(), &["--path", "/a/b?c=d", "--pythonpath", dir.path().to_str().unwrap(), "where:application"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("| |/a/b|c=d"), "{out}");
    assert_eq!(row(&out, "pythonpath").1, "flag --pythonpath");
    // A drop-in mounted at the site root behind mod_rewrite: the URL is the app's path.
    drop_in(dir.path(), "site.cgi", &["# cgi2wsgi: script-name = /", "# cgi2wsgi: log-level = error", "from where import application"]);
    let (code, out, _) = check(dir.path(), &["--path", "/users/42", "--log-level", "warn", "site.cgi"], &[]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(row(&out, "log-level"), ("warn".into(), "flag --log-level, over drop-in line 3".into()));
    assert!(out.contains("run as: cgi2wsgi --log-level warn site.cgi with PATH="), "{out}");
    assert!(out.contains("Request: GET /users/42 ") && out.contains("| |/users/42|"), "{out}");
    assert!(out.contains("Doctor: no warnings"), "{out}");
}

#[test]
fn check_arguments_errors_are_one_line_with_clap_tips() {
    let dir = site();
    let (code, out, err) = check(dir.path(), &["--thread", "2", "app.cgi"], &[]);
    assert_eq!(code, Some(2), "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("cgi2wsgi check: unexpected argument '--thread'") && err.contains("tip: a similar argument exists: '--threads'"), "{err}");
    let (code, _, err) = check(dir.path(), &["missing.cgi"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no such file: missing.cgi"), "{err}");
    let (code, _, err) = check(dir.path(), &["--bind", "127.0.0.1:1", "m:app"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--bind"), "{err}");
    let (code, out, _) = check(dir.path(), &["--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--path") && out.contains("--venv"), "{out}");
}
