//! Starting the worker: under the start-up lock, retire a stale worker (its files changed),
//! clear a stale or planted socket, then run this binary again as `--persist-worker` in its
//! own session (out of the web server's process group), stdio to the log, and wait until it
//! says it listens (one byte on a pipe; EOF means it failed, so no guessing with timeouts).
//!
//! The invocation that starts the worker waits for it instead of serving in-process: the
//! cost is the same import either way (the worker's instead of ours), and a burst of cold
//! requests then costs one import in total instead of one each.

use super::lock::Lock;
use super::{check_dir, client, socket_state, AccelError, Paths, SocketState};
use crate::sys::{self, euid, peer_cred, ReadyWait};
use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

/// After a failed start, invocations serve in-process this long before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The variable naming the fd the worker reports readiness on.
pub const READY_FD_VAR: &str = "CGI2WSGI_PERSIST_READY_FD";

/// Did a start fail less than `RETRY_AFTER` ago?
pub fn recent_failure(paths: &Paths) -> bool {
    std::fs::metadata(&paths.fallback).and_then(|m| m.modified()).is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() < RETRY_AFTER)
}

/// A connection to a worker that is current, starting one if needed (waiting up to
/// `start_timeout` for it). A failed start is logged here and marked, both under the lock;
/// it then returns `AccelError::StartFailed`.
pub fn ensure_worker(args: &[OsString], paths: &Paths, start_timeout: Duration) -> Result<UnixStream, AccelError> {
    if recent_failure(paths) {
        return Err(AccelError::Backoff);
    }
    check_dir(&paths.dir, true)?;
    let Some(_lock) = Lock::acquire(&paths.lock, start_timeout + Duration::from_secs(5))? else {
        return Err(AccelError::Timeout(start_timeout.as_secs()));
    };
    // Whoever held the lock before us may have started it.
    if let Some(stream) = client::connect_current(paths) {
        return Ok(stream);
    }
    if recent_failure(paths) {
        return Err(AccelError::Backoff);
    }
    clear_old(paths);
    let started = spawn(args, paths).and_then(|(ready, pid)| wait_ready(ready, pid, paths, start_timeout));
    match started.and_then(|()| client::connect_checked(paths, false).ok_or_else(|| AccelError::WorkerFailed(paths.log.clone()))) {
        Ok(stream) => {
            let _ = std::fs::remove_file(&paths.fallback);
            Ok(stream)
        }
        Err(e) => {
            // Still under the lock: a start that succeeds after ours failed (and removes
            // the marker) cannot have it written back over its success.
            note_failure(paths, &e);
            Err(AccelError::StartFailed)
        }
    }
}

/// Log a failed start once: the marker file makes later invocations serve in-process
/// quietly until `RETRY_AFTER` has passed; a retry that fails again is logged at debug.
fn note_failure(paths: &Paths, e: &AccelError) {
    let existed = paths.fallback.exists();
    let marked = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&paths.fallback)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{e}\n").as_bytes()));
    if existed && marked.is_ok() {
        log::debug!("--persist: {e}; serving in-process");
    } else {
        log::warn!("--persist: {e}; serving in-process (retried after {} s, logged once)", RETRY_AFTER.as_secs());
    }
}

/// Called with the lock held: ask a live but stale worker to retire (it serves what is
/// already queued, then exits), and take its socket name so the new worker can bind it.
fn clear_old(paths: &Paths) {
    match socket_state(&paths.sock) {
        SocketState::Missing => {}
        SocketState::Ours => {
            if let Ok(s) = UnixStream::connect(&paths.sock) {
                match peer_cred(s.as_raw_fd()) {
                    Ok((pid, uid)) if uid == euid() && pid > 0 => {
                        log::info!("retiring worker {pid}: its app changed");
                        // A process of our own uid (checked through SO_PEERCRED).
                        sys::kill(pid, super::worker::RETIRE_SIGNAL);
                    }
                    other => log::warn!("{}: unexpected peer {other:?}; replacing the socket", paths.sock.display()),
                }
            } else {
                log::info!("removing the stale socket {}", paths.sock.display());
            }
            let _ = std::fs::remove_file(&paths.sock);
        }
        SocketState::Foreign(why) => {
            // Only root can put something in our 0700 directory; never connect to it.
            log::warn!("refusing {}: it {why}; replacing it", paths.sock.display());
            let _ = std::fs::remove_file(&paths.sock);
        }
    }
    let _ = std::fs::remove_file(&paths.stamp);
}

/// The environment a worker is started with: an allowlist of system and Python settings.
/// The worker lives on across requests and users, so nothing from the invoking request may
/// stay in its `os.environ`: not the CGI meta-variables, and not what authentication
/// modules add per user (mod_auth_openidc's OIDC_CLAIM_*, mod_authnz_ldap's
/// AUTHENTICATE_*, Shibboleth attributes, SetEnvIf values). Those still reach the app with
/// every request, in the WSGI environ; settings the app needs in `os.environ` go in the
/// drop-in's `env = KEY=VALUE` lines (or --env), which the worker applies itself.
pub fn worker_environment() -> impl Iterator<Item = (OsString, OsString)> {
    std::env::vars_os().filter(|(k, _)| passes_to_worker(&k.to_string_lossy()))
}

fn passes_to_worker(name: &str) -> bool {
    const EXACT: [&str; 15] = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TEMP",
        "TMP",
        "LD_LIBRARY_PATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "DJANGO_SETTINGS_MODULE",
    ];
    const PREFIXES: [&str; 3] = ["LC_", "PYTHON", "CGI2WSGI_"];
    name != READY_FD_VAR && (EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p)))
}

/// Start the worker; returns the waiting end of its readiness pipe and its pid.
fn spawn(args: &[OsString], paths: &Paths) -> Result<(ReadyWait, libc::pid_t), AccelError> {
    let exe = std::env::current_exe().map_err(AccelError::Spawn)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&paths.log)
        .map_err(|source| AccelError::Io { what: "cannot open the worker log", path: paths.log.clone(), source })?;
    let log2 = log.try_clone().map_err(AccelError::Spawn)?;
    let (ready, signal) = sys::ready_pipe().map_err(AccelError::Spawn)?;
    let mut cmd = Command::new(&exe);
    cmd.args(args.iter().skip(1))
        .arg("--persist-worker")
        .arg(&paths.sock)
        .env_clear()
        .envs(worker_environment())
        .env(READY_FD_VAR, signal.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // Its own session, and nothing else the web server left open (its pipes, its
    // listeners) goes with it: only the readiness signal.
    sys::detach_on_exec(&mut cmd, signal.as_raw_fd());
    let spawned = cmd.spawn();
    // The parent's copy of the sending end is closed, spawned or not: EOF then means the
    // worker failed.
    drop(signal);
    // The child is not waited for: it outlives us and is reparented when we exit.
    let child = spawned.map_err(AccelError::Spawn)?;
    log::info!("started worker {} for {}", child.id(), paths.sock.display());
    Ok((ready, child.id() as libc::pid_t))
}

/// Wait for the worker `pid` to say it listens. One that takes too long is killed, with
/// whatever it started (its session is its own process group): left importing, it would
/// bind later to no one's knowledge, and a slow import left running is load on a host
/// that may be struggling already.
fn wait_ready(mut ready: ReadyWait, pid: libc::pid_t, paths: &Paths, timeout: Duration) -> Result<(), AccelError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            log::warn!("the worker {pid} did not start within {} s (--persist-start-timeout): killing it", timeout.as_secs());
            sys::kill_group(pid, libc::SIGKILL);
            sys::kill(pid, libc::SIGKILL);
            return Err(AccelError::Timeout(timeout.as_secs()));
        }
        match ready.wait(left) {
            Some(true) => return Ok(()),
            Some(false) => return Err(AccelError::WorkerFailed(paths.log.clone())),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowlisted_variables_reach_the_worker() {
        for v in [
            "HTTP_HOST",
            "QUERY_STRING",
            "REQUEST_METHOD",
            "SCRIPT_FILENAME",
            "REMOTE_ADDR",
            "GATEWAY_INTERFACE",
            "SSL_CIPHER",
            "OIDC_CLAIM_email",
            "AUTHENTICATE_UID",
            "REMOTE_USER",
            "UNIQUE_ID",
            READY_FD_VAR,
        ] {
            assert!(!passes_to_worker(v), "{v}");
        }
        for v in ["PATH", "LANG", "LC_ALL", "CGI2WSGI_PERSIST", "PYTHONIOENCODING", "TZ", "SSL_CERT_FILE"] {
            assert!(passes_to_worker(v), "{v}");
        }
    }
}
