//! `snapshot verify` proves what the boot path will accept: it fails on a flipped payload byte
//! and on a payload whose hash is right but whose tar the boot path would reject.

mod cli_common;

use cli_common::*;
use snapinit::device::DeviceFlash;
use snapinit::header::Compression;
use snapshot::writer::{Payload, Writer};
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn flip(img: &Path, offset: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .expect("open image");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read");
    b[0] ^= 0x10;
    f.write_all_at(&b, offset).expect("write");
}

fn two_snapshots(base: &Path) -> std::path::PathBuf {
    let img = image(base, "flash.img", 2 << 20);
    let upper = base.join("upper");
    fs::create_dir(&upper).expect("mkdir");
    file(&upper.join("a"), &noise(10_000, 5), 0o644, (0, 0));
    ok(&img, &["format"]);
    ok(&img, &["commit", "--upper", s(&upper), "--no-reboot"]);
    file(&upper.join("b"), b"second", 0o644, (0, 0));
    ok(&img, &["commit", "--upper", s(&upper), "--no-reboot"]);
    ok(&img, &["save", "--upper", s(&upper)]);
    ok(&img, &["verify"]);
    img
}

/// Appends `payload` as a snapshot with the library's writer: a block with a valid header and
/// hash, whatever its bytes are.
fn append(img: &Path, payload: Payload<'_>) {
    let mut flash = DeviceFlash::open_file(img, 65536, true).expect("open");
    Writer::new(&mut flash)
        .append_snapshot(&payload)
        .expect("append");
}

#[test]
fn a_flipped_byte_in_the_top_snapshot_fails_verify() {
    let sc = scratch();
    let img = two_snapshots(sc.path());
    let off = info(&img)["snapshots"][1]["offset"]
        .as_u64()
        .expect("offset");
    flip(&img, off + 256 + 100);
    let o = fails(&img, &["verify"], 9);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAIL"), "{out}");
}

#[test]
fn a_flipped_byte_in_the_first_snapshot_fails_verify() {
    let sc = scratch();
    let img = two_snapshots(sc.path());
    flip(&img, 256 + 5000);
    fails(&img, &["verify"], 9);
}

#[test]
fn a_flipped_byte_in_the_volatile_fails_verify() {
    let sc = scratch();
    let img = two_snapshots(sc.path());
    let off = info(&img)["volatile"]["offset"].as_u64().expect("offset");
    flip(&img, off + 256 + 20);
    fails(&img, &["verify"], 9);
}

#[test]
fn a_correctly_hashed_but_undecodable_payload_fails_verify() {
    let sc = scratch();
    let img = image(sc.path(), "flash.img", 1 << 20);
    ok(&img, &["format"]);
    // Garbage that claims to be gzip, written with a valid header and hash.
    let data = noise(3000, 9);
    append(
        &img,
        Payload {
            data: &data,
            compression: Compression::Gzip,
            unpacked_len: 10_240,
        },
    );
    assert_eq!(info(&img)["snapshots"].as_array().map(Vec::len), Some(1));
    let o = fails(&img, &["verify"], 9);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("FAIL  snapshot 1"),
        "{}",
        show(&o)
    );
    // A plain tar that is not ustar.
    let img2 = image(sc.path(), "flash2.img", 1 << 20);
    ok(&img2, &["format"]);
    let mut tar = vec![0u8; 2048];
    tar[..11].copy_from_slice(b"hello-world");
    append(
        &img2,
        Payload {
            data: &tar,
            compression: Compression::None,
            unpacked_len: 2048,
        },
    );
    fails(&img2, &["verify"], 9);
}

/// A tar made by Python's tarfile (pax), with `body` adding its members to `tf`.
fn python_tar(body: &str) -> Vec<u8> {
    let script = format!(
        "import io, sys, tarfile\nbuf = io.BytesIO()\ntf = tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT)\n{body}tf.close()\nsys.stdout.buffer.write(buf.getvalue())\n"
    );
    stdout_of(std::process::Command::new("python3").args(["-c", &script]))
}

/// What `cmd` prints; it must succeed.
fn stdout_of(cmd: &mut std::process::Command) -> Vec<u8> {
    let o = cmd.output().expect("run a tool the test needs");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Payloads the boot path cannot apply though every entry decodes: a file capability the
/// kernel refuses (PID 1's fsetxattr failed while verify said good) and an owner of
/// 4294967295 (PID 1 left the file owned by root; a debug build of extract aborted). verify,
/// extract and the boot path now refuse both with the reader's reason.
#[test]
fn payloads_the_kernel_cannot_apply_fail_verify_and_extract() {
    let sc = scratch();
    for (tag, body, reason) in [
        (
            "cap",
            "i = tarfile.TarInfo('f')\ni.size = 1\ni.pax_headers = {'SCHILY.xattr.security.capability': 'xx'}\ntf.addfile(i, io.BytesIO(b'x'))\n",
            "security.capability",
        ),
        (
            "uid",
            "i = tarfile.TarInfo('f')\ni.size = 1\ni.uid = 4294967295\ntf.addfile(i, io.BytesIO(b'x'))\n",
            "uid 4294967295",
        ),
    ] {
        let img = image(sc.path(), &format!("{tag}.img"), 1 << 20);
        ok(&img, &["format"]);
        let tar = python_tar(body);
        append(
            &img,
            Payload {
                data: &tar,
                compression: Compression::None,
                unpacked_len: tar.len() as u64,
            },
        );
        let o = fails(&img, &["verify"], 9);
        assert!(show(&o).contains(reason), "{tag}: {}", show(&o));
        let out = sc.path().join(format!("out-{tag}"));
        let o = fails(&img, &["extract", "all", s(&out)], 8);
        assert!(show(&o).contains(reason), "{tag}: {}", show(&o));
    }
}

/// A gzip payload of one file of `len` zeros, made by GNU tar and gzip.
fn zeros_tar_gz(dir: &Path, len: u64) -> Vec<u8> {
    let tree = dir.join(format!("zeros-{len}"));
    fs::create_dir_all(&tree).expect("mkdir");
    fs::write(tree.join("zeros"), vec![0u8; len as usize]).expect("write");
    stdout_of(std::process::Command::new("sh").arg("-c").arg(format!(
        "tar -C {} --format=pax -cf - zeros | gzip -9c",
        tree.display()
    )))
}

/// Zeros compress about 1000x: a block of one erase block can hold a file far larger than
/// the 64 erase blocks of data it may unpack to. verify and extract refuse it as the boot
/// does, and save refuses to write it (nor reads a sparse file for it), leaving flash as it
/// was.
#[test]
fn file_data_past_a_blocks_bound_fails_verify_and_extract_and_is_never_saved() {
    let sc = scratch();
    let limit = snapinit::header::data_limit(1, 65536);
    assert_eq!(limit, 4 << 20);
    let img = image(sc.path(), "flash.img", 2 << 20);
    ok(&img, &["format"]);
    let over = zeros_tar_gz(sc.path(), limit + 1);
    assert!(over.len() < 60_000, "{} bytes", over.len());
    append(
        &img,
        Payload {
            data: &over,
            compression: Compression::Gzip,
            unpacked_len: limit + 1 + 3 * 512,
        },
    );
    let reason = format!(
        "entry \"zeros\": tar: file data reaches {} bytes, more than the {limit} a block of this size may unpack to (64x its flash)",
        limit + 1
    );
    let o = fails(&img, &["verify"], 9);
    assert!(show(&o).contains(&reason), "{}", show(&o));
    let o = fails(&img, &["extract", "all", s(&sc.path().join("out"))], 8);
    assert!(show(&o).contains(&reason), "{}", show(&o));

    // At the bound exactly, all three take it.
    let img2 = image(sc.path(), "flash2.img", 2 << 20);
    ok(&img2, &["format"]);
    let at = zeros_tar_gz(sc.path(), limit);
    append(
        &img2,
        Payload {
            data: &at,
            compression: Compression::Gzip,
            unpacked_len: limit + 3 * 512,
        },
    );
    ok(&img2, &["verify"]);
    let out = sc.path().join("out2");
    ok(&img2, &["extract", "all", s(&out)]);
    assert_eq!(fs::metadata(out.join("zeros")).expect("zeros").len(), limit);

    // save: the same file is refused after packing (the volatile would be one erase block)...
    let upper = sc.path().join("upper");
    fs::create_dir(&upper).expect("mkdir");
    fs::write(upper.join("zeros"), vec![0u8; (limit + 1) as usize]).expect("write");
    let before = fs::read(&img2).expect("read");
    let o = fails(&img2, &["save", "--upper", s(&upper)], 8);
    assert!(
        show(&o).contains(&format!(
            "its files hold {} bytes, more than the {limit}",
            limit + 1
        )),
        "{}",
        show(&o)
    );
    assert!(
        fs::read(&img2).expect("read") == before,
        "save changed flash"
    );
    // ...and a sparse file of 4 GiB is refused at its stat, before a byte of it is read.
    fs::remove_file(upper.join("zeros")).expect("rm");
    let sparse = fs::File::create(upper.join("sparse")).expect("create");
    sparse.set_len(4 << 30).expect("truncate");
    let t = std::time::Instant::now();
    let o = fails(&img2, &["save", "--upper", s(&upper)], 8);
    let took = t.elapsed();
    assert!(
        show(&o).contains("\"sparse\": its 4294967296 bytes (a sparse file: 0 allocated)"),
        "{}",
        show(&o)
    );
    println!("a 4 GiB sparse file refused in {took:?}");
    assert!(
        fs::read(&img2).expect("read") == before,
        "save changed flash"
    );
}

/// A block past the bound (an older tool wrote such blocks from a sparse file): the boot and
/// extract refuse it, and `extract --salvage` still gets every file out of it, saying the boot
/// refuses it.
#[test]
fn salvage_gets_the_files_of_a_block_past_the_bound() {
    let sc = scratch();
    let img = image(sc.path(), "flash.img", 2 << 20);
    ok(&img, &["format"]);
    let tree = sc.path().join("t");
    fs::create_dir_all(&tree).expect("mkdir");
    fs::write(tree.join("a-zeros"), vec![0u8; 5 << 20]).expect("write");
    fs::write(tree.join("b-config"), b"important\n").expect("write");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C {} --format=pax -cf - a-zeros b-config | gzip -9c",
            tree.display()
        ))
        .output()
        .expect("tar");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    {
        let mut flash = DeviceFlash::open_file(img.as_path(), 65536, true).expect("open");
        Writer::new(&mut flash)
            .append_snapshot(&Payload {
                data: &o.stdout,
                compression: Compression::Gzip,
                unpacked_len: (5 << 20) + 4 * 512,
            })
            .expect("append");
    }
    fails(&img, &["verify"], 9);
    let out = sc.path().join("salvaged");
    let said = ok(&img, &["extract", "--salvage", "all", s(&out)]);
    assert!(said.contains("1 complete"), "{said}");
    assert!(said.contains("the boot refuses it"), "{said}");
    let sub = out.join("00000000-snapshot-seq1-gen1");
    assert_eq!(
        fs::read(sub.join("b-config")).expect("b-config"),
        b"important\n"
    );
}

/// An entry refused for its own header is named, not the entry before it: verify and extract
/// say which entry, as the boot log does.
#[test]
fn a_directory_that_declares_data_is_named() {
    let sc = scratch();
    let img = image(sc.path(), "flash.img", 1 << 20);
    ok(&img, &["format"]);
    let tar = python_tar(
        "i = tarfile.TarInfo('a')\ni.size = 1\ntf.addfile(i, io.BytesIO(b'x'))\ni = tarfile.TarInfo('d')\ni.type = tarfile.DIRTYPE\ni.size = 512\ntf.addfile(i, io.BytesIO(bytes(512)))\n",
    );
    append(&img, Payload::plain(&tar));
    let o = fails(&img, &["verify"], 9);
    assert!(
        show(&o).contains(": entry \"d\": tar: 512 bytes of data on a non-file entry"),
        "{}",
        show(&o)
    );
    assert!(!show(&o).contains("after entry"), "{}", show(&o));
}

/// After `rollback 0` the dropped snapshot at offset 0 stays (repair keeps offset 0 on a
/// chain without snapshots, docs/FORMAT.md "repair"); verify notes it, and must not send the
/// admin to a `repair` that erases nothing.
#[test]
fn verify_sends_to_repair_only_what_repair_erases() {
    let sc = scratch();
    let img = two_snapshots(sc.path());
    ok(&img, &["rollback", "0", "--yes", "--no-reboot"]);
    let out = ok(&img, &["repair"]);
    assert!(out.contains("erased 0 erase block(s)"), "{out}");
    let out = ok(&img, &["verify"]);
    assert!(
        out.contains("note  snapshot at 0x0: dropped by a rollback"),
        "{out}"
    );
    assert!(!out.contains("`snapshot repair` erases it"), "{out}");
}

/// `extract --salvage all DIR` (docs/SNAPSHOT.md): salvage ignores the chain and unpacks every
/// block it finds, so another ID (`2`, expecting block 2 alone) is refused, not ignored.
#[test]
fn salvage_takes_all_and_refuses_another_id() {
    let sc = scratch();
    let img = two_snapshots(sc.path());
    for id in ["2", "volatile", "x"] {
        let dest = sc.path().join(format!("salvage-{id}"));
        let o = fails(&img, &["extract", "--salvage", id, s(&dest)], 2);
        assert!(!dest.exists(), "{}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("`all`"),
            "{}",
            show(&o)
        );
    }
    let dest = sc.path().join("salvage-all");
    let out = ok(&img, &["extract", "--salvage", "all", s(&dest)]);
    assert!(out.contains("salvaged 3 block(s)"), "{out}");
}

/// A block of another erase size (an older chain's, left where a newer chain did not write)
/// spans erase blocks of its own size: salvage moves on from it by this partition's erase
/// blocks. It jumped to the block's end, off this partition's grid, and read every later
/// header 4 KiB past its place: the volatile above went unsalvaged.
#[test]
fn salvage_finds_the_blocks_after_one_of_another_erase_size() {
    let sc = scratch();
    let img = two_snapshots(sc.path());
    let other = image(sc.path(), "other.img", 64 << 10);
    {
        let mut flash = DeviceFlash::open_file(other.as_path(), 4096, true).expect("open");
        Writer::new(&mut flash)
            .append_snapshot(&Payload::plain(&[0u8; 1024]))
            .expect("append");
    }
    // Over snapshot 2: the chain ends at snapshot 1, the volatile above is unreachable.
    let small = fs::read(&other).expect("read");
    patch(&img, 0x10000, &small[..4096]);
    let dest = sc.path().join("salvaged");
    let out = ok(&img, &["extract", "--salvage", "all", s(&dest)]);
    let names: Vec<String> = fs::read_dir(&dest)
        .expect("salvaged")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("00020000-volatile")),
        "the volatile at 0x20000 was not salvaged: {names:?}\n{out}"
    );
}
