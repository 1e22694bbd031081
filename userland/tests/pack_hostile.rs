//! Hostile and off-dialect payloads for `unpack`, built with the tar
//! crate's raw header API: each must fail with a typed error (or be made
//! harmless) and nothing may be written outside the destination.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use snapinit::replay::{Blocked, Cause, Refusal};
use snapinit::tar::{PathError, TarError};
use snapshot::unpack::{self, UnpackError};
use tar::{Builder, EntryType, Header};

fn scratch() -> tempfile::TempDir {
    assert!(
        rustix::process::geteuid().is_root(),
        "the pack tests need root (mknod, chown): run `cargo test` as root"
    );
    tempfile::tempdir().expect("tempdir")
}

/// One raw entry: the name and link name bytes go into the header as-is.
struct Raw<'a> {
    name: &'a [u8],
    kind: EntryType,
    link: &'a [u8],
    data: &'a [u8],
    mode: u32,
    pax: &'a [(&'a str, &'a [u8])],
}

fn raw(name: &str, kind: EntryType) -> Raw<'_> {
    Raw {
        name: name.as_bytes(),
        kind,
        link: b"",
        data: b"",
        mode: if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        },
        pax: &[],
    }
}

fn archive(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    for e in entries {
        if !e.pax.is_empty() {
            b.append_pax_extensions(e.pax.iter().copied()).expect("pax");
        }
        let mut h = Header::new_ustar();
        h.as_old_mut().name[..e.name.len()].copy_from_slice(e.name);
        h.as_old_mut().linkname[..e.link.len()].copy_from_slice(e.link);
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(e.data.len() as u64);
        h.set_cksum();
        b.append(&h, e.data).expect("append");
    }
    b.into_inner().expect("finish")
}

struct Env {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    dest: PathBuf,
    outside: PathBuf,
}

fn env() -> Env {
    let tmp = scratch();
    let base = tmp.path().to_path_buf();
    let dest = base.join("dest");
    let outside = base.join("outside");
    fs::create_dir(&dest).expect("mkdir");
    fs::create_dir(&outside).expect("mkdir");
    fs::write(outside.join("secret"), b"secret").expect("write");
    Env {
        _tmp: tmp,
        base,
        dest,
        outside,
    }
}

impl Env {
    fn unpack(&self, bytes: &[u8]) -> Result<unpack::UnpackReport, UnpackError> {
        unpack::unpack(bytes, false, u64::MAX, &self.dest)
    }

    /// Nothing but `dest`, `outside` and `outside/secret` (unchanged) exist.
    fn assert_outside_untouched(&self) {
        let mut names: Vec<_> = fs::read_dir(&self.base)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["dest", "outside"],
            "something was written next to dest"
        );
        let inside: Vec<_> = fs::read_dir(&self.outside)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(inside, ["secret"], "something was written into outside/");
        assert_eq!(
            fs::read(self.outside.join("secret")).expect("read"),
            b"secret"
        );
        let m = fs::metadata(&self.outside).expect("stat");
        assert_eq!(m.mode() & 0o7777, 0o755, "outside/ mode changed");
    }
}

/// The boot path's reason for refusing, as the replay reports it.
fn cause(err: &UnpackError) -> &Cause<unpack::SourceError, rustix::io::Errno> {
    match err {
        UnpackError::Replay(r) => &r.cause,
        other => panic!("not a replay refusal: {other:?}"),
    }
}

fn bad_path(err: &UnpackError, want: PathError) -> bool {
    matches!(cause(err), Cause::Tar(TarError::BadPath(_, e)) if *e == want)
}

fn blocked(err: &UnpackError, dir: &str, why: Blocked) -> bool {
    matches!(cause(err), Cause::Refused(Refusal::Blocked { dir: d, why: w }) if d.as_str() == dir && *w == why)
}

fn tar_error(err: &UnpackError) -> Option<&TarError<unpack::SourceError>> {
    match cause(err) {
        Cause::Tar(e) => Some(e),
        _ => None,
    }
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        data,
        ..raw(name, EntryType::Regular)
    }
}

#[test]
fn dotdot_path_is_refused() {
    let e = env();
    for name in ["../evil", "a/../../evil", "a/./../evil"] {
        let mut entries = Vec::new();
        if name.starts_with("a/") {
            entries.push(raw("a", EntryType::Directory));
        }
        entries.push(file(name, b"pwned"));
        let err = e.unpack(&archive(&entries)).expect_err(name);
        assert!(bad_path(&err, PathError::DotDot), "{name}: {err:?}");
        e.assert_outside_untouched();
    }
    // "." names the layer root, which only a directory entry may set.
    let err = e.unpack(&archive(&[file(".", b"pwned")])).expect_err(".");
    assert!(bad_path(&err, PathError::Empty), "{err:?}");
    e.assert_outside_untouched();
}

#[test]
fn absolute_path_is_refused() {
    let e = env();
    let abs = e.base.join("evil");
    let err = e
        .unpack(&archive(&[file(abs.to_str().expect("utf-8"), b"pwned")]))
        .expect_err("absolute");
    assert!(bad_path(&err, PathError::Absolute), "{err:?}");
    e.assert_outside_untouched();
}

#[test]
fn pax_path_cannot_escape() {
    let e = env();
    let entry = Raw {
        pax: &[("path", b"../evil")],
        ..file("innocent", b"pwned")
    };
    let err = e.unpack(&archive(&[entry])).expect_err("pax ..");
    assert!(bad_path(&err, PathError::DotDot), "{err:?}");
    e.assert_outside_untouched();
    assert!(!e.dest.join("innocent").exists());
}

#[test]
fn writing_through_an_archived_symlink_is_refused() {
    let e = env();
    let outside = e.outside.to_str().expect("utf-8").to_owned();
    for target in [outside.as_str(), "../outside", ".."] {
        let link = Raw {
            link: target.as_bytes(),
            ..raw("link", EntryType::Symlink)
        };
        let err = e
            .unpack(&archive(&[link, file("link/evil", b"pwned")]))
            .expect_err(target);
        assert!(blocked(&err, "link", Blocked::Symlink), "{target}: {err:?}");
        e.assert_outside_untouched();
        fs::remove_file(e.dest.join("link")).expect("rm");
    }
}

#[test]
fn writing_through_a_preexisting_symlink_is_refused() {
    let e = env();
    symlink(&e.outside, e.dest.join("pre")).expect("symlink");
    let err = e
        .unpack(&archive(&[file("pre/evil", b"pwned")]))
        .expect_err("through pre-existing symlink");
    assert!(blocked(&err, "pre", Blocked::Symlink), "{err:?}");
    // A directory entry at the symlink's path replaces the link itself.
    e.unpack(&archive(&[
        raw("pre", EntryType::Directory),
        file("pre/ok", b"ok"),
    ]))
    .expect("dir replaces symlink");
    assert!(fs::symlink_metadata(e.dest.join("pre"))
        .expect("lstat")
        .is_dir());
    e.assert_outside_untouched();
}

#[test]
fn a_file_replaces_a_symlink_instead_of_writing_through_it() {
    let e = env();
    symlink(e.outside.join("secret"), e.dest.join("victim")).expect("symlink");
    let link = Raw {
        link: b"../outside/secret",
        ..raw("victim2", EntryType::Symlink)
    };
    e.unpack(&archive(&[
        file("victim", b"pwned"),
        link,
        file("victim2", b"pwned"),
    ]))
    .expect("unpack");
    for v in ["victim", "victim2"] {
        let m = fs::symlink_metadata(e.dest.join(v)).expect("lstat");
        assert!(m.is_file(), "{v} is a regular file now");
        assert_eq!(fs::read(e.dest.join(v)).expect("read"), b"pwned");
    }
    e.assert_outside_untouched();
}

#[test]
fn hard_links_must_name_an_existing_file_inside() {
    let e = env();
    let secret = e.outside.join("secret");
    for (target, refused) in [
        ("../outside/secret", PathError::DotDot),
        (secret.to_str().expect("utf-8"), PathError::Absolute),
    ] {
        let hl = Raw {
            link: target.as_bytes(),
            ..raw("hl", EntryType::Link)
        };
        let err = e
            .unpack(&archive(&[hl, file("later", b"l")]))
            .expect_err(target);
        assert!(bad_path(&err, refused), "{target}: {err:?}");
        assert!(!e.dest.join("hl").exists());
    }
    // A path a later entry creates does not exist yet.
    let hl = Raw {
        link: b"later",
        ..raw("hl", EntryType::Link)
    };
    let err = e
        .unpack(&archive(&[hl, file("later", b"l")]))
        .expect_err("later");
    assert!(
        matches!(cause(&err), Cause::Refused(Refusal::LinkTargetMissing(t)) if t.as_str() == "later"),
        "{err:?}"
    );
    // A file an earlier payload left in the same layer is a valid target.
    fs::write(e.dest.join("preexisting"), b"p").expect("write");
    let hl = Raw {
        link: b"preexisting",
        ..raw("hl2", EntryType::Link)
    };
    e.unpack(&archive(&[hl]))
        .expect("link to a file of the layer");
    assert_eq!(fs::metadata(e.dest.join("hl2")).expect("stat").nlink(), 2);
    assert_eq!(fs::metadata(&secret).expect("stat").nlink(), 1);
    e.assert_outside_untouched();
}

#[test]
fn hard_link_through_a_replaced_parent_is_refused() {
    let e = env();
    fs::create_dir(e.outside.join("d")).expect("mkdir");
    fs::write(e.outside.join("d/f"), b"outside f").expect("write");
    let sym = Raw {
        link: b"../outside/d",
        ..raw("d", EntryType::Symlink)
    };
    let hl = Raw {
        link: b"d/f",
        ..raw("hl", EntryType::Link)
    };
    let err = e
        .unpack(&archive(&[
            raw("d", EntryType::Directory),
            file("d/f", b"inside f"),
            sym,
            hl,
        ]))
        .expect_err("link via symlinked parent");
    assert!(blocked(&err, "d", Blocked::Symlink), "{err:?}");
    assert_eq!(
        fs::metadata(e.outside.join("d/f")).expect("stat").nlink(),
        1
    );
}

#[test]
fn deferred_directory_metadata_does_not_follow_a_later_symlink() {
    let e = env();
    let dir = Raw {
        mode: 0o700,
        ..raw("d", EntryType::Directory)
    };
    let sym = Raw {
        link: b"../outside",
        ..raw("d", EntryType::Symlink)
    };
    let before = fs::metadata(&e.outside).expect("stat");
    e.unpack(&archive(&[dir, sym])).expect("unpack");
    let after = fs::metadata(&e.outside).expect("stat");
    assert_eq!(after.mode(), before.mode());
    assert_eq!(after.mtime(), before.mtime());
    assert!(fs::symlink_metadata(e.dest.join("d"))
        .expect("lstat")
        .file_type()
        .is_symlink());
    e.assert_outside_untouched();
}

#[test]
fn off_dialect_archives_are_refused() {
    let e = env();
    let cases: Vec<(&str, Vec<u8>, ErrCheck)> = vec![
        ("fifo", archive(&[raw("p", EntryType::Fifo)]), |e| {
            matches!(tar_error(e), Some(TarError::UnsupportedType(b'6')))
        }),
        (
            "block device",
            archive(&[raw("b", EntryType::Block)]),
            |e| matches!(tar_error(e), Some(TarError::UnsupportedType(b'4'))),
        ),
        ("char device 1:3", char_dev(1, 3), |e| {
            matches!(tar_error(e), Some(TarError::Device { major: 1, minor: 3 }))
        }),
        (
            "unknown pax key",
            archive(&[Raw {
                pax: &[("GNU.sparse.map", b"0,0")],
                ..file("f", b"")
            }]),
            |e| matches!(tar_error(e), Some(TarError::UnsupportedPaxKey(k)) if k.as_str() == "GNU.sparse.map"),
        ),
        (
            "malformed pax record",
            archive(&[Raw {
                pax: &[("mtime", b"12x")],
                ..file("f", b"")
            }]),
            |e| matches!(tar_error(e), Some(TarError::BadPaxValue("mtime"))),
        ),
        ("global pax header", global_header(), |e| {
            matches!(tar_error(e), Some(TarError::UnsupportedType(b'g')))
        }),
        (
            "path over 255 bytes",
            archive(&[Raw {
                pax: &[("path", "p".repeat(256).as_bytes())],
                ..file("f", b"")
            }]),
            |e| bad_path(e, PathError::TooLong),
        ),
        (
            "user xattr",
            archive(&[Raw {
                pax: &[("SCHILY.xattr.user.x", b"1")],
                ..file("f", b"")
            }]),
            |e| matches!(tar_error(e), Some(TarError::XattrNamespace)),
        ),
    ];
    for (what, bytes, ok) in cases {
        let err = e.unpack(&bytes).expect_err(what);
        assert!(ok(&err), "{what}: {err:?}");
    }
    e.assert_outside_untouched();
}

#[test]
fn gnu_long_names_and_missing_parents_replay() {
    let e = env();
    e.unpack(&gnu_long_name()).expect("GNU long name");
    assert!(e.dest.join("x".repeat(150)).is_file());
    e.unpack(&archive(&[file("no/such/dir", b"d")]))
        .expect("missing parents are created");
    let m = fs::metadata(e.dest.join("no/such")).expect("stat");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.mtime()), (0o755, 0, 0));
    assert_eq!(fs::read(e.dest.join("no/such/dir")).expect("read"), b"d");
    e.assert_outside_untouched();
}

type ErrCheck = fn(&UnpackError) -> bool;

fn char_dev(major: u32, minor: u32) -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    let mut h = Header::new_ustar();
    h.as_old_mut().name[..1].copy_from_slice(b"c");
    h.set_entry_type(EntryType::Char);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h.set_device_major(major).expect("major");
    h.set_device_minor(minor).expect("minor");
    h.set_cksum();
    b.append(&h, &[][..]).expect("append");
    b.into_inner().expect("finish")
}

/// What the tar crate writes by default for a long path: a GNU 'L' record.
fn gnu_long_name() -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(0);
    b.append_data(&mut h, "x".repeat(150), &[][..])
        .expect("append");
    b.into_inner().expect("finish")
}

fn global_header() -> Vec<u8> {
    let mut b = Builder::new(Vec::new());
    let data = b"16 comment=hello\n";
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XGlobalHeader);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..]).expect("append");
    b.into_inner().expect("finish")
}

#[test]
fn setuid_survives_chown_and_modes_apply() {
    let e = env();
    let su = Raw {
        mode: 0o4755,
        ..file("su", b"x")
    };
    let mut bytes = archive(&[su]);
    // Give the entry an owner: patch uid in the header and re-checksum.
    let mut h = Header::new_ustar();
    h.as_mut_bytes().copy_from_slice(&bytes[..512]);
    h.set_uid(1234);
    h.set_gid(5678);
    h.set_cksum();
    bytes[..512].copy_from_slice(h.as_bytes());
    e.unpack(&bytes).expect("unpack");
    let m = fs::metadata(e.dest.join("su")).expect("stat");
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o4755, 1234, 5678));
    fs::set_permissions(e.dest.join("su"), fs::Permissions::from_mode(0o644)).expect("chmod");
}
