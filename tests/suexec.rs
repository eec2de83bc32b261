//! Shared hosting under real suEXEC: Apache (mpm_event, mod_cgid) with mod_userdir and
//! Debian's `apache2-suexec-pristine` runs two throwaway accounts' `~/public_html`
//! drop-ins as those accounts. suEXEC runs a program by its bare name (`app.cgi`) in its
//! directory with a cleared environment (no HOME, no XDG_RUNTIME_DIR), and refuses files
//! and directories that are not the account's or are writable by others.
//!
//! Covered: `app.cgi`, `flask.cgi` and `doctor.cgi` (the README's names) answer 200 and run
//! as the account; the `apache/htaccess` and `apache/htaccess-rewrite` recipes, unchanged;
//! `persist = on` starts a worker running as the account that serves the next request;
//! another account can neither connect to that worker's socket nor, by creating
//! `/tmp/cgi2wsgi-UID` first, turn the accelerator off.
//!
//! Needs root (to add accounts and to run suEXEC): it fails, never skips, without it.

mod common;

use common::servers::{self, ApacheMpm, Server};
use common::{http, Fixture};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SUEXEC: &str = "/usr/lib/apache2/suexec";
const SUEXEC_LOG: &str = "/var/log/apache2/suexec.log";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A throwaway account with a home under /home (where suEXEC's userdir check finds it);
/// removed with its home, its private group and any process still running as it.
struct Account {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl Account {
    fn add(name: &str) -> Account {
        remove_account(name);
        let home = PathBuf::from("/home").join(name);
        run(Command::new("useradd").args(["-m", "-U", "-s", "/bin/sh", "-K", "UID_MIN=1000", "-d"]).arg(&home).arg(name));
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").arg(flag).arg(name).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("id {flag} {name}"))
        };
        let account = Account { name: name.to_owned(), uid: id("-u"), gid: id("-g"), home };
        assert!(account.uid >= 1000, "{name} got uid {}", account.uid);
        // The web server's user must reach public_html; the home itself stays unlistable.
        std::fs::set_permissions(&account.home, std::fs::Permissions::from_mode(0o711)).unwrap();
        account
    }

    /// Write `text` as the account's file `rel` (under the home), mode `mode`, its
    /// directories made 0755 and the account's, as an FTP upload with umask 022 leaves them.
    fn write(&self, rel: &str, text: &str, mode: u32) -> PathBuf {
        let path = self.home.join(rel);
        let mut dir = path.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        while dir != self.home {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::chown(&dir, Some(self.uid), Some(self.gid)).unwrap();
            dir = dir.parent().unwrap().to_path_buf();
        }
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid)).unwrap();
        path
    }
}

/// Kill every process of `uid` (the accelerator workers outlive their CGI runs), by pid.
fn kill_processes_of(uid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .is_ok_and(|s| s.lines().any(|l| l.strip_prefix("Uid:").is_some_and(|v| v.split_whitespace().next() == Some(&uid.to_string()))))
            })
            .collect();
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for pid in pids {
            // SAFETY: a process of the throwaway account this test made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn remove_account(name: &str) {
    if let Ok(out) = Command::new("id").arg("-u").arg(name).output() {
        if out.status.success() {
            if let Ok(uid) = String::from_utf8_lossy(&out.stdout).trim().parse() {
                kill_processes_of(uid);
            }
            let _ = Command::new("userdel").args(["-r", "-f", name]).output();
        }
    }
    let _ = std::fs::remove_dir_all(PathBuf::from("/home").join(name));
}

impl Drop for Account {
    fn drop(&mut self) {
        kill_processes_of(self.uid);
        remove_account(&self.name);
        let _ = std::fs::remove_dir_all(format!("/tmp/cgi2wsgi-{}", self.uid));
    }
}

/// The binary in a root-owned 0755 directory, as a host installs it; removed when dropped.
struct SystemBinary {
    dir: PathBuf,
}

impl SystemBinary {
    fn install() -> SystemBinary {
        let dir = PathBuf::from(format!("/usr/local/lib/c2w-test-bin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("cgi2wsgi");
        std::fs::copy(common::binary(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        SystemBinary { dir }
    }

    fn bin(&self) -> PathBuf {
        self.dir.join("cgi2wsgi")
    }
}

impl Drop for SystemBinary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A tiny app reporting who runs it, and (for the isolation checks) trying, on request,
/// to connect to another account's socket or to create a directory.
const APP: &str = r#"# cgi2wsgi: persist = on
# cgi2wsgi: log-level = info
import json, os, socket


def application(environ, start_response):
    query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
    out = {"uid": os.getuid(), "pid": os.getpid(), "run_once": environ["wsgi.run_once"],
           "script_name": environ.get("SCRIPT_NAME"), "path_info": environ.get("PATH_INFO"),
           "home": os.environ.get("HOME")}
    if "connect" in query:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(query["connect"])
            out["connect"] = "connected"
        except OSError as e:
            out["connect"] = type(e).__name__
        finally:
            s.close()
    if "plant" in query:
        os.mkdir(query["plant"], 0o755)
        out["plant"] = "made"
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(out).encode()]
"#;

/// An example drop-in from examples/cgi-bin with its `#!` at `bin`, its venv and its
/// pythonpath pointing into the fixture, and its script-name (if it has one) `script_name`.
fn drop_in(fx: &Fixture, example: &str, bin: &Path, script_name: &str) -> String {
    let text = std::fs::read_to_string(common::repo().join("examples/cgi-bin").join(example)).unwrap();
    let mut lines: Vec<String> = vec![format!("#!{}", bin.display())];
    for line in text.lines().skip(1) {
        if line.starts_with("# cgi2wsgi: venv =") {
            lines.push(format!("# cgi2wsgi: venv = {}", fx.venv().display()));
        } else if let Some(rel) = line.strip_prefix("# cgi2wsgi: pythonpath = ") {
            lines.push(format!("# cgi2wsgi: pythonpath = {}", fx.examples().join("cgi-bin").join(rel).display()));
        } else if line.starts_with("# cgi2wsgi: script-name =") {
            lines.push(format!("# cgi2wsgi: script-name = {script_name}"));
        } else {
            lines.push(line.to_owned());
        }
    }
    lines.join("\n") + "\n"
}

/// One account's site: the README's three drop-ins and `.htaccess` in public_html, and a
/// blog/ subdirectory with the pretty-URL recipe and flask-root.cgi as its app.cgi.
fn populate(fx: &Fixture, account: &Account, bin: &Path) {
    let recipe = |name: &str| std::fs::read_to_string(common::repo().join("apache").join(name)).unwrap();
    account.write("public_html/.htaccess", &recipe("htaccess"), 0o644);
    account.write("public_html/app.cgi", &format!("#!{}\n{APP}", bin.display()), 0o755);
    account.write("public_html/flask.cgi", &drop_in(fx, "flask.cgi", bin, ""), 0o755);
    account.write("public_html/doctor.cgi", &drop_in(fx, "doctor.cgi", bin, ""), 0o755);
    account.write("public_html/blog/.htaccess", &recipe("htaccess-rewrite"), 0o644);
    let script_name = format!("/~{}/blog", account.name);
    account.write("public_html/blog/app.cgi", &drop_in(fx, "flask-root.cgi", bin, &script_name), 0o755);
    account.write("public_html/blog/robots.txt", "User-agent: *\n", 0o644);
}

/// mod_userdir as a shared host sets it up (suEXEC applies to `/~user` by itself, no
/// `SuexecUserGroup`), granting exactly the overrides the recipes say they need.
const USERDIR: &str = "LoadModule userdir_module /usr/lib/apache2/modules/mod_userdir.so
LoadModule suexec_module /usr/lib/apache2/modules/mod_suexec.so
UserDir public_html
UserDir disabled root
<Directory /home/c2w-test-*/public_html>
  AllowOverride Options FileInfo AuthConfig
  Require all granted
</Directory>
";

/// suEXEC's own log from `from` on (it is root's, so the customer never sees it).
fn suexec_log(from: u64) -> String {
    let all = std::fs::read(SUEXEC_LOG).unwrap_or_default();
    String::from_utf8_lossy(all.get(usize::try_from(from).unwrap()..).unwrap_or_default()).into_owned()
}

struct Site<'a> {
    server: &'a Server,
    log_from: u64,
}

impl Site<'_> {
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> http::HttpResponse {
        let r = http::request(self.server.port, "GET", path, headers, b"");
        assert!(
            r.status == 200 || r.status == 401,
            "GET {path}: {} {}\nerror log:\n{}\nsuexec.log:\n{}",
            r.status,
            r.text(),
            self.server.log(),
            suexec_log(self.log_from)
        );
        r
    }
}

/// The stamps (worker pids) in a private directory.
fn stamp_pids(dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "stamp"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok()?.lines().find_map(|l| l.strip_prefix("pid "))?.parse().ok())
        .collect()
}

fn uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

#[test]
fn userdir_sites_run_as_their_accounts_under_suexec() {
    assert!(servers::is_root(), "tests/suexec.rs needs root (as CI has): it adds accounts and runs suEXEC");
    let mode =
        std::fs::metadata(SUEXEC).unwrap_or_else(|e| panic!("{SUEXEC}: {e} (apt-get install apache2-suexec-pristine; dev/setup does)")).permissions().mode();
    assert!(mode & 0o4000 != 0, "{SUEXEC} is not setuid (mode {mode:o})");
    let fx = Fixture::new(true);
    let system = SystemBinary::install();
    let a = Account::add("c2w-test-a");
    let b = Account::add("c2w-test-b");
    for account in [&a, &b] {
        populate(&fx, account, &system.bin());
    }
    // Another account gets to a's fallback private directory first (suEXEC leaves no
    // HOME, so a /tmp default would be the only one): b's own app creates it.
    let planted = format!("/tmp/cgi2wsgi-{}", a.uid);
    let _ = std::fs::remove_dir_all(&planted);

    let log_from = std::fs::metadata(SUEXEC_LOG).map(|m| m.len()).unwrap_or(0);
    let server = servers::apache(&fx, ApacheMpm::EventCgid, USERDIR);
    let s = Site { server: &server, log_from };

    let r = s.get(&format!("/~c2w-test-b/app.cgi?plant={planted}"), &[]);
    assert_eq!((r.json()["uid"].as_u64(), r.json()["plant"].as_str()), (Some(u64::from(b.uid)), Some("made")), "{}", r.text());
    let planted_owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&planted).unwrap());
    assert_eq!(planted_owner, b.uid);

    for account in [&a, &b] {
        let user = format!("/~{}", account.name);
        // app.cgi: run as the account, with no HOME (suEXEC clears the environment), by
        // a persistent worker from the second request on.
        let first = s.get(&format!("{user}/app.cgi"), &[]).json();
        assert_eq!(first["uid"].as_u64(), Some(u64::from(account.uid)), "{first}");
        assert_eq!(first["home"], serde_json::Value::Null, "suEXEC passed HOME: {first}");
        let second = s.get(&format!("{user}/app.cgi/again"), &[]).json();
        assert_eq!((second["run_once"].as_bool(), second["uid"].as_u64()), (Some(false), Some(u64::from(account.uid))), "{second}");
        let third = s.get(&format!("{user}/app.cgi/more"), &[]).json();
        assert_eq!(third["pid"], second["pid"], "the same worker serves again: {second} then {third}");
        assert_eq!(third["path_info"], "/more");
        // The worker is the account's, in the account's private directory.
        let private = account.home.join(".cache/cgi2wsgi");
        let pids = stamp_pids(&private);
        assert_eq!(pids.len(), 1, "one worker stamp in {}; suexec.log:\n{}\nerror log:\n{}", private.display(), suexec_log(log_from), server.log());
        assert_eq!(i64::from(pids[0]), third["pid"].as_i64().unwrap());
        assert_eq!(uid_of(pids[0]), Some(account.uid));
        let dir_mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700, "{}", private.display());

        // flask.cgi and doctor.cgi by the README's names (suEXEC runs them as `flask.cgi`).
        let r = s.get(&format!("{user}/flask.cgi/users/42"), &[]);
        assert_eq!((r.json()["user"].as_u64(), r.json()["link"].as_str()), (Some(42), Some(format!("{user}/flask.cgi/users/42").as_str())), "{}", r.text());
        let r = s.get(&format!("{user}/doctor.cgi?format=json"), &[]);
        assert_eq!(r.json()["environ"]["SCRIPT_NAME"], format!("{user}/doctor.cgi"), "{}", r.text());

        // htaccess-rewrite: pretty URLs reach the app, existing files are Apache's, and
        // CGIPassAuth passes the Authorization header through suEXEC.
        let r = s.get(&format!("{user}/blog/users/7"), &[]);
        assert_eq!(r.json()["link"], format!("{user}/blog/users/7"), "{}", r.text());
        let r = s.get(&format!("{user}/blog/robots.txt"), &[]);
        assert_eq!(r.text(), "User-agent: *\n");
        let r = s.get(&format!("{user}/blog/private"), &[("Authorization", "Basic ZGVtbzpzM2NyZXQ=")]);
        assert_eq!((r.status, r.text()), (200, "hello demo\n".to_owned()));
    }

    // The planted /tmp directory was not used: a's worker lives in a's home.
    assert_eq!(std::fs::read_dir(&planted).unwrap().count(), 0, "{planted} was written to");

    // b cannot connect to a's worker socket (the 0700 private directory is a's).
    let a_private = a.home.join(".cache/cgi2wsgi");
    let sock =
        std::fs::read_dir(&a_private).unwrap().flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "sock")).expect("a's worker socket");
    let r = s.get(&format!("/~c2w-test-b/app.cgi?connect={}", sock.display()), &[]).json();
    assert_eq!((r["uid"].as_u64(), r["connect"].as_str()), (Some(u64::from(b.uid)), Some("PermissionError")), "{r}");
    // a itself can (the probe is not vacuous).
    let r = s.get(&format!("/~c2w-test-a/app.cgi?connect={}", sock.display()), &[]).json();
    assert_eq!(r["connect"], "connected", "{r}");

    drop(server);
    drop(a);
    drop(b);
    let _ = std::fs::remove_dir_all(&planted);
}
