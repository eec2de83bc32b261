//! The FastCGI process model's recycling and failures, with real nginx in front of
//! cgi2wsgi: `--max-requests`, workers that crash or segfault, the memory a forked worker
//! does not share with its zygote (Flask), the default worker count, `--max-rss` and
//! `--timeout`. Harness: tests/common/workers.rs. The tests assert outcomes, never speed.

mod common;

use common::servers::path_str;
use common::workers::*;
use common::Fixture;
use std::time::{Duration, Instant};

/// `--max-requests 20`: 300 requests under load, none fails, and recycled workers mean
/// more than two distinct worker pids answered.
#[test]
fn max_requests_recycles_workers_without_failures() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2", "--max-requests", "20"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    let t0 = Instant::now();
    let outcomes = Load::start(stack.port(), "/app/work?2", LOAD_THREADS, 75).join();
    let failed = failures(&outcomes);
    let served = pids(&outcomes);
    eprintln!("[max-requests] {} requests, {} failed, {} distinct worker pids", outcomes.len(), failed.len(), served.len());
    assert_eq!(outcomes.len(), 300);
    assert!(failed.is_empty(), "{} requests failed while workers recycled:\n{}\n{}", failed.len(), list(&failed, t0), stack.logs());
    assert!(served.len() > 2, "300 requests with --max-requests 20 came from {served:?} only\n{}", stack.logs());
    assert!(stack.backend.log().contains("recycling after"), "{}", stack.logs());
    stack.backend.wait_workers(Duration::from_secs(10), "two workers after recycling", |w| w.len() == 2);
}

/// A worker that exits (os._exit) or segfaults mid-request: that request fails (502 from
/// nginx), the next one succeeds, the supervisor and zygote live on; a quick crash loop
/// is survived too.
#[test]
fn crashing_workers_are_replaced() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let port = stack.port();
    let zygotes = stack.backend.zygotes();
    let t0 = Instant::now();
    for (path, how) in [("/app/crash", "exit status 3"), ("/app/segv", "killed by signal 11"), ("/app/crash", "exit status 3"), ("/app/crash", "exit status 3")]
    {
        let before = stack.backend.workers();
        let crash = fetch(port, path, REQUEST_TIMEOUT);
        assert_eq!(crash.status, Some(502), "{path}: {}\n{}", crash.describe(t0), stack.logs());
        let next = fetch(port, "/app/", REQUEST_TIMEOUT);
        assert!(next.ok(), "the request after {path}: {}\n{}", next.describe(t0), stack.logs());
        eprintln!("[crash] {path}: {}; next: {}", crash.describe(t0), next.describe(t0));
        stack.backend.wait_workers(Duration::from_secs(25), "a replacement worker", |w| w.len() == 2 && *w != before);
        assert!(stack.backend.log().contains(how), "{path}: the log does not say {how:?}\n{}", stack.logs());
        if path.ends_with("segv") {
            assert!(stack.backend.log().contains("Fatal Python error: Segmentation fault"), "no faulthandler report\n{}", stack.logs());
        }
    }
    assert!(proc_stat(stack.backend.pid()).is_some_and(|(state, _, _)| state != 'Z'), "the supervisor died\n{}", stack.logs());
    assert_eq!(stack.backend.zygotes(), zygotes, "the zygote was replaced\n{}", stack.logs());
    let outcomes = Load::start(port, "/app/", 2, 10).join();
    assert!(failures(&outcomes).is_empty(), "after the crashes:\n{}", list(&failures(&outcomes), t0));
}

/// Memory a worker does not share: USS (Private_Clean + Private_Dirty in smaps_rollup).
fn uss_kib(pid: i32) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_else(|e| panic!("smaps_rollup of {pid}: {e}"));
    let field = |name: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("Private_Clean:") + field("Private_Dirty:"), field("Rss:"), field("Pss:"))
}

/// The Flask example with two workers: each worker's USS after a few requests.
fn flask_uss(extra: &[&str]) -> Vec<(i32, u64, u64, u64)> {
    let fx = Fixture::new(true);
    let app = fx.examples().join("flask/flaskapp.py");
    let venv = path_str(&fx.venv());
    let mut args = vec!["--workers", "2", "--venv", &venv];
    args.extend(extra);
    let stack = Stack::start(&fx, &app, &args);
    let workers = stack.backend.wait_workers(Duration::from_secs(20), "two workers", |w| w.len() == 2);
    let outcomes = Load::start(stack.port(), "/app/users/7", 2, 20).join();
    let root = Load::start(stack.port(), "/app/", 2, 5).join();
    let failed: Vec<&Outcome> = failures(&outcomes).into_iter().chain(failures(&root)).collect();
    assert!(failed.is_empty(), "Flask requests failed:\n{}\n{}", list(&failed, Instant::now()), stack.logs());
    assert_eq!(stack.backend.workers(), workers, "the workers changed");
    std::thread::sleep(Duration::from_millis(200));
    let mut out: Vec<(i32, u64, u64, u64)> = workers
        .iter()
        .map(|&p| {
            let (uss, rss, pss) = uss_kib(p);
            (p, uss, rss, pss)
        })
        .collect();
    for z in stack.backend.zygotes() {
        let (uss, rss, pss) = uss_kib(z);
        eprintln!("[uss {extra:?}] zygote {z}: USS {:.1} MiB, RSS {:.1} MiB, PSS {:.1} MiB", uss as f64 / 1024.0, rss as f64 / 1024.0, pss as f64 / 1024.0);
    }
    for (p, uss, rss, pss) in &out {
        eprintln!("[uss {extra:?}] worker {p}: USS {:.1} MiB, RSS {:.1} MiB, PSS {:.1} MiB", *uss as f64 / 1024.0, *rss as f64 / 1024.0, *pss as f64 / 1024.0);
    }
    out.sort();
    out
}

/// Forked from a zygote that imported Flask (and froze the GC), a worker shares most of
/// its memory: its USS stays small. `--lazy-apps` is measured for comparison.
#[test]
fn zygote_workers_share_memory() {
    let forked = flask_uss(&[]);
    let lazy = flask_uss(&["--lazy-apps"]);
    for (pid, uss, rss, _) in &forked {
        assert!(*uss <= 12 * 1024, "worker {pid}: USS {uss} KiB over 12 MiB (RSS {rss} KiB)");
        assert!(*uss > 0 && *rss > *uss, "worker {pid}: implausible USS {uss} KiB / RSS {rss} KiB");
    }
    for (pid, uss, rss, _) in &lazy {
        assert!(*uss > 0 && *rss >= *uss, "--lazy-apps worker {pid}: implausible USS {uss} KiB / RSS {rss} KiB");
    }
    let max = |v: &[(i32, u64, u64, u64)]| v.iter().map(|x| x.1).max().unwrap() as f64 / 1024.0;
    eprintln!("[uss] largest worker USS: forked {:.1} MiB, --lazy-apps {:.1} MiB", max(&forked), max(&lazy));
}

/// With `--bind` and no `--workers`: one worker per CPU.
#[test]
fn default_worker_count_is_one_per_cpu() {
    let (fx, app) = fixture();
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let stack = Stack::start(&fx, &app, &[]);
    warm_up(&stack);
    if cpus == 1 {
        // One worker is the process itself: no supervisor, no children.
        assert!(stack.backend.zygotes().is_empty(), "one CPU, yet children: {:?}", stack.backend.zygotes());
        return;
    }
    let workers = stack.backend.wait_workers(Duration::from_secs(10), "one worker per CPU", |w| w.len() == cpus);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stack.backend.workers(), workers, "{cpus} CPUs");
    assert!(stack.backend.log().contains(&format!("supervising {cpus} worker(s)")), "{}", stack.logs());
    eprintln!("[default workers] {cpus} CPUs, workers {workers:?}");
}

/// `--max-rss`: a worker whose memory passes the limit finishes its request, exits and is
/// replaced, without a failed request.
#[test]
fn max_rss_recycles_a_growing_worker() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2", "--max-rss", "60"]);
    let before = stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let t0 = Instant::now();
    // Each /hog keeps 8 MiB more in the worker that serves it.
    let mut outcomes = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stack.backend.log().contains("over --max-rss") && Instant::now() < deadline {
        outcomes.push(fetch(stack.port(), "/app/hog", REQUEST_TIMEOUT));
        std::thread::sleep(Duration::from_millis(100));
    }
    outcomes.extend(Load::start(stack.port(), "/app/", 2, 10).join());
    let failed = failures(&outcomes);
    eprintln!("[max-rss] {} requests, {} failed", outcomes.len(), failed.len());
    assert!(stack.backend.log().contains("over --max-rss"), "no worker was recycled for its RSS\n{}", stack.logs());
    assert!(failed.is_empty(), "requests failed:\n{}\n{}", list(&failed, t0), stack.logs());
    stack.backend.wait_workers(Duration::from_secs(10), "a fresh worker", |w| w.len() == 2 && *w != before);
}

/// `--timeout`: a request stuck past it is answered 504 through nginx, the log shows the
/// Python stack of the stuck frame, its worker is replaced, and the service goes on.
#[test]
fn stuck_request_hits_the_timeout() {
    let (fx, app) = fixture();
    let stack = Stack::start(&fx, &app, &["--workers", "2", "--timeout", "2"]);
    stack.backend.wait_workers(Duration::from_secs(10), "two workers", |w| w.len() == 2);
    warm_up(&stack);
    let port = stack.port();
    let before = stack.backend.workers();
    let t0 = Instant::now();
    // /slow?30 sleeps 30 s: far past the 2 s timeout.
    let stuck = fetch(port, "/app/slow?30", REQUEST_TIMEOUT);
    assert_eq!(stuck.status, Some(504), "{}\n{}", stuck.describe(t0), stack.logs());
    assert!(stuck.end.duration_since(stuck.start) < Duration::from_secs(20), "the timeout did not cut the request: {}", stuck.describe(t0));
    assert!(stack.backend.wait_log("over --timeout 2 s", Duration::from_secs(5)), "no timeout line\n{}", stack.logs());
    // faulthandler's dump names the app's file and function where it was stuck.
    let frame = format!("File \"{}\"", app.display());
    assert!(
        stack.backend.wait_log(&frame, Duration::from_secs(5)) && stack.backend.log().contains("in application"),
        "no Python stack in the log\n{}",
        stack.logs()
    );
    stack.backend.wait_workers(Duration::from_secs(25), "a replacement worker", |w| w.len() == 2 && *w != before);
    let outcomes = Load::start(port, "/app/", 2, 10).join();
    assert!(failures(&outcomes).is_empty(), "after the timeout:\n{}", list(&failures(&outcomes), t0));
}
