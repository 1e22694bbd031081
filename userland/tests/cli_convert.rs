//! `snapshot convert` and `snapshot format` on a partition that holds a JFFS2 overlay.

mod cli_common;

use cli_common::*;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn jffs2_image(base: &Path) -> std::path::PathBuf {
    let img = image(base, "flash.img", 2 << 20);
    let f = fs::OpenOptions::new().write(true).open(&img).expect("open");
    let mut node = noise(4096, 11);
    node[..4].copy_from_slice(&[0x85, 0x19, 0x03, 0x20]);
    f.write_all_at(&node, 0).expect("write");
    img
}

#[test]
fn convert_turns_a_jffs2_overlay_into_snapshot_one() {
    let sc = scratch();
    let base = sc.path();
    let img = jffs2_image(base);
    let j = info(&img);
    assert_eq!(j["status"], "unformatted");
    assert_eq!(j["foreign"], "jffs2");
    let from = base.join("jffs2-upper");
    fs::create_dir(&from).expect("mkdir");
    dir(&from.join("etc"), 0o755, (0, 0));
    file(&from.join("etc/shadow"), b"root:x:", 0o600, (0, 42));
    whiteout(&from.join("etc/banner"));
    set_xattr(&from.join("etc"), "trusted.overlay.opaque", b"y");

    // Writes refuse a foreign partition; format refuses without --force.
    let before = fs::read(&img).expect("read");
    fails(&img, &["save", "--upper", s(&from)], 5);
    fails(&img, &["format"], 5);
    fails(&img, &["format", "--force"], 11);
    // Convert without confirmation and no terminal: refused, nothing written.
    fails(&img, &["convert", "--from", s(&from), "--no-reboot"], 11);
    assert!(
        fs::read(&img).expect("read") == before,
        "a refused command wrote"
    );

    let backup = base.join("backup.tar.gz");
    let out = ok(
        &img,
        &[
            "convert",
            "--from",
            s(&from),
            "--backup",
            s(&backup),
            "--yes",
            "--no-reboot",
        ],
    );
    assert!(out.contains("converted"), "{out}");
    let b = fs::read(&backup).expect("backup written");
    assert_eq!(&b[..2], &[0x1f, 0x8b], "backup is not gzip");
    let j = info(&img);
    assert_eq!(j["status"], "chain");
    assert_eq!(j["snapshots"].as_array().map(Vec::len), Some(1));
    let got = base.join("got");
    ok(&img, &["extract", "1", s(&got)]);
    assert_same_tree(&got, &from);
    ok(&img, &["verify"]);
    // A chain is not converted again.
    fails(
        &img,
        &["convert", "--from", s(&from), "--yes", "--no-reboot"],
        5,
    );
}

#[test]
fn format_force_erases_a_chain_and_records_the_back_buffer() {
    let sc = scratch();
    let base = sc.path();
    let img = jffs2_image(base);
    // A back buffer over half the partition is refused before anything is erased.
    let before = fs::read(&img).expect("read");
    fails(
        &img,
        &["format", "--force", "--yes", "--backbuf-blocks", "17"],
        5,
    );
    fails(
        &img,
        &["format", "--force", "--yes", "--backbuf-blocks", "0"],
        5,
    );
    assert!(
        fs::read(&img).expect("read") == before,
        "a refused format wrote"
    );
    ok(
        &img,
        &["format", "--force", "--yes", "--backbuf-blocks", "4"],
    );
    let j = info(&img);
    assert_eq!(j["backbuf"]["blocks"], 4);
    assert_eq!(j["backbuf"]["from_chain"], true);
    let upper = base.join("upper");
    fs::create_dir(&upper).expect("mkdir");
    file(&upper.join("f"), b"x", 0o644, (0, 0));
    ok(&img, &["commit", "--upper", s(&upper), "--no-reboot"]);
    let j = info(&img);
    assert_eq!(j["backbuf"]["blocks"], 4);
    // A chain with snapshots needs --force.
    fails(&img, &["format"], 5);
    ok(&img, &["format", "--force", "--yes"]);
    let j = info(&img);
    assert_eq!(j["status"], "empty");
    assert!(fs::read(&img).expect("read").iter().all(|&b| b == 0xFF));
}
