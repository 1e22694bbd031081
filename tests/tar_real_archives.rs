//! The payload tar reader against archives made by real tools: GNU tar in pax
//! format and the Rust `tar` crate.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use snapinit::gzip::GzipReader;
use snapinit::tar::{Entry, EntryKind, PathError, PathField, TarError, TarReader};

type Err = TarError<core::convert::Infallible>;

struct Slice<'a>(&'a [u8]);

impl embedded_io::ErrorType for Slice<'_> {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        // Odd chunking shakes out any assumption that reads are whole records.
        let n = self.0.len().min(buf.len()).min(333);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Every entry with its file data, or the first error.
fn read_all(archive: &[u8]) -> Result<Vec<(Entry, Vec<u8>)>, Err> {
    let mut r = TarReader::new(Slice(archive), u64::MAX);
    let mut out = Vec::new();
    while let Some(e) = r.next_entry()? {
        let mut data = Vec::new();
        // Leave some files unread: next_entry must skip their data.
        if !e.path.ends_with("skipme") {
            let mut buf = [0u8; 100];
            loop {
                let n = r.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
        }
        out.push((e, data));
    }
    Ok(out)
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("snapinit-tar-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("failed to run a tool the tests need");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn gnu_tar(dir: &Path, extra: &[&str], members: &[&str]) -> Vec<u8> {
    run(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(extra)
        .args(["-cf", "-"])
        .args(members))
}

fn find<'a>(entries: &'a [(Entry, Vec<u8>)], path: &str) -> &'a (Entry, Vec<u8>) {
    entries
        .iter()
        .find(|(e, _)| e.path.as_str() == path)
        .unwrap_or_else(|| panic!("{path} missing"))
}

const LONG_DIR: &str = "a-directory-name-that-is-quite-long-to-exceed-the-ustar-limits/\
                        and-another-level-that-pushes-the-total-well-past-one-hundred";

fn build_tree(root: &Path) {
    std::fs::create_dir_all(root.join(LONG_DIR)).unwrap();
    std::fs::write(
        root.join(LONG_DIR).join("file-with-a-long-name.txt"),
        b"long\n",
    )
    .unwrap();
    std::fs::write(root.join("hello"), b"hello world\n").unwrap();
    std::fs::set_permissions(root.join("hello"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    std::fs::write(root.join("big-skipme"), vec![7u8; 5000]).unwrap();
    std::fs::write(
        root.join("big"),
        (0..70_000u32).map(|i| i as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    symlink("../hello/../../etc/passwd", root.join("sym")).unwrap();
    std::fs::hard_link(root.join("hello"), root.join("zz-hard")).unwrap();
    std::fs::create_dir(root.join("opaque")).unwrap();
    run(Command::new("mknod")
        .arg(root.join("wh"))
        .args(["c", "0", "0"]));
    run(Command::new("touch")
        .args(["-d", "2023-11-14 22:13:20.123456789 UTC"])
        .arg(root.join("hello")));
    run(Command::new("touch")
        .args(["-h", "-d", "@1234567890"])
        .arg(root.join("big")));
    // trusted.* needs root and is what overlayfs uses for opaque directories; the dialect
    // carries only trusted.* and security.* (tmpfs stores user.* only since Linux 6.6).
    let py = format!(
        "import os\nos.setxattr({:?}, 'trusted.snap', b'va\\nl\\x00ue')\nos.setxattr({:?}, 'trusted.overlay.opaque', b'y')\n",
        root.join("hello").to_str().unwrap(),
        root.join("opaque").to_str().unwrap()
    );
    run(Command::new("python3").args(["-c", &py]));
}

#[test]
fn gnu_tar_pax_tree() {
    let d = scratch("tree");
    let root = d.join("root");
    build_tree(&root);
    let archive = gnu_tar(
        &root,
        &[
            "--format=pax",
            "--xattrs",
            "--xattrs-include=*",
            "--sort=name",
        ],
        &["."],
    );
    let entries = read_all(&archive).unwrap();

    let (r, _) = find(&entries, "");
    assert!(r.is_root() && r.kind == EntryKind::Dir);

    let long = format!("{LONG_DIR}/file-with-a-long-name.txt");
    assert!(long.len() > 100);
    assert_eq!(find(&entries, &long).1, b"long\n");
    assert_eq!(find(&entries, LONG_DIR).0.kind, EntryKind::Dir);

    let (hello, data) = find(&entries, "hello");
    assert_eq!(data, b"hello world\n");
    assert_eq!(hello.mode, 0o4751);
    assert_eq!(hello.mtime_secs, 1_700_000_000);
    assert_eq!(hello.mtime_nanos, 123_456_789);
    assert_eq!(hello.xattr(b"trusted.snap"), Some(&b"va\nl\0ue"[..]));

    let (big, data) = find(&entries, "big");
    assert_eq!(data.len(), 70_000);
    assert!(data.iter().enumerate().all(|(i, &b)| b == i as u8));
    assert_eq!(big.mtime_secs, 1_234_567_890);
    assert_eq!(find(&entries, "big-skipme").0.size, 5000);

    match &find(&entries, "sym").0.kind {
        EntryKind::Symlink { target } => assert_eq!(target.as_str(), "../hello/../../etc/passwd"),
        k => panic!("sym is {k:?}"),
    }
    // GNU tar stores the second name of a hard-linked pair as the link.
    let (hard, _) = find(&entries, "hello");
    let other = find(&entries, "zz-hard");
    let linked = [&other.0, hard]
        .into_iter()
        .find_map(|e| match &e.kind {
            EntryKind::HardLink { target } => Some(target.as_str().to_owned()),
            _ => None,
        })
        .expect("one of hello/hard is a hard link");
    assert_eq!(linked, "hello");

    assert_eq!(find(&entries, "wh").0.kind, EntryKind::Whiteout);
    assert!(find(&entries, "opaque").0.is_opaque());
    assert!(entries.iter().all(|(e, _)| e.uid == 0 && e.gid == 0));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn gzip_then_tar() {
    let d = scratch("gz");
    let root = d.join("root");
    build_tree(&root);
    let archive = gnu_tar(&root, &["--format=pax"], &["."]);
    let gz = run(Command::new("sh").arg("-c").arg(format!(
        "tar -C {} --format=pax -cf - . | gzip -9c",
        root.display()
    )));
    let mut r = TarReader::new(GzipReader::new(Slice(&gz)), u64::MAX);
    let mut n = 0;
    let mut bytes = 0;
    while let Some(_e) = r.next_entry().unwrap() {
        n += 1;
        let mut buf = [0u8; 4096];
        loop {
            let k = r.read_data(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            bytes += k;
        }
    }
    let plain = read_all(&archive).unwrap();
    assert_eq!(n, plain.len());
    assert!(bytes > 70_000);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn hostile_paths_are_rejected() {
    let d = scratch("hostile");
    std::fs::create_dir_all(d.join("in")).unwrap();
    std::fs::write(d.join("evil"), b"x").unwrap();
    let dotdot = gnu_tar(&d.join("in"), &["--format=pax", "-P"], &["../evil"]);
    assert_eq!(
        read_all(&dotdot).unwrap_err(),
        Err::BadPath(PathField::Path, PathError::DotDot)
    );
    let abs = gnu_tar(
        &d,
        &["--format=pax", "-P"],
        &[d.join("evil").to_str().unwrap()],
    );
    assert_eq!(
        read_all(&abs).unwrap_err(),
        Err::BadPath(PathField::Path, PathError::Absolute)
    );
    // A hard link may only point inside the archive.
    let link = python_tar(
        "t = tarfile.TarInfo('innocent'); t.type = tarfile.LNKTYPE; t.linkname = '/etc/shadow'\n\
         tf.addfile(t)\n",
    );
    assert_eq!(
        read_all(&link).unwrap_err(),
        Err::BadPath(PathField::LinkTarget, PathError::Absolute)
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn gnu_long_names_are_read_and_other_formats_rejected() {
    let d = scratch("gnu");
    build_tree(&d);
    let long = format!("{LONG_DIR}/file-with-a-long-name.txt");
    // GNU tar's default format (and busybox tar's): "ustar  " magic, 'L' long-name records.
    let gnu = gnu_tar(&d, &["--format=gnu"], &[&long]);
    let entries = read_all(&gnu).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0.path.as_str(), long);
    assert_eq!(entries[0].1, b"long\n");
    let user = python_tar(
        "t = tarfile.TarInfo('f'); t.pax_headers = {'SCHILY.xattr.user.x': '1'}\ntf.addfile(t)\n",
    );
    assert_eq!(read_all(&user).unwrap_err(), Err::XattrNamespace);
    let v7 = gnu_tar(&d, &["--format=v7"], &["hello"]);
    assert_eq!(read_all(&v7).unwrap_err(), Err::NotUstar);
    // Global pax headers would silently change every later entry.
    let global = gnu_tar(&d, &["--format=pax", "--pax-option=comment=x"], &["hello"]);
    assert_eq!(read_all(&global).unwrap_err(), Err::UnsupportedType(b'g'));
    // A FIFO is not part of the dialect.
    run(Command::new("mkfifo").arg(d.join("fifo")));
    let fifo = gnu_tar(&d, &["--format=pax"], &["fifo"]);
    assert_eq!(read_all(&fifo).unwrap_err(), Err::UnsupportedType(b'6'));
    // Only 0:0 character devices (whiteouts) are allowed.
    run(Command::new("mknod")
        .arg(d.join("null"))
        .args(["c", "1", "3"]));
    let dev = gnu_tar(&d, &["--format=pax"], &["null"]);
    assert_eq!(
        read_all(&dev).unwrap_err(),
        Err::Device { major: 1, minor: 3 }
    );
    std::fs::remove_dir_all(&d).unwrap();
}

/// An archive written by Python's `tarfile` in POSIX pax format; `body`
/// adds members to `tf`.
fn python_tar(body: &str) -> Vec<u8> {
    python_tar_format("PAX_FORMAT", body)
}

#[test]
fn python_tarfile_pax_and_whiteouts() {
    let long = "d/".repeat(70) + "leaf";
    let archive = python_tar(&format!(
        "t = tarfile.TarInfo({long:?}); t.size = 3; t.mode = 0o640; t.uid = 1000; t.gid = 100\n\
         t.mtime = 0o17777777777\n\
         t.pax_headers = {{'SCHILY.xattr.security.one': '1', 'SCHILY.xattr.trusted.two': '22', 'comment': 'ignored'}}\n\
         tf.addfile(t, io.BytesIO(b'abc'))\n\
         w = tarfile.TarInfo('gone/file'); w.type = tarfile.CHRTYPE; w.devmajor = 0; w.devminor = 0; w.mode = 0\n\
         tf.addfile(w)\n"
    ));

    let entries = read_all(&archive).unwrap();
    assert_eq!(entries.len(), 2);
    let (f, data) = &entries[0];
    assert_eq!(f.path.as_str(), long);
    assert_eq!(data, b"abc");
    assert_eq!((f.mode, f.uid, f.gid), (0o640, 1000, 100));
    // Large enough that reading the octal field as decimal would be wrong.
    assert_eq!(f.mtime_secs, 0o17777777777);
    assert_eq!(f.xattrs.len(), 2);
    assert_eq!(f.xattr(b"trusted.two"), Some(&b"22"[..]));
    assert_eq!(entries[1].0.kind, EntryKind::Whiteout);

    // Corrupting a header byte must trip the checksum.
    let mut bad = archive.clone();
    bad[5] ^= 0x40;
    assert!(matches!(
        read_all(&bad).unwrap_err(),
        Err::BadChecksum { .. }
    ));
    // A non-octal digit in a numeric field is rejected.
    let mut bad = archive.clone();
    let last_header = archive
        .windows(9)
        .position(|w| w == b"gone/file")
        .expect("whiteout header");
    bad[last_header + 100] = b'9';
    assert!(matches!(
        read_all(&bad).unwrap_err(),
        Err::BadNumber(_) | Err::BadChecksum { .. }
    ));
    // Truncation anywhere is an error, never a short success.
    for cut in [100, 600, 1500, last_header + 100] {
        assert!(read_all(&archive[..cut]).is_err(), "cut {cut}");
    }
}

/// Names our reader lists for `archive`.
fn names(archive: &[u8]) -> Vec<String> {
    read_all(archive)
        .unwrap()
        .iter()
        .map(|(e, _)| e.path.as_str().to_string())
        .collect()
}

/// Names GNU tar lists for `archive`, or its error.
fn gnu_list(archive: &[u8], name: &str) -> Result<Vec<String>, String> {
    let file = scratch(name).join("a.tar");
    std::fs::write(&file, archive).unwrap();
    let out = Command::new("tar")
        .arg("-tf")
        .arg(&file)
        .output()
        .expect("GNU tar");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn a_hard_links_pax_size_is_skipped_as_gnu_tar_does() {
    // A hard link whose pax header says it carries 512 bytes (the header's own size field is
    // 0); those bytes look like the header of another member.
    let archive = python_tar(
        "tf.addfile(tarfile.TarInfo('a'))\n\
         b = tarfile.TarInfo('b'); b.type = tarfile.LNKTYPE; b.linkname = 'a'\n\
         b.pax_headers = {'size': '512'}\n\
         tf.addfile(b)\n\
         tf.fileobj.write(tarfile.TarInfo('injected').tobuf(tarfile.USTAR_FORMAT)); tf.offset += 512\n",
    );
    let gnu = gnu_list(&archive, "hl-pax-size").expect("GNU tar reads it");
    let ours = names(&archive);
    assert_eq!(ours, gnu);
    assert_eq!(ours, ["a", "b"]);
}

#[test]
fn a_hard_links_header_size_is_not_data_as_every_tar_reads_it() {
    // A ustar hard link whose size field says 512, followed by a member's header: GNU tar,
    // bsdtar and busybox tar all read the size as no data (POSIX 1988).
    let archive = python_tar_format(
        "USTAR_FORMAT",
        "tf.addfile(tarfile.TarInfo('a'))\n\
         b = tarfile.TarInfo('b'); b.type = tarfile.LNKTYPE; b.linkname = 'a'; b.size = 512\n\
         tf.addfile(b)\n\
         tf.fileobj.write(tarfile.TarInfo('c').tobuf(tarfile.USTAR_FORMAT)); tf.offset += 512\n",
    );
    let gnu = gnu_list(&archive, "hl-ustar-size").expect("GNU tar reads it");
    let ours = names(&archive);
    assert_eq!(ours, gnu);
    assert_eq!(ours, ["a", "b", "c"]);
}

#[test]
fn a_hard_link_declaring_2_pow_64_bytes_is_truncated() {
    // A pax `size` of 2^64 - 1 bytes of data that are not there. Its padding added to it
    // overflowed (a panic in a debug build, a wrap to 0 and a short success in release).
    let archive = python_tar(
        "tf.addfile(tarfile.TarInfo('a'))\n\
         b = tarfile.TarInfo('b'); b.type = tarfile.LNKTYPE; b.linkname = 'a'\n\
         b.pax_headers = {'size': str(2**64 - 1)}\n\
         tf.addfile(b)\n",
    );
    assert!(gnu_list(&archive, "hl-huge").is_err(), "GNU tar refuses it");
    assert!(matches!(read_all(&archive), Err(Err::Truncated)));
}

fn python_tar_format(format: &str, body: &str) -> Vec<u8> {
    let script = format!(
        "import io, sys, tarfile\nbuf = io.BytesIO()\ntf = tarfile.open(fileobj=buf, mode='w', format=tarfile.{format})\n{body}tf.close()\nsys.stdout.buffer.write(buf.getvalue())\n"
    );
    run(Command::new("python3").args(["-c", &script]))
}

/// An archive of one file `f` carrying `security.capability` = `value` (bytes, through
/// Python's surrogateescape so that they reach the pax record unchanged).
fn with_capability(value: &[u8]) -> Vec<u8> {
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    python_tar(&format!(
        "i = tarfile.TarInfo('f')\ni.size = 1\n\
         i.pax_headers = {{'SCHILY.xattr.security.capability': bytes.fromhex('{hex}').decode('utf-8', 'surrogateescape')}}\n\
         tf.addfile(i, io.BytesIO(b'x'))\n"
    ))
}

/// Only file capabilities the kernel's setxattr takes are read (revision 2 of 20 bytes,
/// revision 3 of 24 with a mappable root uid), so PID 1 and `verify` agree on every value:
/// before, PID 1's fsetxattr failed (EINVAL) where verify said good.
#[test]
fn a_file_capability_the_kernel_refuses_is_refused_here() {
    let v2 = |magic: u32| {
        let mut v = magic.to_le_bytes().to_vec();
        v.extend_from_slice(&[0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        v
    };
    let v3 = |root: u32| {
        let mut v = v2(0x0300_0000);
        v.extend_from_slice(&root.to_le_bytes());
        v
    };
    for (value, ok) in [
        (v2(0x0200_0000), true),
        (v2(0x0200_0001), true),
        (v3(0), true),
        (v3(1000), true),
        (v3(u32::MAX), false),
        (v2(0x0100_0000), false),
        (v2(0x0300_0000), false),
        (v3(0)[..20].to_vec(), false),
        (b"xx".to_vec(), false),
        (Vec::new(), false),
    ] {
        // The running kernel is the reference: its setxattr takes exactly these (root).
        let dir = scratch("cap");
        let file = dir.join("f");
        std::fs::write(&file, b"x").expect("file");
        let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
        let kernel = Command::new("setfattr")
            .args(["-n", "security.capability", "-v", &format!("0x{hex}")])
            .arg(&file)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("setfattr (attr)")
            .success();
        // An empty value cannot be given to setfattr as hex; the kernel refuses it the same.
        if !value.is_empty() {
            assert_eq!(kernel, ok, "{value:02x?}: the kernel says {kernel}");
        }
        let got = read_all(&with_capability(&value));
        assert_eq!(
            got.is_ok(),
            ok,
            "{value:02x?}: {:?}",
            got.as_ref().map(|e| e.len())
        );
        if !ok {
            assert!(matches!(got, Err(Err::BadCapability)), "{value:02x?}");
        }
    }
}

/// A uid or gid of 4294967295 is (uid_t)-1, which chown takes as "no change": such an owner
/// cannot be applied, so the entry is refused (before, PID 1 left the file owned by root and
/// a debug build of the tool aborted).
#[test]
fn an_owner_of_4294967295_is_refused() {
    for (field, body) in [
        ("uid", "i.uid = 4294967295\n"),
        ("gid", "i.gid = 4294967295\n"),
    ] {
        let archive = python_tar(&format!(
            "i = tarfile.TarInfo('f')\ni.size = 1\n{body}tf.addfile(i, io.BytesIO(b'x'))\n"
        ));
        assert!(
            matches!(read_all(&archive), Err(Err::UnsettableId(f)) if f == field),
            "{field}: {:?}",
            read_all(&archive).map(|e| e.len())
        );
    }
    let fine = python_tar(
        "i = tarfile.TarInfo('f')\ni.size = 1\ni.uid = 4294967294\ntf.addfile(i, io.BytesIO(b'x'))\n",
    );
    assert_eq!(
        read_all(&fine).expect("uid 4294967294")[0].0.uid,
        4294967294
    );
}

/// A reader that counts what is taken from it.
struct Counted<'a> {
    inner: Slice<'a>,
    taken: usize,
}

impl embedded_io::ErrorType for Counted<'_> {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = self.inner.read(buf)?;
        self.taken += n;
        Ok(n)
    }
}

/// Every entry of `r` with its data skipped, then the end of the stream.
fn walk<R: embedded_io::Read>(r: &mut TarReader<R>) -> Result<u32, TarError<R::Error>> {
    let mut n = 0;
    while r.next_entry()?.is_some() {
        n += 1;
    }
    r.finish()?;
    Ok(n)
}

#[test]
fn file_data_past_the_limit_is_refused_at_its_header() {
    let d = scratch("limit");
    let root = d.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a"), vec![1u8; 3000]).unwrap();
    // A sparse file of 256 MiB: GNU tar without --sparse stores every zero.
    run(Command::new("truncate")
        .args(["-s", "256M"])
        .arg(root.join("b")));
    let gz = run(Command::new("sh").arg("-c").arg(format!(
        "tar -C {} --format=pax --sort=name -cf - a b | gzip -1c",
        root.display()
    )));
    let declared = 3000 + (256u64 << 20);

    // Refused at b's header: only the start of the stream is ever inflated.
    let mut r = TarReader::new(
        GzipReader::new(Counted {
            inner: Slice(&gz),
            taken: 0,
        }),
        declared - 1,
    );
    assert_eq!(r.next_entry().unwrap().unwrap().path.as_str(), "a");
    let err = r.next_entry().unwrap_err();
    assert_eq!(
        err,
        TarError::DataLimit {
            total: declared,
            limit: declared - 1
        }
    );
    let taken = r.get_ref().inner().taken;
    println!(
        "refused after {taken} of {} compressed bytes ({declared} declared)",
        gz.len()
    );
    assert!(
        taken * 20 < gz.len(),
        "{taken} of {} compressed bytes read before the refusal",
        gz.len()
    );

    // At the limit exactly, the same stream is read to its end.
    let mut r = TarReader::new(GzipReader::new(Slice(&gz)), declared);
    assert_eq!(walk(&mut r), Ok(2));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn at_most_a_mebibyte_of_zeros_may_follow_the_end_of_the_archive() {
    use snapinit::tar::MAX_TRAILING;
    let d = scratch("trailing");
    let root = d.join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a"), b"a\n").unwrap();
    // GNU tar pads to 10,240-byte records: 9,216 zeros follow the first zero record's start.
    let tar = gnu_tar(&root, &["--format=pax"], &["a"]);
    assert_eq!(tar.len() % 10_240, 0);
    assert_eq!(walk(&mut TarReader::new(Slice(&tar), u64::MAX)), Ok(1));
    let zeros_after_end = |archive: &[u8]| {
        let end = archive
            .chunks(512)
            .rposition(|r| r.iter().any(|&b| b != 0))
            .map_or(0, |i| (i + 1) * 512);
        (archive.len() - end - 512) as u64
    };
    let padded = |extra: u64| {
        let mut t = tar.clone();
        t.resize(t.len() + extra as usize, 0);
        t
    };
    let at = padded(MAX_TRAILING - zeros_after_end(&tar));
    assert_eq!(zeros_after_end(&at), MAX_TRAILING);
    assert_eq!(walk(&mut TarReader::new(Slice(&at), u64::MAX)), Ok(1));
    let over = padded(MAX_TRAILING - zeros_after_end(&tar) + 1);
    assert_eq!(
        walk(&mut TarReader::new(Slice(&over), u64::MAX)),
        Err(TarError::TrailingZeros)
    );
    // Gigabytes of zeros gzip to a few MiB: refused after reading a little more than the
    // bound, not all of them.
    let gz = run(Command::new("sh").arg("-c").arg(format!(
        "(tar -C {} --format=pax -cf - a; head -c 1073741824 /dev/zero) | gzip -1c",
        root.display()
    )));
    let mut r = TarReader::new(
        GzipReader::new(Counted {
            inner: Slice(&gz),
            taken: 0,
        }),
        u64::MAX,
    );
    assert_eq!(walk(&mut r), Err(TarError::TrailingZeros));
    let taken = r.get_ref().inner().taken;
    println!("refused after {taken} of {} compressed bytes", gz.len());
    assert!(taken * 100 < gz.len(), "{taken} of {}", gz.len());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn one_extension_record_of_each_kind_per_entry() {
    let d = scratch("ext");
    let root = d.join("root");
    let long = "n".repeat(150);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join(&long), b"x\n").unwrap();
    for (format, kind) in [("--format=pax", b'x'), ("--format=gnu", b'L')] {
        let tar = gnu_tar(&root, &[format], &[long.as_str()]);
        assert_eq!(
            tar[156], kind,
            "{format}: the first record is the long name's"
        );
        assert_eq!(walk(&mut TarReader::new(Slice(&tar), u64::MAX)), Ok(1));
        let size = usize::from_str_radix(
            std::str::from_utf8(&tar[124..135])
                .unwrap()
                .trim_matches(['\0', ' ']),
            8,
        )
        .unwrap();
        let record = 512 + size.div_ceil(512) * 512;
        // The same record twice before the entry: refused, however many would follow.
        let mut twice = tar[..record].to_vec();
        twice.extend_from_slice(&tar);
        assert_eq!(
            walk(&mut TarReader::new(Slice(&twice), u64::MAX)),
            Err(TarError::RepeatedRecord(kind)),
            "{format}"
        );
    }
    std::fs::remove_dir_all(&d).unwrap();
}
