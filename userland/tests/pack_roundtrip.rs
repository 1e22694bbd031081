//! Pack an overlay-upper-like tree, check the archive bytes and GNU tar's
//! view of it, unpack it and compare the trees exhaustively. Runs as root.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};
use snapshot::pack::{self, PackError, PackOptions, SkipReason, Skipped};
use snapshot::unpack;

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the pack tests need root (mknod, chown, trusted.* xattrs): run `cargo test` as root"
    );
}

/// A temp dir on a filesystem that takes trusted.* xattrs, or a clear failure.
fn scratch() -> tempfile::TempDir {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    if let Err(e) = xattr::set(dir.path(), "trusted.snapinit.probe", b"1") {
        panic!(
            "{} does not support trusted.* xattrs ({e}); point TMPDIR at tmpfs or ext4",
            dir.path().display()
        );
    }
    xattr::remove(dir.path(), "trusted.snapinit.probe").expect("remove probe");
    dir
}

fn set_mtime(path: &Path, secs: i64, nanos: i64) {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nanos as _,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .expect("utimensat");
}

fn mknod(path: &Path, ft: FileType, mode: u32, major: u32, minor: u32) {
    rustix::fs::mknodat(
        CWD,
        path,
        ft,
        Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    )
    .expect("mknod");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).ok();
}

fn write(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir(path).expect("mkdir");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

const LONG_A: &str = "long-directory-name-number-one-that-goes-on-and-on-for-a-while";
const LONG_B: &str = "second-long-directory-name-that-pushes-the-path-past-one-hundred";

/// Builds the test upper directory in `root` and returns the paths of the
/// members that must be skipped.
fn build_tree(root: &Path) {
    let p = |s: &str| root.join(s);
    write(&p("hello.txt"), b"hello, router\n", 0o644);
    write(&p("empty"), b"", 0o600);
    mkdir(&p("bin"), 0o755);
    write(&p("bin/su"), b"#!/bin/sh\necho root\n", 0o644);
    std::os::unix::fs::chown(p("bin/su"), Some(1234), Some(5678)).expect("chown");
    // After chown, which clears setuid.
    fs::set_permissions(p("bin/su"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    write(&p("bin/sg"), b"sg", 0o2711);
    xattr::set(p("bin/sg"), "security.capability", &CAP_NET_RAW).expect("cap");
    mkdir(&p("a"), 0o750);
    mkdir(&p("a/b"), 0o755);
    mkdir(&p("a/b/c"), 0o700);
    write(&p("a/b/c/deep.txt"), &vec![b'x'; 70_000], 0o640);
    std::os::unix::fs::lchown(p("a/b"), Some(1234), Some(5678)).expect("chown");
    // Long paths (> 100 bytes) for pax `path`.
    mkdir(&p(LONG_A), 0o755);
    mkdir(&p(&format!("{LONG_A}/{LONG_B}")), 0o755);
    let long_file = format!("{LONG_A}/{LONG_B}/a-file-with-a-long-name-as-well.conf");
    assert!(long_file.len() > 100 && long_file.len() <= 255);
    write(&p(&long_file), b"long", 0o644);
    // Symlinks: relative, absolute, dangling, long target, trailing slash.
    symlink("hello.txt", p("sym")).expect("symlink");
    symlink("/etc/config/network", p("abs-sym")).expect("symlink");
    symlink(format!("../{}", "t".repeat(150)), p("long-target")).expect("symlink");
    symlink("a/b/", p("dir-sym")).expect("symlink");
    std::os::unix::fs::lchown(p("sym"), Some(1234), Some(5678)).expect("lchown");
    xattr::set(p("abs-sym"), "trusted.snapinit.tag", b"on-a-symlink").expect("xattr");
    // Hard links, one of them with a long path and so a long pax linkpath.
    write(&p("hl1"), b"shared inode", 0o644);
    fs::hard_link(p("hl1"), p("a/hl2")).expect("link");
    fs::hard_link(p(&long_file), p(&format!("{LONG_A}/{LONG_B}/x"))).expect("link");
    fs::hard_link(p("hl1"), p("zz-last-link")).expect("link");
    // Whiteouts (overlay: char 0:0, mode 0) and an opaque directory.
    mknod(&p("deleted"), FileType::CharacterDevice, 0o000, 0, 0);
    mknod(&p("a/gone"), FileType::CharacterDevice, 0o000, 0, 0);
    mkdir(&p("opq"), 0o755);
    xattr::set(p("opq"), "trusted.overlay.opaque", b"y").expect("opaque");
    write(&p("opq/new"), b"new", 0o644);
    // Overlay bookkeeping that must be dropped, and kept metadata.
    xattr::set(p("hello.txt"), "trusted.overlay.origin", b"\x00\xfb\x21fh").expect("origin");
    xattr::set(p("a"), "trusted.overlay.impure", b"y").expect("impure");
    xattr::set(p("hello.txt"), "trusted.comment", b"greeting").expect("trusted xattr");
    xattr::set(p("hello.txt"), "security.binary", b"\x00\x01\n=\xff").expect("security xattr");
    xattr::set(p("bin"), "trusted.overlay.redirect", b"/old-bin").expect("redirect");
    // Special directory modes, including one we cannot write as non-root.
    mkdir(&p("tmp"), 0o1777);
    mkdir(&p("setgid-dir"), 0o2775);
    // New files in a setgid directory take its group: one that keeps it, one whose own group
    // is root's (replay must chown it back), and one whose mode the umask would cut.
    std::os::unix::fs::chown(p("setgid-dir"), None, Some(5678)).expect("chown");
    fs::set_permissions(p("setgid-dir"), fs::Permissions::from_mode(0o2775)).expect("chmod");
    write(&p("setgid-dir/inherited"), b"group 5678", 0o640);
    write(&p("setgid-dir/root-group"), b"group 0", 0o640);
    std::os::unix::fs::chown(p("setgid-dir/root-group"), Some(0), Some(0)).expect("chown");
    write(&p("setgid-dir/everyone"), b"rw for all", 0o644);
    fs::set_permissions(p("setgid-dir/everyone"), fs::Permissions::from_mode(0o666))
        .expect("chmod");
    mkdir(&p("ro"), 0o755);
    write(&p("ro/file"), b"ro", 0o444);
    fs::set_permissions(p("ro"), fs::Permissions::from_mode(0o555)).expect("chmod");
    mkdir(&p("empty-dir"), 0o700);
    // Not representable: skipped and reported.
    let _sock = UnixListener::bind(p("sock")).expect("bind");
    mknod(&p("fifo"), FileType::Fifo, 0o644, 0, 0);
    mknod(&p("null"), FileType::CharacterDevice, 0o666, 1, 3);
    mknod(&p("blk"), FileType::BlockDevice, 0o660, 7, 0);
    // The overlay work directory, excluded by option.
    mkdir(&p("work"), 0o700);
    mkdir(&p("work/work"), 0o000);
    // Distinct mtimes for everything, some with nanoseconds, children first.
    let mut all = Vec::new();
    walk(root, Path::new(""), &mut all);
    for (i, rel) in all.iter().rev().enumerate() {
        let nanos = if i % 3 == 0 {
            0
        } else {
            123_456_789 + i as i64
        };
        set_mtime(&root.join(rel), 1_600_000_000 + 1000 * i as i64, nanos);
    }
}

/// `security.capability` v2 for cap_net_raw+ep.
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

/// Relative paths below `root`, parents first, sorted.
fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let child = rel.join(name);
        out.push(child.clone());
        let meta = fs::symlink_metadata(root.join(&child)).expect("lstat");
        if meta.is_dir() {
            walk(root, &child, out);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    rdev: (u32, u32),
    content: Option<Vec<u8>>,
    target: Option<PathBuf>,
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Every difference between the trees below `a` and `b` (roots excluded),
/// ignoring the top-level members named in `ignore` (in `b` a member left out
/// of the payload is a whiteout: see `stand_ins_are_whiteouts`) and the xattrs
/// of `a` named in `drop_xattrs`. Empty means identical.
fn diff_trees(a: &Path, b: &Path, ignore: &[&str], drop_xattrs: &[&str]) -> Vec<String> {
    let (na, la) = scan(a, ignore, drop_xattrs);
    let (nb, lb) = scan(b, ignore, &[]);
    let mut diffs = Vec::new();
    for (path, node) in &na {
        match nb.get(path) {
            None => diffs.push(format!("{path:?}: missing from {}", b.display())),
            Some(other) if other != node => {
                diffs.push(format!("{path:?}: {node:?}\n    != {other:?}"))
            }
            Some(_) => {}
        }
    }
    for path in nb.keys().filter(|p| !na.contains_key(*p)) {
        diffs.push(format!("{path:?}: only in {}", b.display()));
    }
    if la != lb {
        diffs.push(format!("hard-link groups differ: {la:?} != {lb:?}"));
    }
    diffs
}

fn assert_same_trees(a: &Path, b: &Path, ignore: &[&str], drop_xattrs: &[&str]) {
    let diffs = diff_trees(a, b, ignore, drop_xattrs);
    assert!(diffs.is_empty(), "trees differ:\n{}", diffs.join("\n"));
}

type Scan = (BTreeMap<PathBuf, Node>, BTreeSet<Vec<PathBuf>>);

fn scan(root: &Path, ignore: &[&str], drop_xattrs: &[&str]) -> Scan {
    let mut rels = Vec::new();
    walk(root, Path::new(""), &mut rels);
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    for rel in rels {
        if ignore.iter().any(|i| rel.starts_with(i)) {
            continue;
        }
        let full = root.join(&rel);
        let m = fs::symlink_metadata(&full).expect("lstat");
        let ft = m.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            '-'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else {
            '?'
        };
        if kind == '-' {
            inodes
                .entry((m.dev(), m.ino()))
                .or_default()
                .push(rel.clone());
        }
        let xattrs = xattr::list(&full)
            .expect("listxattr")
            .map(|n| n.into_string().expect("utf-8 xattr name"))
            .filter(|n| !drop_xattrs.contains(&n.as_str()))
            .map(|n| {
                let v = xattr::get(&full, &n).expect("getxattr").unwrap_or_default();
                (n, v)
            })
            .collect();
        nodes.insert(
            rel,
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                mtime: (m.mtime(), m.mtime_nsec()),
                rdev: (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())),
                content: (kind == '-').then(|| fs::read(&full).expect("read")),
                target: (kind == 'l').then(|| fs::read_link(&full).expect("readlink")),
                xattrs,
            },
        );
    }
    let links = inodes.into_values().filter(|g| g.len() > 1).collect();
    (nodes, links)
}

/// Walks the 512-byte records: checks magic, version, checksum, octal
/// fields and the two-zero-record end; returns (typeflag, name field).
fn scan_headers(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(bytes.len() % 512, 0, "archive is not whole records");
    let octal = |field: &[u8]| -> u64 {
        let s: Vec<u8> = field
            .iter()
            .copied()
            .filter(|b| *b != 0 && *b != b' ')
            .collect();
        assert!(
            s.iter().all(|b| (b'0'..=b'7').contains(b)),
            "non-octal field {field:?}"
        );
        u64::from_str_radix(std::str::from_utf8(&s).expect("ascii"), 8).unwrap_or(0)
    };
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let h = &bytes[pos..pos + 512];
        if h.iter().all(|b| *b == 0) {
            assert!(
                bytes[pos..].iter().all(|b| *b == 0) && bytes.len() - pos == 1024,
                "archive must end with exactly two zero records"
            );
            break;
        }
        assert_eq!(&h[257..263], b"ustar\0", "magic at {pos}");
        assert_eq!(&h[263..265], b"00", "version at {pos}");
        let mut sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        sum = sum - h[148..156].iter().map(|b| u64::from(*b)).sum::<u64>() + 8 * 32;
        assert_eq!(octal(&h[148..156]), sum, "checksum at {pos}");
        for range in [100..108, 108..116, 116..124, 124..136, 136..148] {
            octal(&h[range]);
        }
        assert!(
            h[345..500].iter().all(|b| *b == 0),
            "ustar prefix must be empty"
        );
        let typeflag = h[156];
        assert!(
            b"01235x".contains(&typeflag),
            "typeflag {:?} at {pos}",
            typeflag as char
        );
        let size = octal(&h[124..136]);
        let name = h[..100].iter().copied().take_while(|b| *b != 0).collect();
        out.push((typeflag, name));
        pos += 512 + size.div_ceil(512) as usize * 512;
    }
    out
}

fn pack_vec(src: &Path, opts: &PackOptions) -> (Vec<u8>, pack::PackReport) {
    let mut out = Vec::new();
    let report = pack::pack_dir(src, opts, &mut out).expect("pack");
    (out, report)
}

fn opts() -> PackOptions {
    PackOptions {
        exclude: vec![PathBuf::from("work")],
        max_data: None,
    }
}

const SKIPPED: &[&str] = &["work", "sock", "fifo", "null", "blk"];
/// The members of `SKIPPED` that are not excluded: each is packed as a whiteout in its place.
const STAND_INS: &[&str] = &["sock", "fifo", "null", "blk"];

/// Each member left out of the payload (not excluded) replays as a whiteout, which hides what a
/// lower layer holds at its path.
fn stand_ins_are_whiteouts(dest: &Path) {
    use std::os::unix::fs::FileTypeExt;
    for name in STAND_INS {
        let m = fs::symlink_metadata(dest.join(name)).expect("stand-in");
        assert!(
            m.file_type().is_char_device() && m.rdev() == 0,
            "{name}: not a whiteout"
        );
    }
    assert!(!dest.join("work").exists(), "an excluded member was packed");
}
const DROPPED: &[&str] = &["trusted.overlay.origin", "trusted.overlay.impure"];

#[test]
fn pack_then_unpack_reproduces_the_tree() {
    let tmp = scratch();
    let src = tmp.path().join("upper");
    fs::create_dir(&src).expect("mkdir");
    build_tree(&src);

    let (bytes, report) = pack_vec(&src, &opts());
    assert_eq!(
        report.skipped,
        vec![
            Skipped {
                path: "blk".into(),
                reason: SkipReason::BlockDevice { major: 7, minor: 0 }
            },
            Skipped {
                path: "fifo".into(),
                reason: SkipReason::Fifo
            },
            Skipped {
                path: "null".into(),
                reason: SkipReason::CharDevice { major: 1, minor: 3 }
            },
            Skipped {
                path: "sock".into(),
                reason: SkipReason::Socket
            },
        ]
    );
    let mut expected_paths = Vec::new();
    walk(&src, Path::new(""), &mut expected_paths);
    expected_paths.retain(|p| !p.starts_with("work"));
    assert_eq!(report.entries, expected_paths.len() as u64);
    let content_bytes = 14 + 20 + 2 + 70_000 + 4 + 12 + 3 + 2 + 10 + 7 + 10;
    assert_eq!(report.bytes_in, content_bytes);

    // Record-level checks: ustar only, no GNU records, entries in order.
    let headers = scan_headers(&bytes);
    let entry_types: Vec<u8> = headers.iter().map(|h| h.0).filter(|t| *t != b'x').collect();
    assert_eq!(entry_types.len(), expected_paths.len());
    assert!(
        headers.iter().any(|h| h.0 == b'x'),
        "no pax records written"
    );
    let short_names: Vec<Vec<u8>> = headers
        .iter()
        .filter(|h| h.0 != b'x')
        .map(|h| h.1.clone())
        .collect();
    for (name, path) in short_names.iter().zip(&expected_paths) {
        let p = path.as_os_str().as_bytes();
        assert_eq!(
            name.as_slice(),
            &p[..p.len().min(100)],
            "order/name of {path:?}"
        );
    }

    // GNU tar's view.
    let archive = tmp.path().join("payload.tar");
    fs::write(&archive, &bytes).expect("write archive");
    let listing = gnu_tar_list(&archive);
    let names: Vec<&str> = listing.iter().map(|l| l.name.as_str()).collect();
    let expected: Vec<String> = expected_paths
        .iter()
        .map(|p| p.to_str().expect("utf-8").to_owned())
        .collect();
    assert_eq!(names, expected);
    let line = |n: &str| {
        listing
            .iter()
            .find(|l| l.name == n)
            .unwrap_or_else(|| panic!("{n} not listed"))
    };
    assert_eq!(line("bin/su").perms, "-rwsr-xr-x");
    assert_eq!(line("bin/su").owner, "1234/5678");
    assert_eq!(line("deleted").perms, "c---------");
    for name in STAND_INS {
        assert_eq!(line(name).perms, "c---------", "{name}");
        assert_eq!(line(name).owner, "0/0", "{name}");
    }
    assert_eq!(line("tmp").perms, "drwxrwxrwt");
    assert_eq!(line("sym").perms, "lrwxrwxrwx");
    assert_eq!(line("sym").rest, "-> hello.txt");
    // "a/hl2" sorts before "hl1", so it carries the data.
    assert_eq!(line("a/hl2").rest, "");
    assert_eq!(line("hl1").perms, "hrw-r--r--");
    assert_eq!(line("hl1").rest, "link to a/hl2");
    assert_eq!(line("zz-last-link").rest, "link to a/hl2");
    // Sub-second mtimes travel in pax `mtime` records (hard links and stand-ins carry none).
    for l in listing
        .iter()
        .filter(|l| !l.perms.starts_with('h') && !STAND_INS.contains(&l.name.as_str()))
    {
        let nanos = fs::symlink_metadata(src.join(&l.name))
            .expect("lstat")
            .mtime_nsec();
        let frac = l.time.split_once('.').map(|(_, f)| f);
        let want = format!("{nanos:09}");
        let want = (nanos != 0).then(|| want.trim_end_matches('0'));
        assert_eq!(frac, want, "sub-second mtime of {}", l.name);
    }
    assert_eq!(
        line("long-target").rest,
        format!("-> ../{}", "t".repeat(150))
    );

    // Unpack and compare everything.
    let dest = tmp.path().join("out");
    fs::create_dir(&dest).expect("mkdir");
    let ur = unpack::unpack(&bytes[..], false, u64::MAX, &dest).expect("unpack");
    assert_eq!(u64::from(ur.entries), report.entries);
    assert_eq!(ur.bytes, report.bytes_in);
    assert_same_trees(&src, &dest, SKIPPED, DROPPED);
    stand_ins_are_whiteouts(&dest);
    for (path, name) in [("hello.txt", DROPPED[0]), ("a", DROPPED[1])] {
        assert_eq!(xattr::get(dest.join(path), name).expect("getxattr"), None);
    }
    assert_eq!(
        xattr::get(dest.join("opq"), "trusted.overlay.opaque").expect("getxattr"),
        Some(b"y".to_vec())
    );

    // Packing the unpacked tree gives the same bytes: deterministic (the stand-ins' whiteouts
    // are packed as they were written).
    let (again, _) = pack_vec(&dest, &PackOptions::default());
    let (first, _) = pack_vec(&src, &opts());
    assert!(
        first == again,
        "re-packing the unpacked tree changed the bytes"
    );
}

type Mutation = Box<dyn Fn(&Path)>;

#[test]
fn comparison_catches_lost_metadata_and_deletions() {
    let tmp = scratch();
    let src = tmp.path().join("upper");
    fs::create_dir(&src).expect("mkdir");
    build_tree(&src);
    let (bytes, _) = pack_vec(&src, &opts());
    let fresh = |name: &str| {
        let dest = tmp.path().join(name);
        fs::create_dir(&dest).expect("mkdir");
        unpack::unpack(&bytes[..], false, u64::MAX, &dest).expect("unpack");
        assert_same_trees(&src, &dest, SKIPPED, DROPPED);
        dest
    };
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "mode",
            Box::new(|d| {
                fs::set_permissions(d.join("bin/su"), fs::Permissions::from_mode(0o755))
                    .expect("chmod")
            }),
        ),
        (
            "owner",
            Box::new(|d| {
                std::os::unix::fs::lchown(d.join("a/b"), Some(0), Some(0)).expect("chown")
            }),
        ),
        (
            "xattr",
            Box::new(|d| xattr::remove(d.join("opq"), "trusted.overlay.opaque").expect("rm")),
        ),
        (
            "whiteout",
            Box::new(|d| fs::remove_file(d.join("a/gone")).expect("rm")),
        ),
        (
            "mtime",
            Box::new(|d| set_mtime(&d.join("hello.txt"), 1_600_000_000, 0)),
        ),
        (
            "hard link",
            Box::new(|d| {
                fs::remove_file(d.join("a/hl2")).expect("rm");
                fs::copy(d.join("hl1"), d.join("a/hl2")).expect("cp");
            }),
        ),
    ];
    for (i, (what, mutate)) in mutations.iter().enumerate() {
        let dest = fresh(&format!("m{i}"));
        mutate(&dest);
        assert!(
            !diff_trees(&src, &dest, SKIPPED, DROPPED).is_empty(),
            "comparison missed a changed {what}"
        );
    }
}

/// tmpfs keeps user.* xattrs only since Linux 6.6: the boot path could not restore them on
/// every router, so packing leaves them out and says so (the file itself is kept).
#[test]
fn user_xattrs_are_skipped_and_reported() {
    let tmp = scratch();
    let src = tmp.path().join("upper");
    fs::create_dir(&src).expect("mkdir");
    write(&src.join("f"), b"f", 0o644);
    xattr::set(src.join("f"), "user.comment", b"c").expect("user xattr");
    xattr::set(src.join("f"), "trusted.kept", b"k").expect("trusted xattr");
    let (bytes, report) = pack_vec(&src, &opts());
    assert_eq!(
        report.skipped,
        vec![Skipped {
            path: "f".into(),
            reason: SkipReason::Xattr {
                name: "user.comment".into()
            }
        }]
    );
    let dest = tmp.path().join("out");
    fs::create_dir(&dest).expect("mkdir");
    unpack::unpack(&bytes[..], false, u64::MAX, &dest).expect("unpack");
    assert_eq!(
        xattr::get(dest.join("f"), "trusted.kept").expect("get"),
        Some(b"k".to_vec())
    );
    assert_eq!(
        xattr::get(dest.join("f"), "user.comment").expect("get"),
        None
    );
}

/// A rootless overlay (userxattr) marks an opaque directory with user.overlay.opaque: stored
/// as trusted.overlay.opaque, the mark the boot path's overlay reads, so the directory hides
/// what the layers below hold there; a file with both marks keeps the trusted one.
#[test]
fn a_userxattr_overlays_marks_are_stored_as_trusted_ones() {
    let tmp = scratch();
    let src = tmp.path().join("upper");
    fs::create_dir_all(src.join("etc/foo")).expect("mkdir");
    write(&src.join("etc/foo/keep"), b"new", 0o644);
    xattr::set(src.join("etc/foo"), "user.overlay.opaque", b"y").expect("user xattr");
    fs::create_dir_all(src.join("both")).expect("mkdir");
    xattr::set(src.join("both"), "user.overlay.opaque", b"x").expect("user xattr");
    xattr::set(src.join("both"), "trusted.overlay.opaque", b"y").expect("trusted xattr");
    let (bytes, report) = pack_vec(&src, &opts());
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let dest = tmp.path().join("out");
    fs::create_dir(&dest).expect("mkdir");
    unpack::unpack(&bytes[..], false, u64::MAX, &dest).expect("unpack");
    for dir in ["etc/foo", "both"] {
        assert_eq!(
            xattr::get(dest.join(dir), "trusted.overlay.opaque").expect("get"),
            Some(b"y".to_vec()),
            "{dir}"
        );
        assert_eq!(
            xattr::get(dest.join(dir), "user.overlay.opaque").expect("get"),
            None,
            "{dir}"
        );
    }
}

#[test]
fn a_gzipped_payload_unpacks_as_its_tar() {
    let tmp = scratch();
    let src = tmp.path().join("upper");
    fs::create_dir(&src).expect("mkdir");
    build_tree(&src);
    let (plain, report) = pack_vec(&src, &opts());
    assert_eq!(report.skipped.len(), 4);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&plain).expect("gzip");
    let gz = enc.finish().expect("gzip");
    let dest = tmp.path().join("out");
    fs::create_dir(&dest).expect("mkdir");
    unpack::unpack(&gz[..], true, u64::MAX, &dest).expect("unpack");
    assert_same_trees(&src, &dest, SKIPPED, DROPPED);
}

#[test]
fn later_payloads_override_earlier_ones() {
    let tmp = scratch();
    let l1 = tmp.path().join("l1");
    let l2 = tmp.path().join("l2");
    for d in [&l1, &l2] {
        fs::create_dir(d).expect("mkdir");
    }
    // Layer 1.
    write(&l1.join("keep"), b"1", 0o644);
    write(&l1.join("changed"), b"old", 0o644);
    write(&l1.join("removed"), b"bye", 0o644);
    mkdir(&l1.join("dir-to-file"), 0o755);
    write(&l1.join("dir-to-file/inner"), b"x", 0o644);
    write(&l1.join("file-to-dir"), b"x", 0o644);
    mkdir(&l1.join("merged"), 0o755);
    write(&l1.join("merged/old"), b"o", 0o644);
    mkdir(&l1.join("opaqued"), 0o755);
    write(&l1.join("opaqued/hidden"), b"h", 0o644);
    mkdir(&l1.join("was-opaque"), 0o755);
    xattr::set(l1.join("was-opaque"), "trusted.overlay.opaque", b"y").expect("xattr");
    // Layer 2: an upper dir on top of layer 1.
    write(&l2.join("changed"), b"new", 0o600);
    mknod(&l2.join("removed"), FileType::CharacterDevice, 0, 0, 0);
    write(&l2.join("dir-to-file"), b"now a file", 0o644);
    mkdir(&l2.join("file-to-dir"), 0o711);
    write(&l2.join("file-to-dir/child"), b"c", 0o644);
    mkdir(&l2.join("merged"), 0o700);
    write(&l2.join("merged/new"), b"n", 0o644);
    mkdir(&l2.join("opaqued"), 0o755);
    xattr::set(l2.join("opaqued"), "trusted.overlay.opaque", b"y").expect("xattr");
    write(&l2.join("opaqued/fresh"), b"f", 0o644);
    mkdir(&l2.join("was-opaque"), 0o750);
    set_mtime(&l2.join("merged"), 1_700_000_000, 5);

    let dest = tmp.path().join("out");
    fs::create_dir(&dest).expect("mkdir");
    for layer in [&l1, &l2] {
        let (bytes, _) = pack_vec(layer, &PackOptions::default());
        unpack::unpack(&bytes[..], false, u64::MAX, &dest).expect("unpack");
    }
    let read = |p: &str| fs::read(dest.join(p)).expect("read");
    assert_eq!(read("keep"), b"1");
    assert_eq!(read("changed"), b"new");
    let m = fs::metadata(dest.join("changed")).expect("stat");
    assert_eq!(m.mode() & 0o7777, 0o600);
    let w = fs::symlink_metadata(dest.join("removed")).expect("stat");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        w.file_type().is_char_device() && w.rdev() == 0,
        "whiteout kept as c 0:0"
    );
    assert_eq!(read("dir-to-file"), b"now a file");
    assert_eq!(read("file-to-dir/child"), b"c");
    assert_eq!(
        fs::metadata(dest.join("file-to-dir")).expect("stat").mode() & 0o7777,
        0o711
    );
    assert_eq!(read("merged/old"), b"o");
    assert_eq!(read("merged/new"), b"n");
    let merged = fs::metadata(dest.join("merged")).expect("stat");
    assert_eq!(
        (merged.mode() & 0o7777, merged.mtime(), merged.mtime_nsec()),
        (0o700, 1_700_000_000, 5)
    );
    assert!(
        !dest.join("opaqued/hidden").exists(),
        "opaque dir hides layer 1"
    );
    assert_eq!(read("opaqued/fresh"), b"f");
    assert_eq!(
        xattr::get(dest.join("was-opaque"), "trusted.overlay.opaque").expect("getxattr"),
        Some(b"y".to_vec()),
        "a non-opaque upper dir does not un-hide what the lower opaque dir hid"
    );
}

/// A default ACL on the destination (inherited by what is created below it) takes the place of
/// the umask: a file created there does not get the mode it was created with. `extract` must
/// still give every file its entry's mode, as the boot path does on its tmpfs, so that a tree
/// extracted (or salvaged) and committed again keeps its modes.
#[test]
fn unpacking_below_a_default_acl_keeps_every_mode() {
    let tmp = scratch();
    let src = tmp.path().join("upper");
    fs::create_dir(&src).expect("mkdir");
    write(&src.join("config"), b"readable by all", 0o644);
    mkdir(&src.join("etc"), 0o755);
    write(&src.join("etc/passwd"), b"root:x:0:0", 0o644);
    let (bytes, _) = pack_vec(&src, &PackOptions::default());

    let dest = tmp.path().join("out");
    fs::create_dir(&dest).expect("mkdir");
    // user::rwx group::--- other::--- (system.posix_acl_default, version 2).
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm) in [(0x01u16, 7u16), (0x04, 0), (0x20, 0)] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    xattr::set(&dest, "system.posix_acl_default", &acl)
        .expect("the test's filesystem takes no POSIX ACLs");
    unpack::unpack(&bytes[..], false, u64::MAX, &dest).expect("unpack");
    for name in ["config", "etc", "etc/passwd"] {
        let want = fs::symlink_metadata(src.join(name)).expect("stat").mode() & 0o7777;
        let got = fs::symlink_metadata(dest.join(name)).expect("stat").mode() & 0o7777;
        assert_eq!(got, want, "mode of {name}: {got:o}, packed {want:o}");
    }
}

/// In an overlay, a FIFO, socket or device made where a lower layer holds a file (deleted
/// first: `rm f; mkfifo f`) replaces that file's whiteout in the upper directory. The format
/// cannot carry the member, but the payload must still hide what lies below it: replayed over
/// the layer that holds the old file, the deleted file does not come back.
#[test]
fn a_member_left_out_still_hides_what_it_replaced() {
    let tmp = scratch();
    let l1 = tmp.path().join("l1");
    let l2 = tmp.path().join("l2");
    for d in [&l1, &l2] {
        fs::create_dir(d).expect("mkdir");
        mkdir(&d.join("run"), 0o755);
    }
    // Layer 1: what an earlier snapshot holds.
    for name in ["fifo", "null", "blk", "run/sock"] {
        write(&l1.join(name), b"deleted since", 0o644);
    }
    mkdir(&l1.join("dir"), 0o755);
    write(&l1.join("dir/inner"), b"deleted since", 0o644);
    // Layer 2: the upper directory, where each was deleted and replaced.
    mknod(&l2.join("fifo"), FileType::Fifo, 0o644, 0, 0);
    mknod(&l2.join("null"), FileType::CharacterDevice, 0o666, 1, 3);
    mknod(&l2.join("blk"), FileType::BlockDevice, 0o660, 7, 0);
    let _sock = UnixListener::bind(l2.join("run/sock")).expect("bind");
    mknod(&l2.join("dir"), FileType::Fifo, 0o600, 0, 0);

    let dest = tmp.path().join("out");
    fs::create_dir(&dest).expect("mkdir");
    let (bytes, _) = pack_vec(&l1, &PackOptions::default());
    unpack::unpack(&bytes[..], false, u64::MAX, &dest).expect("unpack");
    let (bytes, report) = pack_vec(&l2, &PackOptions::default());
    let skipped: Vec<&Path> = report.skipped.iter().map(|s| s.path.as_path()).collect();
    assert_eq!(
        skipped,
        ["blk", "dir", "fifo", "null", "run/sock"].map(Path::new)
    );
    unpack::unpack(&bytes[..], false, u64::MAX, &dest).expect("unpack");
    use std::os::unix::fs::FileTypeExt;
    for name in skipped {
        let m = fs::symlink_metadata(dest.join(name)).expect("stat");
        assert!(
            m.file_type().is_char_device() && m.rdev() == 0,
            "{name:?}: the file the member replaced came back ({:?})",
            m.file_type()
        );
    }
}

#[test]
fn pack_errors_name_the_path() {
    let tmp = scratch();
    let src = tmp.path().join("upper");
    fs::create_dir(&src).expect("mkdir");
    let pack_err = |src: &Path, o: &PackOptions| {
        pack::pack_dir(src, o, std::io::sink()).expect_err("packing must fail")
    };
    let d = PackOptions::default();

    // At the limits: fine and round-trips.
    let dir = "d".repeat(200);
    mkdir(&src.join(&dir), 0o755);
    let at_limit = format!("{dir}/{}", "f".repeat(255 - 201));
    assert_eq!(at_limit.len(), 255);
    write(&src.join(&at_limit), b"x", 0o644);
    symlink("t".repeat(255), src.join("s")).expect("symlink");
    for i in 0..7 {
        xattr::set(src.join("s"), format!("trusted.x{i}"), b"v").expect("xattr");
    }
    let name64 = format!("trusted.{}", "n".repeat(64 - 8));
    xattr::set(src.join("s"), &name64, &[7u8; 256]).expect("xattr");
    xattr::set(
        src.join("s"),
        "trusted.overlay.origin",
        b"dropped, not counted",
    )
    .expect("x");
    let mut out = Vec::new();
    pack::pack_dir(&src, &d, &mut out).expect("limits are inclusive");
    let dest = tmp.path().join("out");
    fs::create_dir(&dest).expect("mkdir");
    unpack::unpack(&out[..], false, u64::MAX, &dest).expect("unpack");
    assert_same_trees(&src, &dest, &[], &["trusted.overlay.origin"]);

    // One over each limit.
    xattr::set(src.join("s"), "trusted.x7", b"v").expect("xattr");
    match pack_err(&src, &d) {
        PackError::TooManyXattrs { path, count: 9 } => assert_eq!(path, Path::new("s")),
        e => panic!("{e:?}"),
    }
    xattr::remove(src.join("s"), "trusted.x7").expect("rm");
    xattr::set(src.join("s"), &name64, &[7u8; 257]).expect("xattr");
    assert!(matches!(
        pack_err(&src, &d),
        PackError::XattrValueTooLong { len: 257, .. }
    ));
    xattr::remove(src.join("s"), &name64).expect("rm");
    xattr::set(src.join("s"), format!("{name64}n"), b"v").expect("xattr");
    assert!(matches!(
        pack_err(&src, &d),
        PackError::XattrNameTooLong { .. }
    ));
    xattr::remove(src.join("s"), format!("{name64}n")).expect("rm");
    pack::pack_dir(&src, &d, std::io::sink()).expect("back at the limits");

    symlink("t".repeat(256), src.join("s2")).expect("symlink");
    match pack_err(&src, &d) {
        PackError::LinkTargetTooLong { path, len: 256 } => assert_eq!(path, Path::new("s2")),
        e => panic!("{e:?}"),
    }
    fs::remove_file(src.join("s2")).expect("rm");

    let too_long = format!("{dir}/{}", "g".repeat(255 - 200));
    write(&src.join(&too_long), b"x", 0o644);
    match pack_err(&src, &d) {
        PackError::PathTooLong { path, len: 256 } => assert_eq!(path, Path::new(&too_long)),
        e => panic!("{e:?}"),
    }
    fs::remove_file(src.join(&too_long)).expect("rm");

    let latin1 = src.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    write(&latin1, b"", 0o644);
    assert!(matches!(pack_err(&src, &d), PackError::PathNotUtf8 { .. }));
    fs::remove_file(&latin1).expect("rm");
    symlink(std::ffi::OsStr::from_bytes(b"caf\xe9"), src.join("s3")).expect("symlink");
    assert!(matches!(
        pack_err(&src, &d),
        PackError::LinkTargetNotUtf8 { .. }
    ));
    fs::remove_file(src.join("s3")).expect("rm");

    write(&src.join("meta"), b"", 0o644);
    xattr::set(src.join("meta"), "trusted.overlay.metacopy", b"").expect("xattr");
    assert!(
        matches!(pack_err(&src, &d), PackError::Metacopy { path } if path == Path::new("meta"))
    );
    fs::remove_file(src.join("meta")).expect("rm");

    let bad = PackOptions {
        exclude: vec!["../work".into()],
        max_data: None,
    };
    assert!(matches!(
        pack_err(&src, &bad),
        PackError::InvalidExclude { .. }
    ));
    assert!(matches!(
        pack_err(&src.join("s"), &d),
        PackError::NotADirectory { .. }
    ));
    pack::pack_dir(&src, &d, std::io::sink()).expect("clean again");
}

struct Listed {
    perms: String,
    owner: String,
    time: String,
    name: String,
    rest: String,
}

/// `tar --format=pax -tvf`, parsed; fails on any warning.
fn gnu_tar_list(archive: &Path) -> Vec<Listed> {
    let out = Command::new("tar")
        .args(["--format=pax", "--numeric-owner", "--full-time", "-tvf"])
        .arg(archive)
        .output()
        .expect("GNU tar must be installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "tar -t: {stderr}"
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 listing")
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Listed {
                perms: f[0].to_owned(),
                owner: f[1].to_owned(),
                time: f[4].to_owned(),
                name: f[5].trim_end_matches('/').to_owned(),
                rest: f[6..].join(" "),
            }
        })
        .collect()
}

/// PID 1's own reader (`snapinit::tar`) accepts the payload and sees the
/// same metadata as the source tree.
#[test]
fn pid1_reader_accepts_the_payload() {
    use snapinit::tar::{EntryKind, TarReader};
    let tmp = scratch();
    let src = tmp.path().join("upper");
    fs::create_dir(&src).expect("mkdir");
    build_tree(&src);
    let (bytes, report) = pack_vec(&src, &opts());
    let mut expected = Vec::new();
    walk(&src, Path::new(""), &mut expected);
    expected.retain(|p| !p.starts_with("work"));

    let mut reader = TarReader::new(&bytes[..], u64::MAX);
    let mut seen = Vec::new();
    while let Some(entry) = reader
        .next_entry()
        .expect("PID 1 reader rejected the payload")
    {
        let rel = PathBuf::from(entry.path.as_str());
        if STAND_INS.iter().any(|s| rel == Path::new(s)) {
            assert_eq!(entry.kind, EntryKind::Whiteout, "{rel:?}");
            assert_eq!(
                (
                    entry.mode,
                    entry.uid,
                    entry.gid,
                    entry.mtime_secs,
                    entry.mtime_nanos
                ),
                (0, 0, 0, 0, 0),
                "{rel:?}"
            );
            assert!(entry.xattrs.is_empty(), "{rel:?}");
            seen.push(rel);
            continue;
        }
        let full = src.join(&rel);
        let m = fs::symlink_metadata(&full).expect("lstat");
        let what = format!("{rel:?}");
        assert_eq!(u32::from(entry.mode), m.mode() & 0o7777, "mode {what}");
        assert_eq!((entry.uid, entry.gid), (m.uid(), m.gid()), "owner {what}");
        assert_eq!(entry.mtime_secs, m.mtime(), "mtime {what}");
        let hard_link = matches!(entry.kind, EntryKind::HardLink { .. });
        if !hard_link {
            assert_eq!(i64::from(entry.mtime_nanos), m.mtime_nsec(), "nanos {what}");
            let mut want: Vec<(String, Vec<u8>)> = xattr::list(&full)
                .expect("list")
                .map(|n| n.into_string().expect("utf-8"))
                .filter(|n| !DROPPED.contains(&n.as_str()))
                .map(|n| {
                    let v = xattr::get(&full, &n).expect("get").unwrap_or_default();
                    (n, v)
                })
                .collect();
            want.sort();
            let got: Vec<(String, Vec<u8>)> = entry
                .xattrs
                .iter()
                .map(|x| (x.name.as_str().to_owned(), x.value.to_vec()))
                .collect();
            assert_eq!(got, want, "xattrs {what}");
        }
        match &entry.kind {
            EntryKind::File => {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = reader.read_data(&mut buf).expect("read_data");
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                assert_eq!(data, fs::read(&full).expect("read"), "content {what}");
            }
            EntryKind::Dir => assert!(m.is_dir(), "{what}"),
            EntryKind::Symlink { target } => assert_eq!(
                Path::new(target.as_str()),
                fs::read_link(&full).expect("readlink"),
                "{what}"
            ),
            EntryKind::HardLink { target } => {
                let t = fs::symlink_metadata(src.join(target.as_str())).expect("lstat");
                assert_eq!((t.dev(), t.ino()), (m.dev(), m.ino()), "{what}");
                assert!(seen.contains(&PathBuf::from(target.as_str())), "{what}");
            }
            EntryKind::Whiteout => {
                use std::os::unix::fs::FileTypeExt;
                assert!(m.file_type().is_char_device() && m.rdev() == 0, "{what}");
            }
        }
        seen.push(rel);
    }
    assert_eq!(seen, expected);
    assert_eq!(seen.len() as u64, report.entries);
    assert!(seen.iter().any(|p| p.as_os_str().len() > 100));
}

/// A file renamed over while the tree is packed (`uci commit` writes a temporary file and
/// renames it over the config) is stored as one of its versions, whole, or the pack refuses
/// with FileChanged; never the new file cut to the old one's size under the old metadata.
#[test]
fn a_file_renamed_over_while_packing_is_stored_whole_or_refused() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let sc = scratch();
    let up = sc.path().join("upper");
    let tmp = sc.path().join("tmp");
    fs::create_dir(&up).unwrap();
    fs::create_dir(&tmp).unwrap();
    let small = vec![b'a'; 100];
    let big = vec![b'b'; 4000];
    fs::write(up.join("f"), &small).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (up, tmp, stop) = (up.clone(), tmp.clone(), stop.clone());
        let (small, big) = (small.clone(), big.clone());
        std::thread::spawn(move || {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let t = tmp.join("t");
                fs::write(&t, if k % 2 == 0 { &big } else { &small }).unwrap();
                fs::rename(&t, up.join("f")).unwrap();
                k += 1;
            }
            k
        })
    };
    let (mut whole, mut refused) = (0, 0);
    for _ in 0..2000 {
        let mut out = Vec::new();
        match pack::pack_dir(&up, &PackOptions::default(), &mut out) {
            Err(PackError::FileChanged { .. }) => refused += 1,
            Err(e) => panic!("{e}"),
            Ok(_) => {
                let mut ar = tar::Archive::new(&out[..]);
                for e in ar.entries().unwrap() {
                    let mut e = e.unwrap();
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).unwrap();
                    assert!(
                        data == small || data == big,
                        "after {whole} whole packs: f stored as {} bytes starting {:?}: neither version",
                        data.len(),
                        data.first().map(|&b| b as char)
                    );
                }
                whole += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    println!("2000 packs during {swaps} renames: {whole} whole, {refused} refused");
    assert!(whole > 0, "every pack refused: the check is too strict");
}
