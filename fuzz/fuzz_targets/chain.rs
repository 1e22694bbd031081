//! The chain walker over arbitrary images, erase sizes and read errors: see `checks::chain` (fuzz/checks.rs).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "../../src/init/cmdline.rs"]
#[allow(dead_code)]
mod cmdline;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::chain(data));
