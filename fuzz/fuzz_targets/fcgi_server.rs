//! Fuzz target `fcgi_server`: runs [`common::fcgi_server`] on every input; the property (no panic, and
//! the assertions in `common.rs`) is shared with `tests/fuzz_replay.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
mod common;

fuzz_target!(|data: &[u8]| common::fcgi_server(data));
