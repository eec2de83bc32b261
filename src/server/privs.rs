//! `--user` / `--group`: a responder started as root (to bind a privileged port or a socket
//! in /run) drops to an unprivileged account right after binding, before any app code runs.
//! The account is resolved with the configuration (`config::RunAs`); the syscalls are in `sys`.

use crate::config::RunAs;
use crate::server::ServerError;

/// Become `target` for good. Running as root is needed unless the target is already who we are.
pub fn drop_to(target: &RunAs) -> Result<(), ServerError> {
    crate::sys::drop_privileges(target.uid, target.gid, target.user.as_deref()).map_err(ServerError::Listen)?;
    log::info!("running as uid {} gid {}", target.uid, target.gid);
    Ok(())
}
