//! A one-line progress bar on stderr, drawn only when stderr is a terminal (never in logs).

use std::io::Write;
use std::time::Instant;

pub struct Progress {
    on: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    pub fn new(wanted: bool) -> Progress {
        let tty = crate::sys::isatty(2);
        Progress { on: wanted && tty, last: None, drawn: false }
    }

    /// The bar's width in characters.
    const WIDTH: usize = 30;

    /// Show `label` with `fraction` (0..=1) of the current part done; redrawn at most 10×/s.
    pub fn update(&mut self, label: &str, fraction: f64) {
        if !self.on || self.last.is_some_and(|t| t.elapsed().as_millis() < 100) {
            return;
        }
        self.last = Some(Instant::now());
        let filled = ((fraction.clamp(0.0, 1.0) * Self::WIDTH as f64).round() as usize).min(Self::WIDTH);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2Kbench [{}{}] {label}", "#".repeat(filled), "-".repeat(Self::WIDTH - filled));
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erase the bar, so the table starts on a clean line.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            let _ = std::io::stderr().flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
