//! PID 1's tar reader: see `checks::tar` (fuzz/checks.rs).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "../../src/init/cmdline.rs"]
#[allow(dead_code)]
mod cmdline;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::tar(data));
