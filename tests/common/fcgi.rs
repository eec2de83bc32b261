//! The web-server side of FastCGI for tests: the built binary started as a persistent
//! responder (unix socket or TCP), a record-level client connection built on the crate's own
//! encoder and `ClientDecoder`, and parsed replies. Shared by the wire and bad-input tests.

use cgi2wsgi::fastcgi::client;
use cgi2wsgi::fastcgi::{ClientDecoder, ClientEvent, Role};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every read and write on a connection gives up after this long: no test can hang.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to listen (or to exit, when it must fail).
pub const START_DEADLINE: Duration = Duration::from_secs(20);

pub const RECORD_STDOUT: u8 = 6;
pub const RECORD_STDERR: u8 = 7;
pub const RECORD_END_REQUEST: u8 = 3;

pub fn repo_path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

pub fn echo_app() -> String {
    repo_path("examples/echo.py")
}

pub fn hello_app() -> String {
    repo_path("examples/hello.py")
}

pub fn stream_app() -> String {
    repo_path("examples/stream.py")
}

/// tests/apps/fcgi_wire.py: /big, /raise, /chatty, anything else "ok\n".
pub fn wire_app() -> String {
    repo_path("tests/apps/fcgi_wire.py")
}

pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub enum Addr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// One cgi2wsgi process serving FastCGI; killed and reaped on drop.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub addr: Addr,
}

pub fn temp_dir() -> tempfile::TempDir {
    // Short path under /tmp: unix socket paths are limited to 108 bytes.
    tempfile::Builder::new().prefix("fcgi-wire-").tempdir_in("/tmp").unwrap()
}

/// The binary with a clean environment, `app`, stdin and stdout on /dev/null and stderr
/// in DIR/stderr (what it says before --log-file takes over, or always without one).
pub fn base_command(dir: &Path, app: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cgi2wsgi"));
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .arg(app)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(File::create(dir.join("stderr")).unwrap()));
    cmd
}

impl Server {
    /// `--bind unix:DIR/s.sock --socket-mode 0600 --log-file DIR/log APP ARGS`.
    pub fn start(app: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
        let dir = temp_dir();
        let sock = dir.path().join("s.sock");
        let mut cmd = base_command(dir.path(), app);
        cmd.arg("--bind")
            .arg(format!("unix:{}", sock.display()))
            .args(["--socket-mode", "0600", "--log-file"])
            .arg(dir.path().join("log"))
            .args(args)
            .envs(envs.iter().copied());
        Server::spawn(cmd, dir, Addr::Unix(sock))
    }

    /// Spawn `cmd` and wait until `addr` accepts connections.
    pub fn spawn(mut cmd: Command, dir: tempfile::TempDir, addr: Addr) -> Server {
        let child = cmd.spawn().expect("spawn cgi2wsgi");
        // Drop the parent's copies of any fds handed to the child.
        drop(cmd);
        let mut server = Server { child, dir, addr };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the server exited before listening: {status}\n{}", self.diag());
            }
            let ok = match &self.addr {
                Addr::Unix(p) => UnixStream::connect(p).is_ok(),
                Addr::Tcp(a) => TcpStream::connect_timeout(a, Duration::from_secs(1)).is_ok(),
            };
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the server did not listen within {START_DEADLINE:?}\n{}", self.diag());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.path().join("stderr"))
    }

    /// The server's own words, for failure messages.
    pub fn diag(&self) -> String {
        format!("--- server stderr ---\n{}\n--- server log ---\n{}", self.stderr(), self.log())
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait (up to `within`) until the log holds `needle`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn connect(&self) -> Conn {
        let mut c = Conn::to(&self.addr);
        c.diag = Some((self.dir.path().join("stderr"), self.log_path()));
        c
    }

    /// A fresh connection, one GET of `path_info`; asserts a 200.
    pub fn get_ok(&self, path_info: &str, query: &str) -> Http {
        let mut c = self.connect();
        let r = c.request(1, false, &cgi("GET", path_info, query), b"");
        let h = r.http();
        assert_eq!(h.status, 200, "GET {path_info}?{query}: {h:?}\n{}", self.diag());
        h
    }
}

impl Drop for Server {
    /// SIGTERM first, so a supervisor stops its workers too (they would otherwise follow
    /// it only through PR_SET_PDEATHSIG, after their own graceful drain); SIGKILL if slow.
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// The web-server side of a connection
// ---------------------------------------------------------------------------------------

pub enum Sock {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => s.read(buf),
            Sock::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Unix(s) => s.write(buf),
            Sock::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Did the peer close (EOF, or a reset because it closed with our data unread)?
pub fn is_closed_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted)
}

pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

pub struct Conn {
    pub sock: Sock,
    pub dec: ClientDecoder,
    /// The server's stderr and log files, shown when something goes wrong.
    pub diag: Option<(PathBuf, PathBuf)>,
}

/// What came back for one request.
#[derive(Debug)]
pub struct Reply {
    /// Every event of the request, in arrival order.
    pub events: Vec<ClientEvent>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub app_status: u32,
    pub protocol_status: u8,
}

impl Conn {
    pub fn to(addr: &Addr) -> Conn {
        let sock = match addr {
            Addr::Unix(p) => {
                let s = UnixStream::connect(p).unwrap_or_else(|e| panic!("connect {}: {e}", p.display()));
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                Sock::Unix(s)
            }
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a).unwrap_or_else(|e| panic!("connect {a}: {e}"));
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                Sock::Tcp(s)
            }
        };
        Conn { sock, dec: ClientDecoder::new(), diag: None }
    }

    pub fn diag(&self) -> String {
        match &self.diag {
            Some((stderr, log)) => format!("--- server stderr ---\n{}\n--- server log ---\n{}", read_lossy(stderr), read_lossy(log)),
            None => String::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.sock.write_all(bytes) {
            panic!("write to the server: {e}\n{}", self.diag());
        }
    }

    /// A second handle on the socket, for a writer thread.
    pub fn writer(&self) -> Sock {
        match &self.sock {
            Sock::Unix(s) => Sock::Unix(s.try_clone().unwrap()),
            Sock::Tcp(s) => Sock::Tcp(s.try_clone().unwrap()),
        }
    }

    /// Half-close: the web server has nothing more to send.
    pub fn shutdown_write(&self) {
        match &self.sock {
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Write).unwrap(),
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Write).unwrap(),
        }
    }

    /// Write, tolerating a server that has already closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// The next decoded event; `Ok(None)` at end of stream.
    pub fn next(&mut self) -> io::Result<Option<ClientEvent>> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.dec.poll_event() {
                Ok(Some(e)) => return Ok(Some(e)),
                Ok(None) => {}
                Err(e) => panic!("the server sent a malformed record: {e}\n{}", self.diag()),
            }
            let n = match self.sock.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(None);
            }
            self.dec.feed(&buf[..n]);
        }
    }

    /// The next event; panics at end of stream or on timeout.
    pub fn event(&mut self) -> ClientEvent {
        match self.next() {
            Ok(Some(e)) => e,
            Ok(None) => panic!("the server closed the connection early\n{}", self.diag()),
            Err(e) if is_timeout(&e) => panic!("no record from the server within {IO_TIMEOUT:?}\n{}", self.diag()),
            Err(e) => panic!("read from the server: {e}\n{}", self.diag()),
        }
    }

    /// Read until END_REQUEST for `id`; every record must belong to `id`.
    pub fn reply(&mut self, id: u16) -> Reply {
        let mut r = Reply { events: Vec::new(), stdout: Vec::new(), stderr: Vec::new(), app_status: 0, protocol_status: 255 };
        loop {
            let e = self.event();
            r.events.push(e.clone());
            match e {
                ClientEvent::Stdout { id: i, data } if i == id => r.stdout.extend_from_slice(&data),
                ClientEvent::Stderr { id: i, data } if i == id => r.stderr.extend_from_slice(&data),
                ClientEvent::StdoutEnd { id: i } | ClientEvent::StderrEnd { id: i } if i == id => {}
                ClientEvent::EndRequest { id: i, app_status, protocol_status } if i == id => {
                    r.app_status = app_status;
                    r.protocol_status = protocol_status;
                    return r;
                }
                other => panic!("unexpected record while waiting for request {id}: {other:?}\n{}", self.diag()),
            }
        }
    }

    /// Send one whole RESPONDER request (body in STDIN records of at most 65535 bytes).
    pub fn send_request(&mut self, id: u16, keep_conn: bool, params: &[(String, String)], body: &[u8]) {
        let bytes = request_bytes(id, keep_conn, params, body);
        self.send(&bytes);
    }

    pub fn request(&mut self, id: u16, keep_conn: bool, params: &[(String, String)], body: &[u8]) -> Reply {
        self.send_request(id, keep_conn, params, body);
        self.reply(id)
    }

    /// The server must close this connection (within the timeout) without sending anything.
    pub fn expect_closed(&mut self, what: &str) {
        match self.next() {
            Ok(None) => {}
            Err(e) if is_closed_error(&e) => {}
            Ok(Some(e)) => panic!("{what}: expected the connection to be closed, got {e:?}\n{}", self.diag()),
            Err(e) if is_timeout(&e) => panic!("{what}: the connection stayed open for {IO_TIMEOUT:?}\n{}", self.diag()),
            Err(e) => panic!("{what}: read: {e}\n{}", self.diag()),
        }
    }

    /// Everything the server sends until it closes the connection, undecoded.
    pub fn raw_until_eof(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        if let Err(e) = self.sock.read_to_end(&mut all) {
            panic!("reading until the server closes: {e} (got {} bytes)\n{}", all.len(), self.diag());
        }
        all
    }
}

/// Events as short labels (type, id, content length) for failure messages.
pub fn summary(events: &[ClientEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            ClientEvent::Stdout { id, data } => format!("STDOUT({id}, {} bytes)", data.len()),
            ClientEvent::StdoutEnd { id } => format!("STDOUT({id}, end)"),
            ClientEvent::Stderr { id, data } => format!("STDERR({id}, {} bytes)", data.len()),
            ClientEvent::StderrEnd { id } => format!("STDERR({id}, end)"),
            ClientEvent::EndRequest { id, protocol_status, .. } => format!("END_REQUEST({id}, status {protocol_status})"),
            other => format!("{other:?}"),
        })
        .collect()
}

pub fn begin_bytes(id: u16, role: Role, keep_conn: bool) -> Vec<u8> {
    let mut out = Vec::new();
    client::begin_request(&mut out, id, role, keep_conn);
    out
}

pub fn params_bytes(id: u16, params: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    client::params(&mut out, id, params).unwrap();
    out
}

pub fn request_bytes(id: u16, keep_conn: bool, params: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = begin_bytes(id, Role::Responder, keep_conn);
    out.extend(params_bytes(id, params));
    for chunk in body.chunks(65535) {
        client::stdin(&mut out, id, chunk);
    }
    client::end_stdin(&mut out, id);
    out
}

/// A hand-built record: literal header fields, no padding.
pub fn record(version: u8, record_type: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let len = u16::try_from(content.len()).unwrap();
    let [i1, i0] = id.to_be_bytes();
    let [l1, l0] = len.to_be_bytes();
    let mut v = vec![version, record_type, i1, i0, l1, l0, 0, 0];
    v.extend_from_slice(content);
    v
}

/// The CGI variables a web server sends, plus whatever the test pushes.
pub fn cgi(method: &str, path_info: &str, query: &str) -> Vec<(String, String)> {
    let uri = if query.is_empty() { format!("/app{path_info}") } else { format!("/app{path_info}?{query}") };
    [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REQUEST_METHOD", method),
        ("SCRIPT_NAME", "/app"),
        ("PATH_INFO", path_info),
        ("QUERY_STRING", query),
        ("REQUEST_URI", uri.as_str()),
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_PORT", "80"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_SOFTWARE", "fastcgi-wire-test"),
        ("REMOTE_ADDR", "127.0.0.1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn set(params: &mut Vec<(String, String)>, name: &str, value: &str) {
    params.retain(|(n, _)| n != name);
    params.push((name.to_owned(), value.to_owned()));
}

/// A POST of `len` declared bytes to echo.
pub fn post(len: usize) -> Vec<(String, String)> {
    let mut p = cgi("POST", "/upload", "");
    set(&mut p, "CONTENT_TYPE", "application/octet-stream");
    set(&mut p, "CONTENT_LENGTH", &len.to_string());
    p
}

/// A CGI response parsed from the STDOUT stream.
#[derive(Debug)]
pub struct Http {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Http {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Reply {
    pub fn http(&self) -> Http {
        assert_eq!(self.protocol_status, 0, "END_REQUEST protocol status: {self:?}");
        let raw = &self.stdout;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no CRLF CRLF in STDOUT {:?}\nSTDERR: {}", String::from_utf8_lossy(raw), String::from_utf8_lossy(&self.stderr)));
        let head = std::str::from_utf8(&raw[..split]).expect("ASCII head");
        let mut status = 200;
        let mut headers = Vec::new();
        for line in head.split("\r\n") {
            let (name, value) = line.split_once(": ").unwrap_or_else(|| panic!("bad header line {line:?}"));
            if name.eq_ignore_ascii_case("Status") {
                status = value[..3].parse().unwrap();
            } else {
                headers.push((name.to_owned(), value.to_owned()));
            }
        }
        Http { status, headers, body: raw[split + 4..].to_vec() }
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}
