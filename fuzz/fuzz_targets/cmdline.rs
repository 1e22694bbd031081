//! PID 1's kernel command-line parser: see `checks::cmdline` (fuzz/checks.rs).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "../../src/init/cmdline.rs"]
#[allow(dead_code)]
mod cmdline;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::cmdline(data));
