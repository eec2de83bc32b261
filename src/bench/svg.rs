//! `--plot FILE.svg`: the latency distributions side by side on one log-scale axis (a strip
//! of points per mode with its box: quartiles, p5–p95 whiskers, median; cold CGI, warm
//! accelerated CGI, wsgiref, each FastCGI concurrency level), and a median CGI
//! run's phases as one stacked bar. Hand-written SVG: no plotting dependency (PNG via rsvg-convert).

use super::cgi_runs::PHASES;
use super::report::Report;
use super::stats::quantile;
use super::BenchError;
use std::fmt::Write;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 230.0;
const RIGHT: f64 = 40.0;
const ROW: f64 = 56.0;
const TOP: f64 = 64.0;
const COLORS: [&str; 5] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1"];
const ACCEL_COLOR: &str = "#76b7b2";

/// Escape text for an SVG text node or attribute.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

struct Row {
    label: String,
    sorted: Vec<u64>,
    color: &'static str,
}

/// A strip of at most `n` points standing for the distribution: evenly spaced quantiles.
fn strip(sorted: &[u64], n: usize) -> Vec<f64> {
    let k = sorted.len().min(n);
    (0..k).map(|i| quantile(sorted, (i as f64 + 0.5) / k as f64)).collect()
}

/// Write the plot: SVG, or PNG (by the file's extension) through `rsvg-convert` when it is
/// installed (librsvg2-bin), so no image library is linked in.
pub fn write(path: &std::path::Path, report: &Report) -> Result<(), BenchError> {
    let svg = render(report);
    let what = || format!("--plot {}", path.display());
    if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
        return std::fs::write(path, svg).map_err(BenchError::io(what()));
    }
    let mut child = std::process::Command::new("rsvg-convert")
        .args(["--format", "png", "--output"])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::BadApp(format!("{}: PNG needs rsvg-convert (apt-get install librsvg2-bin), or write FILE.svg: {e}", what())))?;
    let fed = child.stdin.take().map(|mut stdin| std::io::Write::write_all(&mut stdin, svg.as_bytes()));
    let status = child.wait().map_err(BenchError::io(what()))?;
    match fed {
        Some(Ok(())) if status.success() => Ok(()),
        _ => Err(BenchError::BadApp(format!("{}: rsvg-convert failed ({status})", what()))),
    }
}

/// The log axis: whole decades that hold every point (ms).
struct Axis {
    lo: f64,
    hi: f64,
}

impl Axis {
    fn over(rows: &[Row]) -> Axis {
        // ns → ms.
        let all_min = rows.iter().filter_map(|r| r.sorted.first()).min().copied().unwrap_or(1_000) as f64 / 1e6;
        let all_max = rows.iter().filter_map(|r| r.sorted.last()).max().copied().unwrap_or(1_000_000) as f64 / 1e6;
        let lo = all_min.max(1e-4).log10().floor();
        Axis { lo, hi: all_max.max(1e-4).log10().ceil().max(lo + 1.0) }
    }

    /// The x coordinate of `ms`.
    fn x(&self, ms: f64) -> f64 {
        LEFT + (ms.max(1e-4).log10() - self.lo) / (self.hi - self.lo) * (WIDTH - LEFT - RIGHT)
    }
}

/// One row per mode, each sorted.
fn rows(report: &Report) -> Vec<Row> {
    let mut rows = vec![Row { label: format!("CGI, cold (cgi2wsgi, {} runs)", report.cgi.runs.len()), sorted: report.cgi.totals(), color: COLORS[0] }];
    if let Some(w) = &report.wsgiref {
        rows.push(Row { label: format!("CGI, cold (wsgiref, {} runs)", w.runs.len()), sorted: w.totals(), color: COLORS[1] });
    }
    // The warm accelerated runs (the first, which started the worker, is in the table).
    if let Some(a) = report.accelerated_measured() {
        rows.push(Row { label: format!("CGI, accelerated ({} warm runs)", a.runs.len()), sorted: a.totals(), color: ACCEL_COLOR });
    }
    for (i, l) in report.persistent.levels.iter().enumerate() {
        rows.push(Row {
            label: format!("FastCGI, concurrency {} ({} req)", l.concurrency, l.latencies.len()),
            sorted: l.latencies.clone(),
            color: COLORS[2 + i % 3],
        });
    }
    for r in &mut rows {
        r.sorted.sort_unstable();
    }
    rows
}

pub fn render(report: &Report) -> String {
    let rows = rows(report);
    let axis = Axis::over(&rows);
    let plot_bottom = TOP + rows.len() as f64 * ROW;
    let height = plot_bottom + 60.0 + 120.0;
    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="16" y="24" font-size="16" font-weight="bold">cgi2wsgi bench: {} ({})</text>"#, esc(&report.app), esc(&report.request));
    let _ = writeln!(s, r#"<text x="16" y="44" fill="dimgray">{}; latency per request, log scale</text>"#, esc(&report.machine.describe()));
    grid(&mut s, &axis, plot_bottom);
    for (i, r) in rows.iter().enumerate() {
        row(&mut s, &axis, r, TOP + i as f64 * ROW + ROW / 2.0);
    }
    let _ = writeln!(s, r#"<text x="{LEFT}" y="{:.1}" fill="dimgray">box: quartiles; whiskers: p5–p95; black bar: median</text>"#, plot_bottom + 34.0);
    phases(&mut s, report, plot_bottom + 70.0);
    let _ = writeln!(s, "</svg>");
    s
}

/// Grid: decades, labelled; 2× and 5× ticks faint.
fn grid(s: &mut String, axis: &Axis, plot_bottom: f64) {
    let mut decade = axis.lo;
    while decade <= axis.hi {
        for m in [1u8, 2, 5] {
            let v = 10f64.powf(decade) * f64::from(m);
            if v.log10() > axis.hi + 1e-9 {
                break;
            }
            let gx = axis.x(v);
            let (stroke, label) = if m == 1 { ("#bbb", true) } else { ("#eee", false) };
            let _ = writeln!(s, r#"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{plot_bottom}" stroke="{stroke}"/>"#);
            if label || axis.hi - axis.lo <= 2.0 {
                let text = if v >= 1.0 { format!("{v:.0} ms") } else { format!("{} ms", (v * 1e4).round() / 1e4) };
                let _ = writeln!(s, r#"<text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="dimgray">{text}</text>"#, plot_bottom + 16.0);
            }
        }
        decade += 1.0;
    }
}

/// One mode's row, centred on `mid`: its label, a strip of points, the box and the median.
fn row(s: &mut String, axis: &Axis, r: &Row, mid: f64) {
    let x = |ms: f64| axis.x(ms);
    let _ = writeln!(s, r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 10.0, mid + 4.0, esc(&r.label));
    if r.sorted.is_empty() {
        return;
    }
    let q = |p: f64| quantile(&r.sorted, p) / 1e6;
    // Points spread over the row's height, deterministically.
    for (k, v) in strip(&r.sorted, 400).iter().enumerate() {
        let jitter = ((k * 7919) % 97) as f64 / 97.0 - 0.5;
        let _ = writeln!(s, r#"<circle cx="{:.1}" cy="{:.1}" r="1.8" fill="{}" fill-opacity="0.35"/>"#, x(v / 1e6), mid + jitter * ROW * 0.7, r.color);
    }
    let (p5, p25, p50, p75, p95) = (q(0.05), q(0.25), q(0.5), q(0.75), q(0.95));
    let _ = writeln!(s, r#"<line x1="{:.1}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="{}" stroke-width="1.5"/>"#, x(p5), x(p95), r.color);
    let _ = writeln!(
        s,
        r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
        x(p25),
        mid - ROW * 0.25,
        (x(p75) - x(p25)).max(1.0),
        ROW * 0.5,
        r.color
    );
    let _ = writeln!(
        s,
        r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black" stroke-width="2.5"/>"#,
        x(p50),
        mid - ROW * 0.3,
        x(p50),
        mid + ROW * 0.3
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
        x(p50) + 4.0,
        mid - ROW * 0.3 + 2.0,
        esc(&format!("median {}", super::report::ms(p50)))
    );
}

/// The CGI run's phases, medians stacked (linear scale), at `by`.
fn phases(s: &mut String, report: &Report, by: f64) {
    let medians = report.cgi.median_run_breakdown().map_or([0.0; 5], |(b, _)| b);
    let sum: f64 = medians.iter().sum();
    let _ = writeln!(
        s,
        r#"<text x="16" y="{:.1}" font-weight="bold">A median CGI run, phase by phase ({sum:.1} ms; the middle fifth of the runs averaged)</text>"#,
        by - 10.0
    );
    let scale = (WIDTH - 32.0) / sum.max(1e-9);
    let mut at = 16.0;
    for (i, ((_, label), m)) in PHASES.iter().zip(&medians).enumerate() {
        let w = m * scale;
        let _ = writeln!(s, r#"<rect x="{at:.1}" y="{by:.1}" width="{w:.1}" height="24" fill="{}"/>"#, COLORS[i]);
        let lx = 16.0 + i as f64 * (WIDTH - 32.0) / PHASES.len() as f64;
        let _ = writeln!(s, r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" fill="{}"/>"#, by + 36.0, COLORS[i]);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="11">{} {:.2} ms</text>"#,
            lx + 14.0,
            by + 45.0,
            esc(label.split(" (").next().unwrap_or(label)),
            m
        );
        at += w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc(r#"a<b>&"c""#), "a&lt;b&gt;&amp;&quot;c&quot;");
    }

    #[test]
    fn strip_keeps_at_most_n_points_in_order() {
        let sorted: Vec<u64> = (0..1000).collect();
        let p = strip(&sorted, 10);
        assert_eq!(p.len(), 10);
        assert!(p.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(strip(&sorted[..3], 10).len(), 3);
    }
}
