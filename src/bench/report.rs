//! The results: a table for people, JSON for scripts, both from the same figures, with the
//! machine they were measured on.

use super::cgi_runs::{CgiResult, PHASES};
use super::persistent::PersistentResult;
use super::stats::Summary;
use super::{BenchArgs, Target};
use serde_json::{json, Value};
use std::fmt::Write;

/// The machine, as far as a reader of the figures needs it.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub os: String,
    pub python: String,
    pub cgi2wsgi: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model =
            cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_owned()).unwrap_or_default();
        let meminfo = read("/proc/meminfo");
        let kib: f64 = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0.0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map_or_else(|| "unknown OS".into(), |v| v.trim_matches('"').to_owned());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            memory_gib: (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            os,
            python: crate::wsgi::interp::linked_version(),
            cgi2wsgi: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    pub fn describe(&self) -> String {
        let model = if self.cpu_model.is_empty() { String::new() } else { format!(" ({})", self.cpu_model) };
        format!("{} CPUs{model}, {} GiB, {}, Python {}, cgi2wsgi {}", self.cpus, self.memory_gib, self.os, self.python, self.cgi2wsgi)
    }
}

pub struct Report {
    pub app: String,
    pub request: String,
    pub machine: Machine,
    pub duration_s: f64,
    pub cgi: CgiResult,
    pub persistent: PersistentResult,
    pub wsgiref: Option<CgiResult>,
    /// `None` with `--no-accelerated`; `fallback` set when the accelerator served in-process.
    pub accelerated: Option<CgiResult>,
    /// Where the accelerator kept its socket, stamp and log (inside the bench's temp dir).
    pub persist_dir: std::path::PathBuf,
}

fn ratio_text(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

pub(crate) fn ms(x: f64) -> String {
    if x < 0.01 {
        format!("{:.1} µs", x * 1000.0)
    } else if x < 1.0 {
        format!("{:.0} µs", x * 1000.0)
    } else if x >= 100.0 {
        format!("{x:.0} ms")
    } else if x >= 10.0 {
        format!("{x:.1} ms")
    } else {
        format!("{x:.2} ms")
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

impl Report {
    pub fn new(
        target: &Target,
        args: &BenchArgs,
        cgi: CgiResult,
        persistent: PersistentResult,
        wsgiref: Option<CgiResult>,
        accelerated: Option<CgiResult>,
        persist_dir: std::path::PathBuf,
    ) -> Report {
        let query = if target.query.is_empty() { String::new() } else { format!("?{}", target.query) };
        Report {
            app: target.app.clone(),
            request: format!("GET {}{query}", target.path_info),
            machine: Machine::probe(),
            duration_s: super::total_secs(args),
            cgi,
            persistent,
            wsgiref,
            accelerated,
            persist_dir,
        }
    }

    /// The accelerated runs, when they were measured (not skipped, no fallback).
    pub fn accelerated_measured(&self) -> Option<&CgiResult> {
        self.accelerated.as_ref().filter(|a| a.fallback.is_none() && !a.runs.is_empty())
    }

    /// The persistent level the CGI figure is set against: the lowest concurrency
    /// (one request at a time, as a cold CGI run is).
    #[allow(clippy::expect_used, reason = "clap takes at least one --concurrency value, and each level gives one result")]
    pub fn baseline(&self) -> &super::persistent::Level {
        self.persistent.levels.iter().min_by_key(|l| l.concurrency).expect("at least one level was measured")
    }

    /// CGI median over the persistent median at the lowest concurrency.
    pub fn cgi_over_persistent(&self) -> f64 {
        Summary::of(&self.cgi.totals()).p50 / Summary::of(&self.baseline().latencies).p50
    }

    pub fn to_json(&self) -> Value {
        let total = Summary::of(&self.cgi.totals());
        let phases: serde_json::Map<String, Value> =
            PHASES.iter().enumerate().map(|(i, (key, _))| (key.to_string(), Summary::of(&self.cgi.phase(i)).to_json())).collect();
        let sum_of_medians: f64 = (0..PHASES.len()).map(|i| Summary::of(&self.cgi.phase(i)).p50).sum();
        let breakdown = self.cgi.median_run_breakdown().map(|(b, n)| {
            let mut m: serde_json::Map<String, Value> = PHASES.iter().zip(b).map(|((key, _), v)| (format!("{key}_ms"), json!(round(v, 3)))).collect();
            m.insert("total_ms".into(), json!(round(b.iter().sum(), 3)));
            m.insert("runs".into(), json!(n));
            Value::Object(m)
        });
        let levels: Vec<Value> = self
            .persistent
            .levels
            .iter()
            .map(|l| {
                let s = Summary::of(&l.latencies);
                json!({
                    "concurrency": l.concurrency, "requests": l.latencies.len(), "seconds": round(l.seconds, 3),
                    "req_per_s": round(l.req_per_s(), 1), "p50_ms": round(s.p50, 4), "p90_ms": round(s.p90, 4),
                    "p99_ms": round(s.p99, 4), "max_ms": round(s.max, 4), "mean_ms": round(s.mean, 4),
                })
            })
            .collect();
        let samples = |r: &CgiResult| r.totals().iter().map(|&ns| round(ns as f64 / 1e6, 3)).collect::<Vec<_>>();
        let wsgiref = self.wsgiref.as_ref().map(|w| json!({ "runs": w.runs.len(), "total": Summary::of(&w.totals()).to_json(), "samples_ms": samples(w) }));
        let mut ratios = json!({ "cgi_over_persistent": round(self.cgi_over_persistent(), 2) });
        if let Some(w) = &self.wsgiref {
            ratios["wsgiref_over_cgi"] = json!(round(Summary::of(&w.totals()).p50 / total.p50, 3));
        }
        if let Some(a) = self.accelerated_measured() {
            let warm = Summary::of(&a.totals()).p50;
            ratios["accelerated_over_persistent"] = json!(round(warm / Summary::of(&self.baseline().latencies).p50, 2));
            ratios["cgi_over_accelerated"] = json!(round(total.p50 / warm, 2));
        }
        let accelerated = self.accelerated.as_ref().map(|a| {
            let measured = a.fallback.is_none() && !a.runs.is_empty();
            json!({
                "command": "cgi2wsgi --mode cgi --persist --persist-dir DIR APP",
                // Both gone once the bench ends: the worker stopped by PID, DIR removed.
                "persist_dir": self.persist_dir.display().to_string(),
                "worker_pid": a.worker_pid,
                "fallback": a.fallback,
                "cold_ms": a.first.as_ref().filter(|_| measured).map(|r| round(r.total_ns as f64 / 1e6, 3)),
                "runs": a.runs.len(),
                "warm": if measured { Summary::of(&a.totals()).to_json() } else { Value::Null },
                "samples_ms": samples(a),
            })
        });
        json!({
            "app": self.app,
            "request": self.request,
            "machine": {
                "cpus": self.machine.cpus, "cpu_model": self.machine.cpu_model, "memory_gib": self.machine.memory_gib,
                "os": self.machine.os, "python": self.machine.python, "cgi2wsgi": self.machine.cgi2wsgi,
            },
            "budget_s": self.duration_s,
            "cgi": {
                "runs": self.cgi.runs.len(),
                "total": total.to_json(),
                "phases": phases,
                "phases_median_sum_ms": round(sum_of_medians, 3),
                "median_run_breakdown": breakdown,
                "samples_ms": samples(&self.cgi),
            },
            "persistent": {
                "transport": "unix socket, one kept-alive FastCGI connection per client thread",
                "workers": self.persistent.workers,
                "threads": self.persistent.threads,
                "levels": levels,
            },
            "accelerated": accelerated.unwrap_or(Value::Null),
            "wsgiref": wsgiref.unwrap_or(Value::Null),
            "ratios": ratios,
        })
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        let total = Summary::of(&self.cgi.totals());
        let _ = writeln!(t, "cgi2wsgi bench: {} ({})", self.app, self.request);
        let _ = writeln!(t, "machine: {}", self.machine.describe());
        let _ = writeln!(t);
        let title = format!("CGI: a process per request, {} runs", self.cgi.runs.len());
        let typical = self.cgi.median_run_breakdown().map_or([f64::NAN; 5], |(b, _)| b);
        let typical_sum: f64 = typical.iter().sum();
        let _ = writeln!(t, "{title:<42} {:>12} {:>12} {:>10}", "median run", "median", "p95");
        for (i, (_, label)) in PHASES.iter().enumerate() {
            let s = Summary::of(&self.cgi.phase(i));
            let share = format!("{} {:>3.0}%", ms(typical[i]), 100.0 * typical[i] / typical_sum);
            let _ = writeln!(t, "  {label:<40} {share:>12} {:>12} {:>10}", ms(s.p50), ms(s.p95));
        }
        let _ = writeln!(t, "  {:<40} {:>12} {:>12} {:>10}", "total (spawn → reaped)", ms(typical_sum), ms(total.p50), ms(total.p95));
        let _ = writeln!(t, "  (median run: the phases averaged over the runs whose totals are the middle fifth)");
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "Persistent FastCGI ({} worker{} × {} thread{}, unix socket, kept-alive connections)",
            self.persistent.workers,
            if self.persistent.workers == 1 { "" } else { "s" },
            self.persistent.threads,
            if self.persistent.threads == 1 { "" } else { "s" }
        );
        let _ = writeln!(t, "  {:>11} {:>10} {:>10} {:>11} {:>11}", "concurrency", "requests", "req/s", "p50", "p99");
        for l in &self.persistent.levels {
            let s = Summary::of(&l.latencies);
            let _ = writeln!(t, "  {:>11} {:>10} {:>10.0} {:>11} {:>11}", l.concurrency, l.latencies.len(), l.req_per_s(), ms(s.p50), ms(s.p99));
        }
        if let Some(a) = &self.accelerated {
            let _ = writeln!(t);
            match (&a.fallback, a.first.as_ref()) {
                (None, Some(first)) if !a.runs.is_empty() => {
                    let s = Summary::of(&a.totals());
                    let _ = writeln!(t, "Accelerated CGI (--mode cgi --persist: the CGI process relays to a worker; whole runs)");
                    let _ = writeln!(t, "  {:<40} {:>12}", "first run (starts the worker)", ms(first.total_ns as f64 / 1e6));
                    let _ = writeln!(t, "  {:<40} {:>12} {:>10}", format!("warm runs ({}): median, p95", a.runs.len()), ms(s.p50), ms(s.p95));
                }
                (why, _) => {
                    let why = why.as_deref().unwrap_or("no run was made");
                    let _ = writeln!(t, "Accelerated CGI: not measured, the accelerator served in-process: {why}");
                }
            }
        }
        if let Some(w) = &self.wsgiref {
            let s = Summary::of(&w.totals());
            let _ = writeln!(t);
            let _ = writeln!(t, "wsgiref.handlers.CGIHandler ({} cold runs): median {}, p95 {}", w.runs.len(), ms(s.p50), ms(s.p95));
        }
        let _ = writeln!(t);
        let base = Summary::of(&self.baseline().latencies);
        let ratio = self.cgi_over_persistent();
        let _ = writeln!(
            t,
            "CGI costs {}× a persistent request for this app ({} against {}, medians, concurrency {}).",
            ratio_text(ratio),
            ms(total.p50),
            ms(base.p50),
            self.baseline().concurrency
        );
        if let Some(a) = self.accelerated_measured() {
            let warm = Summary::of(&a.totals()).p50;
            let _ =
                writeln!(t, "Accelerated CGI costs {}× a persistent request ({} against {}, medians).", ratio_text(warm / base.p50), ms(warm), ms(base.p50));
            let _ = writeln!(t, "In-process CGI costs {}× accelerated CGI ({} against {}, medians).", ratio_text(total.p50 / warm), ms(total.p50), ms(warm));
        }
        let startup = typical[0] + typical[1] + typical[2];
        let _ = writeln!(
            t,
            "Process start, interpreter init and app import are {:.0}% of a CGI request: the part a persistent worker pays once.",
            100.0 * startup / typical_sum
        );
        if let Some(w) = &self.wsgiref {
            let r = Summary::of(&w.totals()).p50 / total.p50;
            let _ = writeln!(t, "wsgiref's CGIHandler takes {r:.2}× cgi2wsgi's CGI time for the same request.");
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(ms(0.0042), "4.2 µs");
        assert_eq!(ms(0.081), "81 µs");
        assert_eq!(ms(9.784), "9.78 ms");
        assert_eq!(ms(13.04), "13.0 ms");
        assert_eq!(ms(131.2), "131 ms");
    }
}
