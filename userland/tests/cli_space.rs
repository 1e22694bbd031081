//! A full partition: a clear error with its own exit code, and flash unchanged.

mod cli_common;

use cli_common::*;
use std::fs;
use std::path::Path;

/// Arguments with a 4 KiB erase size in front.
fn e4<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--erase-size", "4096"];
    v.extend_from_slice(args);
    v
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn a_full_partition_is_refused_without_writing() {
    let sc = scratch();
    let base = sc.path();
    // 16 erase blocks of 4 KiB; the back buffer takes 2.
    let img = image(base, "flash.img", 64 << 10);
    ok(&img, &e4(&["format"]));
    let small = base.join("small");
    fs::create_dir(&small).expect("mkdir");
    file(&small.join("f"), &noise(30_000, 3), 0o644, (0, 0));
    // 30 KB of noise: 8 erase blocks, fits the 14-block chain region once.
    ok(&img, &e4(&["commit", "--upper", s(&small), "--no-reboot"]));
    let before = fs::read(&img).expect("read image");

    // Again: only 6 blocks left.
    let o = fails(
        &img,
        &e4(&["commit", "--upper", s(&small), "--no-reboot"]),
        6,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not enough space"), "{err}");
    assert!(
        fs::read(&img).expect("read image") == before,
        "a refused commit wrote"
    );

    // A volatile must fit the back buffer (2 blocks).
    let o = fails(&img, &e4(&["save", "--upper", s(&small)]), 6);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("back buffer"), "{err}");
    assert!(
        fs::read(&img).expect("read image") == before,
        "a refused save wrote"
    );

    // Uncompressed is no smaller; still refused.
    fails(
        &img,
        &e4(&["save", "--upper", s(&small), "--no-compress"]),
        6,
    );
    assert!(
        fs::read(&img).expect("read image") == before,
        "a refused save wrote"
    );
    ok(&img, &e4(&["verify"]));
}

/// A plain payload holds its file data in its own bytes: a tree whose files alone pass the
/// chain region is refused for space (exit 6), not for the bound on file data (exit 8).
#[test]
fn an_uncompressed_tree_past_the_region_is_a_space_refusal() {
    let sc = scratch();
    let base = sc.path();
    // 14 erase blocks of chain region: 57,344 bytes.
    let img = image(base, "flash.img", 64 << 10);
    ok(&img, &e4(&["format"]));
    let big = base.join("big");
    fs::create_dir(&big).expect("mkdir");
    file(&big.join("f"), &noise(60_000, 5), 0o644, (0, 0));
    let before = fs::read(&img).expect("read image");
    for (args, what) in [
        (
            vec!["commit", "--upper", s(&big), "--no-reboot", "--no-compress"],
            "not enough space",
        ),
        (
            vec!["save", "--upper", s(&big), "--no-compress"],
            "back buffer",
        ),
    ] {
        let o = fails(&img, &e4(&args), 6);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(what), "{err}");
    }
    assert!(
        fs::read(&img).expect("read image") == before,
        "a refused write wrote"
    );
}
