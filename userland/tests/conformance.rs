//! One verdict for every payload: a corpus of odd-but-valid and hostile archives, each stored
//! as a chain and run through PID 1 (the release binary as PID 1 of a private PID + mount
//! namespace, over a real squashfs root, replaying into its real tmpfs layer), through
//! `snapshot verify` and through `snapshot extract`. All three must accept or refuse alike, a
//! refusal with the same reason (PID 1's log line appears word for word in the tool's output),
//! and an accepted chain must build one tree (PID 1's snapshot layer = the extracted tree,
//! every mode, owner, time, xattr, link and byte).
//!
//! Archives come from the real tools (GNU tar, busybox tar, bsdtar, Python's tarfile) and from
//! byte surgery on them. Runs as root (namespaces, loop devices, trusted.* xattrs).

mod cli_common;

use cli_common::{require_root, scratch, tree, Node, BIN};
use snapinit::header::Compression;
use snapshot::writer::{Payload, Writer};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const ERASE: u32 = 65536;

fn sh(script: &str) -> Vec<u8> {
    let out = Command::new("sh")
        .args(["-ec", script])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The PID 1 binary exactly as shipped (release, no `std` feature), built once.
fn pid1() -> &'static Path {
    static BIN1: OnceLock<PathBuf> = OnceLock::new();
    BIN1.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("snapinit-release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let st = Command::new(cargo)
            .current_dir(&ws)
            .args(["build", "--release", "-p", "snapinit", "--bin", "snapinit"])
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cargo");
        assert!(st.success(), "building PID 1");
        target.join("release/snapinit")
    })
}

/// A squashfs root for every boot: busybox, a target that waits to be released, an empty
/// chain.img to bind the case's image onto, and every mount point snapinit needs (so the
/// snapshot layer holds nothing but what the chain put there).
fn rom(dir: &Path) -> PathBuf {
    let root = dir.join("rootdir");
    for d in [
        "bin", "sbin", "proc", "sys", "dev", "tmp", "mnt", "rom", "snapshot", "overlay",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    std::fs::write(
        root.join("sbin/init"),
        "#!/bin/busybox sh\necho READY\nread x\n",
    )
    .expect("init");
    sh(&format!("chmod 755 {}/sbin/init", root.display()));
    std::fs::write(root.join("chain.img"), b"").expect("chain.img");
    let img = dir.join("root.squashfs");
    sh(&format!(
        "mksquashfs {} {} -noappend -quiet -all-root",
        root.display(),
        img.display()
    ));
    img
}

/// What PID 1 made of a chain: its log and, when it reached the target, its snapshot layer.
struct Boot {
    log: String,
    layer: BTreeMap<PathBuf, Node>,
}

fn boot(dir: &Path, squashfs: &Path, chain: &Path) -> Boot {
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let script = format!(
        "set -e; mount -t squashfs -o loop,ro {sq} {mnt}; mount --bind {chain} {mnt}/chain.img; \
         exec env SNAPINIT_CMDLINE='snapinit.root={mnt} snapinit.log=console snapinit.device=/chain.img' {bin}",
        sq = squashfs.display(),
        mnt = mnt.display(),
        chain = chain.display(),
        bin = pid1().display(),
    );
    let mut child = Command::new("unshare")
        .args([
            "-m",
            "-p",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut ready = false;
    while out.read_line(&mut line).expect("read") > 0 {
        if line.trim() == "READY" {
            ready = true;
            break;
        }
        line.clear();
    }
    assert!(ready, "the target never ran");
    // The namespace's PID 1 is unshare's only child; its root is the merged overlay.
    let me = child.id();
    let children =
        std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")).expect("children");
    let init: u32 = children
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("PID 1 of the namespace");
    let layer = tree(Path::new(&format!("/proc/{init}/root/snapshot")));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"\n")
        .expect("release the target");
    let done = child.wait_with_output().expect("wait");
    Boot {
        log: String::from_utf8_lossy(&done.stderr).into_owned(),
        layer,
    }
}

/// A chain image holding `payloads` as snapshots 1, 2, ..., written by the tool's writer.
fn chain(path: &Path, payloads: &[(Vec<u8>, Compression)]) {
    std::fs::write(path, vec![0xFFu8; 32 * ERASE as usize]).expect("image");
    let mut flash = snapinit::device::DeviceFlash::open_file(path, ERASE, true).expect("open");
    for (data, compression) in payloads {
        let mut w = Writer::new(&mut flash);
        w.append_snapshot(&Payload {
            data,
            compression: *compression,
            unpacked_len: data.len() as u64,
        })
        .expect("append");
    }
}

/// What the corpus expects of a case.
enum Expect {
    /// Every snapshot replays; the three trees must be one.
    Accept,
    /// The last snapshot is refused; the reason contains this text.
    Refuse(&'static str),
}

struct Case {
    name: &'static str,
    snapshots: Vec<(Vec<u8>, Compression)>,
    expect: Expect,
}

fn plain(data: Vec<u8>) -> (Vec<u8>, Compression) {
    (data, Compression::None)
}

fn gz(data: Vec<u8>) -> (Vec<u8>, Compression) {
    (sh_in("gzip -9cn", &data), Compression::Gzip)
}

fn sh_in(cmd: &str, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    assert!(out.status.success(), "{cmd}");
    out.stdout
}

/// An archive written by Python's tarfile (pax format); `body` adds members to `tf`.
fn py(body: &str) -> Vec<u8> {
    let script = format!(
        "import io, sys, tarfile\nbuf = io.BytesIO()\ntf = tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT)\n\
         def f(name, data=b'', **kw):\n    t = tarfile.TarInfo(name); t.size = len(data); t.mtime = 1700000000; t.mode = 0o644\n    \
         [setattr(t, k, v) for k, v in kw.items() if k != 'pax']\n    t.pax_headers = kw.get('pax', {{}})\n    tf.addfile(t, io.BytesIO(data))\n\
         def d(name, **kw):\n    t = tarfile.TarInfo(name); t.type = tarfile.DIRTYPE; t.mtime = 1700000001; t.mode = 0o755\n    \
         [setattr(t, k, v) for k, v in kw.items() if k != 'pax']\n    t.pax_headers = kw.get('pax', {{}})\n    tf.addfile(t)\n\
         def l(name, target, kind):\n    t = tarfile.TarInfo(name); t.type = kind; t.linkname = target; t.mtime = 1700000002\n    tf.addfile(t)\n\
         {body}tf.close()\nsys.stdout.buffer.write(buf.getvalue())\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{body}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A source tree with what the dialect carries: nested and deep directories, long names,
/// hard links, symlinks, trusted.* and security.* xattrs, odd modes and owners.
fn source_tree(root: &Path) {
    let long = "a-rather-long-directory-name-to-pass-one-hundred-bytes".repeat(2);
    sh(&format!(
        "cd {r} && mkdir -p etc/config deep/1/2/3/4/5/6/7/8 {long}/sub && \
         printf 'config x\\n' > etc/config/network && printf 'shared\\n' > etc/shared && \
         ln etc/shared deep/1/2/hard && ln -s config/network etc/link && \
         printf 'leaf\\n' > {long}/sub/file-with-a-long-name-too && \
         printf 'suid\\n' > etc/suid && chmod 4755 etc/suid && chmod 1777 deep/1 && \
         chown 1000:100 etc/config && chmod 700 etc/config && \
         setfattr -n trusted.tag -v one etc/config/network && \
         setfattr -n security.label -v two etc/shared && \
         touch -h -d @1600000000 etc/link && touch -d @1500000000 deep/1/2/3/4/5/6/7/8 etc/suid && \
         touch -d @1400000000 etc etc/config deep {long} {long}/sub",
        r = root.display()
    ));
}

fn real_tool_cases(dir: &Path) -> Vec<Case> {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    source_tree(&src);
    let s = src.display();
    let gnu = sh(&format!(
        "tar -C {s} --format=pax --xattrs --xattrs-include='*' --sort=name -cf - ."
    ));
    let gnu_default = sh(&format!("tar -C {s} --sort=name -cf - ."));
    let busybox = sh(&format!("cd {s} && busybox tar -cf - ."));
    let bsd = sh(&format!("bsdtar --xattrs -C {s} -cf - ."));
    let bsd_pax = sh(&format!("bsdtar --format=pax --xattrs -C {s} -cf - ."));
    let files_only = sh(&format!(
        "tar -C {s} --format=pax --sort=name -cf - etc/config/network deep/1/2/hard"
    ));
    vec![
        Case {
            name: "GNU tar --format=pax with xattrs",
            snapshots: vec![plain(gnu.clone())],
            expect: Expect::Accept,
        },
        Case {
            name: "GNU tar --format=pax, gzip",
            snapshots: vec![gz(gnu)],
            expect: Expect::Accept,
        },
        Case {
            name: "GNU tar default (gnu) format",
            snapshots: vec![plain(gnu_default)],
            expect: Expect::Accept,
        },
        Case {
            name: "busybox tar",
            snapshots: vec![gz(busybox)],
            expect: Expect::Accept,
        },
        Case {
            name: "bsdtar default (restricted pax) with xattrs",
            snapshots: vec![plain(bsd)],
            expect: Expect::Accept,
        },
        Case {
            name: "bsdtar --format=pax",
            snapshots: vec![plain(bsd_pax)],
            expect: Expect::Accept,
        },
        Case {
            name: "members without their parent directories",
            snapshots: vec![plain(files_only)],
            expect: Expect::Accept,
        },
    ]
}

fn crafted_cases() -> Vec<Case> {
    let hello = py("f('hello', b'hi')\n");
    let mut cases = vec![
        Case {
            name: "./, ./x, a//b and a/./b path forms",
            snapshots: vec![plain(py(
                "d('./')\nd('./x')\nf('./x//y', b'1')\nf('x/./z', b'2')\nd('x/w/')\n",
            ))],
            expect: Expect::Accept,
        },
        Case {
            name: "informational pax keys are ignored",
            snapshots: vec![plain(py(
                "f('k', b'k', pax={'atime': '1.5', 'ctime': '2', 'comment': 'hi', 'uname': 'x', 'LIBARCHIVE.creationtime': '3'})\n",
            ))],
            expect: Expect::Accept,
        },
        Case {
            name: "a directory later replaced by a file, a symlink and a hard link",
            snapshots: vec![plain(py(
                "d('y')\nf('y/inner', b'i')\nf('y', b'now a file')\nd('s')\nl('s', 'y', tarfile.SYMTYPE)\n\
                 f('t', b't')\nd('h')\nl('h', 't', tarfile.LNKTYPE)\n",
            ))],
            expect: Expect::Accept,
        },
        Case {
            name: "negative and sub-second times, symlink mtimes",
            snapshots: vec![plain(py(
                "f('old', b'o', pax={'mtime': '-86400.25'})\nl('ln', 'old', tarfile.SYMTYPE)\n\
                 f('frac', b'f', pax={'mtime': '1700000000.123456789'})\n",
            ))],
            expect: Expect::Accept,
        },
        Case {
            name: "a re-declared directory loses the xattrs its new entry lacks",
            snapshots: vec![
                plain(py(
                    "d('d', pax={'SCHILY.xattr.trusted.a': '1', 'SCHILY.xattr.trusted.overlay.opaque': 'y'})\nf('d/f', b'f')\n",
                )),
                plain(py("d('d', mode=0o700, pax={'SCHILY.xattr.trusted.b': '2'})\n")),
            ],
            expect: Expect::Accept,
        },
        Case {
            name: "a sparse file replays as holes",
            snapshots: vec![plain(py("f('sparse', b'\\0' * 200000 + b'end')\n"))],
            expect: Expect::Accept,
        },
        Case {
            name: "a symlinked parent",
            snapshots: vec![plain(py("l('up', '/etc', tarfile.SYMTYPE)\nf('up/x', b'x')\n"))],
            expect: Expect::Refuse("\"up\" is a symlink, not a directory"),
        },
        Case {
            name: "writing through a symlink an older snapshot planted",
            snapshots: vec![
                plain(py("l('esc', '../../..', tarfile.SYMTYPE)\n")),
                plain(py("f('esc/x', b'x')\n")),
            ],
            expect: Expect::Refuse("\"esc\" is a symlink, not a directory"),
        },
        Case {
            name: "a parent that is a file",
            snapshots: vec![plain(py("f('p', b'p')\nf('p/x', b'x')\n"))],
            expect: Expect::Refuse("\"p\" is not a directory"),
        },
        Case {
            name: "a hard link to a missing path",
            snapshots: vec![plain(py("l('h', 'nowhere', tarfile.LNKTYPE)\n"))],
            expect: Expect::Refuse("hard link target \"nowhere\" does not exist"),
        },
        Case {
            name: "a hard link to a directory",
            snapshots: vec![plain(py("d('dd')\nl('h', 'dd', tarfile.LNKTYPE)\n"))],
            expect: Expect::Refuse("hard link target \"dd\" is a directory"),
        },
        Case {
            name: "an unknown pax key",
            snapshots: vec![plain(py("f('s', b's', pax={'GNU.sparse.size': '9'})\n"))],
            expect: Expect::Refuse("unsupported pax key \"GNU.sparse.size\""),
        },
        Case {
            name: "a user.* xattr",
            snapshots: vec![plain(py("f('u', b'u', pax={'SCHILY.xattr.user.x': '1'})\n"))],
            expect: Expect::Refuse("xattr outside the trusted. and security. namespaces"),
        },
        Case {
            name: "a path with ..",
            snapshots: vec![plain(py("f('a/../../x', b'x')\n"))],
            expect: Expect::Refuse("path has a .. component"),
        },
        Case {
            name: "an absolute path",
            snapshots: vec![plain(py("f('/etc/x', b'x')\n"))],
            expect: Expect::Refuse("path is absolute"),
        },
    ];
    // Non-zero bytes after the end-of-archive records.
    let mut trailing = hello.clone();
    trailing.extend_from_slice(b"garbage");
    cases.push(Case {
        name: "data after the end of the archive",
        snapshots: vec![plain(trailing)],
        expect: Expect::Refuse("data after the end-of-archive record"),
    });
    // gzip trailer and framing.
    let good = gz(hello.clone()).0;
    let n = good.len();
    let mut crc = good.clone();
    crc[n - 8] ^= 1;
    let mut isize = good.clone();
    isize[n - 4] ^= 1;
    let cut = good[..n - 3].to_vec();
    let mut two = good.clone();
    two.extend_from_slice(&good);
    let mut junk = good.clone();
    junk.push(0);
    // A fixed-Huffman block of four matches at distance 1 before any literal: 1024 bytes
    // copied from before the first byte of output (zlib: "invalid distance too far back").
    // A circular window without the check made them its initial zeros: an empty archive.
    let before_start = {
        let zeros = [0u8; 1024];
        let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        gz.extend_from_slice(&[0x1b, 0x05, 0xa3, 0x60, 0x14, 0x8c, 0x5c, 0x00, 0x00]);
        let mut crc = snapinit::gzip::Crc32::new();
        crc.update(&snapinit::gzip::crc_tables(), &zeros);
        gz.extend_from_slice(&crc.finish().to_le_bytes());
        gz.extend_from_slice(&(zeros.len() as u32).to_le_bytes());
        gz
    };
    for (name, data, why) in [
        (
            "gzip whose first match reaches before its first byte",
            before_start,
            "gzip: corrupt deflate data",
        ),
        ("gzip with a wrong CRC32", crc, "gzip: crc32"),
        ("gzip with a wrong ISIZE", isize, "gzip: isize"),
        ("gzip cut inside its trailer", cut, "gzip: stream truncated"),
        (
            "two gzip members",
            two,
            "gzip: data after the member's trailer",
        ),
        (
            "a byte after the gzip member",
            junk,
            "gzip: data after the member's trailer",
        ),
    ] {
        cases.push(Case {
            name,
            snapshots: vec![(data, Compression::Gzip)],
            expect: Expect::Refuse(why),
        });
    }
    cases
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn pid1_verify_and_extract_agree_on_the_corpus() {
    require_root();
    let tmp = scratch();
    let dir = tmp.path();
    for tool in ["mksquashfs", "unshare", "bsdtar", "python3", "setfattr"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .status()
                .expect("sh")
                .success(),
            "{tool} is needed (scripts/test.sh installs it)"
        );
    }
    let squashfs = rom(dir);
    let mut cases = real_tool_cases(dir);
    cases.extend(crafted_cases());
    let total = cases.len();
    let (mut accepted, mut refused) = (0, 0);
    for (i, case) in cases.into_iter().enumerate() {
        let img = dir.join(format!("case{i}.img"));
        chain(&img, &case.snapshots);
        let img_s = img.to_str().expect("utf-8");
        let pid1 = boot(dir, &squashfs, &img);
        let verify = Command::new(BIN)
            .args(["--device", img_s, "verify"])
            .output()
            .expect("verify");
        let out = dir.join(format!("extract{i}"));
        let extract = Command::new(BIN)
            .args(["--device", img_s, "extract", "all"])
            .arg(&out)
            .output()
            .expect("extract");
        let name = case.name;
        let last = case.snapshots.len();
        match case.expect {
            Expect::Accept => {
                accepted += 1;
                assert!(
                    pid1.log.contains(&format!("restored snapshot {last} from"))
                        && !pid1.log.contains("replay failed"),
                    "{name}: PID 1 did not replay it:\n{}",
                    pid1.log
                );
                assert!(
                    verify.status.success(),
                    "{name}: verify:\n{}",
                    text(&verify)
                );
                assert!(
                    extract.status.success(),
                    "{name}: extract:\n{}",
                    text(&extract)
                );
                let extracted = tree(&out);
                let mut diffs = Vec::new();
                for (p, want) in &pid1.layer {
                    match extracted.get(p) {
                        Some(got) if got == want => {}
                        got => diffs.push(format!(
                            "{}: PID 1 {want:?}\n   extract {got:?}",
                            p.display()
                        )),
                    }
                }
                for p in extracted.keys().filter(|p| !pid1.layer.contains_key(*p)) {
                    diffs.push(format!("{}: only in extract", p.display()));
                }
                assert!(diffs.is_empty(), "{name}: two trees:\n{}", diffs.join("\n"));
                assert!(!pid1.layer.is_empty(), "{name}: empty layer");
            }
            Expect::Refuse(why) => {
                refused += 1;
                let line = pid1
                    .log
                    .lines()
                    .find_map(|l| l.split_once("replay failed: ").map(|(_, r)| r.to_string()))
                    .unwrap_or_else(|| panic!("{name}: PID 1 replayed it:\n{}", pid1.log));
                assert!(
                    line.contains(why),
                    "{name}: PID 1 says {line:?}, not {why:?}"
                );
                assert_eq!(verify.status.code(), Some(9), "{name}: {}", text(&verify));
                assert!(
                    text(&verify).contains(&line),
                    "{name}: verify does not say {line:?}:\n{}",
                    text(&verify)
                );
                // extract refuses with its own code (SNAPSHOT.md), `all` as one block alone.
                assert_eq!(extract.status.code(), Some(8), "{name}: {}", text(&extract));
                assert!(
                    text(&extract).contains(&line),
                    "{name}: extract does not say {line:?}:\n{}",
                    text(&extract)
                );
            }
        }
        println!("ok: {name}");
    }
    // The first case, GNU tar's pax archive, records everything the dialect carries at full
    // precision: what PID 1 and extract built is the source tree itself.
    let src = tree(&dir.join("src"));
    let got = tree(&dir.join("extract0"));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        src.keys().collect::<Vec<_>>(),
        "GNU tar pax: paths"
    );
    for (p, want) in &src {
        assert_eq!(&got[p], want, "GNU tar pax: {}", p.display());
    }
    println!("conformance corpus: {total} cases, {accepted} accepted by all three, {refused} refused by all three with one reason");
}

/// The decisions the corpus relies on, checked on the trees themselves.
#[test]
fn replayed_trees_follow_the_documented_rules() {
    require_root();
    let tmp = scratch();
    let dir = tmp.path();
    let extract = |name: &str, snapshots: &[(Vec<u8>, Compression)]| {
        let img = dir.join(format!("{name}.img"));
        chain(&img, snapshots);
        let out = dir.join(name);
        let o = Command::new(BIN)
            .args(["--device", img.to_str().expect("utf-8"), "extract", "all"])
            .arg(&out)
            .output()
            .expect("extract");
        assert!(o.status.success(), "{name}: {}", text(&o));
        out
    };
    // A re-declared directory: the new mode, no stale xattr, the opaque mark kept.
    let out = extract(
        "redeclared",
        &[
            plain(py(
                "d('d', pax={'SCHILY.xattr.trusted.a': '1', 'SCHILY.xattr.trusted.overlay.opaque': 'y'})\n",
            )),
            plain(py("d('d', mode=0o700, pax={'SCHILY.xattr.trusted.b': '2'})\n")),
        ],
    );
    let t = tree(&out);
    let d = &t[Path::new("d")];
    assert_eq!(d.mode, 0o700);
    assert_eq!(
        d.xattrs.keys().map(String::as_str).collect::<Vec<_>>(),
        ["trusted.b", "trusted.overlay.opaque"]
    );
    assert_eq!(d.mtime, (1_700_000_001, 0));
    // A directory replaced by a file in the same archive.
    let out = extract(
        "replaced",
        &[plain(py("d('y')\nf('y/inner', b'i')\nf('y', b'file')\n"))],
    );
    assert_eq!(std::fs::read(out.join("y")).expect("read"), b"file");
    // Missing parents: 0755 root:root at the epoch.
    let out = extract("parents", &[plain(py("f('p/q/r', b'r')\n"))]);
    let t = tree(&out);
    assert_eq!(
        (t[Path::new("p/q")].mode, t[Path::new("p/q")].mtime),
        (0o755, (0, 0))
    );
    // Holes: 200 kB of zeros take no blocks.
    let out = extract("sparse", &[plain(py("f('s', b'\\0' * 200000 + b'end')\n"))]);
    let m = std::fs::metadata(out.join("s")).expect("stat");
    assert_eq!(m.len(), 200_003);
    assert!(
        std::os::unix::fs::MetadataExt::blocks(&m) * 512 < 16384,
        "{} blocks",
        std::os::unix::fs::MetadataExt::blocks(&m)
    );
    // A file that ends in a hole, and one that is all hole, keep their length.
    let out = extract(
        "trailing hole",
        &[plain(py(
            "f('t', b'start' + b'\\0' * 100000)\nf('z', b'\\0' * 9000)\n",
        ))],
    );
    for (name, len) in [("t", 100_005), ("z", 9000)] {
        let m = std::fs::metadata(out.join(name)).expect("stat");
        assert_eq!(m.len(), len, "length of {name}");
    }
    assert_eq!(&std::fs::read(out.join("t")).expect("read")[..5], b"start");
}
