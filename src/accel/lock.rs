//! The start-up lock: `flock` on `K.lock` in the private directory, so that of many
//! invocations arriving at once exactly one starts the worker. The kernel releases a flock
//! when its holder dies, so a crashed holder never leaves a stale lock (a pidfile would).

use super::AccelError;
use crate::sys::{flock_exclusive, Backoff};
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Held until dropped (closing the file releases the lock).
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Take the lock, waiting up to `wait`; `Ok(None)` when it stayed taken that long.
    pub fn acquire(path: &Path, wait: Duration) -> Result<Option<Lock>, AccelError> {
        // O_NOFOLLOW: a symlink planted in place of the lock file is refused (the directory
        // is ours and 0700, so this is belt and braces).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| AccelError::Io { what: "cannot open the lock", path: path.to_owned(), source })?;
        let deadline = Instant::now() + wait;
        let mut pause = Backoff::new(Duration::from_millis(2), Duration::from_millis(50));
        loop {
            if flock_exclusive(&file) {
                return Ok(Some(Lock { _file: file }));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause.pause());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_then_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.lock");
        let held = Lock::acquire(&p, Duration::ZERO).unwrap().expect("free lock");
        assert!(Lock::acquire(&p, Duration::from_millis(30)).unwrap().is_none(), "second holder");
        drop(held);
        assert!(Lock::acquire(&p, Duration::ZERO).unwrap().is_some());
    }

    #[test]
    fn symlink_in_place_of_the_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let p = dir.path().join("k.lock");
        std::os::unix::fs::symlink(&target, &p).unwrap();
        assert!(Lock::acquire(&p, Duration::ZERO).is_err());
    }
}
