//! `--user` / `--group`: a responder started as root (to bind a privileged port or a socket
//! in /run) drops to an unprivileged account right after binding, before any app code runs.

use crate::error::ServerError;
use std::ffi::CString;

/// The account to become, resolved while /etc/passwd and /etc/group are still readable.
#[derive(Debug, Clone)]
pub struct Target {
    uid: libc::uid_t,
    gid: libc::gid_t,
    /// Set when a user was named: its supplementary groups are taken too (initgroups).
    user: Option<CString>,
}

/// Resolve `--user` (name or uid) and `--group` (name or gid; default: the user's primary group).
pub fn resolve(user: Option<&str>, group: Option<&str>) -> Result<Option<Target>, ServerError> {
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let bad = |what: String| ServerError::Listen(what);
    // SAFETY: geteuid/getegid have no preconditions.
    let (mut uid, mut gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut name = None;
    if let Some(u) = user {
        let c = CString::new(u).map_err(|_| bad(format!("--user {u:?}: bad name")))?;
        // SAFETY: getpw* return NULL or a pointer to a static struct that is read at once,
        // before any other call could overwrite it.
        let pw = unsafe {
            match u.parse::<libc::uid_t>() {
                Ok(n) => libc::getpwuid(n),
                Err(_) => libc::getpwnam(c.as_ptr()),
            }
        };
        if pw.is_null() {
            match u.parse::<libc::uid_t>() {
                // A bare uid with no passwd entry is allowed (containers); no supplementary groups.
                Ok(n) => uid = n,
                Err(_) => return Err(bad(format!("--user {u:?}: no such user"))),
            }
        } else {
            // SAFETY: non-null, as checked; pw_name is a valid C string.
            unsafe {
                uid = (*pw).pw_uid;
                gid = (*pw).pw_gid;
                name = Some(std::ffi::CStr::from_ptr((*pw).pw_name).to_owned());
            }
        }
    }
    if let Some(g) = group {
        gid = super::listen::lookup_gid(g).map_err(|e| bad(format!("--group: {e}")))?;
    }
    Ok(Some(Target { uid, gid, user: name }))
}

/// Become `target` for good (group first, while we still may). Running as root is needed
/// unless the target is already who we are.
pub fn drop_to(target: &Target) -> Result<(), ServerError> {
    let fail = |what: &str| ServerError::Listen(format!("cannot drop privileges ({what}): {}", std::io::Error::last_os_error()));
    // SAFETY: plain credential syscalls; the C string outlives the call.
    unsafe {
        if libc::geteuid() != 0 {
            if libc::geteuid() == target.uid && libc::getegid() == target.gid {
                return Ok(());
            }
            return Err(ServerError::Listen("--user/--group need cgi2wsgi to be started as root".into()));
        }
        let groups_ok = match &target.user {
            Some(name) => libc::initgroups(name.as_ptr(), target.gid) == 0,
            None => libc::setgroups(1, &target.gid) == 0,
        };
        if !groups_ok {
            return Err(fail("setgroups"));
        }
        if libc::setgid(target.gid) != 0 {
            return Err(fail("setgid"));
        }
        if libc::setuid(target.uid) != 0 {
            return Err(fail("setuid"));
        }
        // Paranoia: regaining root must now be impossible.
        if target.uid != 0 && libc::setuid(0) == 0 {
            return Err(ServerError::Listen("privileges could be regained after dropping them; refusing to serve".into()));
        }
    }
    log::info!("running as uid {} gid {}", target.uid, target.gid);
    Ok(())
}
