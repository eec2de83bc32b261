//! `cgi2wsgi check APP`: "would this work under the web server?", answered from a shell.
//!
//! The settings are resolved as a server's run resolves them (flags and drop-in lines, no
//! `CGI2WSGI_*` from the shell: Apache's CGI and suEXEC pass a cleared environment), then
//! this binary runs itself once as a CGI child with only PATH and the CGI variables of one
//! `GET`, and the answer is parsed: status, headers, the first lines of the body, the log.
//! Around it: where each setting came from, the doctor's warnings for that request, and
//! the file problems a server trips on before cgi2wsgi even runs (CRLF, modes, the `#!`).

use crate::cli::dropin::DropIn;
use crate::cli::{self, ArgsExit, Cli, Mode};
use crate::config::appspec::{AppSpec, AppTarget};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Set in the CGI child: serve in-process even with `persist = on`, so the traceback comes
/// back on stderr and no accelerator worker is left running.
pub const CHILD_VAR: &str = "CGI2WSGI_CHECK_CHILD";

/// suEXEC's safe PATH (`AP_SAFE_PATH`), the one a CGI program gets there.
const SERVER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A request still running after this is a hang: the child is killed.
const DEADLINE: Duration = Duration::from_secs(120);

/// Lines of the body shown.
const BODY_LINES: usize = 8;

#[derive(Debug, Parser)]
#[command(
    name = "cgi2wsgi check",
    about = "Run APP once as a web server would (cleared environment, one GET) and say what would go wrong",
    after_help = "APP and the options are the ones you serve with (a drop-in: `cgi2wsgi check app.cgi`).\n\
                  CGI2WSGI_* variables of this shell are not used (a web server does not pass them): they are listed.\n\
                  Exit status: 0 when the app answered below 500, 1 when it failed, 2 for bad arguments."
)]
pub struct CheckArgs {
    #[command(flatten)]
    pub serve: Cli,

    /// The request's path, with an optional query string (always a GET)
    #[arg(long, value_name = "PATH", default_value = "/")]
    pub path: String,
}

/// `cgi2wsgi check ...` (`args` without the word `check`); returns the exit status.
pub fn main(args: Vec<OsString>, version: String) -> i32 {
    // A server's run sees no CGI2WSGI_* variable: clap must not read them either.
    let cmd = CheckArgs::command().version(version).mut_args(|a| a.env(None::<&str>));
    let (check, matches) = match parse(cmd, args.clone()) {
        Ok(parsed) => parsed,
        Err(ArgsExit::Shown) => return 0,
        Err(ArgsExit::Error(line)) => {
            eprintln!("cgi2wsgi check: {line}");
            return 2;
        }
    };
    match Check::prepare(check, &matches) {
        Ok(c) => c.run(&child_args(&args)),
        Err(line) => {
            eprintln!("cgi2wsgi check: {line}");
            2
        }
    }
}

fn parse(cmd: clap::Command, args: Vec<OsString>) -> Result<(CheckArgs, ArgMatches), ArgsExit> {
    let matches = match cmd.try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return Err(ArgsExit::Shown);
        }
        Err(e) => return Err(ArgsExit::Error(format!("{} (see cgi2wsgi check --help)", cli::one_line(&e.to_string())))),
    };
    let check = CheckArgs::from_arg_matches(&matches).map_err(|e| ArgsExit::Error(cli::one_line(&e.to_string())))?;
    Ok((check, matches))
}

/// The child's argv: the user's, without `--path` (check's own option).
fn child_args(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--path") => {
                it.next();
            }
            Some(s) if s.starts_with("--path=") => {}
            _ => out.push(a.clone()),
        }
    }
    out
}

/// One row of the settings table.
struct Setting {
    key: String,
    value: String,
    source: String,
}

struct Check {
    path: String,
    app_file: Option<PathBuf>,
    settings: Vec<Setting>,
    ignored_vars: Vec<String>,
    file_warnings: Vec<String>,
    cgi_vars: Vec<(String, String)>,
    doctor: Vec<crate::http::doctor::Warning>,
}

impl Check {
    /// Resolve everything the run needs, or the one line saying why it cannot run.
    fn prepare(check: CheckArgs, matches: &ArgMatches) -> Result<Check, String> {
        let serve = &check.serve;
        if serve.bind.is_some() || serve.mode == Some(Mode::Fastcgi) {
            return Err("check runs the app as one CGI request: --bind and --mode fastcgi are for serving".into());
        }
        let spec_text =
            serve.app_arg.clone().or_else(|| serve.app.clone()).ok_or("give the APP to check (a drop-in file, module:callable or path/to/file.py)")?;
        let spec = AppSpec::parse(&spec_text).map_err(|e| e.to_string())?;
        let app_file = spec.file().filter(|p| p.is_file()).map(Path::to_owned);
        if let (AppTarget::File(p), None) = (&spec.target, &app_file) {
            return Err(format!("no such file: {}", p.display()));
        }
        // `app.cgi` that is not here would be imported as module `app`, submodule `cgi`.
        if let (AppTarget::Module(m), None) = (&spec.target, &spec.callable) {
            if m.rsplit_once('.').is_some_and(|(_, ext)| matches!(ext, "cgi" | "fcgi" | "wsgi")) {
                return Err(format!("no such file: {m} (in {})", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default()));
            }
        }
        let dropin = match &app_file {
            Some(p) => DropIn::read(p).map_err(|e| e.to_string())?,
            None => DropIn::default(),
        };
        let config = CheckArgs::from_arg_matches(matches).map_err(|e| e.to_string())?.serve.into_config(true).map_err(|e| e.to_string())?;
        let mut settings = settings_table(&Origin { matches, dropin: &dropin }, &config, serve.app_arg.is_some());
        settings.extend(other_flags(matches));
        let ignored_vars = std::env::vars_os()
            .filter_map(|(k, v)| {
                let k = k.into_string().ok()?;
                (k.starts_with("CGI2WSGI_") && k != CHILD_VAR).then(|| format!("{k}={}", v.to_string_lossy()))
            })
            .collect();
        let exe = std::env::current_exe().ok();
        let file_warnings = app_file.as_deref().map(|p| file_warnings(p, exe.as_deref())).unwrap_or_default();
        let cgi_vars = request_vars(app_file.as_deref(), &check.path, config.script_name.as_deref());
        let doctor = match crate::http::request::Request::from_cgi_vars(cgi_vars.clone(), config.max_body, config.script_name.as_deref()) {
            Ok(r) => {
                let mut environ: std::collections::BTreeMap<String, String> = r.vars.iter().cloned().collect();
                environ.insert("wsgi.url_scheme".into(), r.scheme.into());
                crate::http::doctor::warnings(&environ)
            }
            Err(_) => Vec::new(),
        };
        Ok(Check { path: check.path, app_file, settings, ignored_vars, file_warnings, cgi_vars, doctor })
    }

    /// Print the report; the exit status.
    fn run(self, child_args: &[OsString]) -> i32 {
        let what = self.app_file.as_ref().map_or_else(|| self.settings[0].value.clone(), |p| p.display().to_string());
        println!("cgi2wsgi check: {what}, as a web server runs it (only PATH and the CGI variables)\n");
        println!("Settings (flag > drop-in line > default; CGI2WSGI_* from this shell are not used):");
        let width = self.settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
        for s in &self.settings {
            println!("  {:width$}  {}  [{}]", s.key, s.value, s.source);
        }
        if !self.ignored_vars.is_empty() {
            println!("\nNot passed by a web server (Apache's CGI and suEXEC clear the environment), so not used:");
            for v in &self.ignored_vars {
                println!("  {v}");
            }
            println!("  Put them in the drop-in (`# cgi2wsgi: key = value`) or on the command line.");
        }
        if !self.file_warnings.is_empty() {
            println!("\nFile problems (a web server may refuse the file before cgi2wsgi runs):");
            for w in &self.file_warnings {
                println!("  warning: {w}");
            }
        }
        let uri = self.cgi_vars.iter().find(|(k, _)| k == "REQUEST_URI").map_or("", |(_, v)| v.as_str());
        println!("\nRequest: GET {uri} (--path {})", self.path);
        let argv: Vec<String> = child_args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        println!("  run as: cgi2wsgi {} with PATH={SERVER_PATH} and {} CGI variables only", argv.join(" "), self.cgi_vars.len() - 1);
        let outcome = match run_child(child_args, &self.cgi_vars) {
            Ok(out) => out,
            Err(e) => {
                println!("  cannot run {}: {e}", std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default());
                return 1;
            }
        };
        let ok = report_response(&outcome);
        if self.doctor.is_empty() {
            println!("\nDoctor: no warnings for this request.");
        } else {
            println!("\nDoctor:");
            for w in &self.doctor {
                println!("  warning: {}\n    fix: {}", w.message, w.fix);
            }
        }
        if ok {
            println!("\nOK: the app answers. Warnings above are worth fixing before the web server runs it.");
            0
        } else {
            println!("\nFAILED: the web server would answer 500 (the reason is above, as it would be in its error log).");
            1
        }
    }
}

/// The settings a run uses, each with where it came from.
fn settings_table(origin: &Origin, config: &crate::config::Config, positional: bool) -> Vec<Setting> {
    let mut settings = Vec::new();
    let app = config.app.as_ref().map(ToString::to_string).unwrap_or_default();
    let app_source = match (origin.line("app"), origin.line("callable")) {
        (Some(n), _) => format!("drop-in line {n}"),
        (None, Some(n)) => format!("{}, callable: drop-in line {n}", origin.flag(if positional { "app_arg" } else { "app" })),
        (None, None) => origin.flag(if positional { "app_arg" } else { "app" }),
    };
    settings.push(Setting { key: "app".into(), value: app, source: app_source });
    let venv = config.venv.as_ref().map_or("none (the system's packages only)".into(), |v| v.display().to_string());
    let venv_source = origin.of("venv", "venv", "default");
    let venv_source = if venv_source == "default" && config.venv.is_some() { "default: the venv this binary is installed in".into() } else { venv_source };
    settings.push(Setting { key: "venv".into(), value: venv, source: venv_source });
    let joined = |v: &[PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
    settings.push(Setting { key: "pythonpath".into(), value: or_none(joined(&config.pythonpath)), source: origin.of("pythonpath", "pythonpath", "default") });
    settings.push(Setting {
        key: "chdir".into(),
        value: or_none(config.chdir.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
        source: origin.of("chdir", "chdir", "default"),
    });
    let env = config.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    settings.push(Setting { key: "env".into(), value: or_none(env), source: origin.of("env", "env", "default") });
    settings.push(Setting {
        key: "max-body".into(),
        value: config.max_body.map_or("unlimited".into(), |n| format!("{n} bytes")),
        source: origin.of("max_body", "max-body", "default"),
    });
    settings.push(Setting {
        key: "script-name".into(),
        value: or_none(config.script_name.clone().unwrap_or_default()),
        source: origin.of("script_name", "script-name", "none: the server's SCRIPT_NAME"),
    });
    settings.push(Setting { key: "log-level".into(), value: config.log_level.clone(), source: origin.of("log_level", "log-level", "default") });
    settings.push(Setting { key: "debug".into(), value: on_off(config.debug), source: origin.of("debug", "debug", "default") });
    settings.push(Setting { key: "persist".into(), value: on_off(config.persist.enabled), source: origin.of("persist", "persist", "default") });
    if config.persist.enabled {
        settings.push(Setting {
            key: "persist-idle-timeout".into(),
            value: format!("{} s", config.persist.idle_timeout.as_secs()),
            source: origin.of("persist_idle_timeout", "persist-idle-timeout", "default"),
        });
        let dir =
            config.persist.dir.as_ref().map_or("$XDG_RUNTIME_DIR/cgi2wsgi, else ~/.cache/cgi2wsgi, else /tmp/cgi2wsgi-UID".into(), |d| d.display().to_string());
        settings.push(Setting { key: "persist-dir".into(), value: dir, source: origin.of("persist_dir", "persist-dir", "default") });
        settings.push(Setting {
            key: "persist-timeout".into(),
            value: format!("{} s", config.persist.timeout.as_secs()),
            source: origin.of("persist_timeout", "persist-timeout", "default"),
        });
        settings.push(Setting {
            key: "persist-start-timeout".into(),
            value: format!("{} s", config.persist.start_timeout.as_secs()),
            source: origin.of("persist_start_timeout", "persist-start-timeout", "default"),
        });
    }
    settings.push(Setting {
        key: "access-log".into(),
        value: or_none(config.access_log.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
        source: origin.of("access_log", "access-log", "default"),
    });
    settings.push(Setting {
        key: "max-requests".into(),
        value: config.max_requests.map_or("none".into(), |n| n.to_string()),
        source: origin.of("max_requests", "max-requests", "default"),
    });
    settings.push(Setting { key: "threads".into(), value: config.threads.to_string(), source: origin.of("threads", "threads", "default") });
    settings.push(Setting {
        key: "timeout".into(),
        value: config.timeout.map_or("none".into(), |t| format!("{} s", t.as_secs())),
        source: origin.of("timeout", "timeout", "default"),
    });
    // FastCGI only (a `.fcgi` drop-in under mod_fcgid); check's request is a responder's.
    settings.push(Setting { key: "roles".into(), value: config.roles.describe(), source: origin.of("roles", "roles", "default") });
    settings
}

/// Serving flags the table above does not show, when given.
fn other_flags(matches: &ArgMatches) -> Vec<Setting> {
    let mut settings = Vec::new();
    // Serving flags check does not show above, when given.
    let shown = [
        "app_arg",
        "app",
        "venv",
        "pythonpath",
        "chdir",
        "env",
        "max_body",
        "script_name",
        "log_level",
        "debug",
        "persist",
        "persist_idle_timeout",
        "persist_dir",
        "persist_timeout",
        "persist_start_timeout",
        "access_log",
        "max_requests",
        "threads",
        "timeout",
        "roles",
        "path",
    ];
    for arg in CheckArgs::command().get_arguments() {
        let id = arg.get_id().as_str();
        if !shown.contains(&id) && matches.value_source(id) == Some(ValueSource::CommandLine) {
            let raw: Vec<String> = matches.get_raw(id).into_iter().flatten().map(|v| v.to_string_lossy().into_owned()).collect();
            let value = if raw.is_empty() { "on".into() } else { raw.join(" ") };
            settings.push(Setting { key: arg.get_long().unwrap_or(id).to_owned(), value, source: format!("flag --{}", arg.get_long().unwrap_or(id)) });
        }
    }
    settings
}

/// Where a setting's value comes from: a flag, a drop-in line or the default.
struct Origin<'a> {
    matches: &'a ArgMatches,
    dropin: &'a DropIn,
}

impl Origin<'_> {
    fn line(&self, key: &str) -> Option<String> {
        let lines: Vec<String> = self.dropin.lines.iter().filter(|(k, _)| k == key).map(|(_, n)| n.to_string()).collect();
        (!lines.is_empty()).then(|| lines.join(", "))
    }

    fn flag(&self, id: &str) -> String {
        match id {
            "app_arg" => "argument".into(),
            _ => format!("flag --{}", id.replace('_', "-")),
        }
    }

    /// `id` is clap's argument id, `key` the drop-in key. Lists (pythonpath, env) may
    /// come from both.
    fn of(&self, id: &str, key: &str, default: &str) -> String {
        let flag = self.matches.value_source(id) == Some(ValueSource::CommandLine);
        match (flag, self.line(key)) {
            (true, Some(n)) if matches!(key, "pythonpath" | "env") => format!("{} + drop-in line {n}", self.flag(id)),
            (true, Some(n)) => format!("{}, over drop-in line {n}", self.flag(id)),
            (true, None) => self.flag(id),
            (false, Some(n)) => format!("drop-in line {n}"),
            (false, None) => default.into(),
        }
    }
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s
    }
}

fn on_off(b: bool) -> String {
    (if b { "on" } else { "off" }).into()
}

/// The CGI variables of one `GET path` as Apache gives them to `file` (or to a module app
/// mounted at the root). With a `script-name` (mod_rewrite to a drop-in), the URL is the
/// mount point's, as the rewrite leaves it.
fn request_vars(file: Option<&Path>, path: &str, mount: Option<&str>) -> Vec<(String, String)> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let script = file.and_then(Path::file_name).map(|n| format!("/{}", n.to_string_lossy())).unwrap_or_default();
    let (path_info, uri_path) = match mount {
        Some(m) => (String::new(), format!("{}{path}", m.trim_end_matches('/'))),
        None => (path.clone(), format!("{script}{path}")),
    };
    let uri = if query.is_empty() { uri_path } else { format!("{uri_path}?{query}") };
    let mut vars = vec![
        ("PATH", SERVER_PATH.to_owned()),
        ("GATEWAY_INTERFACE", "CGI/1.1".into()),
        ("SERVER_PROTOCOL", "HTTP/1.1".into()),
        ("SERVER_SOFTWARE", "cgi2wsgi-check".into()),
        ("SERVER_NAME", "localhost".into()),
        ("SERVER_ADDR", "127.0.0.1".into()),
        ("SERVER_PORT", "80".into()),
        ("REQUEST_SCHEME", "http".into()),
        ("REMOTE_ADDR", "127.0.0.1".into()),
        ("REMOTE_PORT", "50000".into()),
        ("HTTP_HOST", "localhost".into()),
        ("HTTP_USER_AGENT", "cgi2wsgi-check".into()),
        ("REQUEST_METHOD", "GET".into()),
        ("SCRIPT_NAME", script),
        ("QUERY_STRING", query.to_owned()),
        ("REQUEST_URI", uri),
    ];
    if !path_info.is_empty() {
        vars.push(("PATH_INFO", path_info));
    }
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

struct ChildOutput {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Run this binary as the CGI child: `args` as given, the cleared environment, stdin at
/// EOF (a GET has no body), killed (by its pid) if it outlives `DEADLINE`.
fn run_child(args: &[OsString], vars: &[(String, String)]) -> std::io::Result<ChildOutput> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(args)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .env(CHILD_VAR, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = pipe.read_to_end(&mut v);
            v
        })
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("the child's output pipes are missing"));
    };
    let out = drain(Box::new(stdout));
    let err = drain(Box::new(stderr));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let status = child.wait()?;
            let mut stderr = err.join().unwrap_or_default();
            stderr.extend_from_slice(format!("\n(cgi2wsgi check: no answer within {} s: the request was killed)\n", DEADLINE.as_secs()).as_bytes());
            return Ok(ChildOutput { code: status.code(), stdout: out.join().unwrap_or_default(), stderr });
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(ChildOutput { code: status.code(), stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

/// Print the CGI response and the log; whether the app answered (a status below 500).
fn report_response(out: &ChildOutput) -> bool {
    let end = out
        .stdout
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| out.stdout.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
    let mut ok = false;
    match end {
        None => println!("  no CGI response (exit status {:?}): the web server would log \"Premature end of script headers\" and answer 500", out.code),
        Some((head_end, body_start)) => {
            let head = String::from_utf8_lossy(&out.stdout[..head_end]);
            let status = crate::bench::cgi_runs::cgi_status(&out.stdout).map_or_else(|| "?".into(), |(_, line)| line);
            ok = status.get(..3).and_then(|s| s.parse::<u16>().ok()).is_some_and(|s| s < 500) && out.code == Some(0);
            println!("Response: {status}");
            for line in head.lines().filter(|l| !l.to_ascii_lowercase().starts_with("status:")) {
                println!("  {line}");
            }
            let body = String::from_utf8_lossy(&out.stdout[body_start..]);
            let lines: Vec<&str> = body.lines().collect();
            println!(
                "Body ({} bytes{}):",
                out.stdout.len() - body_start,
                if lines.len() > BODY_LINES { format!(", the first {BODY_LINES} of {} lines", lines.len()) } else { String::new() }
            );
            for line in lines.iter().take(BODY_LINES) {
                println!("  | {}", line.chars().take(160).collect::<String>());
            }
        }
    }
    let log = String::from_utf8_lossy(&out.stderr);
    if !log.trim().is_empty() {
        println!("\nLog (stderr: the web server's error log):");
        for line in log.trim_end().lines() {
            println!("  {line}");
        }
    }
    ok
}

/// What a server (and suEXEC) would refuse or fail on in a drop-in, before cgi2wsgi runs.
/// A file that does not start with `#!` is not run by the kernel: nothing to say.
pub fn file_warnings(path: &Path, exe: Option<&Path>) -> Vec<String> {
    let mut out = Vec::new();
    let mut head = Vec::new();
    let Ok(meta) = std::fs::metadata(path) else { return out };
    if std::fs::File::open(path).and_then(|f| f.take(64 * 1024).read_to_end(&mut head)).is_err() || !head.starts_with(b"#!") {
        return out;
    }
    let p = path.display();
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    if head.windows(2).any(|w| w == b"\r\n") {
        out.push(format!(
            "{p} has Windows (CRLF) line endings: the kernel looks for an interpreter whose name ends in \\r and the server logs \"No such file or directory\" / \"Premature end of script headers\"; fix: sed -i 's/\\r$//' {p} (or dos2unix), and set your editor or FTP client to LF / binary"
        ));
    }
    let shebang = String::from_utf8_lossy(&first[2..]).trim().trim_end_matches('\r').to_owned();
    let interp = PathBuf::from(shebang.split_whitespace().next().unwrap_or_default());
    let this = exe.map_or_else(String::new, |e| e.display().to_string());
    if !interp.is_file() {
        out.push(format!(
            "the #! line names {}, which does not exist here: the server cannot start the drop-in; fix the #! line (this binary is {this})",
            interp.display()
        ));
    } else if exe.is_some_and(|e| !crate::cli::argv::same_file(&interp, e)) {
        out.push(format!("the #! line runs {}, not this cgi2wsgi ({this}): the server runs that binary, and check tested this one", interp.display()));
    } else if let Some(blocked) = not_reachable_by_others(&interp) {
        out.push(format!(
            "{} is not searchable by other users (mode {:04o}): a web server that runs CGI as another user (www-data) cannot start {}; `namei -l {}` shows the path, `chmod o+x` the directory or install the binary elsewhere",
            blocked.0.display(),
            blocked.1,
            interp.display(),
            interp.display()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o100 == 0 {
        out.push(format!("{p} is not executable (mode {:04o}): the server answers 500 (\"Permission denied\"); fix: chmod 755 {p}", mode & 0o7777));
    }
    if mode & 0o022 != 0 {
        out.push(format!("{p} is writable by group or others (mode {:04o}): suEXEC refuses it (\"suexec policy violation\", suexec.log: \"file is writable by others\"); fix: chmod 755 {p}", mode & 0o7777));
    }
    let dir = std::path::absolute(path).ok().and_then(|a| a.parent().map(Path::to_owned));
    if let Some((dir, dmeta)) = dir.and_then(|d| std::fs::metadata(&d).ok().map(|m| (d, m))) {
        let dmode = dmeta.permissions().mode();
        if dmode & 0o022 != 0 {
            out.push(format!(
                "its directory {} is writable by group or others (mode {:04o}): suEXEC refuses it (\"directory is writable by others\"); fix: chmod 755 {}",
                dir.display(),
                dmode & 0o7777,
                dir.display()
            ));
        }
        if dmeta.uid() != meta.uid() {
            out.push(format!("{p} belongs to uid {} but its directory {} to uid {}: suEXEC requires both to belong to the account it runs as (\"target uid/gid mismatch\"); fix: chown that account's user:group on both", meta.uid(), dir.display(), dmeta.uid()));
        }
    }
    out
}

/// The first directory on the way to `file` (or the file itself) that others cannot pass.
fn not_reachable_by_others(file: &Path) -> Option<(PathBuf, u32)> {
    let file = std::path::absolute(file).ok()?;
    let mut ancestors: Vec<&Path> = file.ancestors().skip(1).collect();
    ancestors.reverse();
    ancestors.push(&file);
    ancestors.into_iter().find_map(|p| {
        let mode = std::fs::metadata(p).ok()?.permissions().mode();
        (mode & 0o001 == 0).then(|| (p.to_owned(), mode & 0o7777))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn set_mode(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn file_warnings_name_each_problem() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("cgi2wsgi");
        std::fs::write(&exe, "").unwrap();
        set_mode(&exe, 0o755);
        let ok = dir.path().join("ok.cgi");
        std::fs::write(&ok, format!("#!{}\nfrom x import app\n", exe.display())).unwrap();
        set_mode(&ok, 0o755);
        set_mode(dir.path(), 0o755);
        // tempdir() lives under /tmp (1777, searchable): nothing to say.
        assert_eq!(file_warnings(&ok, Some(&exe)), Vec::<String>::new());
        let bad = dir.path().join("bad.cgi");
        std::fs::write(&bad, "#!/no/such/cgi2wsgi\r\nfrom x import app\r\n").unwrap();
        set_mode(&bad, 0o666);
        set_mode(dir.path(), 0o777);
        let w = file_warnings(&bad, Some(&exe)).join("\n");
        for needle in
            ["CRLF", "/no/such/cgi2wsgi, which does not exist", "is not executable", "writable by group or others (mode 0666)", "directory", "(mode 0777)"]
        {
            assert!(w.contains(needle), "{needle:?} missing from:\n{w}");
        }
        let other = dir.path().join("other");
        std::fs::write(&other, "").unwrap();
        set_mode(&other, 0o755);
        std::fs::write(&ok, format!("#!{} --flag\n", other.display())).unwrap();
        set_mode(dir.path(), 0o755);
        let w = file_warnings(&ok, Some(&exe));
        assert!(w.len() == 1 && w[0].contains("not this cgi2wsgi"), "{w:?}");
        // A plain module file is not run by the kernel.
        let py = dir.path().join("app.py");
        std::fs::write(&py, "app = None\r\n").unwrap();
        set_mode(&py, 0o666);
        assert!(file_warnings(&py, Some(&exe)).is_empty());
    }

    #[test]
    fn request_vars_for_a_drop_in_a_module_and_a_rewrite() {
        let get = |vars: &[(String, String)], k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let v = request_vars(Some(Path::new("/srv/app.cgi")), "/x?a=1", None);
        assert_eq!(
            (get(&v, "SCRIPT_NAME"), get(&v, "PATH_INFO"), get(&v, "REQUEST_URI")),
            (Some("/app.cgi".into()), Some("/x".into()), Some("/app.cgi/x?a=1".into()))
        );
        assert_eq!(get(&v, "QUERY_STRING"), Some("a=1".into()));
        let v = request_vars(None, "/", None);
        assert_eq!((get(&v, "SCRIPT_NAME"), get(&v, "PATH_INFO"), get(&v, "REQUEST_URI")), (Some(String::new()), Some("/".into()), Some("/".into())));
        let v = request_vars(Some(Path::new("app.cgi")), "/users/42", Some("/"));
        assert_eq!((get(&v, "PATH_INFO"), get(&v, "REQUEST_URI")), (None, Some("/users/42".into())));
    }

    #[test]
    fn check_is_not_passed_on_to_the_child() {
        let args: Vec<OsString> = ["cgi2wsgi", "--path", "/x", "--venv", "/v", "--path=/y", "app.cgi"].iter().map(OsString::from).collect();
        assert_eq!(child_args(&args), ["--venv", "/v", "app.cgi"].iter().map(OsString::from).collect::<Vec<_>>());
    }
}
