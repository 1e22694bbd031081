//! Issue 10: writes never erase what might be data. Each case drives the built `snapshot`
//! binary against an image file and checks the exit code, the message, and that the image is
//! byte-identical afterwards. `SNAPSHOT_BIN=/path/to/older/snapshot` runs them against another
//! build (they fail against the tool before issue 10).

mod cli_common;

use cli_common::*;
use snapinit::device::DeviceFlash;
use snapinit::header::{Compression, Fields, Kind, LIVE_MARK};
use snapshot::writer::{Payload, Writer};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn read(img: &Path) -> Vec<u8> {
    fs::read(img).expect("read image")
}

fn poke(img: &Path, offset: u64, f: impl FnOnce(u8) -> u8) {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .expect("open image");
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, offset).expect("read");
    b[0] = f(b[0]);
    file.write_all_at(&b, offset).expect("write");
}

/// Runs `args`, expects exit `code` and a message containing `needle`, and the image unchanged.
fn refused(img: &Path, args: &[&str], code: i32, needle: &str) -> String {
    let before = read(img);
    let o = fails(img, args, code);
    let err = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    assert!(
        err.contains(needle),
        "snapshot {args:?}: message lacks {needle:?}:\n{}",
        show(&o)
    );
    assert!(
        read(img) == before,
        "snapshot {args:?} refused but changed the image"
    );
    err
}

fn upper(base: &Path, name: &str, seed: u64) -> PathBuf {
    let u = base.join(name);
    fs::create_dir_all(&u).expect("mkdir");
    file(&u.join("a"), &noise(20_000, seed), 0o644, (0, 0));
    file(
        &u.join("conf"),
        format!("seed {seed}\n").as_bytes(),
        0o644,
        (0, 0),
    );
    u
}

/// Two snapshots and a volatile, 64 KiB erase blocks, 2 MiB.
fn chain(base: &Path) -> PathBuf {
    let img = image(base, "flash.img", 2 << 20);
    ok(&img, &["format"]);
    let u1 = upper(base, "u1", 1);
    ok(&img, &["commit", "--upper", s(&u1), "--no-reboot"]);
    let u2 = upper(base, "u2", 2);
    ok(&img, &["commit", "--upper", s(&u2), "--no-reboot"]);
    // Two saves of different content: both volatile copies hold a state (an unchanged save
    // writes nothing).
    let u3 = upper(base, "u3", 3);
    ok(&img, &["save", "--upper", s(&u3)]);
    let u4 = upper(base, "u4", 4);
    ok(&img, &["save", "--upper", s(&u4)]);
    img
}

/// Two committed snapshots (uppers u1 and u2) on a formatted image of `size` bytes: the image,
/// u2's tree and snapshot 2's offset.
fn two_snapshots(base: &Path, size: u64) -> (PathBuf, PathBuf, u64) {
    let img = image(base, "flash.img", size);
    ok(&img, &["format", "--force"]);
    let u1 = upper(base, "u1", 1);
    ok(&img, &["commit", "--upper", s(&u1), "--no-reboot"]);
    let u2 = upper(base, "u2", 2);
    ok(&img, &["commit", "--upper", s(&u2), "--no-reboot"]);
    let second = info(&img)["snapshots"][1]["offset"]
        .as_u64()
        .expect("offset");
    (img, u2, second)
}

/// Every write the tool has, each refused with `code` and `needle`, the image unchanged.
fn every_write_refused(base: &Path, img: &Path, code: i32, needle: &str) {
    let u = upper(base, "unew", 9);
    refused(img, &["save", "--upper", s(&u)], code, needle);
    refused(
        img,
        &["commit", "--upper", s(&u), "--no-reboot"],
        code,
        needle,
    );
    let empty = base.join("empty-upper");
    fs::create_dir_all(&empty).expect("mkdir");
    refused(
        img,
        &["commit", "--upper", s(&empty), "--no-reboot"],
        code,
        needle,
    );
    refused(
        img,
        &["rollback", "1", "--yes", "--no-reboot"],
        code,
        needle,
    );
    refused(
        img,
        &["upgrade", "--upper", s(&u), "--pm", "true"],
        code,
        needle,
    );
}

// ---- 1. a foreign filesystem that is not in the recognised list ----

#[test]
fn case1_ext4_partition_is_never_written() {
    let sc = scratch();
    let img = image(sc.path(), "ext4.img", 4 << 20);
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "data"])
        .arg(&img)
        .status()
        .expect("run mkfs.ext4 (e2fsprogs)");
    assert!(st.success());
    let u = upper(sc.path(), "u", 1);
    refused(
        &img,
        &["save", "--upper", s(&u)],
        13,
        "not a snapinit block",
    );
    refused(
        &img,
        &["commit", "--upper", s(&u), "--no-reboot"],
        13,
        "format --force",
    );
    refused(&img, &["format"], 5, "--force");
    refused(&img, &["repair"], 13, "no snapinit chain");
    // What the refusals name must itself work: repair and salvage have no chain to act on
    // here, so they are not offered (before, `repair --yes` was, and it refused too).
    let o = refused(&img, &["save", "--upper", s(&u)], 13, "format --force");
    assert!(!o.contains("snapshot repair"), "{o}");
    assert!(!o.contains("--salvage"), "{o}");
    refused(&img, &["repair", "--yes"], 13, "format --force");
    assert!(
        !ok(&img, &["info"]).contains("snapshot repair"),
        "{}",
        ok(&img, &["info"])
    );
    refused(
        &img,
        &["convert", "--from", s(&u), "--yes", "--no-reboot"],
        5,
        "neither a snapinit chain nor JFFS2",
    );
    assert_eq!(info(&img)["foreign"], "unknown");
    // Starting over is still possible, and then the partition works.
    ok(&img, &["format", "--force", "--yes"]);
    ok(&img, &["save", "--upper", s(&u)]);
    assert_eq!(info(&img)["status"], "chain");
}

/// Foreign data with one erase block (not the first) that happens to start with 0xFF bytes
/// (a bitmap, 0xFF padding in a file): its first eight bytes pass the "torn header" test, but
/// only offset 0 can hold the writer's own first header, so it is no snapinit trace, and the
/// rest of the partition stays data. Before, such a block anywhere made the whole partition
/// "a chain" and the first save erased all of it.
#[test]
fn case1_ff_start_of_a_later_erase_block_is_no_snapinit_trace() {
    let sc = scratch();
    let img = image(sc.path(), "data.img", 1 << 20);
    // Offset 0 as ext4 has it (1024 zero bytes, then its superblock), noise after.
    patch(&img, 1024, &noise((1 << 20) - 1024, 5));
    let mut ff = vec![0xFFu8; 64];
    ff.extend_from_slice(&noise(1000, 6));
    patch(&img, 0x30000, &ff);
    assert_eq!(info(&img)["foreign"], "unknown");
    every_write_refused(sc.path(), &img, 13, "not a snapinit block");
    refused(&img, &["repair"], 13, "no snapinit chain");
}

#[test]
fn case1_torn_first_write_is_still_writable() {
    // The first save on an erased partition, cut after its payload and half its header: the
    // next write must go ahead (leftovers of our own write), unlike foreign data.
    let sc = scratch();
    let img = image(sc.path(), "flash.img", 1 << 20);
    ok(&img, &["format"]);
    let u = upper(sc.path(), "u", 1);
    ok(&img, &["save", "--upper", s(&u)]);
    // Tear the header: the last 100 bytes of its sealed part back to erased, the sealed mark too.
    for i in 92..192u64 {
        poke(&img, i, |_| 0xFF);
    }
    poke(&img, 0xD2, |_| 0xFF);
    assert_eq!(info(&img)["status"], "empty");
    ok(&img, &["save", "--upper", s(&u)]);
    assert_eq!(info(&img)["status"], "chain");
}

// ---- 2. a bit flipped in a sealed header, or a live mark 0xFF -> 0xFE ----

#[test]
fn case2_flipped_header_bit_is_never_erased() {
    let sc = scratch();
    let img = chain(sc.path());
    // A bit inside snapshot 1's sealed header (its generation field).
    poke(&img, 0x18, |b| b ^ 0x04);
    assert_eq!(info(&img)["status"], "damaged");
    // verify says so too, instead of "all good" and a note about an interrupted write.
    refused(&img, &["verify"], 9, "FAIL");
    every_write_refused(sc.path(), &img, 13, "has changed since");
    refused(&img, &["repair"], 11, "would erase");
    refused(&img, &["format"], 5, "--force");
}

#[test]
fn case2_live_mark_fe_is_never_erased() {
    let sc = scratch();
    let img = chain(sc.path());
    let off = info(&img)["snapshots"][1]["offset"]
        .as_u64()
        .expect("offset");
    poke(&img, off + LIVE_MARK as u64, |_| 0xFE);
    refused(&img, &["verify"], 9, "FAIL");
    every_write_refused(sc.path(), &img, 13, "corrupt mark");
    refused(&img, &["repair"], 11, "would erase");
}

// ---- 3. bit rot in a payload ----

#[test]
fn case3_rotten_first_snapshot_is_never_erased() {
    let sc = scratch();
    let img = chain(sc.path());
    poke(&img, 256 + 3000, |b| b ^ 0x01);
    every_write_refused(sc.path(), &img, 13, "payload SHA-256 mismatch");
}

#[test]
fn case3_rotten_top_snapshot_is_not_overwritten_by_commit() {
    let sc = scratch();
    let (img, u2, off) = two_snapshots(sc.path(), 2 << 20);
    poke(&img, off + 256 + 100, |b| b ^ 0x80);
    let empty = sc.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    refused(
        &img,
        &["commit", "--upper", s(&u2), "--no-reboot"],
        13,
        "snapshot at",
    );
    refused(&img, &["save", "--upper", s(&u2)], 13, "extract --salvage");
    // Confirmed repair erases it; then writes go on.
    let out = ok(&img, &["repair", "--yes"]);
    assert!(out.contains("would erase"), "{out}");
    ok(&img, &["save", "--upper", s(&u2)]);
    assert_eq!(info(&img)["snapshots"].as_array().map(Vec::len), Some(1));
}

#[test]
fn case3_rotten_volatile_is_never_erased() {
    let sc = scratch();
    let img = chain(sc.path());
    let off = info(&img)["volatile"]["offset"].as_u64().expect("offset");
    poke(&img, off + 256 + 50, |b| b ^ 0x02);
    let u = upper(sc.path(), "u", 7);
    refused(&img, &["save", "--upper", s(&u)], 13, "volatile at");
}

// ---- 4. a wrong --erase-size ----

#[test]
fn case4_wrong_erase_size_is_an_error_and_the_headers_win() {
    let sc = scratch();
    let img = image(sc.path(), "flash.img", 1 << 20);
    let e4 = |args: &[&str]| {
        let mut v = vec!["--erase-size", "4096"];
        v.extend_from_slice(args);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = e4(&["format"]);
    ok(&img, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let u = upper(sc.path(), "u", 1);
    let args = e4(&["commit", "--upper", s(&u), "--no-reboot"]);
    ok(&img, &args.iter().map(String::as_str).collect::<Vec<_>>());
    refused(
        &img,
        &["--erase-size", "8192", "save", "--upper", s(&u)],
        16,
        "erase size 4096",
    );
    refused(
        &img,
        &["--erase-size", "8192", "info"],
        16,
        "erase size 4096",
    );
    refused(
        &img,
        &["--erase-size", "8192", "format", "--force", "--yes"],
        16,
        "4096",
    );
    // Without --erase-size the chain's own size is used.
    let i = info(&img);
    assert_eq!(i["erase_size"], 4096);
    assert_eq!(i["snapshots"].as_array().map(Vec::len), Some(1));
    ok(&img, &["save", "--upper", s(&u)]);
}

/// A UBI LEB such as 65,408 (docs/SNAPSHOT.md's example) is no multiple of 512. With slot 0
/// mid-rewrite (its erase landed, its write did not: docs/FORMAT.md), the chain's only header
/// is the volatile's copy in the back buffer, at 29 × 65,408, off every 512-byte boundary. The
/// tool once probed for headers only there, read the partition as empty at 65,536, and
/// `repair` erased that only copy.
#[test]
fn case4_leb_sized_chain_with_only_its_back_buffer_copy_is_found() {
    const E: u64 = 65408;
    let sc = scratch();
    let img = sc.path().join("vol.img");
    fs::write(&img, vec![0xFF; 33 * E as usize]).expect("erased image");
    let u1 = upper(sc.path(), "u1", 1);
    let e = E.to_string();
    ok(&img, &["--erase-size", &e, "save", "--upper", s(&u1)]);
    let u2 = upper(sc.path(), "u2", 2);
    ok(&img, &["save", "--upper", s(&u2)]);
    let backbuf = info(&img)["backbuf"]["offset"].as_u64().expect("offset");
    assert_eq!(backbuf, 29 * E);
    assert_ne!(
        backbuf % 512,
        0,
        "the case needs a copy off the 512-byte grid"
    );
    // The next save's erase of slot 0 landed, then the power went.
    patch(&img, 0, &vec![0xFF; E as usize]);

    let want = fs::read(u2.join("conf")).expect("conf");
    let volatile_is_u2 = |img: &Path, name: &str| {
        let j = info(img);
        assert_eq!(j["erase_size"], E, "{j}");
        assert_eq!(j["volatile"]["offset"], backbuf, "{j}");
        let got = sc.path().join(name);
        ok(img, &["extract", "volatile", s(&got)]);
        assert_eq!(fs::read(got.join("conf")).expect("extracted conf"), want);
    };
    volatile_is_u2(&img, "x1");
    let before = read(&img);
    let out = ok(&img, &["repair", "--yes"]);
    assert!(out.contains("erased 0 erase block"), "{out}");
    assert!(read(&img) == before, "repair changed the image");
    volatile_is_u2(&img, "x2");

    // A save at the chain's own erase size keeps the new state, written before the old copy
    // goes.
    let u3 = upper(sc.path(), "u3", 3);
    ok(&img, &["save", "--upper", s(&u3)]);
    let j = info(&img);
    assert_eq!(j["erase_size"], E, "{j}");
    let got = sc.path().join("x3");
    ok(&img, &["extract", "volatile", s(&got)]);
    assert_eq!(
        fs::read(got.join("conf")).expect("conf"),
        fs::read(u3.join("conf")).expect("conf")
    );
}

// ---- 5. the 129th snapshot ----

#[test]
fn case5_chain_full_at_max_snapshots() {
    let sc = scratch();
    let img = image(sc.path(), "flash.img", 2 << 20);
    ok(&img, &["--erase-size", "4096", "format"]);
    {
        let mut flash = DeviceFlash::open_file(img.as_path(), 4096, true).expect("open");
        let mut w = Writer::new(&mut flash);
        for i in 0..snapinit::chain::MAX_SNAPSHOTS {
            let data = format!("snapshot {i}").into_bytes();
            w.append_snapshot(&Payload {
                data: &data,
                compression: Compression::None,
                unpacked_len: data.len() as u64,
            })
            .expect("append");
        }
    }
    let u = upper(sc.path(), "u", 1);
    refused(
        &img,
        &["commit", "--upper", s(&u), "--no-reboot"],
        15,
        "chain full",
    );
    ok(&img, &["save", "--upper", s(&u)]);
    let empty = sc.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    refused(
        &img,
        &["commit", "--upper", s(&empty), "--no-reboot"],
        15,
        "rollback",
    );
    refused(
        &img,
        &[
            "upgrade",
            "--upper",
            s(&u),
            "--pm",
            "touch $SNAPSHOT_UPPER/new",
        ],
        15,
        "chain full",
    );
}

// ---- clear errors ----

#[test]
fn missing_device_is_not_found() {
    let sc = scratch();
    let img = sc.path().join("nope.img");
    let o = fails(&img, &["info"], 14);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not found"),
        "{}",
        show(&o)
    );
    fails(&img, &["save", "--upper", "/nonexistent"], 14);
    assert!(!img.exists(), "a command created the missing device");
}

#[test]
fn directory_as_device_is_refused() {
    let sc = scratch();
    let o = fails(sc.path(), &["info"], 3);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("directory"),
        "{}",
        show(&o)
    );
}

#[test]
fn truncated_image_is_an_error() {
    let sc = scratch();
    let img = chain(sc.path());
    // Keep 3 of 32 erase blocks: the chain's back buffer (4) no longer fits half of it.
    let f = fs::OpenOptions::new().write(true).open(&img).expect("open");
    f.set_len(3 << 16).expect("truncate");
    drop(f);
    let u = upper(sc.path(), "u", 5);
    refused(&img, &["save", "--upper", s(&u)], 16, "truncated");
    refused(&img, &["format"], 16, "truncated");
    ok(&img, &["format", "--force", "--yes"]);
}

#[test]
fn convert_on_an_empty_partition_says_empty() {
    let sc = scratch();
    let img = image(sc.path(), "flash.img", 1 << 20);
    ok(&img, &["format"]);
    let u = upper(sc.path(), "u", 1);
    let err = refused(
        &img,
        &["convert", "--from", s(&u), "--yes", "--no-reboot"],
        5,
        "is empty",
    );
    assert!(!err.contains("already holds"), "{err}");
}

#[test]
fn bad_erase_size_is_a_usage_error() {
    let sc = scratch();
    let img = image(sc.path(), "flash.img", 1 << 20);
    for bad in ["1000", "256", "0", "65535"] {
        let o = fails(&img, &["--erase-size", bad, "info"], 2);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not a multiple of 64 of at least 512"),
            "{}",
            show(&o)
        );
    }
}

#[test]
fn crafted_payload_len_near_2_64_is_rejected_not_read() {
    let sc = scratch();
    let img = image(sc.path(), "flash.img", 1 << 20);
    ok(&img, &["format"]);
    let fields = Fields {
        kind: Kind::Snapshot,
        compression: Compression::None,
        erase_size: 65536,
        backbuf_blocks: 2,
        trial_budget: 0,
        seq: 1,
        generation: 1,
        payload_len: u64::MAX - 100,
        unpacked_len: 0,
        created: 0,
        nonce: [1; 8],
        payload_sha256: [0; 32],
        prev: [0; 32],
    };
    let f = fs::OpenOptions::new().write(true).open(&img).expect("open");
    f.write_all_at(&fields.seal(), 0).expect("write header");
    f.write_all_at(&[0xFF; 64], 0xC0).expect("marks");
    drop(f);
    let i = info(&img);
    let reason = i["end"]["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("geometry"), "{i}");
    assert!(!reason.contains("read error"), "{i}");
    let u = upper(sc.path(), "u", 1);
    refused(&img, &["save", "--upper", s(&u)], 13, "runs past");
}

/// `extract --salvage` reads whatever headers it finds: a sealed header whose length runs
/// past the partition is reported partial, and the blocks after it are still salvaged.
#[test]
fn salvage_survives_a_sealed_length_past_the_partition() {
    let sc = scratch();
    for len in [u64::MAX, 1 << 41, 1 << 21] {
        let (img, _, second) = two_snapshots(sc.path(), 1 << 20);
        // Snapshot 1's header resealed with the length: a writer's seal, a hostile value.
        let mut dev = DeviceFlash::open(s(&img), 65536, false).expect("open");
        let mut h = snapinit::chain::read_header(&mut dev, 0)
            .expect("read")
            .expect("header");
        drop(dev);
        h.fields.payload_len = len;
        let f = fs::OpenOptions::new().write(true).open(&img).expect("open");
        f.write_all_at(&h.fields.seal(), 0).expect("reseal");
        drop(f);
        let dest = sc.path().join(format!("salvage-{len:x}"));
        let o = run(&img, &["extract", "--salvage", "all", s(&dest)]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{len:#x}: {}", show(&o));
        assert!(out.contains("past the end of the partition"), "{out}");
        let later = format!("{second:08x}-snapshot-seq2-");
        let found = fs::read_dir(&dest)
            .expect("salvage dir")
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(&later));
        assert!(
            found,
            "{len:#x}: the block after it was not salvaged:\n{out}"
        );
        assert!(out.contains("1 complete, 1 partial"), "{out}");
    }
}

/// A snapshot whose header rotted in a field that does not locate or check its payload: the
/// payload is still proven intact by the SHA-256 the header recorded for it, so salvage copies
/// it out (before, it skipped every block whose header failed its hash, and `repair --yes`
/// then erased the only copy).
#[test]
fn salvage_copies_out_a_proven_payload_under_a_damaged_header() {
    let sc = scratch();
    let (img, u2, second) = two_snapshots(sc.path(), 1 << 20);
    let u1 = sc.path().join("u1");
    // One bit of snapshot 2's `unpacked_len` (header offset 0x28), inside the hashed part.
    poke(&img, second + 0x28, |b| b ^ 0x10);
    refused(&img, &["save", "--upper", s(&u1)], 13, "has changed since");
    let dest = sc.path().join("salvage");
    let out = ok(&img, &["extract", "--salvage", "all", s(&dest)]);
    let want = format!("{second:08x}-snapshot-seq2-gen");
    let sub = fs::read_dir(&dest)
        .expect("salvage dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&want))
        })
        .unwrap_or_else(|| panic!("snapshot 2 not salvaged:\n{out}"));
    assert!(
        sub.to_string_lossy().ends_with("-header-damaged"),
        "{}",
        sub.display()
    );
    assert_same_tree(&sub, &u2);
    assert!(out.contains("2 complete, 0 partial"), "{out}");
    // A damaged header whose recorded payload hash no longer matches proves nothing: it is
    // named, and not unpacked.
    poke(&img, second + 0x40, |b| b ^ 0x01);
    let dest = sc.path().join("salvage2");
    let out = ok(&img, &["extract", "--salvage", "all", s(&dest)]);
    assert!(out.contains("1 complete, 0 partial"), "{out}");
    assert!(
        out.contains(&format!("{second:#x}")) && out.contains("not salvaged"),
        "{out}"
    );
}

/// A damaged header's erase size is not proven by its payload's hash: salvage counts the
/// block's span in the device's, so a rotten erase size neither skips the next snapshot nor
/// moves the walk off the erase-block grid (found in review of the salvage change).
#[test]
fn salvage_of_a_damaged_header_moves_on_by_the_devices_erase_size() {
    let sc = scratch();
    let img = image(sc.path(), "flash.img", 1 << 20);
    ok(&img, &["format"]);
    for (n, seed) in [("u1", 1), ("u2", 2), ("u3", 3)] {
        let u = upper(sc.path(), n, seed);
        ok(&img, &["commit", "--upper", s(&u), "--no-reboot"]);
    }
    let offsets: Vec<u64> = (0..3)
        .map(|i| {
            info(&img)["snapshots"][i]["offset"]
                .as_u64()
                .expect("offset")
        })
        .collect();
    // One bit of snapshot 2's erase_size (header 0x0C, little-endian): 0x10000 -> 0x18000.
    poke(&img, offsets[1] + 0x0D, |b| b ^ 0x80);
    let dest = sc.path().join("salvage");
    let out = ok(&img, &["extract", "--salvage", "all", s(&dest)]);
    assert!(
        out.contains(&format!(
            "{:08x}-snapshot-seq2-gen2-header-damaged",
            offsets[1]
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("{:08x}-snapshot-seq3", offsets[2])),
        "snapshot 3 not salvaged:\n{out}"
    );
    assert!(out.contains("3 complete, 0 partial"), "{out}");
}

/// `repair --yes` erases exactly the erase blocks it listed before asking: the list comes
/// from the same full read of the partition as the erase (before, the list skipped what
/// lies behind an erased header, and the erase took such a block too).
#[test]
fn repair_erases_exactly_the_blocks_it_listed() {
    let sc = scratch();
    let base = sc.path();
    let img = image(base, "flash.img", 1 << 20);
    let e = ["--erase-size", "4096"];
    ok(&img, &[e[0], e[1], "format"]);
    for (n, seed) in [("u1", 1u64), ("u2", 2)] {
        let u = base.join(n);
        fs::create_dir(&u).expect("mkdir");
        file(&u.join("f"), &noise(2000, seed), 0o644, (0, 0));
        ok(
            &img,
            &[e[0], e[1], "commit", "--upper", s(&u), "--no-reboot"],
        );
    }
    // Snapshot 2's payload rots (a suspect); at 0x20000 an erased header over noise.
    poke(&img, 0x1000 + 600, |b| b ^ 1);
    patch(&img, 0x20000 + 1024, &noise(1024, 7));
    let out = ok(&img, &[e[0], e[1], "repair", "--yes"]);
    let listed = out
        .lines()
        .find_map(|l| l.split_once("repair would erase "))
        .and_then(|(_, rest)| rest.split_once(" erase block(s)"))
        .map(|(n, _)| n.to_string())
        .unwrap_or_else(|| panic!("no list:\n{out}"));
    assert!(
        out.contains(&format!("repair: erased {listed} erase block(s)")),
        "{out}"
    );
    assert!(
        out.contains("0x20000"),
        "the noisy block is not listed:\n{out}"
    );
    let now = read(&img);
    assert!(now[0x20000..0x21000].iter().all(|&b| b == 0xFF));
}

// ---- issue 9, bug 7: OpenWrt's markers, exactly as OpenWrt writes them ----

#[test]
fn deadc0de_is_recognised_exactly_as_openwrt_writes_it() {
    let sc = scratch();
    let u = upper(sc.path(), "u", 1);
    for (name, bytes, status, foreign) in [
        // mtd's JFFS2_EOF byte string; fstools compares be32_to_cpu(word) with 0xdeadc0de.
        ("be", [0xDE, 0xAD, 0xC0, 0xDE], "unformatted", "deadc0de"),
        // The little-endian word is nothing OpenWrt writes: unknown data, not a chain.
        ("le", [0xDE, 0xC0, 0xAD, 0xDE], "unformatted", "unknown"),
        // fstools' FS_SNAPSHOT, the original snapshot tool's chain.
        ("owrt", *b"OWRT", "unformatted", "owrt"),
        // A UBIFS node, as OpenWrt's NAND sysupgrade leaves rootfs_data with kept settings.
        ("ubifs", [0x31, 0x18, 0x10, 0x06], "unformatted", "ubifs"),
    ] {
        let img = image(sc.path(), &format!("{name}.img"), 1 << 20);
        let f = fs::OpenOptions::new().write(true).open(&img).expect("open");
        let mut head = noise(4096, 3);
        head[..4].copy_from_slice(&bytes);
        f.write_all_at(&head, 0).expect("write");
        drop(f);
        let i = info(&img);
        assert_eq!(i["status"], status, "{name}: {i}");
        assert_eq!(i["foreign"], foreign, "{name}: {i}");
        let code = if foreign == "unknown" { 13 } else { 5 };
        refused(&img, &["save", "--upper", s(&u)], code, "format --force");
        if foreign == "deadc0de" {
            // The marker asks to be formatted: no --force needed.
            ok(&img, &["format"]);
            assert_eq!(info(&img)["status"], "empty");
        } else {
            refused(&img, &["format"], 5, "--force");
        }
    }
}

#[test]
fn info_lists_what_might_be_data() {
    let sc = scratch();
    let img = chain(sc.path());
    poke(&img, 256 + 3000, |b| b ^ 0x01);
    let i = info(&img);
    let suspects = i["suspects"].as_array().expect("suspects");
    // Snapshot 1 itself, and snapshot 2 and both volatile copies the walk no longer reaches.
    assert_eq!(suspects.len(), 4, "{i}");
    assert_eq!(suspects[0]["offset"], 0);
    assert!(
        suspects[0]["what"]
            .as_str()
            .unwrap_or("")
            .contains("payload SHA-256"),
        "{i}"
    );
    let text = ok(&img, &["info"]);
    assert!(text.contains("writes refuse"), "{text}");
}
