//! The binary as a CGI program starting up: loading the app (module, file, factory,
//! fallback callable, missing app), builtin:doctor, command-line errors (one line, with
//! clap's tip) and venvs (packages, pyvenv.cfg, the linked Python, .pth files).

mod common;

use common::cgi::*;
use common::{cgi_env, cgi_run, parse_cgi};
use std::path::{Path, PathBuf};
use std::process::Command;

// 16. Loading the app.

#[test]
fn load_module_callable_with_pythonpath() {
    let r = get(&["--pythonpath", &examples_dir(), "hello:application"], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"Hello World\n");
}

#[test]
fn load_file_with_callable() {
    let r = get(&[&format!("{}:application", example("hello.py"))], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"Hello World\n");
}

#[test]
fn load_factory() {
    let r = get(&["--pythonpath", &apps_dir(), "factory:make()"], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"made by the factory\n");
}

#[test]
fn default_callable_falls_back_to_app() {
    let r = get(&[&test_app("only_app.py")], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"fallback to app\n");
    let r = get(&["--pythonpath", &apps_dir(), "only_app"], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert_eq!(r.body, b"fallback to app\n");
}

#[test]
fn missing_module_is_500_logged_not_shown() {
    let r = get(&["no_such_module_cgi2wsgi_test:application"], "", &[]);
    assert_clean_500(&r, "ModuleNotFoundError");
    assert!(r.stderr.contains("no_such_module_cgi2wsgi_test"), "{}", r.stderr);
}

#[test]
fn no_app_configured_is_500_saying_how_to_configure_one() {
    let r = get(&[], "", &[]);
    assert_eq!(r.status, 500, "{}", r.stderr);
    let body = body_text(&r);
    assert!(body.contains("--app") && body.contains("builtin:doctor"), "{body}");
}

// 17. builtin:doctor.

#[test]
fn doctor_html_warns_about_a_stripped_authorization_header() {
    // Apache authenticated the request (mod_auth_basic sets AUTH_TYPE and REMOTE_USER) but
    // hid the header: the app's own auth would fail.
    let authed = [("SERVER_SOFTWARE", "Apache/2.4"), ("AUTH_TYPE", "Basic"), ("REMOTE_USER", "ada")];
    let r = get(&["--app", "builtin:doctor"], "", &authed);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert!(r.header("Content-Type").is_some_and(|c| c.starts_with("text/html")), "{:?}", r.headers);
    let body = body_text(&r);
    assert!(body.contains("authorization-header-absent"), "{body}");
    // With the header present, the warning goes away.
    let r = get(&["--app", "builtin:doctor"], "", &[authed[0], authed[1], authed[2], ("HTTP_AUTHORIZATION", "Basic YWRhOng=")]);
    assert!(!body_text(&r).contains("authorization-header-absent"));
    // No evidence a header was sent (the client sent none): no warning either.
    let r = get(&["--app", "builtin:doctor"], "", &[("SERVER_SOFTWARE", "Apache/2.4")]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert!(!body_text(&r).contains("authorization-header-absent"), "{}", body_text(&r));
}

#[test]
fn doctor_json_has_the_environ_and_warnings() {
    // ?authorization=sent: the person testing says the request carried the header.
    let r = get(&["--app", "builtin:doctor"], "format=json&authorization=sent", &[("SERVER_SOFTWARE", "Apache/2.4")]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    assert!(r.header("Content-Type").is_some_and(|c| c.starts_with("application/json")), "{:?}", r.headers);
    let j = r.json();
    assert_eq!(j["environ"]["REQUEST_METHOD"], "GET");
    let warnings = j["warnings"].as_array().expect("warnings array");
    assert!(warnings.iter().any(|w| w["code"] == "authorization-header-absent"), "{warnings:?}");
    let r = get(&["--app", "builtin:doctor"], "format=json", &[("SERVER_SOFTWARE", "Apache/2.4")]);
    assert_eq!(r.json()["warnings"].as_array().map(Vec::len), Some(0), "{}", body_text(&r));
}

// 18. Command-line errors.

#[test]
fn bad_flag_outside_cgi_is_one_line_and_exit_2() {
    let out = cgi_run(&["--bogus-flag", &example("hello.py")], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("cgi2wsgi:") && stderr.contains("--bogus-flag"), "{stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
    assert!(out.stdout.is_empty(), "{:?}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn misspelled_flag_is_one_line_with_clap_tip() {
    let out = cgi_run(&["--thread", "2", &example("hello.py")], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("cgi2wsgi: unexpected argument '--thread'"), "{stderr:?}");
    assert!(stderr.contains("tip: a similar argument exists: '--threads'") && stderr.contains("(see cgi2wsgi --help)"), "{stderr:?}");
    // Under a web server: the same line in the error log, and the 500.
    let r = parse_cgi(&cgi_run(&["--thread", "2", &example("hello.py")], &cgi_env("GET", "/", "", &[]), b""));
    assert_eq!(r.status, 500);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("a similar argument exists: '--threads'"), "{}", r.stderr);
}

#[test]
fn bad_flag_under_cgi_answers_500() {
    let out = cgi_run(&["--bogus-flag", &example("hello.py")], &cgi_env("GET", "/", "", &[]), b"");
    let r = parse_cgi(&out);
    assert_eq!(r.status, 500);
    assert!(body_text(&r).contains("misconfigured"), "{}", body_text(&r));
    assert!(r.stderr.starts_with("cgi2wsgi:") && r.stderr.contains("--bogus-flag"), "{}", r.stderr);
}

#[test]
fn not_started_by_a_server_is_exit_2_naming_gateway_interface() {
    let out = cgi_run(&[&example("hello.py")], &[], b"");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("cgi2wsgi:") && stderr.contains("GATEWAY_INTERFACE"), "{stderr:?}");
    assert!(stderr.contains(&format!("cgi2wsgi check {}", example("hello.py"))), "the error names `cgi2wsgi check`: {stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn version_names_the_linked_python() {
    let out = cgi_run(&["--version"], &[], b"");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Python 3."), "{stdout:?}");
}

// 19. Venvs.

#[test]
fn venv_packages_are_importable() {
    let venv = common::source_venv();
    let r = get(&["--venv", venv.to_str().unwrap(), &test_app("flask_version.py")], "", &[]);
    assert_eq!(r.status, 200, "{}", r.stderr);
    let body = body_text(&r);
    let (version, file) = body.split_once(' ').unwrap_or_else(|| panic!("{body}"));
    assert!(version.starts_with("3."), "Flask {version}");
    let site = Path::new(file).canonicalize().unwrap();
    assert!(site.starts_with(venv.canonicalize().unwrap()), "flask imported from {file}, not the venv");
    // Without --venv, Flask (absent from the system Python) cannot be imported.
    let r = get(&[&test_app("flask_version.py")], "", &[]);
    assert_clean_500(&r, "ModuleNotFoundError");
}

#[test]
fn venv_without_pyvenv_cfg_is_500_with_a_clear_log() {
    let dir = tempfile::tempdir().unwrap();
    let r = get(&["--venv", dir.path().to_str().unwrap(), &example("hello.py")], "", &[]);
    assert_eq!(r.status, 500, "{}", r.stderr);
    assert!(r.stderr.contains("pyvenv.cfg") && r.stderr.contains(dir.path().to_str().unwrap()), "{}", r.stderr);
    assert!(!body_text(&r).contains("pyvenv.cfg"), "{}", body_text(&r));
}

#[test]
fn venv_of_another_python_version_is_500_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let venv: PathBuf = dir.path().join("venv39");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    std::fs::write(venv.join("pyvenv.cfg"), "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.9.1\n").unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", venv.join("bin/python3")).unwrap();
    let r = get(&["--venv", venv.to_str().unwrap(), &example("hello.py")], "", &[]);
    assert_eq!(r.status, 500, "{}", r.stderr);
    assert!(r.stderr.contains("3.9"), "{}", r.stderr);
}

// 20. The venv's .pth files are honoured (cgi2wsgi runs them itself; `site` is off).

#[test]
fn venv_pth_files_add_paths_and_run_import_lines() {
    let dir = tempfile::tempdir().unwrap();
    let venv = dir.path().join("venv");
    let status = Command::new("/usr/bin/python3").args(["-m", "venv", "--without-pip"]).arg(&venv).status().unwrap();
    assert!(status.success());
    let site = std::fs::read_dir(venv.join("lib")).unwrap().next().unwrap().unwrap().path().join("site-packages");
    let extra = dir.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(extra.join("pthmod.py"), "VALUE = 'from a .pth path'\n").unwrap();
    std::fs::write(site.join("a_extra.pth"), format!("# a comment\n{}\nimport sys; sys.cgi2wsgi_pth_ran = True\n", extra.display())).unwrap();
    // A broken line is logged and skipped, as `site` does.
    std::fs::write(site.join("b_broken.pth"), "import no_such_module_xyz\n").unwrap();
    let app = dir.path().join("app.py");
    std::fs::write(
        &app,
        "import sys, pthmod\ndef application(e, sr):\n    sr('200 OK', [('Content-Type', 'text/plain')])\n    return [(pthmod.VALUE + ' ' + str(getattr(sys, 'cgi2wsgi_pth_ran', False)) + ' ' + sys.prefix).encode()]\n",
    )
    .unwrap();
    let r = parse_cgi(&cgi_run(&["--venv", venv.to_str().unwrap(), app.to_str().unwrap()], &cgi_env("GET", "/", "", &[]), b""));
    assert_eq!(r.status, 200, "{}", r.stderr);
    let text = body_text(&r);
    assert!(text.starts_with("from a .pth path True "), "{text}");
    assert!(text.ends_with(&std::fs::canonicalize(&venv).unwrap().display().to_string()), "sys.prefix is not the venv: {text}");
    assert!(r.stderr.contains("b_broken.pth") && r.stderr.contains("no_such_module_xyz"), "{}", r.stderr);
}
