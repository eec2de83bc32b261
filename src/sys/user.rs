//! Users: who we are, who the peer of a unix socket is, account lookups, and dropping root
//! for good after binding.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;

pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

pub fn egid() -> u32 {
    // SAFETY: getegid has no preconditions.
    unsafe { libc::getegid() }
}

/// The peer's pid and uid on a connected unix socket (SO_PEERCRED: for a listening peer,
/// the process that bound it).
pub fn peer_cred(fd: RawFd) -> io::Result<(i32, u32)> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which is that large.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERCRED, (&raw mut cred).cast(), &raw mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.pid, cred.uid))
}

/// An account from the passwd database.
#[derive(Debug, Clone)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub name: CString,
}

/// Look a user up by name, or by uid when `name` is a number; `Ok(None)` when there is no
/// such entry, `Err` for a name that holds a NUL.
pub fn lookup_user(name: &str) -> Result<Option<User>, String> {
    let c = CString::new(name).map_err(|_| format!("bad user name {name:?}"))?;
    // SAFETY: getpw* return NULL or a pointer to a static struct that is read at once,
    // before any other call could overwrite it.
    unsafe {
        let pw = match name.parse::<libc::uid_t>() {
            Ok(n) => libc::getpwuid(n),
            Err(_) => libc::getpwnam(c.as_ptr()),
        };
        if pw.is_null() {
            return Ok(None);
        }
        // SAFETY (cont.): non-null, as checked; pw_name is a valid C string.
        Ok(Some(User { uid: (*pw).pw_uid, gid: (*pw).pw_gid, name: CStr::from_ptr((*pw).pw_name).to_owned() }))
    }
}

/// The home directory of `uid` in the password database (getpwuid_r), if it has one.
pub fn home_of(uid: u32) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwuid_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r fills `pw`, pointing into `buf` (which outlives every read below),
    // and sets `found` to `&pw` on success or NULL when there is no entry.
    let rc = unsafe { libc::getpwuid_r(uid, &raw mut pw, buf.as_mut_ptr(), buf.len(), &raw mut found) };
    if rc != 0 || found.is_null() || pw.pw_dir.is_null() {
        return None;
    }
    // SAFETY: non-null, a C string inside `buf`.
    let dir = unsafe { CStr::from_ptr(pw.pw_dir) };
    let dir = std::path::PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes()));
    dir.is_absolute().then_some(dir)
}

/// A user name or uid → uid.
pub fn lookup_uid(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    match lookup_user(name)? {
        Some(u) => Ok(u.uid),
        None => Err(format!("no such user {name:?}")),
    }
}

/// A group name or gid → gid.
pub fn lookup_gid(name: &str) -> Result<u32, String> {
    if let Ok(n) = name.parse() {
        return Ok(n);
    }
    let c = CString::new(name).map_err(|_| format!("bad group name {name:?}"))?;
    // SAFETY: getgrnam returns NULL or a pointer to a static struct we read at once.
    let gr = unsafe { libc::getgrnam(c.as_ptr()) };
    if gr.is_null() {
        return Err(format!("no such group {name:?}"));
    }
    // SAFETY: non-null, as checked.
    Ok(unsafe { (*gr).gr_gid })
}

/// chown(2); `None` leaves that id unchanged.
pub fn chown(path: &std::path::Path, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds NUL"))?;
    // SAFETY: chown on a valid C string; u32::MAX (-1) leaves that id unchanged.
    if unsafe { libc::chown(c.as_ptr(), uid.unwrap_or(u32::MAX), gid.unwrap_or(u32::MAX)) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Become `uid`/`gid` for good (group first, while we still may), with `user`'s
/// supplementary groups (initgroups) or none but `gid`. Root is needed unless that is
/// already who we are. Checks that root cannot be regained.
pub fn drop_privileges(uid: u32, gid: u32, user: Option<&CStr>) -> Result<(), String> {
    let fail = |what: &str| format!("cannot drop privileges ({what}): {}", io::Error::last_os_error());
    if euid() != 0 {
        if euid() == uid && egid() == gid {
            return Ok(());
        }
        return Err("--user/--group need cgi2wsgi to be started as root".into());
    }
    // SAFETY: plain credential syscalls; the C string outlives the call.
    unsafe {
        let groups_ok = match user {
            Some(name) => libc::initgroups(name.as_ptr(), gid) == 0,
            None => libc::setgroups(1, &raw const gid) == 0,
        };
        if !groups_ok {
            return Err(fail("setgroups"));
        }
        if libc::setgid(gid) != 0 {
            return Err(fail("setgid"));
        }
        if libc::setuid(uid) != 0 {
            return Err(fail("setuid"));
        }
        // Paranoia: regaining root must now be impossible.
        if uid != 0 && libc::setuid(0) == 0 {
            return Err("privileges could be regained after dropping them; refusing to serve".into());
        }
    }
    Ok(())
}
