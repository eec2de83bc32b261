//! Replays the fuzz corpora on stable as part of `cargo test`: every file under
//! `fuzz/corpus/<target>/` (minimised seeds) and `fuzz/regressions/<target>/` (inputs that
//! once broke the code) goes through the same property function the libFuzzer target runs
//! (`fuzz/fuzz_targets/common.rs`), so a fixed bug stays fixed without nightly or cargo-fuzz.

#[allow(dead_code)]
#[path = "../fuzz/fuzz_targets/common.rs"]
mod common;

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Files of `fuzz/<kind>/<target>/`, sorted; an absent directory has none.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(kind).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    files
}

/// Runs `check` on every corpus and regression input of `target`, reporting every input
/// that panics (not only the first) and how many were replayed.
fn replay(target: &str, check: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    let regressions = inputs("regressions", target);
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ is empty: the replay would pass vacuously");
    let mut failed = Vec::new();
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err() {
            failed.push(path.display().to_string());
        }
    }
    eprintln!("{target}: replayed {} inputs ({} corpus, {} regressions)", corpus.len() + regressions.len(), corpus.len(), regressions.len());
    assert!(failed.is_empty(), "{target}: {} input(s) failed:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn fcgi_server_corpus() {
    replay("fcgi_server", common::fcgi_server);
}

#[test]
fn fcgi_client_corpus() {
    replay("fcgi_client", common::fcgi_client);
}

#[test]
fn nv_decode_corpus() {
    replay("nv_decode", common::nv_decode);
}

#[test]
fn request_params_corpus() {
    replay("request_params", common::request_params);
}

#[test]
fn percent_decode_corpus() {
    replay("percent_decode", common::percent_decode);
}
