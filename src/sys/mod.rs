//! The OS plumbing, in one place: processes (fork, kill, reap, signals, `_exit`), file
//! descriptors (pipes, readiness signals, poll, epoll, flock, close-on-exec), accepted sockets
//! read and written without blocking, users (credentials,
//! peer credentials, privilege dropping) and the allocator's options. Every `unsafe` call
//! the gateways and processes need lives here behind a safe function, each with its
//! `// SAFETY:`; the rest of the crate denies `unsafe_code`.
#![allow(unsafe_code)]

mod backoff;
mod epoll;
mod fd;
mod logs;
mod notify;
mod process;
mod stream;
mod user;

pub use backoff::Backoff;
pub use epoll::Epoll;
pub use fd::{
    claim_stdout, flock_exclusive, inherited_stdout, is_listening_socket, isatty, ready_pipe, secure_stdio, wait_readable, wait_writable, with_umask,
    ReadySignal, ReadyWait,
};
pub use logs::{access_log_enabled, open_access_log, reopen_count, reopen_on_sigusr1, rotate_stdio, write_access_line};
pub use notify::{notify, notify_enabled, take_notify_socket};
pub use process::{
    allocator_release_at_once, detach_on_exec, die_with_parent, exit_now, fork, kill, kill_group, monotonic_ns, page_size, process_params, raise, reap,
    set_signal, Fork,
};
pub use stream::Stream;
pub use user::{chown, drop_privileges, egid, euid, home_of, lookup_gid, lookup_uid, lookup_user, peer_cred};
