//! The FastCGI process model under load and signals, with real nginx in front of cgi2wsgi
//! over a unix socket: a worker killed with SIGKILL, SIGTERM and SIGHUP to the supervisor,
//! a reload to a broken app (also with `--lazy-apps`), `--reload`, a second SIGHUP during a
//! reload and SIGHUP to a single process. Recycling, crashes and memory are in
//! tests/workers_recycling.rs; the harness (processes via /proc, the nginx stack, the load
//! client) is tests/common/workers.rs. The tests assert outcomes, never speed, and every
//! process started is stopped by PID.

mod common;

use common::workers::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// SIGKILL one of two workers mid-load: only requests in flight at that moment may fail
/// (at most one per load thread), the zygote forks a replacement, and requests go on.
#[test]
fn sigkill_of_a_worker_under_load() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2"]);
    let before = stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let t0 = Instant::now();
    let load = Load::start(stack.port(), "/app/work?20", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(1000));
    let victim = *before.iter().next().unwrap();
    let killed_at = Instant::now();
    signal(victim, libc::SIGKILL);
    let after = stack.backend.wait_workers(Duration::from_secs(10), "a replacement worker", |w| w.len() == 2 && !w.contains(&victim));
    let replaced_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let outcomes = load.finish();
    let failed = failures(&outcomes);
    eprintln!("[sigkill] {} requests, {} failed; workers {before:?} -> {after:?}", outcomes.len(), failed.len());
    assert!(
        failed.len() <= LOAD_THREADS,
        "{} requests failed (at most the {LOAD_THREADS} in flight may):\n{}\n{}",
        failed.len(),
        list(&failed, t0),
        stack.logs()
    );
    let late: Vec<&Outcome> = failed.iter().copied().filter(|o| o.start > killed_at).collect();
    assert!(late.is_empty(), "requests sent after the kill failed:\n{}\n{}", list(&late, t0), stack.logs());
    let later: Vec<&Outcome> = outcomes.iter().filter(|o| o.start > replaced_at).collect();
    assert!(later.len() >= 10, "only {} requests after the replacement", later.len());
    assert!(pids(&outcomes).contains(after.difference(&before).next().unwrap()), "the replacement worker never served");
    assert!(stack.backend.log().contains(&format!("worker {victim} died (killed by signal 9)")), "{}", stack.logs());
}

/// SIGTERM to the supervisor while a slow request is in flight: that request completes,
/// the supervisor exits 0 within the graceful timeout, no process of it remains.
#[test]
fn sigterm_to_the_supervisor_drains_requests_in_flight() {
    let (fx, app) = fixture();
    let mut stack = Stack::start(&fx, &app, &["--workers", "2", "--graceful-timeout", "10"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let family = stack.backend.family();
    assert_eq!(family.len(), 3, "zygote + two workers: {family:?}");
    let port = stack.port();
    let t0 = Instant::now();
    let load = Load::start(port, "/app/work?5", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(700));
    let marker = app.parent().unwrap().join("slow.started");
    let slow = std::thread::spawn(move || fetch(port, "/app/slow?1.5", REQUEST_TIMEOUT));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the slow request never started\n{}", stack.logs());
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let term_at = Instant::now();
    signal(stack.backend.pid(), libc::SIGTERM);
    let load_outcomes = load.finish();
    let slow = slow.join().unwrap();
    let status = stack.backend.wait_exit(Duration::from_secs(10));
    let exited_after = term_at.elapsed();
    let answered_before: Vec<&Outcome> = load_outcomes.iter().filter(|o| o.end < term_at).collect();
    let failed_before: Vec<&Outcome> = answered_before.iter().copied().filter(|o| !o.ok()).collect();
    let in_flight_failed: Vec<&Outcome> = load_outcomes.iter().filter(|o| o.start < term_at && o.end >= term_at && !o.ok()).collect();
    eprintln!(
        "[sigterm] {} requests answered before SIGTERM ({} failed); in flight at SIGTERM and failed: {}; slow request {}; exit {status:?} after {exited_after:?}",
        answered_before.len(),
        failed_before.len(),
        in_flight_failed.len(),
        slow.describe(t0)
    );
    assert!(!answered_before.is_empty(), "no load before the SIGTERM");
    assert!(failed_before.is_empty(), "requests failed before the stop:\n{}\n{}", list(&failed_before, t0), stack.logs());
    assert_eq!(slow.served_by().map(|(v, _)| v), Some("v1".to_owned()), "the slow request in flight: {}\n{}", slow.describe(t0), stack.logs());
    let status = status.unwrap_or_else(|| panic!("the supervisor did not exit within the graceful timeout (10 s)\n{}", stack.logs()));
    assert_eq!(status.code(), Some(0), "supervisor exit status\n{}", stack.logs());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<i32> = family.iter().filter(|(p, s)| running(*p, *s)).map(|(p, _)| *p).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "processes of the stopped instance remain: {left:?}\n{}", stack.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGHUP after the app file changed: no request fails, the answers turn to the new
/// version, and they come from new workers; the old ones drain and exit.
#[test]
fn sighup_reloads_the_changed_app_without_failures() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2"]);
    let old = stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let port = stack.port();
    let t0 = Instant::now();
    let load = Load::start(port, "/app/work?10", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(1000));
    edit_app(&app, "VERSION = \"v2-reloaded\"");
    let hup_at = Instant::now();
    signal(stack.backend.pid(), libc::SIGHUP);
    let mut probes = Vec::new();
    let reloaded = probe_until(port, Duration::from_secs(20), &mut probes, |o| o.served_by().is_some_and(|(v, _)| v == "v2-reloaded"));
    let first_v2 = Instant::now();
    std::thread::sleep(Duration::from_millis(2500));
    let outcomes = load.finish();
    let all: Vec<Outcome> = outcomes.iter().chain(&probes).cloned().collect();
    let failed = failures(&all);
    eprintln!("[sighup] {} requests, {} failed; versions {:?}; reload seen after {:?}", all.len(), failed.len(), versions(&all), first_v2 - hup_at);
    assert!(reloaded, "no v2 answer within 20 s of SIGHUP\n{}", stack.logs());
    assert!(failed.is_empty(), "requests failed across the reload:\n{}\n{}", list(&failed, t0), stack.logs());
    // Old workers may finish requests they took just before they were told to stop.
    let settled: Vec<Outcome> = all.iter().filter(|o| o.start > first_v2 + Duration::from_millis(1000)).cloned().collect();
    assert!(settled.len() >= 10, "only {} requests after the reload", settled.len());
    assert_eq!(versions(&settled), BTreeSet::from(["v2-reloaded".to_owned()]), "answers after the reload");
    let new_pids = pids(&settled);
    assert!(new_pids.is_disjoint(&old), "old workers {old:?} still serve after the reload: {new_pids:?}");
    let now = stack.backend.wait_workers(Duration::from_secs(15), "the old generation gone", |w| w.len() == 2 && w.is_disjoint(&old));
    assert_eq!(stack.backend.zygotes().len(), 1, "zygotes after the reload");
    eprintln!("[sighup] workers {old:?} -> {now:?}");
}

/// SIGHUP with a syntax error in the app: the new generation is dropped, the old workers
/// keep serving v1 without a failure, and the log says the reload failed.
#[test]
fn sighup_to_a_broken_app_keeps_the_old_workers() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2"]);
    let old = stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let t0 = Instant::now();
    let load = Load::start(stack.port(), "/app/work?10", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(800));
    edit_app(&app, "VERSION = \"v2\"\ndef broken(:\n    pass");
    signal(stack.backend.pid(), libc::SIGHUP);
    let logged = stack.backend.wait_log("reload failed", Duration::from_secs(15));
    let failed_at = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let outcomes = load.finish();
    let failed = failures(&outcomes);
    let after: Vec<Outcome> = outcomes.iter().filter(|o| o.start > failed_at).cloned().collect();
    eprintln!(
        "[broken reload] {} requests ({} after the failed reload), {} failed; versions {:?}",
        outcomes.len(),
        after.len(),
        failed.len(),
        versions(&outcomes)
    );
    assert!(logged, "the log does not say the reload failed\n{}", stack.logs());
    assert!(failed.is_empty(), "requests failed:\n{}\n{}", list(&failed, t0), stack.logs());
    assert!(after.len() >= 10, "only {} requests after the failed reload", after.len());
    assert_eq!(versions(&outcomes), BTreeSet::from(["v1".to_owned()]));
    assert!(pids(&after).is_subset(&old), "answers after the failed reload came from {:?}, not the old workers {old:?}", pids(&after));
    assert_eq!(stack.backend.workers(), old, "the old workers are no longer all there\n{}", stack.logs());
    assert!(stack.backend.log().contains("SyntaxError"), "{}", stack.logs());
}

/// `--reload`: editing the app file brings the new code within ~10 s, with no failures.
#[test]
fn reload_flag_picks_up_an_edited_file() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2", "--reload"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let port = stack.port();
    let t0 = Instant::now();
    let load = Load::start(port, "/app/work?10", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(1200));
    edit_app(&app, "VERSION = \"v2-watched\"");
    let edited_at = Instant::now();
    let mut probes = Vec::new();
    let reloaded = probe_until(port, Duration::from_secs(10), &mut probes, |o| o.served_by().is_some_and(|(v, _)| v == "v2-watched"));
    let seen_after = edited_at.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let outcomes = load.finish();
    let all: Vec<Outcome> = outcomes.iter().chain(&probes).cloned().collect();
    let failed = failures(&all);
    eprintln!("[--reload] {} requests, {} failed; new code seen {seen_after:?} after the edit; load saw {:?}", all.len(), failed.len(), versions(&outcomes));
    assert!(reloaded, "the edit was not picked up within 10 s\n{}", stack.logs());
    assert!(failed.is_empty(), "requests failed across the reload:\n{}\n{}", list(&failed, t0), stack.logs());
    assert!(stack.backend.log().contains("app files changed"), "{}", stack.logs());
}

/// `--lazy-apps` and SIGHUP to a broken app: as without it (README: "If the new app fails
/// to import, the old workers keep serving"), the old workers must keep serving v1.
#[test]
fn lazy_apps_sighup_to_a_broken_app_keeps_the_old_workers() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2", "--lazy-apps"]);
    let old = stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let t0 = Instant::now();
    let load = Load::start_with_timeout(stack.port(), "/app/work?10", LOAD_THREADS, 100_000, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(800));
    edit_app(&app, "VERSION = \"v2\"\ndef broken(:\n    pass");
    signal(stack.backend.pid(), libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(3000));
    let outcomes = load.finish();
    let failed = failures(&outcomes);
    eprintln!(
        "[lazy broken reload] {} requests, {} failed; versions {:?}; workers {old:?} -> {:?}",
        outcomes.len(),
        failed.len(),
        versions(&outcomes),
        stack.backend.workers()
    );
    assert!(
        failed.is_empty(),
        "{} requests failed after a reload to a broken app with --lazy-apps:\n{}\n{}",
        failed.len(),
        list(&failed[..failed.len().min(8)], t0),
        stack.logs()
    );
    assert!(stack.backend.log().contains("reload failed"), "the log does not say the reload failed\n{}", stack.logs());
    assert_eq!(stack.backend.workers(), old, "the old workers are no longer all there\n{}", stack.logs());
}

/// Two SIGHUPs in quick succession (a deploy script, `systemctl reload` twice) while the
/// new app is still importing: both are reloads of a good app, so nothing may fail and the
/// log must not claim that a reload failed.
#[test]
fn second_sighup_during_a_reload_is_not_a_failed_reload() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let port = stack.port();
    let t0 = Instant::now();
    let load = Load::start(port, "/app/work?10", LOAD_THREADS, 100_000);
    std::thread::sleep(Duration::from_millis(500));
    // The new app takes a second to import.
    edit_app(&app, "VERSION = \"v2-slow-import\"\ntime.sleep(1)");
    signal(stack.backend.pid(), libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(300));
    signal(stack.backend.pid(), libc::SIGHUP);
    let mut probes = Vec::new();
    let reloaded = probe_until(port, Duration::from_secs(20), &mut probes, |o| o.served_by().is_some_and(|(v, _)| v == "v2-slow-import"));
    std::thread::sleep(Duration::from_millis(500));
    let outcomes = load.finish();
    let all: Vec<Outcome> = outcomes.iter().chain(&probes).cloned().collect();
    let failed = failures(&all);
    eprintln!("[double sighup] {} requests, {} failed; versions {:?}", all.len(), failed.len(), versions(&all));
    assert!(reloaded, "no v2 answer within 20 s\n{}", stack.logs());
    assert!(failed.is_empty(), "requests failed:\n{}\n{}", list(&failed, t0), stack.logs());
    assert!(!stack.backend.log().contains("reload failed"), "a reload of a good app was logged as failed\n{}", stack.logs());
}

/// One process (`--workers 1`, no lifecycle option: no supervisor) sent SIGHUP, as
/// `systemctl reload` would: it must not die of it (reload, or at least ignore it).
#[test]
fn single_process_survives_sighup() {
    let (fx, app) = fixture();
    let mut stack = Stack::start(&fx, &app, &["--workers", "1"]);
    warm_up(&stack);
    signal(stack.backend.pid(), libc::SIGHUP);
    let exit = stack.backend.wait_exit(Duration::from_secs(2));
    use std::os::unix::process::ExitStatusExt;
    assert!(
        exit.is_none(),
        "cgi2wsgi --workers 1 died of SIGHUP (exit code {:?}, signal {:?})\n{}",
        exit.and_then(|e| e.code()),
        exit.and_then(|e| e.signal()),
        stack.logs()
    );
    let after = fetch(stack.port(), "/app/", REQUEST_TIMEOUT);
    assert!(after.ok(), "after SIGHUP: {}\n{}", after.describe(Instant::now()), stack.logs());
}
