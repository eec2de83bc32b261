//! `cgi2wsgi bench`: the command runs on the bundled examples (hello, Flask with the test
//! venv), its JSON holds sane figures (accelerated CGI included, or its fallback stated), the
//! plot is a well-formed SVG, no worker outlives the bench, and a bad app, an import error or
//! an app answering 500 end in one clear line instead of figures.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(common::binary()).arg("bench").arg("--no-progress").args(args).current_dir(common::repo()).output().expect("cgi2wsgi bench starts")
}

fn json_of(out: &Output) -> Value {
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bench --json printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for key in path.split('.') {
        cur = match key.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[key],
        };
    }
    cur.as_f64().unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

/// The checks every report must pass, whatever the app.
fn check_report(r: &Value, levels: &[u64]) {
    let runs = num(r, "cgi.runs");
    assert!(runs >= 5.0, "at least 5 cold runs: {runs}");
    assert_eq!(r["cgi"]["samples_ms"].as_array().unwrap().len() as f64, runs);
    let total = num(r, "cgi.total.median_ms");
    assert!(total > 0.0 && total <= num(r, "cgi.total.p95_ms"));
    let mut sum = 0.0;
    for phase in ["process_start", "interpreter_init", "app_import", "request", "exit"] {
        let m = num(r, &format!("cgi.phases.{phase}.median_ms"));
        assert!(m > 0.0 && m <= num(r, &format!("cgi.phases.{phase}.p95_ms")), "phase {phase} has median {m}");
        assert_eq!(num(r, &format!("cgi.phases.{phase}.n")), runs);
        let typical = num(r, &format!("cgi.median_run_breakdown.{phase}_ms"));
        assert!(typical > 0.0, "phase {phase} takes {typical} ms in the median runs");
        sum += typical;
    }
    // The breakdown adds up to the total (the medians of skewed phases need not: see the JSON).
    assert!((sum - total).abs() <= 0.1 * total, "the median runs' phases add up to {sum} ms, the total median is {total} ms");
    assert!((num(r, "cgi.median_run_breakdown.total_ms") - sum).abs() < 0.01);
    assert!(num(r, "cgi.median_run_breakdown.runs") >= 1.0);
    let got: Vec<u64> = r["persistent"]["levels"].as_array().unwrap().iter().map(|l| l["concurrency"].as_u64().unwrap()).collect();
    assert_eq!(got, levels);
    for l in r["persistent"]["levels"].as_array().unwrap() {
        assert!(num(l, "requests") > 0.0 && num(l, "req_per_s") > 0.0, "{l}");
        assert!(num(l, "p50_ms") > 0.0 && num(l, "p50_ms") <= num(l, "p99_ms"), "{l}");
    }
    let persistent = num(r, "persistent.levels.0.p50_ms");
    assert!(total > persistent, "a cold CGI run ({total} ms) should cost more than a persistent request ({persistent} ms)");
    assert!((num(r, "ratios.cgi_over_persistent") - total / persistent).abs() <= 0.02 * total / persistent + 0.01);
    assert!(num(r, "machine.cpus") >= 1.0);
    assert!(r["machine"]["python"].as_str().unwrap().starts_with("3."));
}

/// The accelerated runs were measured: a first run that started a worker, warm runs after
/// it, and (gone by now) the worker and its directory. Returns the warm median.
fn check_accelerated(r: &Value) -> f64 {
    let a = &r["accelerated"];
    assert!(a["fallback"].is_null(), "the accelerator fell back: {a:#}");
    let runs = num(r, "accelerated.runs");
    assert!(runs >= 5.0, "at least 5 warm accelerated runs: {a:#}");
    assert_eq!(a["samples_ms"].as_array().unwrap().len() as f64, runs);
    let warm = num(r, "accelerated.warm.median_ms");
    assert!(warm > 0.0 && warm <= num(r, "accelerated.warm.p95_ms"), "{a:#}");
    assert!(num(r, "accelerated.cold_ms") > 0.0);
    let persistent = num(r, "persistent.levels.0.p50_ms");
    assert!(warm > persistent, "an accelerated CGI run ({warm} ms) spawns a process: it should cost more than a persistent request ({persistent} ms)");
    assert!((num(r, "ratios.accelerated_over_persistent") - warm / persistent).abs() <= 0.02 * warm / persistent + 0.01);
    let cgi = num(r, "cgi.total.median_ms");
    assert!((num(r, "ratios.cgi_over_accelerated") - cgi / warm).abs() <= 0.02 * cgi / warm + 0.01);
    // The worker the first run started is stopped and its directory removed.
    let pid = a["worker_pid"].as_i64().unwrap_or_else(|| panic!("no worker pid: {a:#}"));
    assert_gone(pid as i32);
    let dir = Path::new(a["persist_dir"].as_str().unwrap());
    assert!(dir.ends_with("persist") && dir.to_str().unwrap().contains("cgi2wsgi-bench-"), "{dir:?}");
    assert!(!dir.exists(), "the bench left {}", dir.display());
    warm
}

/// Gone or a zombie waiting for its adopter to reap it (it is not our child).
fn assert_gone(pid: i32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    assert!(stat.is_empty() || state.starts_with('Z'), "the accelerator worker {pid} is still running: {stat}");
}

#[test]
fn hello_json_holds_a_breakdown_that_adds_up() {
    let out = bench(&["--quick", "--json", "--runs", "40", "--workers", "1", "--concurrency", "1,4", "examples/hello.py"]);
    let r = json_of(&out);
    check_report(&r, &[1, 4]);
    assert_eq!(r["persistent"]["workers"], 1);
    assert_eq!(r["persistent"]["threads"], 1);
    assert!(r["wsgiref"].is_null());
    assert_eq!(r["request"], "GET /");
    check_accelerated(&r);
    assert_no_worker_left();
}

/// The bench stops the workers it started (the FastCGI one, the accelerator's): no process
/// of this binary serves a bench socket or a bench persist directory.
fn assert_no_worker_left() {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.starts_with(common::binary().to_str().unwrap()) && c.contains("cgi2wsgi-bench-"))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "bench left workers running: {left:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn flask_cgi_costs_more_than_persistent_and_the_plot_is_svg() {
    let venv = common::source_venv();
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("flask.svg");
    let out = bench(&[
        "--quick",
        "--json",
        "--runs",
        "12",
        "--threads",
        "2",
        "--compare-wsgiref",
        "--venv",
        venv.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
        "--path",
        "/users/7?x=1",
        "examples/flask/flaskapp.py",
    ]);
    let r = json_of(&out);
    check_report(&r, &[1, 4, 16]);
    assert_eq!(r["persistent"]["threads"], 2);
    assert_eq!(r["request"], "GET /users/7?x=1");
    // Importing Flask is what a CGI run of a Flask app mostly does.
    let import = num(&r, "cgi.phases.app_import.median_ms");
    for other in ["process_start", "interpreter_init", "request", "exit"] {
        assert!(import > num(&r, &format!("cgi.phases.{other}.median_ms")), "app import should dominate: {:#}", r["cgi"]["phases"]);
    }
    assert!(num(&r, "wsgiref.runs") >= 5.0);
    assert!(num(&r, "wsgiref.total.median_ms") > num(&r, "persistent.levels.0.p50_ms"));
    assert!(num(&r, "ratios.wsgiref_over_cgi") > 0.0);
    // Accelerated: no interpreter start, no Flask import per request; the first run pays them.
    let warm = check_accelerated(&r);
    let cgi = num(&r, "cgi.total.median_ms");
    assert!(warm < cgi, "a warm accelerated run ({warm} ms) should cost less than an in-process CGI run ({cgi} ms)");
    assert!(num(&r, "accelerated.cold_ms") > warm, "{:#}", r["accelerated"]);
    assert_no_worker_left();
    // Rows: 3 FastCGI levels, cold CGI, wsgiref, accelerated.
    assert_svg(&plot, 3 + 3);
}

#[test]
fn accelerator_fallback_is_stated_not_measured() {
    // A temp dir this long makes the accelerator's socket path too long for a unix socket
    // (the FastCGI worker's, shorter, still fits): the accelerator serves in-process.
    let base = tempfile::tempdir().unwrap();
    // TMPDIR of 71 bytes: + /cgi2wsgi-bench-XXXXXX/persist/KEY.sock is 123 > 107.
    let long = base.path().join("d".repeat(70usize.saturating_sub(base.path().as_os_str().len()).max(1)));
    std::fs::create_dir(&long).unwrap();
    let out = Command::new(common::binary())
        .args(["bench", "--no-progress", "--json", "--duration", "1", "--runs", "5", "--workers", "1", "--concurrency", "1", "examples/hello.py"])
        .env("TMPDIR", &long)
        .current_dir(common::repo())
        .output()
        .unwrap();
    let r = json_of(&out);
    let a = &r["accelerated"];
    assert!(a["fallback"].as_str().is_some_and(|f| f.contains("too long")), "{a:#}");
    assert!(a["warm"].is_null() && a["cold_ms"].is_null() && a["runs"] == 0, "{a:#}");
    assert!(r["ratios"].get("cgi_over_accelerated").is_none());
    assert!(num(&r, "cgi.runs") >= 5.0);
    // A worker that cannot import the app (its environment is the CGI's minus the request's
    // variables: no HOME, no GATEWAY_INTERFACE), while in-process CGI and FastCGI can.
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("needs_home.py");
    std::fs::write(
        &app,
        "import os\nassert 'HOME' in os.environ or 'GATEWAY_INTERFACE' in os.environ, 'no HOME here'\n\
         def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'x']\n",
    )
    .unwrap();
    let out = Command::new(common::binary())
        .args(["bench", "--no-progress", "--json", "--duration", "1", "--runs", "5", "--workers", "1", "--concurrency", "1"])
        .arg(&app)
        .env("HOME", "/root")
        .current_dir(common::repo())
        .output()
        .unwrap();
    let r = json_of(&out);
    let why = r["accelerated"]["fallback"].as_str().unwrap_or_else(|| panic!("no fallback: {:#}", r["accelerated"]));
    assert!(why.contains("the worker did not start") && why.contains("AssertionError: no HOME here"), "{why}");
    assert!(r["accelerated"]["warm"].is_null());
    assert_no_worker_left();
    // And skipped on request.
    let out = bench(&["--duration", "1", "--runs", "5", "--workers", "1", "--concurrency", "1", "--json", "--no-accelerated", "examples/hello.py"]);
    assert!(json_of(&out)["accelerated"].is_null());
    assert_no_worker_left();
}

/// Parse the plot with Python's XML parser: well-formed, an <svg> root, and one box per row.
fn assert_svg(path: &Path, rows: usize) {
    let check = "import sys, xml.dom.minidom as m\n\
                 d = m.parse(sys.argv[1]).documentElement\n\
                 assert d.tagName == 'svg' and d.getAttribute('xmlns') == 'http://www.w3.org/2000/svg', d.tagName\n\
                 print(len(d.getElementsByTagName('rect')), len(d.getElementsByTagName('circle')))";
    let out = Command::new("/usr/bin/python3").arg("-c").arg(check).arg(path).output().unwrap();
    assert!(out.status.success(), "{} is not a valid SVG: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let counts: Vec<usize> = text.split_whitespace().map(|n| n.parse().unwrap()).collect();
    // Background + one box per row + the phase bar (5 parts, 5 legend keys).
    assert_eq!(counts[0], 1 + rows + 10, "{text}");
    assert!(counts[1] >= rows * 5, "points drawn: {text}");
}

#[test]
fn the_table_states_the_ratio() {
    let out = bench(&["--duration", "2", "--runs", "10", "--workers", "1", "--concurrency", "2", "examples/hello.py"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "process start",
        "interpreter init",
        "app import",
        "Persistent FastCGI (1 worker × 1 thread",
        "CGI costs ",
        "× a persistent request for this app",
        "first run (starts the worker)",
        "warm runs (",
        "Accelerated CGI costs ",
        "In-process CGI costs ",
        "× accelerated CGI",
    ] {
        assert!(table.contains(needle), "{needle:?} missing from:\n{table}");
    }
}

/// A failure: non-zero exit, nothing on stdout, one line on stderr holding `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bench should fail: {err}");
    assert!(out.stdout.is_empty(), "no figures on a failure: {}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected:\n{err}");
    assert!(err.starts_with("cgi2wsgi bench: ") && err.contains(needle), "{needle:?} expected in {err:?}");
    assert!(!err.contains("panicked"));
}

#[test]
fn bad_app_path_is_one_line() {
    assert_one_line_error(&bench(&["--quick", "examples/no_such_app.py"]), "no app file examples/no_such_app.py");
    assert_one_line_error(&bench(&["--quick", "mod:not a name"]), "not a callable name");
    assert_one_line_error(&bench(&["--quick"]), "<APP>");
}

#[test]
fn misspelled_flag_is_one_line_with_clap_tip() {
    let out = bench(&["--quik", "examples/hello.py"]);
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_error(&out, "tip: a similar argument exists: '--quick'");
    assert_one_line_error(&out, "(see cgi2wsgi bench --help)");
}

#[test]
fn import_error_and_500_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.py");
    std::fs::write(&broken, "import no_such_module_anywhere\n").unwrap();
    assert_one_line_error(&bench(&["--quick", broken.to_str().unwrap()]), "ModuleNotFoundError: No module named 'no_such_module_anywhere'");
    let fails = dir.path().join("fails.py");
    std::fs::write(
        &fails,
        "def application(environ, start_response):\n    start_response('500 Internal Server Error', [('Content-Type', 'text/plain')])\n    return [b'no']\n",
    )
    .unwrap();
    assert_one_line_error(&bench(&["--quick", fails.to_str().unwrap()]), "answered 500 Internal Server Error to GET /");
    let raises = dir.path().join("raises.py");
    std::fs::write(&raises, "def application(environ, start_response):\n    raise RuntimeError('boom')\n").unwrap();
    assert_one_line_error(&bench(&["--quick", "--compare-wsgiref", raises.to_str().unwrap()]), "RuntimeError: boom");
    // Fine as CGI, failing only in the persistent worker: caught there, and the worker stopped.
    let persistent_fails = dir.path().join("persistent_fails.py");
    std::fs::write(
        &persistent_fails,
        "def application(environ, start_response):\n    status = '200 OK' if environ['wsgi.run_once'] else '503 Service Unavailable'\n    start_response(status, [('Content-Type', 'text/plain')])\n    return [b'x']\n",
    )
    .unwrap();
    let app = persistent_fails.to_str().unwrap();
    assert_one_line_error(&bench(&["--quick", "--runs", "5", "--no-accelerated", app]), "FastCGI: the app answered 503 Service Unavailable");
    // The accelerator's worker is persistent too: it fails there first, and is stopped.
    assert_one_line_error(&bench(&["--quick", "--runs", "5", app]), "accelerated CGI: the app answered 503 Service Unavailable");
    assert_no_worker_left();
}
