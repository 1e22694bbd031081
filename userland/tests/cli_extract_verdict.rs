//! `extract` and `diff` against hand-made payloads where the boot path's layering decides:
//! one block extracted alone is judged as the boot judges it, a volatile squashed onto the
//! snapshots shows what overlayfs shows, and a layer root's opaque mark empties nothing
//! (overlayfs never takes a layer root as opaque). Payloads are made by Python's tarfile.

mod cli_common;

use cli_common::*;
use snapinit::device::DeviceFlash;
use snapshot::writer::{Payload, Writer};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A pax tar; `body` adds members to `tf` (helpers: `reg(name, data)`, `dir(name)`,
/// `wh(name)` a whiteout, `sym(name, target)`, `hl(name, target)`).
fn tar(body: &str) -> Vec<u8> {
    let script = format!(
        "import io, sys, tarfile\nbuf = io.BytesIO()\ntf = tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT)\n\
def add(i, data=None):\n    tf.addfile(i, io.BytesIO(data) if data is not None else None)\n\
def reg(n, d):\n    i = tarfile.TarInfo(n); i.size = len(d); add(i, d)\n\
def dir(n, pax=None):\n    i = tarfile.TarInfo(n); i.type = tarfile.DIRTYPE; i.mode = 0o755\n    if pax: i.pax_headers = pax\n    add(i)\n\
def wh(n):\n    i = tarfile.TarInfo(n); i.type = tarfile.CHRTYPE; i.devmajor = 0; i.devminor = 0; add(i)\n\
def sym(n, t):\n    i = tarfile.TarInfo(n); i.type = tarfile.SYMTYPE; i.linkname = t; add(i)\n\
def hl(n, t):\n    i = tarfile.TarInfo(n); i.type = tarfile.LNKTYPE; i.linkname = t; add(i)\n\
{body}tf.close()\nsys.stdout.buffer.write(buf.getvalue())\n"
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

/// An image holding `snapshots` and, if given, a volatile: raw payloads, as a hostile or
/// hand-made writer could leave them.
fn chain(dir: &Path, snapshots: &[Vec<u8>], volatile: Option<Vec<u8>>) -> PathBuf {
    let img = image(dir, "flash.img", 1 << 20);
    ok(&img, &["format"]);
    let mut flash = DeviceFlash::open_file(img.as_path(), 65536, true).expect("open");
    for t in snapshots {
        Writer::new(&mut flash)
            .append_snapshot(&Payload::plain(t))
            .expect("append");
    }
    if let Some(v) = &volatile {
        Writer::new(&mut flash)
            .save_volatile(&Payload::plain(v))
            .expect("save");
    }
    img
}

/// A snapshot whites out etc/x; the volatile then makes etc/x/y without an entry for etc/x.
/// At boot etc/x is a directory of the volatile's layer over the whiteout. `extract all`
/// refused it (etc/x was not a directory in the squash); it now makes etc/x an opaque
/// directory, as overlayfs shows it.
#[test]
fn a_volatiles_directory_over_a_snapshots_whiteout_is_squashed_as_the_boot_shows_it() {
    let sc = scratch();
    let img = chain(
        sc.path(),
        &[tar("dir('etc')\nreg('etc/keep', b'k')\nwh('etc/x')\n")],
        Some(tar("reg('etc/x/y', b'new')\n")),
    );
    ok(&img, &["verify"]);
    let out = sc.path().join("all");
    ok(&img, &["extract", "all", s(&out)]);
    assert_eq!(fs::read(out.join("etc/x/y")).expect("etc/x/y"), b"new");
    assert_eq!(
        xattr::get(out.join("etc/x"), "trusted.overlay.opaque").expect("xattr"),
        Some(b"y".to_vec())
    );
    assert_eq!(fs::read(out.join("etc/keep")).expect("etc/keep"), b"k");
}

/// A block extracted alone is judged as the boot path judges it: snapshot 2 writes through
/// the symlink snapshot 1 left (the boot stops at snapshot 1), so `extract 2` refuses, and
/// `extract volatile` refuses a volatile the boot does not apply. (Before, both unpacked.)
#[test]
fn one_block_extracted_alone_is_refused_when_the_boot_does_not_apply_it() {
    let sc = scratch();
    let img = chain(
        sc.path(),
        &[tar("sym('a', '/etc')\n"), tar("reg('a/passwd', b'x')\n")],
        Some(tar("reg('v', b'v')\n")),
    );
    fails(&img, &["verify"], 9);
    let o = fails(&img, &["extract", "2", s(&sc.path().join("two"))], 8);
    assert!(show(&o).contains("snapshot 2"), "{}", show(&o));
    let o = fails(&img, &["extract", "volatile", s(&sc.path().join("vol"))], 8);
    assert!(
        show(&o).contains("snapshot 2 (the boot path stops there and does not apply the volatile)"),
        "{}",
        show(&o)
    );
    // Snapshot 1 alone is what the boot applies.
    ok(&img, &["extract", "1", s(&sc.path().join("one"))]);
}

/// An opaque mark on a layer's root: overlayfs ignores it, so the snapshots below the volatile
/// stay, and a later snapshot leaves the earlier ones (before, `extract all` emptied the
/// directory and `diff` said "O /").
#[test]
fn an_opaque_layer_root_hides_nothing() {
    let sc = scratch();
    let root = "dir('.', {'SCHILY.xattr.trusted.overlay.opaque': 'y'})\n";
    let img = chain(
        sc.path(),
        &[
            tar("reg('one', b'1')\n"),
            tar(&format!("{root}reg('two', b'2')\n")),
        ],
        Some(tar(&format!("{root}reg('v', b'v')\n"))),
    );
    ok(&img, &["verify"]);
    let out = sc.path().join("all");
    ok(&img, &["extract", "all", s(&out)]);
    for f in ["one", "two", "v"] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let d = ok(&img, &["diff"]);
    assert!(!d.contains("O /"), "{d}");
}
