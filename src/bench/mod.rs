//! `cgi2wsgi bench APP`: what one CGI request of this app costs on this machine, phase by
//! phase, against the same app in a persistent FastCGI worker, through the CGI accelerator
//! (`--persist`, unless `--no-accelerated`), and under `wsgiref`'s CGIHandler with
//! `--compare-wsgiref`. Every figure comes from a real run of this binary: the parent never
//! starts Python itself, it spawns `cgi2wsgi --mode cgi` cold runs (timed through the
//! `timings` hook), `--mode cgi --persist` runs, and a `cgi2wsgi --bind unix:…` worker it
//! drives with its own FastCGI client.

pub mod accelerated;
pub mod cgi_runs;
pub mod persistent;
pub mod progress;
pub mod report;
pub mod stats;
pub mod svg;

use crate::config::appspec::{AppSpec, AppTarget};
use crate::config::{Config, PythonArgs};
use clap::{CommandFactory, Parser};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a bench stopped; `Display` is the one line the user sees.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    BadApp(String),
    #[error("{0}")]
    AppFailed(String),
    #[error("the FastCGI worker: {0}")]
    Worker(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    /// The accelerator served in-process (reported in the results, never a failure).
    #[error("the accelerator served in-process: {0}")]
    Fallback(String),
}

impl BenchError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "cgi2wsgi bench",
    about = "Measure what per-request CGI costs for APP on this machine, against a persistent FastCGI worker",
    after_help = "APP and the Python options are the same as when serving. Cold CGI runs are split into\n\
                  process start, interpreter init, app import, request and exit from real timestamps.\n\
                  Accelerated CGI (--persist) runs are timed whole: the first (it starts the worker) apart\n\
                  from the warm ones; the worker is stopped at the end.\n\
                  Default run ≈ 30 s (--quick ≈ 5 s); the persistent worker's start-up is not counted."
)]
pub struct BenchArgs {
    /// The WSGI app, as for serving (module, module:callable, path/to/file.py, a drop-in)
    #[arg(value_name = "APP")]
    pub app: String,

    #[command(flatten)]
    pub python: PythonArgs,

    /// The request: a path with an optional query string, always GET
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub path: String,

    /// Persistent worker processes (default: one per CPU, as when serving with --bind)
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Request threads per persistent worker
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,

    /// Concurrent FastCGI connections, one level after the other
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_values_t = [1usize, 4, 16])]
    pub concurrency: Vec<usize>,

    /// About 5 seconds instead of about 30
    #[arg(long)]
    pub quick: bool,

    /// Time budget in seconds (overrides --quick)
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,

    /// At most this many cold CGI runs (at least min(5, N) are made whatever the budget)
    #[arg(long, value_name = "N")]
    pub runs: Option<usize>,

    /// Also time wsgiref.handlers.CGIHandler running the same app
    #[arg(long)]
    pub compare_wsgiref: bool,

    /// Skip the accelerated CGI runs (`--mode cgi --persist`, a worker started by the first)
    #[arg(long)]
    pub no_accelerated: bool,

    /// Print the results as JSON on stdout instead of the table
    #[arg(long)]
    pub json: bool,

    /// Write the distributions side by side as an SVG file (FILE.png: PNG, with rsvg-convert)
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// No progress bar on stderr
    #[arg(long)]
    pub no_progress: bool,
}

/// What every spawned run shares: the binary, the app and its Python options.
#[derive(Debug, Clone)]
pub struct Target {
    pub exe: PathBuf,
    /// APP, as given to the bench and passed on to each child.
    pub app: String,
    pub python: PythonArgs,
    /// PATH_INFO and QUERY_STRING of the request.
    pub path_info: String,
    pub query: String,
    /// How cgi2wsgi resolves APP and the Python options (for `--compare-wsgiref`).
    pub resolve: Resolve,
}

/// The entry layer's resolution of APP and its Python options into the configuration a
/// `--mode cgi` run would use (`cli::resolve_cgi_app`), handed down to `bench::main`.
pub type Resolve = fn(&str, &PythonArgs) -> Result<Config, String>;

impl Target {
    /// The CGI variables of the one GET every mode sends (as CGI environment or as FastCGI
    /// PARAMS), so all modes answer the same request.
    pub(crate) fn request_vars(&self) -> Vec<(&'static str, String)> {
        let uri = if self.query.is_empty() { self.path_info.clone() } else { format!("{}?{}", self.path_info, self.query) };
        vec![
            ("GATEWAY_INTERFACE", "CGI/1.1".into()),
            ("REQUEST_METHOD", "GET".into()),
            ("SCRIPT_NAME", String::new()),
            ("PATH_INFO", self.path_info.clone()),
            ("QUERY_STRING", self.query.clone()),
            ("REQUEST_URI", uri),
            ("SERVER_NAME", "127.0.0.1".into()),
            ("SERVER_PORT", "80".into()),
            ("SERVER_PROTOCOL", "HTTP/1.1".into()),
            ("SERVER_SOFTWARE", "cgi2wsgi-bench".into()),
            ("REMOTE_ADDR", "127.0.0.1".into()),
            ("HTTP_HOST", "127.0.0.1".into()),
        ]
    }
}

/// How long each part may take.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The cold runs of every variant, interleaved.
    pub cgi: Duration,
    /// Per concurrency level, warm-up included.
    pub per_level: Duration,
    pub max_runs: usize,
}

/// The whole time budget in seconds: `--duration`, else about 5 s with `--quick`, else 30 s.
pub fn total_secs(args: &BenchArgs) -> f64 {
    args.duration.filter(|d| d.is_finite() && *d > 0.0).unwrap_or(if args.quick { 5.0 } else { 30.0 })
}

impl Budget {
    pub fn plan(args: &BenchArgs) -> Budget {
        let total = total_secs(args);
        let (cgi_w, persistent_w) = if args.compare_wsgiref { (0.6, 0.4) } else { (0.5, 0.5) };
        let levels = args.concurrency.len().max(1) as f64;
        Budget {
            cgi: Duration::from_secs_f64(total * cgi_w),
            per_level: Duration::from_secs_f64(total * persistent_w / levels),
            max_runs: args.runs.unwrap_or(if args.quick { 200 } else { 1000 }).max(1),
        }
    }
}

/// Check the app before anything runs: the spec parses, a file app exists, the venv is one.
fn check_app(args: &BenchArgs) -> Result<(), BenchError> {
    let spec = AppSpec::parse(&args.app).map_err(|e| BenchError::BadApp(e.to_string()))?;
    if let AppTarget::File(path) = &spec.target {
        let seen_from = match &args.python.chdir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.clone(),
        };
        if !seen_from.is_file() {
            return Err(BenchError::BadApp(format!("no app file {} (APP is module[:callable] or path/to/file.py[:callable])", seen_from.display())));
        }
    }
    if let AppTarget::Builtin(_) = spec.target {
        if args.compare_wsgiref {
            return Err(BenchError::BadApp("--compare-wsgiref needs an app wsgiref can import, not a builtin".into()));
        }
    }
    if let Some(venv) = &args.python.venv {
        if !venv.join("pyvenv.cfg").is_file() {
            return Err(BenchError::BadApp(format!("--venv {}: no pyvenv.cfg; is this a venv?", venv.display())));
        }
    }
    for pair in &args.python.env {
        if pair.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return Err(BenchError::BadApp(format!("--env {pair:?}: expected KEY=VALUE")));
        }
    }
    Ok(())
}

/// Run the whole bench and return the report (nothing printed yet).
pub fn measure(args: &BenchArgs, resolve: Resolve) -> Result<report::Report, BenchError> {
    check_app(args)?;
    if args.concurrency.iter().any(|c| *c == 0 || *c > 1024) {
        return Err(BenchError::BadApp("--concurrency levels must be between 1 and 1024".into()));
    }
    let exe = std::env::current_exe().map_err(BenchError::io("cannot find the cgi2wsgi binary"))?;
    let (path_info, query) = match args.path.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (args.path.clone(), String::new()),
    };
    if !path_info.starts_with('/') {
        return Err(BenchError::BadApp(format!("--path {:?} must start with /", args.path)));
    }
    let target = Target { exe, app: args.app.clone(), python: args.python.clone(), path_info, query, resolve };
    let budget = Budget::plan(args);
    let tmp = tempfile::Builder::new().prefix("cgi2wsgi-bench-").tempdir().map_err(BenchError::io("cannot make a temp dir"))?;
    // Dropped before `tmp` (declared after it): the accelerator's workers are stopped by
    // PID before their directory goes, on success, error and panic alike.
    let accel_workers = accelerated::WorkerGuard::new(accelerated::persist_dir(tmp.path()));
    let mut bar = progress::Progress::new(!args.no_progress);
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)).max(1);
    let threads = args.threads.max(1);

    let mut variants = vec![cgi_runs::Variant::Cgi];
    if args.compare_wsgiref {
        variants.push(cgi_runs::Variant::Wsgiref);
    }
    if !args.no_accelerated {
        variants.push(cgi_runs::Variant::Accelerated);
    }
    let cold = cgi_runs::measure(&target, &variants, tmp.path(), budget.cgi, budget.max_runs, &mut bar)?;
    let take = |v: cgi_runs::Variant| cold.iter().find(|r| r.variant == v).cloned();
    let cgi = take(cgi_runs::Variant::Cgi).ok_or_else(|| BenchError::AppFailed("the cold CGI runs gave no result".into()))?;
    let wsgiref = take(cgi_runs::Variant::Wsgiref);
    let accel = take(cgi_runs::Variant::Accelerated);
    // Its runs are over: stopped now, so it does not share the machine with the persistent part.
    drop(accel_workers);
    let persistent = persistent::measure(&target, tmp.path(), workers, threads, &args.concurrency, budget.per_level, &mut bar)?;
    bar.finish();
    Ok(report::Report::new(&target, args, cgi, persistent, wsgiref, accel, accelerated::persist_dir(tmp.path())))
}

fn bench(args: &BenchArgs, resolve: Resolve) -> Result<(), BenchError> {
    let report = measure(args, resolve)?;
    // The figures first: a plot that cannot be written must not lose them.
    if args.json {
        let json = serde_json::to_string_pretty(&report.to_json()).map_err(|e| BenchError::io("cannot write the JSON report")(std::io::Error::other(e)))?;
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    match &args.plot {
        Some(file) => svg::write(file, &report),
        None => Ok(()),
    }
}

impl BenchArgs {
    /// The clap command, named and versioned as the user typed it.
    pub fn command_line(version: String) -> clap::Command {
        BenchArgs::command().bin_name("cgi2wsgi bench").version(version)
    }
}

/// `cgi2wsgi bench ...`, its arguments parsed; `resolve` is `cli::resolve_cgi_app`.
/// Returns the exit status.
pub fn main(args: &BenchArgs, resolve: Resolve) -> i32 {
    let _ = env_logger::Builder::new().parse_filters("warn").target(env_logger::Target::Stderr).try_init();
    match bench(args, resolve) {
        Ok(()) => 0,
        Err(e) => {
            // One line, whatever the cause (a traceback's last line is enough to act on).
            let line = e.to_string().replace('\n', " ");
            eprintln!("cgi2wsgi bench: {line}");
            1
        }
    }
}

/// The last non-empty line of a child's log, where a traceback names its exception.
pub(crate) fn last_line(text: &str) -> Option<&str> {
    // A `hint:` line after a load error's traceback is advice, not the exception.
    text.lines().map(str::trim).rfind(|l| !l.is_empty() && !l.starts_with("hint: "))
}

/// The interpreter wsgiref runs under: the venv's, else the one cgi2wsgi was built for.
pub(crate) fn python_for(venv: Option<&Path>) -> PathBuf {
    match venv {
        Some(v) => v.join("bin/python3"),
        None => PathBuf::from(option_env!("PYO3_PYTHON").unwrap_or("/usr/bin/python3")),
    }
}
