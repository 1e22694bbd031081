//! Shared helpers of the cli_* tests: run the built `snapshot` binary against image files, build
//! overlay-upper-like trees, and compare trees exhaustively. They run as root and fail (never
//! skip) without it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rustix::fs::{AtFlags, FileType, Mode, Timespec, Timestamps, CWD};

pub const BIN: &str = env!("CARGO_BIN_EXE_snapshot");

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the cli tests need root (chown, mknod whiteouts, trusted.* xattrs): run `cargo test` as root"
    );
}

/// A scratch directory on a filesystem that takes trusted.* xattrs and whiteout device nodes.
/// If the temp dir's filesystem does not, a tmpfs is mounted on it (unmounted on drop).
pub struct Scratch {
    pub dir: tempfile::TempDir,
    mounted: bool,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

fn fs_ok(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    let ok = xattr::set(dir, "trusted.snapinit.probe", b"1").is_ok()
        && rustix::fs::mknodat(
            CWD,
            &probe,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            0,
        )
        .is_ok();
    let _ = xattr::remove(dir, "trusted.snapinit.probe");
    let _ = fs::remove_file(&probe);
    ok
}

pub fn scratch() -> Scratch {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    if fs_ok(dir.path()) {
        return Scratch {
            dir,
            mounted: false,
        };
    }
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512m", "snapinit-cli-test"])
        .arg(dir.path())
        .status()
        .expect("run mount");
    assert!(
        st.success(),
        "{} takes no trusted.* xattrs or whiteouts, and mounting a tmpfs there failed",
        dir.path().display()
    );
    let s = Scratch { dir, mounted: true };
    assert!(
        fs_ok(s.path()),
        "tmpfs takes no trusted.* xattrs or whiteouts"
    );
    s
}

/// The binary under test: `SNAPSHOT_BIN` overrides the one cargo built (to run these tests
/// against an older build and see them fail there).
pub fn bin() -> String {
    std::env::var("SNAPSHOT_BIN").unwrap_or_else(|_| BIN.to_string())
}

/// Runs `snapshot --device IMG ARGS...` with stdin closed.
pub fn run(img: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--device")
        .arg(img)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run snapshot")
}

pub fn show(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs and asserts exit status 0.
pub fn ok(img: &Path, args: &[&str]) -> String {
    let o = run(img, args);
    assert!(
        o.status.success(),
        "snapshot {args:?} failed:\n{}",
        show(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Runs and asserts the exit code.
pub fn fails(img: &Path, args: &[&str], code: i32) -> Output {
    let o = run(img, args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "snapshot {args:?}: wrong exit code:\n{}",
        show(&o)
    );
    o
}

pub fn info(img: &Path) -> serde_json::Value {
    let out = ok(img, &["info", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("info --json: {e}\n{out}"))
}

/// A zeroed image file of `size` bytes.
pub fn image(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    let f = fs::File::create(&p).expect("create image");
    f.set_len(size).expect("size image");
    p
}

/// Writes `data` over the image at `offset`, as a cut, rot or PID 1's one-byte marks leave it.
pub fn patch(img: &Path, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    fs::OpenOptions::new()
        .write(true)
        .open(img)
        .expect("open image")
        .write_all_at(data, offset)
        .expect("patch image");
}

pub fn set_mtime(path: &Path, secs: i64, nanos: i64) {
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

pub fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("lchown");
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

pub fn file(path: &Path, data: &[u8], mode: u32, owner: (u32, u32)) {
    if let Ok(m) = fs::symlink_metadata(path) {
        if m.is_dir() {
            fs::remove_dir_all(path).expect("rm dir");
        } else {
            fs::remove_file(path).expect("rm");
        }
    }
    fs::write(path, data).expect("write");
    chown(path, owner.0, owner.1);
    chmod(path, mode);
}

pub fn dir(path: &Path, mode: u32, owner: (u32, u32)) {
    if !path.is_dir() {
        fs::create_dir(path).expect("mkdir");
    }
    chown(path, owner.0, owner.1);
    chmod(path, mode);
}

pub fn link(path: &Path, target: &str, owner: (u32, u32)) {
    let _ = fs::remove_file(path);
    symlink(target, path).expect("symlink");
    chown(path, owner.0, owner.1);
}

/// An overlayfs whiteout: character device 0:0, replacing whatever is there.
pub fn whiteout(path: &Path) {
    if let Ok(m) = fs::symlink_metadata(path) {
        if m.is_dir() {
            fs::remove_dir_all(path).expect("rm dir");
        } else {
            fs::remove_file(path).expect("rm");
        }
    }
    rustix::fs::mknodat(
        CWD,
        path,
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o000),
        rustix::fs::makedev(0, 0),
    )
    .expect("mknod whiteout");
}

pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    xattr::set(path, name, value).expect("setxattr");
}

/// Everything a snapshot must reproduce about one tree member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
    pub target: Option<PathBuf>,
    pub nlink: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// The whole tree below `root` (not `root` itself), keyed by relative path.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let child = rel.join(&name);
        let full = root.join(&child);
        let m = fs::symlink_metadata(&full).expect("lstat");
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "chardev"
        } else {
            "other"
        };
        let mut xattrs = BTreeMap::new();
        if !ft.is_symlink() {
            for x in xattr::list(&full).expect("listxattr") {
                let v = xattr::get(&full, &x).expect("getxattr").unwrap_or_default();
                xattrs.insert(x.to_string_lossy().into_owned(), v);
            }
        }
        out.insert(
            child.clone(),
            Node {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                // Directory and symlink mtimes are compared too: the format carries them.
                mtime: (m.mtime(), m.mtime_nsec()),
                rdev: (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev())),
                data: if ft.is_file() {
                    fs::read(&full).expect("read")
                } else {
                    Vec::new()
                },
                target: ft
                    .is_symlink()
                    .then(|| fs::read_link(&full).expect("readlink")),
                nlink: if ft.is_file() { m.nlink() } else { 0 },
                xattrs,
            },
        );
        if ft.is_dir() {
            walk(root, &child, out);
        }
    }
}

/// Asserts two trees are identical, naming every difference.
pub fn assert_same_tree(got: &Path, want: &Path) {
    let g = tree(got);
    let w = tree(want);
    let mut diffs = Vec::new();
    for (p, wn) in &w {
        match g.get(p) {
            None => diffs.push(format!("missing: {}", p.display())),
            Some(gn) if gn != wn => diffs.push(format!(
                "differs: {}\n  got  {gn:?}\n  want {wn:?}",
                p.display()
            )),
            _ => {}
        }
    }
    for p in g.keys() {
        if !w.contains_key(p) {
            diffs.push(format!("unexpected: {}", p.display()));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differs from {}:\n{}",
        got.display(),
        want.display(),
        diffs.join("\n")
    );
}

/// Incompressible bytes (xorshift), so sizes on flash are predictable.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A loop device over an image file: a partition, as a unit's flash is, not an image file
/// (which the tool treats as no running system's: it never reboots for one, notes no move).
pub struct LoopDevice(pub PathBuf);

impl LoopDevice {
    pub fn attach(img: &Path) -> LoopDevice {
        let o = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(img)
            .output()
            .expect("run losetup");
        assert!(o.status.success(), "losetup: {}", show(&o));
        LoopDevice(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}
