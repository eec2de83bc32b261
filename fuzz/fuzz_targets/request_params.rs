//! Fuzz target `request_params`: runs [`common::request_params`] on every input; the property (no panic, and
//! the assertions in `common.rs`) is shared with `tests/fuzz_replay.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
mod common;

fuzz_target!(|data: &[u8]| common::request_params(data));
