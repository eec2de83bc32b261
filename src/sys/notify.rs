//! systemd's readiness protocol (`sd_notify`): one datagram of `KEY=VALUE` lines to the
//! unix socket named by `NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).

use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

/// The socket, read once and removed from the environment (the app and the processes it
/// starts must not talk to systemd in our name).
fn socket() -> Option<&'static String> {
    static SOCKET: OnceLock<Option<String>> = OnceLock::new();
    SOCKET
        .get_or_init(|| {
            let s = std::env::var("NOTIFY_SOCKET").ok().filter(|s| !s.is_empty());
            std::env::remove_var("NOTIFY_SOCKET");
            s
        })
        .as_ref()
}

/// Take `NOTIFY_SOCKET` out of the environment now (call while single-threaded).
pub fn take_notify_socket() {
    let _ = socket();
}

/// Is there a systemd to tell?
pub fn notify_enabled() -> bool {
    socket().is_some()
}

/// Send `state` (e.g. "READY=1\nSTATUS=serving"); nothing without `NOTIFY_SOCKET`.
/// Failures are logged, never fatal: systemd then times the start out by itself.
pub fn notify(state: &str) {
    let Some(path) = socket() else { return };
    let sent = UnixDatagram::unbound().and_then(|s| match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            s.send_to_addr(state.as_bytes(), &addr)
        }
        None => s.send_to(state.as_bytes(), path),
    });
    if let Err(e) = sent {
        log::warn!("cannot notify systemd at {path}: {e}");
    }
}
