//! The CGI accelerator (`--persist`): a CGI invocation relays its request over a private
//! unix socket to a persistent worker for the same app (FastCGI, the existing responder),
//! starting that worker when there is none. This module holds what both sides share: the
//! per-app key and file names, the private directory's checks, the peer
//! credential check and the *stamp* (the worker's pid and the files whose change retires it).
//!
//! Files in the private directory (0700, owned by the invoking uid), per app key `K`:
//! `K.sock` the worker's socket (0600), `K.lock` the start-up lock (flock), `K.stamp` written
//! by the worker once it has bound, `K.log` its stdio (rotated past 10 MiB, one old copy
//! `K.log.1` kept), `K.fallback` when a start failed (so the failure is logged once and not
//! retried on every request).

pub mod client;
pub mod lock;
pub mod spawn;
pub mod worker;

use crate::config::Config;
use crate::sys::euid;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// Why the accelerator cannot serve this request (the CGI then serves it in-process).
#[derive(Debug, Error)]
pub enum AccelError {
    #[error("persist dir {path}: {why}")]
    Dir { path: PathBuf, why: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error("socket path {0} is too long for a unix socket (108 bytes at most): choose a shorter --persist-dir")]
    PathTooLong(PathBuf),
    #[error("cannot start the worker: {0}")]
    Spawn(io::Error),
    #[error("the worker did not start (see {0})")]
    WorkerFailed(PathBuf),
    #[error("the worker did not start within {0} s")]
    Timeout(u64),
    #[error("a recent start failed; serving in-process until it is retried")]
    Backoff,
    /// A start failed and was logged (and marked) by the starter.
    #[error("the worker did not start")]
    StartFailed,
}

/// FNV-1a, 64 bits: stable across builds (std's hasher is not promised to be).
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The private directory when `--persist-dir` is not given: `$XDG_RUNTIME_DIR/cgi2wsgi`,
/// else `~/.cache/cgi2wsgi` (the home from `$HOME`, else from the password database, as
/// under suEXEC, which clears the environment), each only when that directory is ours;
/// else `/tmp/cgi2wsgi-UID`, which another local user can create first (the accelerator
/// then refuses it and serves in-process).
pub fn default_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute()).or_else(|| crate::sys::home_of(euid()));
    choose_dir(std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from), home, euid())
}

/// A directory of ours (not a symlink) where our socket names fit.
fn ours(dir: &Path, uid: u32) -> bool {
    // The longest name inside: "/cgi2wsgi/0123456789abcdef.sock" (with ".cache" before it).
    const NAME: usize = 38;
    dir.as_os_str().len() + NAME < 108 && std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == uid)
}

fn choose_dir(xdg_runtime: Option<PathBuf>, home: Option<PathBuf>, uid: u32) -> PathBuf {
    if let Some(run) = xdg_runtime.filter(|d| ours(d, uid)) {
        return run.join("cgi2wsgi");
    }
    if let Some(home) = home.filter(|d| ours(d, uid)) {
        let cache = home.join(".cache");
        // ~/.cache is made (0700) by check_dir if missing; one that is not ours is not used.
        if std::fs::symlink_metadata(&cache).is_err() || ours(&cache, uid) {
            return cache.join("cgi2wsgi");
        }
    }
    PathBuf::from(format!("/tmp/cgi2wsgi-{uid}"))
}

/// The accelerator's file names for one app.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub lock: PathBuf,
    pub stamp: PathBuf,
    pub log: PathBuf,
    pub fallback: PathBuf,
}

impl Paths {
    fn in_dir(dir: PathBuf, key: &str) -> Result<Paths, AccelError> {
        let f = |ext: &str| dir.join(format!("{key}.{ext}"));
        let sock = f("sock");
        if sock.as_os_str().len() >= 108 {
            return Err(AccelError::PathTooLong(sock));
        }
        Ok(Paths { sock, lock: f("lock"), stamp: f("stamp"), log: f("log"), fallback: f("fallback"), dir })
    }

    /// Keyed by everything that makes one worker differ from another: the uid, the binary,
    /// the app (its file canonical), venv, sys.path, chdir, environment and request settings.
    pub fn for_config(config: &Config) -> Result<Paths, AccelError> {
        let exe = std::env::current_exe().unwrap_or_default();
        let app = match config.app.as_ref() {
            Some(spec) => match spec.file().and_then(|f| std::fs::canonicalize(f).ok()) {
                Some(file) => format!("{}|{:?}|{}", file.display(), spec.callable, spec.factory),
                None => spec.to_string(),
            },
            None => String::new(),
        };
        // Every setting (script name, limits, timeouts, ...: the whole resolved config) and
        // the environment the worker is given: two mounts that differ in any of them must
        // not share a worker.
        let passed: Vec<(String, String)> =
            crate::accel::spawn::worker_environment().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())).collect();
        let identity = format!("{}\0{}\0{app}\0{config:?}\0{passed:?}", euid(), exe.display());
        let key = format!("{:016x}", fnv64(identity.as_bytes()));
        let dir = config.persist.dir.clone().unwrap_or_else(default_dir);
        // Relative to where the CGI runs, not to where the worker chdirs.
        let dir = if dir.is_relative() { std::env::current_dir().map(|d| d.join(&dir)).unwrap_or(dir) } else { dir };
        Paths::in_dir(dir, &key)
    }

    /// A worker finds its files from its socket's name.
    pub fn from_socket(sock: &Path) -> Result<Paths, AccelError> {
        let dir = sock.parent().map(Path::to_owned).unwrap_or_default();
        let key = sock.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Paths::in_dir(dir, &key)
    }
}

/// The private directory must be a real directory (not a symlink), owned by us, closed to
/// everyone else. `create`: make it (0700) when missing.
pub fn check_dir(dir: &Path, create: bool) -> Result<(), AccelError> {
    let bad = |why: String| AccelError::Dir { path: dir.to_owned(), why };
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| bad(format!("cannot create it: {e}")))?;
            std::fs::symlink_metadata(dir).map_err(|e| bad(e.to_string()))?
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    if meta.file_type().is_symlink() {
        return Err(bad("is a symlink; refusing it (someone may be redirecting the accelerator)".into()));
    }
    if !meta.is_dir() {
        return Err(bad("is not a directory".into()));
    }
    if meta.uid() != euid() {
        return Err(bad(format!("is owned by uid {}, not by us (uid {}); refusing it", meta.uid(), euid())));
    }
    // Refused, not tightened: whatever others planted while it was open would survive a chmod.
    if meta.mode() & 0o077 != 0 {
        return Err(bad(format!("mode {:o} is open to others; refusing it (remove it, or chmod 0700 it after checking its contents)", meta.mode() & 0o777)));
    }
    Ok(())
}

/// What `lstat` says about a socket path: ours, missing, or something else.
#[derive(Debug, PartialEq, Eq)]
pub enum SocketState {
    Missing,
    Ours,
    /// Not a socket, or owned by another uid: never connected to.
    Foreign(String),
}

pub fn socket_state(path: &Path) -> SocketState {
    match std::fs::symlink_metadata(path) {
        Err(_) => SocketState::Missing,
        Ok(m) if !m.file_type().is_socket() => SocketState::Foreign("is not a socket".into()),
        Ok(m) if m.uid() != euid() => SocketState::Foreign(format!("is owned by uid {}, not {}", m.uid(), euid())),
        Ok(_) => SocketState::Ours,
    }
}

/// One watched file as the worker saw it when it loaded the app.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileMark {
    mtime_ns: i64,
    size: u64,
    ino: u64,
}

fn mark(path: &Path) -> Option<FileMark> {
    let m = std::fs::metadata(path).ok()?;
    Some(FileMark { mtime_ns: m.mtime().saturating_mul(1_000_000_000).saturating_add(m.mtime_nsec()), size: m.size(), ino: m.ino() })
}

/// File times come from the kernel's coarse clock, up to a tick behind the real one: a
/// write just after `since` may carry a time just before it.
const CLOCK_SLACK: Duration = Duration::from_millis(20);

/// The moment a load begins, as a bound on file times: a file modified at or after it may
/// have been read in its old state, so it is not vouched for.
#[derive(Debug, Clone, Copy)]
pub struct LoadStart(i64);

impl LoadStart {
    pub fn now() -> LoadStart {
        let t = SystemTime::now().checked_sub(CLOCK_SLACK).unwrap_or(SystemTime::UNIX_EPOCH);
        let ns = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        LoadStart(ns)
    }
}

/// The mark of a file as loaded since `since`: `None` (never current, like a missing file)
/// when it changed after the load began, since what was loaded may be its old content.
fn mark_loaded(path: &Path, since: LoadStart) -> Option<FileMark> {
    mark(path).filter(|m| m.mtime_ns < since.0)
}

/// The worker's pid and the files (the binary, the drop-in, the app's own modules) whose
/// change means a deploy: the next invocation then retires the worker and starts another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub pid: i32,
    files: Vec<(PathBuf, Option<FileMark>)>,
}

impl Stamp {
    /// The stamp of a worker whose load began at `since`: a file changed after that is
    /// marked as never current, so the next invocation replaces the worker.
    pub fn new(pid: i32, files: impl IntoIterator<Item = PathBuf>, since: LoadStart) -> Stamp {
        let mut seen = std::collections::HashSet::new();
        let files = files.into_iter().filter(|p| !p.as_os_str().as_bytes().contains(&b'\n') && seen.insert(p.clone())).map(|p| {
            let m = mark_loaded(&p, since);
            (p, m)
        });
        Stamp { pid, files: files.collect() }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = format!("cgi2wsgi-stamp 1\npid {}\n", self.pid).into_bytes();
        for (path, m) in &self.files {
            match m {
                Some(m) => out.extend_from_slice(format!("{} {} {} ", m.mtime_ns, m.size, m.ino).as_bytes()),
                None => out.extend_from_slice(b"- - - "),
            }
            out.extend_from_slice(path.as_os_str().as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// Parse a stamp; `None` for anything malformed (the worker is then replaced).
    #[allow(clippy::many_single_char_names, reason = "t, s, i, p: the four fields of a stamp line (mtime, size, inode, path)")]
    fn decode(bytes: &[u8]) -> Option<Stamp> {
        let mut lines = bytes.split(|b| *b == b'\n');
        if lines.next()? != b"cgi2wsgi-stamp 1" {
            return None;
        }
        let pid = std::str::from_utf8(lines.next()?.strip_prefix(b"pid ")?).ok()?.parse().ok()?;
        let mut files = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let mut parts = line.splitn(4, |b| *b == b' ');
            let (t, s, i, p) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(p));
            let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<i64>().ok();
            let m = if t == b"-" { None } else { Some(FileMark { mtime_ns: num(t)?, size: num(s)? as u64, ino: num(i)? as u64 }) };
            files.push((path, m));
        }
        Some(Stamp { pid, files })
    }

    pub fn read(path: &Path) -> Option<Stamp> {
        Stamp::decode(&std::fs::read(path).ok()?)
    }

    /// Written to a temp file and renamed: a reader sees the old stamp or the new, whole.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let tmp = path.with_extension(format!("stamp.{}", std::process::id()));
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&tmp)?;
        let written = f.write_all(&self.encode()).and_then(|()| f.sync_data()).and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Watch more files (modules the app imported after start-up, at or after `since`),
    /// each as it is now unless it changed since then; files already watched keep their
    /// first mark. True if any was new.
    pub fn add_files(&mut self, more: impl IntoIterator<Item = PathBuf>, since: LoadStart) -> bool {
        let before = self.files.len();
        for p in more {
            if !p.as_os_str().as_bytes().contains(&b'\n') && !self.files.iter().any(|(q, _)| *q == p) {
                let m = mark_loaded(&p, since);
                self.files.push((p, m));
            }
        }
        self.files.len() > before
    }

    /// Every watched file is as it was when the worker loaded the app.
    pub fn is_current(&self) -> bool {
        self.files.iter().all(|(p, m)| mark(p) == *m)
    }

    /// The first file that changed, for the log.
    pub fn changed_file(&self) -> Option<&Path> {
        self.files.iter().find(|(p, m)| mark(p) != *m).map(|(p, _)| p.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn stamp_round_trip_and_change() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a b.py");
        std::fs::write(&a, "x").unwrap();
        std::thread::sleep(CLOCK_SLACK * 2);
        let since = LoadStart::now();
        let s = Stamp::new(42, [a.clone(), dir.path().join("missing.py"), a.clone()], since);
        assert_eq!(s.files.len(), 2);
        let path = dir.path().join("k.stamp");
        s.write(&path).unwrap();
        let back = Stamp::read(&path).unwrap();
        assert_eq!(back, s);
        assert!(back.is_current());
        std::fs::write(&a, "xy").unwrap();
        assert!(!back.is_current());
        assert_eq!(back.changed_file(), Some(a.as_path()));
    }

    #[test]
    fn a_file_changed_after_the_load_began_is_never_current() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.py");
        std::fs::write(&a, "x").unwrap();
        std::thread::sleep(CLOCK_SLACK * 2);
        let since = LoadStart::now();
        std::thread::sleep(CLOCK_SLACK * 2);
        // Rewritten while the app was loading: what was loaded may be the old content.
        std::fs::write(&a, "y").unwrap();
        let s = Stamp::new(1, [a.clone()], since);
        assert!(!s.is_current());
        let mut later = Stamp::new(1, [], LoadStart::now());
        let b = dir.path().join("b.py");
        std::fs::write(&b, "z").unwrap();
        assert!(later.add_files([b.clone()], since));
        assert!(!later.is_current(), "a module first seen after a change is not vouched for either");
    }

    #[test]
    fn malformed_stamps_are_refused() {
        for bad in [&b""[..], b"cgi2wsgi-stamp 1\n", b"cgi2wsgi-stamp 1\npid x\n", b"cgi2wsgi-stamp 1\npid 1\n1 2\n", b"other\npid 1\n"] {
            assert_eq!(Stamp::decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn private_dir_checks() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("p");
        assert!(check_dir(&dir, false).is_err());
        check_dir(&dir, true).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_dir(&dir, false).is_err(), "open to others");
        assert!(check_dir(&dir, true).unwrap_err().to_string().contains("open to others"), "a loose directory is refused, not tightened");
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o755);
        let link = base.path().join("l");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(check_dir(&link, true).unwrap_err().to_string().contains("symlink"));
        let file = base.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(check_dir(&file, true).is_err());
    }

    #[test]
    fn the_default_dir_prefers_what_only_we_can_create() {
        let base = tempfile::tempdir().unwrap();
        let me = euid();
        let home = base.path().join("home");
        std::fs::create_dir(&home).unwrap();
        assert_eq!(choose_dir(None, Some(home.clone()), me), home.join(".cache/cgi2wsgi"));
        let run = base.path().join("run");
        std::fs::create_dir(&run).unwrap();
        assert_eq!(choose_dir(Some(run.clone()), Some(home.clone()), me), run.join("cgi2wsgi"));
        // A home of another uid, a missing one, or none: /tmp.
        assert_eq!(choose_dir(None, Some(home.clone()), me + 1), PathBuf::from(format!("/tmp/cgi2wsgi-{}", me + 1)));
        assert_eq!(choose_dir(None, Some(base.path().join("missing")), me), PathBuf::from(format!("/tmp/cgi2wsgi-{me}")));
        assert_eq!(choose_dir(None, None, me), PathBuf::from(format!("/tmp/cgi2wsgi-{me}")));
        // A ~/.cache that is a symlink is not followed.
        let other = base.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::os::unix::fs::symlink(&other, home.join(".cache")).unwrap();
        assert_eq!(choose_dir(None, Some(home), me), PathBuf::from(format!("/tmp/cgi2wsgi-{me}")));
    }

    #[test]
    fn socket_path_length_is_checked() {
        let long = PathBuf::from("/tmp").join("d".repeat(100));
        assert!(matches!(Paths::in_dir(long, "0123456789abcdef"), Err(AccelError::PathTooLong(_))));
        let p = Paths::from_socket(Path::new("/tmp/x/0123456789abcdef.sock")).unwrap();
        assert_eq!(p.stamp, Path::new("/tmp/x/0123456789abcdef.stamp"));
    }

    #[test]
    fn planted_socket_of_another_kind_is_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sock");
        assert_eq!(socket_state(&p), SocketState::Missing);
        std::fs::write(&p, "").unwrap();
        assert!(matches!(socket_state(&p), SocketState::Foreign(_)));
        std::fs::remove_file(&p).unwrap();
        let _l = std::os::unix::net::UnixListener::bind(&p).unwrap();
        assert_eq!(socket_state(&p), SocketState::Ours);
    }
}
