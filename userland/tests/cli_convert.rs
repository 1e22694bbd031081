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

/// A JFFS2 node header (little-endian) with its CRC as the kernel computes it.
fn jffs2_node(kind: u16) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&0x1985u16.to_le_bytes());
    h.extend_from_slice(&kind.to_le_bytes());
    h.extend_from_slice(&12u32.to_le_bytes());
    let mut crc = crc32fast::Hasher::new_with_initial(u32::MAX);
    crc.update(&h);
    h.extend_from_slice(&(!crc.finalize()).to_le_bytes());
    h
}

/// A real JFFS2 image of `tree` (mkfs.jffs2, little-endian, 64 KiB erase blocks), padded
/// with free erase blocks to `size`.
fn mkfs_jffs2(tree: &Path, img: &Path, size: u64) {
    let o = Command::new("mkfs.jffs2")
        .args(["-l", "-e", "0x10000", "-q"])
        .arg(format!("--pad={size:#x}"))
        .arg("-r")
        .arg(tree)
        .arg("-o")
        .arg(img)
        .output()
        .expect("mkfs.jffs2 (mtd-utils; scripts/deps.sh installs it)");
    assert!(o.status.success(), "{}", show(&o));
}

/// The usual case: a real JFFS2 whose end is free space. Convert stages the overlay there
/// first (docs/SNAPSHOT.md), and the result is the overlay as snapshot 1.
#[test]
fn convert_stages_a_real_jffs2_overlay_in_its_free_end() {
    let sc = scratch();
    let base = sc.path();
    let from = base.join("upper");
    fs::create_dir(&from).expect("mkdir");
    dir(&from.join("etc"), 0o755, (0, 0));
    dir(&from.join("etc/config"), 0o755, (0, 0));
    file(
        &from.join("etc/config/network"),
        b"config interface 'mesh'\n",
        0o644,
        (0, 0),
    );
    let img = base.join("flash.img");
    mkfs_jffs2(&from, &img, 2 << 20);
    assert_eq!(info(&img)["foreign"], "jffs2");
    let out = ok(
        &img,
        &["convert", "--from", s(&from), "--yes", "--no-reboot"],
    );
    assert!(out.contains("converted"), "{out}");
    assert!(out.contains("staged first"), "{out}");
    let got = base.join("got");
    ok(&img, &["extract", "1", s(&got)]);
    assert_same_tree(&got, &from);
    let j = info(&img);
    assert_eq!(j["snapshots"].as_array().map(Vec::len), Some(1));
    assert!(j["volatile"].is_null(), "{j}");
}

/// A JFFS2 that fills the partition to its end leaves no free space to stage in: convert
/// says so before it asks, and converts the old way (erase, then write).
#[test]
fn convert_warns_when_the_jffs2_leaves_no_free_end() {
    let sc = scratch();
    let base = sc.path();
    let from = base.join("upper");
    fs::create_dir(&from).expect("mkdir");
    file(&from.join("small"), b"kept", 0o644, (0, 0));
    let img = base.join("flash.img");
    mkfs_jffs2(&from, &img, 1 << 20);
    // A node in the last erase block, as a JFFS2 that used its whole partition has.
    let f = fs::OpenOptions::new().write(true).open(&img).expect("open");
    f.write_all_at(&jffs2_node(0xE001), (1 << 20) - 0x10000 + 12)
        .expect("write");
    drop(f);
    let o = Command::new(bin())
        .arg("--device")
        .arg(&img)
        .args(["convert", "--from", s(&from), "--yes", "--no-reboot"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("cannot be staged"), "{}", show(&o));
    let got = base.join("got");
    ok(&img, &["extract", "1", s(&got)]);
    assert_same_tree(&got, &from);
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
    // And the last block a JFFS2 inode: no free end to stage the overlay in first, so convert
    // erases before it writes (the route whose failure needs the rescue file).
    f.write_all_at(&jffs2_node(0xE002), 15 * E).expect("write");
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
    // Past offset 0 the magic alone is not JFFS2 (a cut first save leaves payload bytes
    // there): the block starts as JFFS2 starts every erase block it uses, with a node whose
    // header CRC holds (here its cleanmarker).
    let mut node = noise(65536, 5);
    node[..12].copy_from_slice(&jffs2_node(0x2003));
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
