//! The timing hook `cgi2wsgi bench` uses to split a CGI run into real phases: when
//! `CGI2WSGI_TIMINGS` names a file, the process appends `PHASE NANOS` lines with
//! CLOCK_MONOTONIC (system-wide on Linux, so the bench parent's stamps compare) at main()
//! entry, once the interpreter is up, once the app is imported and once the response is
//! flushed. Unset (always, outside a bench), each stamp is one cached branch. The bench
//! reads the stamps back (`parse`); every layer may stamp.

use std::io::Write;
use std::sync::OnceLock;

/// The environment variable naming the file stamps are appended to.
pub const VAR: &str = "CGI2WSGI_TIMINGS";

/// A point in a CGI run, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    Main,
    Init,
    Import,
    Response,
}

impl Stamp {
    pub fn name(self) -> &'static str {
        match self {
            Stamp::Main => "main",
            Stamp::Init => "init",
            Stamp::Import => "import",
            Stamp::Response => "response",
        }
    }

    pub fn from_name(name: &str) -> Option<Stamp> {
        [Stamp::Main, Stamp::Init, Stamp::Import, Stamp::Response].into_iter().find(|s| s.name() == name)
    }
}

fn sink() -> Option<&'static std::fs::File> {
    static FILE: OnceLock<Option<std::fs::File>> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::var_os(VAR)?;
        // Not inherited: the app's subprocesses must not write here.
        std::fs::OpenOptions::new().append(true).open(path).ok()
    })
    .as_ref()
}

/// Record `stamp` if the timing hook is on.
pub fn stamp(stamp: Stamp) {
    if let Some(mut file) = sink() {
        let t = crate::sys::monotonic_ns();
        // One write per line: O_APPEND keeps it whole.
        let _ = file.write_all(format!("{} {t}\n", stamp.name()).as_bytes());
    }
}

/// Parse what a run wrote: each stamp's time, if present.
pub fn parse(text: &str) -> Vec<(Stamp, u64)> {
    text.lines()
        .filter_map(|l| {
            let (name, t) = l.split_once(' ')?;
            Some((Stamp::from_name(name)?, t.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stamps_and_skips_junk() {
        let got = parse("main 10\ninit 25\nbogus 3\nimport x\nresponse 40\n");
        assert_eq!(got, vec![(Stamp::Main, 10), (Stamp::Init, 25), (Stamp::Response, 40)]);
    }

    #[test]
    fn clock_moves_forward() {
        let a = crate::sys::monotonic_ns();
        let b = crate::sys::monotonic_ns();
        assert!(b >= a && a > 0);
    }
}
