//! `snapshot convert` and `snapshot format` on a partition that holds a JFFS2 overlay.

mod cli_common;

use cli_common::*;
use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

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

/// A tmpfs mounted for one test, unmounted on drop.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// An erase that fails partway through convert's erasing step (here: the image on a full
/// tmpfs, so writing 0xFF over a hole fails; on a unit, a worn NOR block) leaves the JFFS2
/// partly erased: the packed overlay must be saved in a rescue file, as when the append fails.
/// (Before, the `?` of the erasing step returned first and the only copy was dropped.)
#[test]
fn convert_rescues_the_overlay_when_the_erase_fails_partway() {
    let sc = scratch();
    let base = sc.path();
    let from = base.join("jffs2-upper");
    fs::create_dir(&from).expect("mkdir");
    file(
        &from.join("config"),
        b"the only copy of the config",
        0o600,
        (0, 0),
    );
    let tmp = base.join("tmp");
    fs::create_dir(&tmp).expect("mkdir");
    let small = base.join("small");
    fs::create_dir(&small).expect("mkdir");
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128k", "snapinit-convert-test"])
        .arg(&small)
        .status()
        .expect("mount")
        .success());
    let _mount = Mount(small.clone());
    const E: u64 = 4096;
    // Blocks 0, 1 and 3 hold JFFS2 nodes; block 2 is a hole (no tmpfs page behind it yet).
    let img = image(&small, "flash.img", 16 * E);
    let f = fs::OpenOptions::new().write(true).open(&img).expect("open");
    for (blk, seed) in [(0u64, 1u64), (1, 2), (3, 3)] {
        let mut node = noise(E as usize, seed);
        node[..4].copy_from_slice(&[0x85, 0x19, 0x03, 0x20]);
        f.write_all_at(&node, blk * E).expect("write");
    }
    f.write_all_at(&vec![0xFF; 12 * E as usize], 4 * E)
        .expect("write");
    drop(f);
    let mut filler = fs::File::create(small.join("filler")).expect("filler");
    while filler.write_all(&[0u8; 4096]).is_ok() {}
    drop(filler);
    let j = ok(&img, &["--erase-size", "4096", "info"]);
    assert!(j.contains("jffs2"), "{j}");
    let o = Command::new(bin())
        .env("TMPDIR", &tmp)
        .arg("--device")
        .arg(&img)
        .args(["--erase-size", "4096", "convert", "--from", s(&from)])
        .args(["--yes", "--no-reboot"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    let now = fs::read(&img).expect("read");
    assert!(
        now[3 * E as usize..4 * E as usize]
            .iter()
            .all(|&b| b == 0xFF),
        "precondition: the JFFS2 block at 0x3000 was erased before the failure"
    );
    let rescued: Vec<_> = fs::read_dir(&tmp)
        .expect("tmp")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert_eq!(rescued.len(), 1, "no rescue file:\n{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&rescued[0].display().to_string()),
        "the rescue file is not named:\n{}",
        show(&o)
    );
    // The rescue file is the packed overlay: its tar holds the config.
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&rescued[0])
        .output()
        .expect("tar");
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("config"),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
}

/// JFFS2 can leave its first erase block free (a cut between erasing a block and writing its
/// cleanmarker): `info` names the JFFS2 further on, and convert must take it as JFFS2 rather
/// than offer `format --force` (which would erase the overlay unpacked).
#[test]
fn convert_takes_a_jffs2_whose_first_erase_block_is_free() {
    let sc = scratch();
    let base = sc.path();
    let img = image(base, "flash.img", 2 << 20);
    let f = fs::OpenOptions::new().write(true).open(&img).expect("open");
    f.write_all_at(&vec![0xFF; 2 << 20], 0).expect("erase");
    let mut node = noise(65536, 5);
    node[..4].copy_from_slice(&[0x85, 0x19, 0x03, 0x20]);
    f.write_all_at(&node, 65536).expect("node");
    drop(f);
    assert_eq!(info(&img)["foreign"], "jffs2");
    let from = base.join("upper");
    fs::create_dir(&from).expect("mkdir");
    file(&from.join("config"), b"x", 0o644, (0, 0));
    // The writes' refusal names convert, not repair (which refuses data that is no chain).
    let o = fails(&img, &["save", "--upper", s(&from)], 13);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("snapshot convert --from"), "{}", show(&o));
    assert!(!stderr.contains("`snapshot repair`"), "{}", show(&o));
    let out = ok(
        &img,
        &["convert", "--from", s(&from), "--yes", "--no-reboot"],
    );
    assert!(out.contains("converted"), "{out}");
    let got = base.join("got");
    ok(&img, &["extract", "1", s(&got)]);
    assert_same_tree(&got, &from);
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
