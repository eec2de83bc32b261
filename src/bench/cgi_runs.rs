//! Cold CGI runs: spawn the program the way a web server does (an environment holding only
//! the CGI variables, stdin at EOF), time spawn → exit from the parent and, for cgi2wsgi,
//! the phases in between from the child's own stamps (`timings`). The accelerated variant
//! (`--persist`) is timed the same way, whole runs only: its first run starts the worker.

use super::progress::Progress;
use super::{last_line, BenchError, Target};
use crate::config::appspec::AppTarget;
use crate::timings::{self, Stamp};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What runs once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `cgi2wsgi --mode cgi APP`, with the timing hook on.
    Cgi,
    /// `python3 driver.py`: `wsgiref.handlers.CGIHandler().run(app)`.
    Wsgiref,
    /// `cgi2wsgi --mode cgi --persist --persist-dir TMP/persist APP`: the CGI accelerator,
    /// relaying to a worker it starts on the first run (no Python in the CGI process).
    Accelerated,
}

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Variant::Cgi => "cgi2wsgi CGI",
            Variant::Wsgiref => "wsgiref CGIHandler",
            Variant::Accelerated => "accelerated CGI",
        }
    }
}

/// The phases of one cgi2wsgi CGI run, in order; they add up to the run's total exactly.
pub const PHASES: [(&str, &str); 5] = [
    ("process_start", "process start (spawn → main)"),
    ("interpreter_init", "interpreter init"),
    ("app_import", "app import"),
    ("request", "request (environ, app, response)"),
    ("exit", "exit (atexit, _exit, reaped)"),
];

/// One cold run.
#[derive(Debug, Clone)]
pub struct Run {
    pub total_ns: u64,
    /// Per `PHASES`, when the variant stamps them.
    pub phases: Option<[u64; 5]>,
}

#[derive(Debug, Clone)]
pub struct CgiResult {
    pub variant: Variant,
    /// The counted runs (for the accelerated variant: the warm ones).
    pub runs: Vec<Run>,
    /// The accelerated variant's first run, which started the worker (not in `runs`).
    pub first: Option<Run>,
    /// Why the accelerated variant has no figures: the accelerator served in-process.
    pub fallback: Option<String>,
    /// The accelerated variant's worker (stopped by the bench once the runs are over).
    pub worker_pid: Option<i32>,
}

impl CgiResult {
    pub fn totals(&self) -> Vec<u64> {
        self.runs.iter().map(|r| r.total_ns).collect()
    }

    /// Samples of phase `i`, from the runs that have phases.
    pub fn phase(&self, i: usize) -> Vec<u64> {
        self.runs.iter().filter_map(|r| r.phases.map(|p| p[i])).collect()
    }

    /// The breakdown of a typical run, in ms: each phase averaged over the runs whose totals
    /// are the middle fifth (at least the median run), and how many runs that is. Unlike
    /// the phases' own medians (the median of a sum is not the sum of the medians when the
    /// machine is busy and the distributions skew), it adds up to those runs' total.
    pub fn median_run_breakdown(&self) -> Option<([f64; 5], usize)> {
        let mut runs: Vec<(u64, [u64; 5])> = self.runs.iter().filter_map(|r| Some((r.total_ns, r.phases?))).collect();
        if runs.is_empty() {
            return None;
        }
        runs.sort_unstable_by_key(|(total, _)| *total);
        let n = runs.len();
        let (lo, hi) = (n * 2 / 5, (n * 3).div_ceil(5).max(n * 2 / 5 + 1).min(n));
        let middle = &runs[lo..hi];
        let mut out = [0.0; 5];
        for (_, p) in middle {
            for (o, v) in out.iter_mut().zip(p) {
                *o += *v as f64 / 1e6 / middle.len() as f64;
            }
        }
        Some((out, middle.len()))
    }
}

const WSGIREF_DRIVER: &str = r#"# cgi2wsgi bench: the same app under wsgiref's CGIHandler, imported as cgi2wsgi does.
import os, sys
kind, target, attr, factory, chdir = sys.argv[1:6]
if chdir:
    os.chdir(chdir)
sys.path[0:0] = sys.argv[6:]
if kind == "file":
    import importlib.machinery, importlib.util
    sys.path.append(os.path.dirname(os.path.abspath(target)))
    stem = os.path.splitext(os.path.basename(target))[0]
    name = stem if target.endswith(".py") and stem.isidentifier() and stem not in sys.modules else "cgi2wsgi_app"
    loader = importlib.machinery.SourceFileLoader(name, target)
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
else:
    import importlib
    module = importlib.import_module(target)
if attr:
    app = module
    for part in attr.split("."):
        app = getattr(app, part)
else:
    app = getattr(module, "application", None) or getattr(module, "app")
if factory == "1":
    app = app()
from wsgiref.handlers import CGIHandler
CGIHandler().run(app)
"#;

pub(crate) fn cgi_env(target: &Target) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = target.request_vars().into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    env
}

/// The command for one run of `variant`, and the file its stamps go to (if any).
fn command(target: &Target, variant: Variant, dir: &Path) -> Result<(Command, Option<PathBuf>), BenchError> {
    let mut env = cgi_env(target);
    let (mut cmd, stamps) = match variant {
        Variant::Cgi => {
            let mut cmd = Command::new(&target.exe);
            cmd.args(["--mode", "cgi"]).args(target.python.to_flags()).arg(&target.app);
            let stamps = dir.join("timings");
            env.push((timings::VAR.to_owned(), stamps.to_string_lossy().into_owned()));
            (cmd, Some(stamps))
        }
        Variant::Wsgiref => {
            let driver = dir.join("wsgiref_driver.py");
            std::fs::write(&driver, WSGIREF_DRIVER).map_err(BenchError::io("cannot write the wsgiref driver"))?;
            // The settings as cgi2wsgi resolves them, a drop-in's `# cgi2wsgi:` lines included.
            let config = (target.resolve)(&target.app, &target.python)
                .map_err(|e| BenchError::BadApp(format!("--compare-wsgiref: {}", e.lines().next().unwrap_or_default())))?;
            let spec = config.app.as_ref().ok_or_else(|| BenchError::BadApp("--compare-wsgiref: no app".into()))?;
            let python = super::python_for(config.venv.as_deref());
            if !python.exists() {
                return Err(BenchError::BadApp(format!("--compare-wsgiref: no interpreter at {}", python.display())));
            }
            let (kind, name): (&str, OsString) = match &spec.target {
                AppTarget::File(p) => ("file", p.into()),
                AppTarget::Module(m) => ("module", m.into()),
                AppTarget::Builtin(_) => return Err(BenchError::BadApp("wsgiref cannot run a builtin app".into())),
            };
            let mut cmd = Command::new(python);
            cmd.arg(&driver).arg(kind).arg(name).arg(spec.callable.as_deref().unwrap_or(""));
            cmd.arg(if spec.factory { "1" } else { "0" }).arg(config.chdir.as_deref().unwrap_or(Path::new("")));
            cmd.args(&config.pythonpath);
            env.extend(config.env.iter().cloned());
            (cmd, None)
        }
        Variant::Accelerated => {
            let mut cmd = Command::new(&target.exe);
            cmd.args(["--mode", "cgi", "--persist", "--persist-dir"]).arg(super::accelerated::persist_dir(dir));
            cmd.args(["--persist-idle-timeout", &super::accelerated::IDLE_TIMEOUT_S.to_string()]);
            cmd.args(target.python.to_flags()).arg(&target.app);
            (cmd, None)
        }
    };
    cmd.env_clear().envs(env).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    Ok((cmd, stamps))
}

/// The status a CGI response carries (`Status:`, else 302 with `Location:`, else 200);
/// `None` when there is no header block at all.
pub fn cgi_status(out: &[u8]) -> Option<(u16, String)> {
    let end = out.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| out.windows(2).position(|w| w == b"\n\n"))?;
    let head = String::from_utf8_lossy(&out[..end]);
    let mut location = false;
    for line in head.lines() {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("status") {
            let value = value.trim();
            return Some((value.get(..3)?.parse().ok()?, value.to_owned()));
        }
        location |= name.eq_ignore_ascii_case("location");
    }
    Some(if location { (302, "302 Found".into()) } else { (200, "200 OK".into()) })
}

/// Why a run is not a figure worth keeping, in one line.
fn diagnose(variant: Variant, target: &Target, code: Option<i32>, stdout: &[u8], stderr: &[u8]) -> Option<BenchError> {
    let log = String::from_utf8_lossy(stderr);
    let request = format!("GET {}{}{}", target.path_info, if target.query.is_empty() { "" } else { "?" }, target.query);
    let status = cgi_status(stdout);
    if status.as_ref().is_some_and(|(s, _)| (200..300).contains(s)) && code == Some(0) {
        return None;
    }
    let who = variant.label();
    // A configuration error is already one line from the child: pass it on.
    if let Some(line) = log.lines().find_map(|l| l.strip_prefix("cgi2wsgi: ")) {
        return Some(BenchError::BadApp(line.to_owned()));
    }
    let tail = last_line(&log).unwrap_or("nothing was logged");
    if log.contains("cannot load the app") || (variant == Variant::Wsgiref && status.is_none()) {
        return Some(BenchError::AppFailed(format!("{who}: cannot load the app {}: {tail}", target.app)));
    }
    // cgi2wsgi's own start-up errors (a venv, --chdir, the interpreter) are not the app's 500.
    let first_error = log.lines().find_map(|l| l.split_once("]: ERROR: ").map(|(_, m)| m.trim_end_matches(':')));
    if let Some(message) = first_error.filter(|m| variant != Variant::Wsgiref && !m.starts_with("the app")) {
        return Some(BenchError::BadApp(format!("{who}: cannot start the app: {message}")));
    }
    Some(BenchError::AppFailed(match status {
        Some((_, line)) => format!("{who}: the app answered {line} to {request}; a benchmark needs a 2xx answer (log: {tail})"),
        None => format!("{who}: no CGI response to {request} (exit status {code:?}; log: {tail})"),
    }))
}

fn run_once(target: &Target, variant: Variant, dir: &Path) -> Result<Run, BenchError> {
    let (mut cmd, stamps) = command(target, variant, dir)?;
    if let Some(path) = &stamps {
        // Made (empty) by us, appended to by the child.
        std::fs::File::create(path).map_err(BenchError::io("cannot make the timings file"))?;
    }
    let spawned = crate::sys::monotonic_ns();
    let child = cmd.spawn().map_err(BenchError::io(format!("cannot start {}", variant.label())))?;
    let out = child.wait_with_output().map_err(BenchError::io(format!("waiting for {}", variant.label())))?;
    let reaped = crate::sys::monotonic_ns();
    if let Some(e) = diagnose(variant, target, out.status.code(), &out.stdout, &out.stderr) {
        return Err(e);
    }
    if variant == Variant::Accelerated {
        // The accelerator could not be used and this run was served in-process: its time
        // would be a plain CGI run's, not the accelerator's. The client logs why.
        let log = String::from_utf8_lossy(&out.stderr);
        if let Some(why) = log.lines().find_map(|l| l.split_once("--persist: ").map(|(_, why)| why.trim())) {
            return Err(BenchError::Fallback(why.to_owned()));
        }
    }
    let phases = match &stamps {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(BenchError::io("cannot read the timings file"))?;
            let got = timings::parse(&text);
            let at = |s: Stamp| got.iter().find(|(g, _)| *g == s).map(|(_, t)| *t);
            let points = [Some(spawned), at(Stamp::Main), at(Stamp::Init), at(Stamp::Import), at(Stamp::Response), Some(reaped)];
            let points: Option<Vec<u64>> = points.into_iter().collect();
            let points = points.ok_or_else(|| BenchError::AppFailed(format!("the CGI run left incomplete timestamps: {text:?}")))?;
            let mut p = [0u64; 5];
            for (i, w) in points.windows(2).enumerate() {
                p[i] = w[1].checked_sub(w[0]).ok_or_else(|| BenchError::AppFailed("the CGI run's timestamps go backwards".into()))?;
            }
            Some(p)
        }
        None => None,
    };
    Ok(Run { total_ns: reaped - spawned, phases })
}

/// For each variant one warm-up run (not kept: it fills the page cache and checks the app
/// answers 2xx), then cold runs in turn, one of each variant after the other so a change in
/// the machine's load hits them alike, until `budget` is spent or each has `max_runs`
/// (at least min(5, max_runs) each).
///
/// The accelerated variant's warm-up is its first run, the one that starts the worker: it
/// is kept as `first`. If the accelerator serves in-process instead (it logs why), or its
/// worker changes during the runs (so a warm figure would include a start), the variant
/// stops there with `fallback` set and no figures.
pub fn measure(target: &Target, variants: &[Variant], dir: &Path, budget: Duration, max_runs: usize, bar: &mut Progress) -> Result<Vec<CgiResult>, BenchError> {
    let mut results: Vec<CgiResult> =
        variants.iter().map(|&variant| CgiResult { variant, runs: Vec::new(), first: None, fallback: None, worker_pid: None }).collect();
    let persist = super::accelerated::persist_dir(dir);
    let mut accel_pid = None;
    for r in &mut results {
        bar.update(&format!("{}: warm-up", r.variant.label()), 0.0);
        match run_once(target, r.variant, dir) {
            Ok(run) if r.variant == Variant::Accelerated => {
                r.first = Some(run);
                accel_pid = super::accelerated::the_worker(&persist);
                r.worker_pid = accel_pid;
                if accel_pid.is_none() {
                    r.fallback = Some(format!("no accelerator worker was running after the first run (its log: {})", persist.display()));
                }
            }
            Ok(_) => {}
            Err(BenchError::Fallback(why)) => {
                r.fallback = Some(match super::accelerated::log_tail(&persist) {
                    Some(tail) => format!("{why} (the worker's log ended: {tail})"),
                    None => why,
                });
            }
            Err(e) => return Err(e),
        }
    }
    let names: Vec<&str> = results.iter().filter(|r| r.fallback.is_none()).map(|r| r.variant.label()).collect();
    let label = names.join(" + ");
    let start = Instant::now();
    let min_runs = max_runs.min(5);
    let mut made = 0;
    while made < max_runs && (made < min_runs || start.elapsed() < budget) {
        for r in results.iter_mut().filter(|r| r.fallback.is_none()) {
            match run_once(target, r.variant, dir) {
                Ok(run) => r.runs.push(run),
                Err(BenchError::Fallback(why)) => r.fallback = Some(why),
                Err(e) => return Err(e),
            }
        }
        made += 1;
        let fraction = (start.elapsed().as_secs_f64() / budget.as_secs_f64().max(1e-3)).max(made as f64 / max_runs as f64);
        bar.update(&format!("{label}: {made} cold runs"), fraction);
    }
    for r in results.iter_mut().filter(|r| r.variant == Variant::Accelerated && r.fallback.is_none()) {
        let now = super::accelerated::the_worker(&persist);
        if now != accel_pid {
            r.fallback = Some(format!("the accelerator's worker changed during the runs (pid {accel_pid:?}, now {now:?}), so some runs included a start"));
        }
    }
    for r in results.iter_mut().filter(|r| r.fallback.is_some()) {
        r.runs.clear();
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_run_breakdown_adds_up_to_the_middle_runs() {
        let run = |total: u64, p: [u64; 5]| Run { total_ns: total, phases: Some(p) };
        let mut runs: Vec<Run> = (1..=10).map(|k| run(k * 5_000_000, [k * 1_000_000; 5])).collect();
        runs.push(Run { total_ns: 1, phases: None });
        let r = CgiResult { variant: Variant::Cgi, runs, first: None, fallback: None, worker_pid: None };
        let (b, n) = r.median_run_breakdown().unwrap();
        // Runs 5 and 6 of 10 (totals 25 and 30 ms): phases of 5.5 ms each.
        assert_eq!(n, 2);
        assert!(b.iter().all(|&x| (x - 5.5).abs() < 1e-9), "{b:?}");
        assert!(CgiResult { variant: Variant::Wsgiref, runs: vec![Run { total_ns: 1, phases: None }], first: None, fallback: None, worker_pid: None }
            .median_run_breakdown()
            .is_none());
    }

    #[test]
    fn status_from_cgi_headers() {
        assert_eq!(cgi_status(b"Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nx").unwrap().0, 500);
        assert_eq!(cgi_status(b"Content-Type: text/plain\n\nhello").unwrap().0, 200);
        assert_eq!(cgi_status(b"Location: /x\r\n\r\n").unwrap().0, 302);
        assert_eq!(cgi_status(b"garbage"), None);
        assert_eq!(cgi_status(b"no colon here\r\n\r\n"), None);
    }
}
