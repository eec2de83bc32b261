//! FastCGI listeners, with the built binary as a persistent responder: spawned with the
//! listening socket on fd 0 (mod_fcgid, lighttpd `bin-path`; stdio closed or null), TCP
//! with FCGI_WEB_SERVER_ADDRS, systemd socket activation (fd 3), and what is left at the
//! `--bind` path. The records themselves are tests/fastcgi_wire.rs.

mod common;

use common::fcgi::*;
use common::{sha256_hex, test_bytes};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// 12. Spawned with the listening socket on fd 0 (mod_fcgid, lighttpd bin-path)
// ---------------------------------------------------------------------------------------

/// `cgi2wsgi APP [--log-file DIR/log]` with a unix listener as stdin and no --bind.
fn spawn_on_fd0(app: &str, log_file: bool, close_stdio: bool) -> Server {
    let dir = temp_dir();
    let sock = dir.path().join("s.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut cmd = base_command(dir.path(), app);
    cmd.stdin(Stdio::from(OwnedFd::from(listener))).stdout(Stdio::null()).stderr(Stdio::null());
    if log_file {
        cmd.arg("--log-file").arg(dir.path().join("log"));
    }
    if close_stdio {
        // SAFETY: close(2) is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(1);
                libc::close(2);
                Ok(())
            });
        }
    }
    Server::spawn(cmd, dir, Addr::Unix(sock))
}

#[test]
fn fd0_listener_with_null_stdio() {
    let s = spawn_on_fd0(&echo_app(), true, false);
    let body = test_bytes(100_000);
    for id in 1..=2u16 {
        let mut c = s.connect();
        let j = c.request(id, false, &post(body.len()), &body).http().json();
        assert_eq!(j["body_sha256"], sha256_hex(&body));
        assert_eq!(j["run_once"], false);
    }
    assert!(s.wait_for_log("echo: print() from the app", Duration::from_secs(5)), "the app's print() reaches --log-file\n{}", s.diag());
}

#[test]
fn fd0_listener_with_closed_stdout_and_stderr() {
    let want = {
        let mut v = b"chatty body: ".to_vec();
        for _ in 0..100 {
            v.extend_from_slice(b"0123456789");
        }
        v.push(b'\n');
        v
    };
    for log_file in [true, false] {
        let s = spawn_on_fd0(&wire_app(), log_file, true);
        for round in 0..3 {
            let mut c = s.connect();
            let r = c.request(1, false, &cgi("GET", "/chatty", ""), b"");
            let h = r.http();
            assert_eq!(h.status, 200, "log file {log_file}, round {round}: {h:?}");
            assert_eq!(h.header("Content-Type"), Some("text/plain"));
            assert_eq!(h.body.len(), want.len(), "log file {log_file}, round {round}: {:?}", h.text());
            assert!(h.body == want, "log file {log_file}, round {round}: {:?}", h.text());
            assert!(!r.stderr_text().contains("fcgi_wire:"), "the app's stdio reached FCGI_STDERR");
            c.expect_closed("after the response");
        }
        if log_file {
            assert!(s.log().contains("fcgi_wire: print() line 1999 on stdout"), "print() reaches the log");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 13. TCP and FCGI_WEB_SERVER_ADDRS
// ---------------------------------------------------------------------------------------

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_tcp(app: &str, allowed: &str) -> Server {
    let dir = temp_dir();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap();
    let mut cmd = base_command(dir.path(), app);
    cmd.arg("--bind").arg(addr.to_string()).arg("--log-file").arg(dir.path().join("log")).env("FCGI_WEB_SERVER_ADDRS", allowed);
    Server::spawn(cmd, dir, Addr::Tcp(addr))
}

#[test]
fn tcp_with_fcgi_web_server_addrs() {
    let denied = start_tcp(&hello_app(), "10.9.9.9");
    let mut c = denied.connect();
    let _ = c.try_send(&request_bytes(1, false, &cgi("GET", "/", ""), b""));
    c.expect_closed("a peer not in FCGI_WEB_SERVER_ADDRS");
    assert!(denied.wait_for_log("not in FCGI_WEB_SERVER_ADDRS", Duration::from_secs(5)), "{}", denied.diag());

    let allowed = start_tcp(&hello_app(), "10.9.9.9, 127.0.0.1");
    let h = allowed.get_ok("/", "");
    assert_eq!(h.body, b"Hello World\n");
}

// ---------------------------------------------------------------------------------------
// 14. systemd socket activation
// ---------------------------------------------------------------------------------------

#[test]
fn systemd_socket_activation() {
    use std::ffi::CString;
    let dir = temp_dir();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let cstr = |s: &str| CString::new(s).unwrap();
    let argv = [cstr(env!("CARGO_BIN_EXE_cgi2wsgi")), cstr(&hello_app()), cstr("--log-file"), cstr(&dir.path().join("log").display().to_string())];
    let path_var = cstr("PATH=/usr/local/bin:/usr/bin:/bin");
    let fds_var = cstr("LISTEN_FDS=1");
    // "LISTEN_PID=" and room for the child's pid, filled in after fork.
    let mut pid_var = [0u8; 40];
    pid_var[..11].copy_from_slice(b"LISTEN_PID=");
    let mut cmd = base_command(dir.path(), &hello_app());
    // std hands its own copy of the environment to exec, so a setenv() in pre_exec would be
    // lost: the closure makes the whole environment (with the child's pid) and execs itself.
    // SAFETY: runs in the child between fork and exec and only calls async-signal-safe
    // functions (dup2, fcntl, getpid, execve) on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut pid = libc::getpid() as u64;
            let mut digits = [0u8; 20];
            let mut n = 0;
            loop {
                digits[n] = b'0' + (pid % 10) as u8;
                n += 1;
                pid /= 10;
                if pid == 0 {
                    break;
                }
            }
            for i in 0..n {
                pid_var[11 + i] = digits[n - 1 - i];
            }
            pid_var[11 + n] = 0;
            let args = [argv[0].as_ptr(), argv[1].as_ptr(), argv[2].as_ptr(), argv[3].as_ptr(), std::ptr::null()];
            let envp = [path_var.as_ptr(), fds_var.as_ptr(), pid_var.as_ptr().cast(), std::ptr::null()];
            libc::execve(args[0], args.as_ptr(), envp.as_ptr());
            Err(io::Error::last_os_error())
        });
    }
    let child = cmd.spawn().expect("spawn cgi2wsgi");
    drop(cmd);
    drop(listener);
    let mut s = Server { child, dir, addr: Addr::Tcp(addr) };
    s.wait_ready();
    for _ in 0..2 {
        let h = s.get_ok("/", "");
        assert_eq!(h.body, b"Hello World\n", "{}", s.diag());
    }
    assert!(s.alive());
}

// ---------------------------------------------------------------------------------------
// 15. What is left at the --bind path
// ---------------------------------------------------------------------------------------

#[test]
fn stale_socket_is_replaced_and_a_regular_file_is_refused() {
    // A socket left by a process that is gone.
    let dir = temp_dir();
    let sock = dir.path().join("s.sock");
    drop(UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let mut cmd = base_command(dir.path(), &hello_app());
    cmd.arg("--bind").arg(format!("unix:{}", sock.display())).arg("--log-file").arg(dir.path().join("log"));
    let s = Server::spawn(cmd, dir, Addr::Unix(sock));
    assert_eq!(s.get_ok("/", "").body, b"Hello World\n");
    drop(s);

    // A regular file: refused, untouched, non-zero exit with the reason on stderr.
    let dir = temp_dir();
    let path = dir.path().join("s.sock");
    std::fs::write(&path, "precious data\n").unwrap();
    let mut cmd = base_command(dir.path(), &hello_app());
    cmd.arg("--bind").arg(format!("unix:{}", path.display()));
    let mut child = cmd.spawn().unwrap();
    let status = common::wait_exit(&mut child, START_DEADLINE, "a server given a non-socket --bind path");
    let stderr = read_lossy(&dir.path().join("stderr"));
    assert!(!status.success(), "exit status {status}; stderr: {stderr}");
    assert!(stderr.contains("not a socket") && stderr.contains(&path.display().to_string()), "stderr: {stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious data\n");
}
