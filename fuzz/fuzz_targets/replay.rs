//! The replay rules on any tar, real directory against the model: see `checks::replay`.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "../../src/init/cmdline.rs"]
#[allow(dead_code)]
mod cmdline;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::replay(data));
