//! Shared helpers for the integration tests: a world-readable fixture directory holding the
//! binary, the examples and the test venv (the servers' workers run as www-data), a tiny
//! HTTP/1.1 client, and running the binary as a bare CGI program.
#![allow(dead_code)]

pub mod cgi;
pub mod fcgi;
pub mod http;
pub mod scenarios;
pub mod servers;
pub mod workers;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Wait until `child` exits and return its status; past `within` it is killed and the test
/// fails naming `what` (a hang never stalls the run).
pub fn wait_exit(child: &mut std::process::Child, within: std::time::Duration, what: &str) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} is still running after {within:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The built binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cgi2wsgi"))
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv with Flask that `dev/venv` makes; tests fail (never skip) when it is missing.
pub fn source_venv() -> PathBuf {
    let venv = std::env::var_os("CGI2WSGI_TEST_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv"));
    assert!(venv.join("bin/python3").exists(), "test venv {} is missing: run the tests with dev/test (it makes the venv with Flask)", venv.display());
    venv
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed: {status}");
}

/// A temp dir that www-data can read: the binary, examples/ and (optionally) the venv.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(with_venv: bool) -> Fixture {
        Fixture::make(with_venv, false)
    }

    /// A fixture whose venv copy includes Django (the others leave its 4,500 files out:
    /// copying them costs seconds per test).
    pub fn with_django() -> Fixture {
        Fixture::make(true, true)
    }

    fn make(with_venv: bool, django: bool) -> Fixture {
        let dir = tempfile::Builder::new().prefix("cgi2wsgi-test-").tempdir_in("/tmp").unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = Fixture { dir };
        std::fs::create_dir_all(f.path().join("bin")).unwrap();
        std::fs::copy(binary(), f.bin()).unwrap();
        // cp -a keeps timestamps, so the .pyc files stay valid for the copies.
        run(Command::new("cp").arg("-a").arg(repo().join("examples")).arg(f.path()));
        if with_venv && django {
            run(Command::new("cp").arg("-a").arg(source_venv()).arg(f.venv()));
        } else if with_venv {
            // tar keeps timestamps (the .pyc files stay valid) and modes, as cp -a does.
            std::fs::create_dir_all(f.venv()).unwrap();
            let excludes = ["django", "django-*", "Django-*", "asgiref", "asgiref-*", "sqlparse", "sqlparse-*"].map(|p| format!("--exclude={p}"));
            let copy = format!("tar -C '{}' -cf - {} . | tar -C '{}' -xf -", source_venv().display(), excludes.join(" "), f.venv().display());
            run(Command::new("bash").args(["-o", "pipefail", "-ec"]).arg(&copy));
        }
        for d in ["logs", "run", "tmp"] {
            std::fs::create_dir_all(f.path().join(d)).unwrap();
        }
        // Servers write logs and temp files as www-data after dropping root.
        std::fs::set_permissions(f.path().join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        run(Command::new("chmod").arg("-R").arg("a+rX").arg(f.path()));
        f
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn bin(&self) -> PathBuf {
        self.path().join("bin/cgi2wsgi")
    }

    pub fn venv(&self) -> PathBuf {
        self.path().join("venv")
    }

    pub fn examples(&self) -> PathBuf {
        self.path().join("examples")
    }

    /// Install a cgi-bin drop-in from examples/cgi-bin into `dest_dir` as `name`, with its
    /// `#!` line pointing at the fixture's binary and its venv at the fixture's venv.
    pub fn install_drop_in(&self, example: &str, dest_dir: &Path, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(repo().join("examples/cgi-bin").join(example)).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[0] = format!("#!{}", self.bin().display());
        for line in &mut lines {
            if line.starts_with("# cgi2wsgi: venv =") {
                *line = format!("# cgi2wsgi: venv = {}", self.venv().display());
            }
            if let Some(rel) = line.strip_prefix("# cgi2wsgi: pythonpath = ") {
                // Relative paths in the example are relative to examples/cgi-bin.
                let abs = self.examples().join("cgi-bin").join(rel);
                *line = format!("# cgi2wsgi: pythonpath = {}", abs.display());
            }
        }
        std::fs::create_dir_all(dest_dir).unwrap();
        let dest = dest_dir.join(name);
        std::fs::write(&dest, lines.join("\n") + "\n").unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dest_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dest
    }
}

/// The minimum CGI environment a server sets, plus `extra`.
pub fn cgi_env(method: &str, path_info: &str, query: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", method),
        ("SCRIPT_NAME", "/app"),
        ("PATH_INFO", path_info),
        ("QUERY_STRING", query),
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_PORT", "80"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_SOFTWARE", "test"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.retain(|(old, _)| old != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// Run the binary as a web server would run a CGI program: empty environment but `env`,
/// `stdin` as the body. Returns the raw output.
pub fn cgi_run(args: &[&str], env: &[(String, String)], stdin: &[u8]) -> Output {
    let mut child = Command::new(binary())
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let body = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // The app may not read it all; a broken pipe then is fine.
        let _ = input.write_all(&body);
    });
    // No run may hang the suite: a CGI run still going after the deadline is killed.
    let pid = child.id() as i32;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let (done, killed) = (done.clone(), killed.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + CGI_RUN_DEADLINE;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if std::time::Instant::now() > deadline {
                    killed.store(true, std::sync::atomic::Ordering::SeqCst);
                    // SAFETY: our own child, not yet reaped (`done` is set after the wait).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    watchdog.join().unwrap();
    writer.join().unwrap();
    assert!(
        !killed.load(std::sync::atomic::Ordering::SeqCst),
        "{args:?} ran past {CGI_RUN_DEADLINE:?} and was killed; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The longest a single CGI run may take in a test (a cold Flask import takes well under 1 s).
const CGI_RUN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// A parsed CGI response: status code, headers, body.
#[derive(Debug)]
pub struct CgiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub stderr: String,
}

impl CgiResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", String::from_utf8_lossy(&self.body), self.stderr))
    }
}

/// Parse CGI output: `Status:` + headers with CRLF, a blank line, the body.
pub fn parse_cgi(out: &Output) -> CgiResponse {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let raw = &out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no CRLF CRLF in CGI output {:?}\nstderr: {stderr}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII head");
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.split("\r\n") {
        let (name, value) = line.split_once(": ").unwrap_or_else(|| panic!("bad header line {line:?}"));
        if name == "Status" {
            status = value[..3].parse().unwrap();
        } else {
            headers.push((name.to_owned(), value.to_owned()));
        }
    }
    CgiResponse { status, headers, body: raw[split + 4..].to_vec(), stderr }
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes for upload tests.
pub fn test_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
