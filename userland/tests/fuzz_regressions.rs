//! Every saved fuzz crash (fuzz/regressions/TARGET/) and every seed (fuzz/seeds/TARGET/) run
//! through the very checks the fuzz targets make (fuzz/checks.rs), in an ordinary debug test
//! build with overflow checks on. A crash the fuzzer finds is copied to fuzz/regressions/ and
//! stays a test from then on.

#[path = "../../fuzz/checks.rs"]
#[allow(dead_code)]
mod checks;
#[path = "../../src/init/cmdline.rs"]
#[allow(dead_code)]
mod cmdline;

use std::fs;
use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.expect("dir entry").path();
            if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let data = fs::read(&path).expect("read input");
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(
                r.is_ok(),
                "{target}: {} fails its fuzz check",
                path.display()
            );
            n += 1;
        }
    }
    n
}

#[test]
fn every_saved_fuzz_input_passes() {
    let mut total = 0;
    for (target, check) in [
        ("header", checks::header as fn(&[u8])),
        ("chain", checks::chain),
        ("tar", checks::tar),
        ("gzip", checks::gzip),
        ("cmdline", checks::cmdline),
        ("survey", checks::survey),
        ("replay", checks::replay),
    ] {
        let n = replay(target, check);
        assert!(n > 0, "no seeds for {target}");
        total += n;
    }
    println!("fuzz inputs replayed: {total}");
}
