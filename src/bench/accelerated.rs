//! The accelerated-CGI mode's housekeeping: the bench's own private persist directory
//! (`TMP/persist`), the workers the accelerator started there (found as the accelerator
//! finds them: the pid in each `K.stamp`, and the `SO_PEERCRED` pid behind each `K.sock`),
//! and the guard that stops them by PID however the bench ends (success, error, panic).

use crate::accel::Stamp;
use crate::sys::peer_cred;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The worker exits by itself after this long without a request: the safety net when the
/// bench is killed before its guard runs (SIGKILL, Ctrl-C). Runs are interleaved, so the
/// gaps between accelerated runs are one cold CGI run or two, far below this.
pub const IDLE_TIMEOUT_S: u64 = 30;

/// The persist directory inside the bench's temp dir (the accelerator creates it 0700).
pub fn persist_dir(tmp: &Path) -> PathBuf {
    tmp.join("persist")
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == ext)).collect()
}

/// The last line of each worker log in `dir` (`K.log`), for a fallback's reason: the
/// directory is removed with the bench, so the reason must carry what it said.
pub fn log_tail(dir: &Path) -> Option<String> {
    let tails: Vec<String> = files_with(dir, "log").iter().filter_map(|p| super::last_line(&std::fs::read_to_string(p).ok()?).map(str::to_owned)).collect();
    (!tails.is_empty()).then(|| tails.join("; "))
}

/// Alive and not a zombie (an exited worker waits for whoever adopted it to reap it).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

/// The pids of the workers serving from `dir` that are still alive: each stamp's pid and
/// each socket's listening peer, kept only when the process's command line names `dir`
/// (so a recycled pid is never signalled).
pub fn worker_pids(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = files_with(dir, "stamp").iter().filter_map(|p| Stamp::read(p)).map(|s| s.pid).collect();
    for sock in files_with(dir, "sock") {
        if let Some(pid) = UnixStream::connect(&sock).ok().and_then(|s| peer_cred(s.as_raw_fd()).ok()).map(|(pid, _)| pid) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids.dedup();
    let needle = dir.as_os_str().as_encoded_bytes().to_vec();
    pids.retain(|&pid| {
        pid > 0
            && pid != std::process::id() as i32
            && alive(pid)
            && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
    });
    pids
}

/// The pid of the one live worker serving from `dir`, if exactly one is.
pub fn the_worker(dir: &Path) -> Option<i32> {
    match worker_pids(dir)[..] {
        [pid] => Some(pid),
        _ => None,
    }
}

/// Stop every worker serving from `dir`: SIGTERM (it unlinks its socket and stamp), then
/// SIGKILL after 5 s. Returns the pids still alive afterwards (none, normally).
pub fn stop_workers(dir: &Path) -> Vec<i32> {
    let pids = worker_pids(dir);
    // Workers of our own uid that the bench's accelerator runs started; their command
    // lines name the bench's private directory (checked in `worker_pids`).
    let signal = crate::sys::kill;
    for &pid in &pids {
        signal(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in pids.iter().filter(|&&p| alive(p)) {
        log::warn!("accelerator worker {pid} ignored SIGTERM; killing it");
        signal(pid, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    pids.into_iter().filter(|&p| alive(p)).collect()
}

/// Stops the workers in its directory when dropped: declared after the temp dir, so it
/// runs before the directory is removed, on every way out of the bench.
pub struct WorkerGuard {
    dir: PathBuf,
}

impl WorkerGuard {
    pub fn new(dir: PathBuf) -> WorkerGuard {
        WorkerGuard { dir }
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let left = stop_workers(&self.dir);
        if !left.is_empty() {
            log::error!("accelerator workers {left:?} would not stop (they exit after {IDLE_TIMEOUT_S} s idle)");
        }
    }
}
