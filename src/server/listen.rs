//! Where FastCGI connections come from: a listening socket inherited on fd 0 (mod_fcgid,
//! lighttpd `bin-path`, spawn-fcgi), one from systemd (`LISTEN_FDS`), or `--bind` (a unix
//! socket with mode/owner/group and stale-socket cleanup, or TCP on IPv4/IPv6).
// Socket syscalls on the listener and its connections (accept4, recv, getsockname).
#![allow(unsafe_code)]

use crate::config::{BindSpec, SocketPerms};
use crate::server::ServerError;
use crate::sys::{self, Stream};
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

pub enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

fn socket_family(fd: RawFd) -> Option<libc::sa_family_t> {
    // SAFETY: sockaddr_storage is large enough for any address; getsockname fills at most `len`.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getsockname(fd, (&raw mut addr).cast(), &raw mut len) != 0 {
            return None;
        }
        Some(addr.ss_family)
    }
}

/// Adopt an inherited listening socket by fd.
fn adopt(fd: RawFd) -> Result<Listener, ServerError> {
    if !sys::is_listening_socket(fd) {
        return Err(ServerError::Listen(format!("fd {fd} is not a listening socket")));
    }
    // The socket must be CLOEXEC from now on: the app's subprocesses must not inherit it.
    // SAFETY: the fd is open (getsockopt succeeded) and handed to us by our parent.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        match socket_family(fd).map(i32::from) {
            Some(libc::AF_UNIX) => Ok(Listener::Unix(UnixListener::from_raw_fd(fd))),
            Some(libc::AF_INET | libc::AF_INET6) => Ok(Listener::Tcp(TcpListener::from_raw_fd(fd))),
            other => Err(ServerError::Listen(format!("fd {fd} has unsupported address family {other:?}"))),
        }
    }
}

/// FCGI_LISTENSOCK_FILENO: the web server spawned us with a listening socket on fd 0.
pub fn from_fd0() -> Result<Listener, ServerError> {
    adopt(0)
}

/// systemd socket activation: `LISTEN_PID` is us and `LISTEN_FDS` ≥ 1 → fd 3.
pub fn from_systemd() -> Option<Result<Listener, ServerError>> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds == 0 {
        return None;
    }
    if fds > 1 {
        log::warn!("systemd passed {fds} sockets; serving the first (fd 3) only");
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    Some(adopt(3))
}

/// Remove a socket file left by a process that is gone; refuse one that is in use or is not a socket.
fn clear_stale(path: &Path) -> Result<(), ServerError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !meta.file_type().is_socket() {
        return Err(ServerError::Listen(format!("{} exists and is not a socket; not touching it", path.display())));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(ServerError::Listen(format!("{} is in use by another process", path.display())));
    }
    log::info!("removing stale socket {}", path.display());
    std::fs::remove_file(path).map_err(|e| ServerError::Listen(format!("cannot remove stale socket {}: {e}", path.display())))
}

pub fn bind(spec: &BindSpec, perms: &SocketPerms) -> Result<Listener, ServerError> {
    match spec {
        BindSpec::Unix(path) => {
            clear_stale(path)?;
            // Created under a tight umask, then opened up to the requested mode: never a
            // moment where the socket is world-writable.
            let listener = sys::with_umask(0o177, || UnixListener::bind(path));
            let listener = listener.map_err(|e| ServerError::Listen(format!("bind {}: {e}", path.display())))?;
            let mode = perms.mode.unwrap_or(0o660);
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| ServerError::Listen(format!("chmod {}: {e}", path.display())))?;
            if perms.owner.is_some() || perms.group.is_some() {
                let uid = perms.owner.as_deref().map(sys::lookup_uid).transpose().map_err(ServerError::Listen)?;
                let gid = perms.group.as_deref().map(sys::lookup_gid).transpose().map_err(ServerError::Listen)?;
                sys::chown(path, uid, gid).map_err(|e| ServerError::Listen(format!("chown {}: {e}", path.display())))?;
            }
            Ok(Listener::Unix(listener))
        }
        BindSpec::Tcp(addr) => {
            let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| ServerError::Listen(format!("--bind {addr}: {e}")))?.collect();
            let listener = TcpListener::bind(&addrs[..]).map_err(|e| ServerError::Listen(format!("bind {addr}: {e}")))?;
            Ok(Listener::Tcp(listener))
        }
    }
}

impl Listener {
    /// Accept one connection, non-blocking and close-on-exec in one syscall; the peer's IP
    /// for TCP.
    pub fn accept(&self) -> io::Result<(Stream, Option<IpAddr>)> {
        // SAFETY: sockaddr_storage fits any address; accept4 fills at most `len` bytes and
        // returns a new fd that we own.
        unsafe {
            let mut addr: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let fd = libc::accept4(self.raw_fd(), (&raw mut addr).cast(), &raw mut len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(match self {
                Listener::Unix(_) => (Stream::Unix(UnixStream::from_raw_fd(fd)), None),
                Listener::Tcp(_) => {
                    let s = TcpStream::from_raw_fd(fd);
                    let _ = s.set_nodelay(true);
                    let peer = match i32::from(addr.ss_family) {
                        libc::AF_INET => {
                            let a = &*(&raw const addr).cast::<libc::sockaddr_in>();
                            Some(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()))
                        }
                        libc::AF_INET6 => {
                            let a = &*(&raw const addr).cast::<libc::sockaddr_in6>();
                            Some(IpAddr::from(a.sin6_addr.s6_addr))
                        }
                        _ => None,
                    };
                    (Stream::Tcp(s), peer)
                }
            })
        }
    }

    pub fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Unix(l) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        match self {
            Listener::Unix(l) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Listener::Unix(l) => {
                format!("unix:{}", l.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.display().to_string())).unwrap_or_else(|| "(inherited)".into()))
            }
            Listener::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        }
    }
}

/// FCGI_WEB_SERVER_ADDRS: the peers allowed to connect over TCP (None: anyone).
pub fn allowed_peers() -> Option<Vec<IpAddr>> {
    let raw = std::env::var("FCGI_WEB_SERVER_ADDRS").ok()?;
    let addrs: Vec<IpAddr> = raw
        .split(',')
        .filter_map(|a| {
            let a = a.trim();
            let parsed = a.parse().ok();
            if parsed.is_none() && !a.is_empty() {
                log::warn!("FCGI_WEB_SERVER_ADDRS: ignoring {a:?}, not an IP address");
            }
            parsed
        })
        .collect();
    Some(addrs)
}

pub fn peer_allowed(allowed: &[IpAddr], peer: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    };
    allowed.iter().any(|a| canonical(*a) == canonical(peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_compare_v4_mapped() {
        let allowed = vec!["127.0.0.1".parse().unwrap()];
        assert!(peer_allowed(&allowed, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!peer_allowed(&allowed, "127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn unix_socket_mode_and_stale_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = bind(&BindSpec::Unix(path.clone()), &SocketPerms::default()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o660);
        // In use: refused.
        assert!(bind(&BindSpec::Unix(path.clone()), &SocketPerms::default()).is_err());
        drop(l);
        // Left behind by a process that is gone: replaced.
        assert!(bind(&BindSpec::Unix(path.clone()), &SocketPerms { mode: Some(0o600), ..Default::default() }).is_ok());
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // Not a socket: never removed.
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(bind(&BindSpec::Unix(file.clone()), &SocketPerms::default()).is_err());
        assert!(file.exists());
    }
}
