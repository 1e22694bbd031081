//! The PID 1 binary as built for release: a static ELF, and a boot inside a
//! new PID + mount namespace against a prepared squashfs root.
//!
//! Test hook: snapinit reads `SNAPINIT_CMDLINE` from its environment instead
//! of /proc/cmdline (which is the host's here). `snapinit.root=DIR` makes it
//! chroot into DIR first, and `snapinit.log=console` sends its log to stderr
//! instead of the host's /dev/kmsg. These need root, unshare and loop
//! devices; without them the tests fail with the reason, they do not skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the PID 1 binary exactly as shipped (release, no `std` feature).
fn release_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("snapinit-release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--release", "-p", "snapinit", "--bin", "snapinit"])
            .env("CARGO_TARGET_DIR", &target));
        target.join("release/snapinit")
    })
}

fn setup() {
    run(Command::new("sh").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/init_setup.sh")));
}

#[test]
fn release_binary_is_static_elf() {
    setup();
    let bin = release_binary();
    let file = String::from_utf8(run(Command::new("file").arg(bin)).stdout).unwrap();
    assert!(file.contains("ELF"), "{file}");
    assert!(file.contains("statically linked"), "{file}");
    assert!(!file.contains("interpreter"), "{file}");
    let headers =
        String::from_utf8(run(Command::new("readelf").args(["-lW"]).arg(bin)).stdout).unwrap();
    assert!(!headers.contains("INTERP"), "{headers}");
    assert!(!headers.contains("DYNAMIC"), "{headers}");
    let stripped = Path::new(env!("CARGO_TARGET_TMPDIR")).join("snapinit.stripped");
    run(Command::new("strip").arg("-o").arg(&stripped).arg(bin));
    let size = std::fs::metadata(&stripped).unwrap().len();
    println!("snapinit stripped size: {size} bytes ({} KiB)", size / 1024);
    assert!(size < 512 * 1024, "binary grew to {size} bytes");
}

#[test]
fn refuses_to_run_unless_pid1() {
    let out = Command::new(release_binary()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not PID 1"));
}

const TARGET_SCRIPT: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
echo "TARGET-RAN pid=$$ args=$*"
echo "ENV SNAPINIT_TEST=$SNAPINIT_TEST"
$bb cat /proc/self/mountinfo
for d in /rom /snapshot /overlay /overlay/upper /overlay/work; do
    $bb test -d $d && echo "DIR-OK $d"
done
$bb test -x /rom/sbin/init && echo "ROM-OK"
echo hi > /written && echo "WRITE-OK"
$bb test -e /overlay/upper/written && echo "UPPER-OK"
$bb test -e /rom/written || echo "ROM-CLEAN"
echo "UMASK=$(umask)"
for d in rom snapshot overlay; do
    $bb test -e /overlay/upper/$d && echo "MOUNTPOINT-IN-UPPER $d"
done
$bb mknod /devnode c 1 3 && echo x > /devnode && echo "DEVNODE-OK"
"#;

/// Prepares a squashfs root holding busybox and a stand-in /sbin/init.
fn squashfs_root(dir: &Path, script: &str, extra: &dyn Fn(&Path)) -> PathBuf {
    let root = dir.join("rootdir");
    for d in ["bin", "sbin", "proc", "sys", "dev", "tmp", "mnt", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("sbin/init"), script).unwrap();
    extra(&root);
    run(Command::new("chmod").arg("755").arg(root.join("sbin/init")));
    let img = dir.join("root.squashfs");
    let _ = std::fs::remove_file(&img);
    run(Command::new("mksquashfs")
        .arg(&root)
        .arg(&img)
        .args(["-noappend", "-quiet", "-all-root"]));
    img
}

fn require_root_namespace_tools() {
    let uid = String::from_utf8(run(Command::new("id").arg("-u")).stdout).unwrap();
    assert_eq!(
        uid.trim(),
        "0",
        "the namespace boot test needs root (it mounts)"
    );
    run(Command::new("unshare").arg("--version"));
    assert!(
        Path::new("/dev/loop-control").exists(),
        "the namespace boot test needs loop devices (/dev/loop-control missing)"
    );
}

/// Boots snapinit as PID 1 of a new PID + mount namespace; returns (stdout, stderr).
fn boot(dir: &Path, cmdline: &str) -> (String, String) {
    boot_with(dir, cmdline, TARGET_SCRIPT, &|_| {})
}

fn boot_with(dir: &Path, cmdline: &str, script: &str, extra: &dyn Fn(&Path)) -> (String, String) {
    boot_with_pre(dir, cmdline, script, extra, "")
}

/// Like `boot_with`; `pre` runs after the root is mounted at `$mnt`, before snapinit starts.
fn boot_with_pre(
    dir: &Path,
    cmdline: &str,
    script: &str,
    extra: &dyn Fn(&Path),
    pre: &str,
) -> (String, String) {
    boot_redirected(dir, cmdline, script, extra, pre, "")
}

/// The command that boots snapinit as PID 1 of a new PID + mount namespace (see
/// `boot_redirected`).
fn namespace_boot(
    dir: &Path,
    cmdline: &str,
    script: &str,
    extra: &dyn Fn(&Path),
    pre: &str,
    redirect: &str,
) -> Command {
    let img = squashfs_root(dir, script, extra);
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = format!(
        "set -e; mount -t squashfs -o loop,ro {img} {mnt}; mnt={mnt}; {pre} exec env SNAPINIT_TEST=passed-through SNAPINIT_CMDLINE='snapinit.root={mnt} snapinit.log=console {cmdline}' {bin} quiet extra-arg {redirect}",
        img = img.display(),
        mnt = mnt.display(),
        bin = release_binary().display(),
    );
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "-p",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]);
    cmd
}

/// Like `boot_with_pre`; `redirect` is applied to snapinit's exec (e.g. `2>&-`: started
/// without a console).
fn boot_redirected(
    dir: &Path,
    cmdline: &str,
    script: &str,
    extra: &dyn Fn(&Path),
    pre: &str,
    redirect: &str,
) -> (String, String) {
    let out = namespace_boot(dir, cmdline, script, extra, pre, redirect)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "boot failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("init-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn boots_to_tmpfs_overlay_without_partition() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("nopart");
    let (out, log) = boot(
        &dir,
        "snapinit.part=snapinit-test-no-such-part snapinit.bogus=1",
    );
    println!("--- log ---\n{log}--- target ---\n{out}");
    assert!(
        log.contains("ignoring unknown option snapinit.bogus"),
        "{log}"
    );
    assert!(log.contains("no MTD partition"), "{log}");
    assert!(log.contains("plain tmpfs overlay"), "{log}");
    assert!(log.contains("root switched to the overlay"), "{log}");
    assert!(log.contains("peak RSS"), "{log}");
    assert!(
        out.contains("TARGET-RAN pid=1 args=quiet extra-arg"),
        "{out}"
    );
    assert!(out.contains("ENV SNAPINIT_TEST=passed-through"), "{out}");
    let root_line = out
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("a mountinfo line for /");
    assert!(root_line.contains(" - overlay "), "{root_line}");
    for want in [
        "DIR-OK /rom",
        "DIR-OK /snapshot",
        "DIR-OK /overlay/upper",
        "DIR-OK /overlay/work",
        "ROM-OK",
        "WRITE-OK",
        "UPPER-OK",
        "ROM-CLEAN",
        // The target runs with the kernel's default umask, not the replay's 0.
        "UMASK=0022",
        // A device node made at run time outside /dev opens (the merged root is not nodev).
        "DEVNODE-OK",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    // Mount points the root lacks never land in the volatile layer `snapshot save` stores.
    assert!(!out.contains("MOUNTPOINT-IN-UPPER"), "{out}");
    assert!(
        log.contains("mount point /rom created in the snapshot layer"),
        "{log}"
    );
}

/// The production log goes to /dev/kmsg, which the kernel rate-limits to 10
/// lines per open file every 5 s (printk.devkmsg=ratelimit, the default),
/// silently: snapinit must still get every line of a boot through. This
/// writes one boot's log (about 15 lines) into the host's kernel log.
#[test]
fn logs_every_line_to_kmsg_despite_its_rate_limit() {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    setup();
    require_root_namespace_tools();
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_o_nonblock())
        .open("/dev/kmsg")
        .expect("reading /dev/kmsg (needs root)");
    kmsg.seek(SeekFrom::End(0)).unwrap();
    let dir = scratch("kmsg");
    let part = format!("kmsg-test-{}", std::process::id());
    let (out, log) = boot(&dir, &format!("snapinit.part={part} snapinit.log=kmsg"));
    assert!(out.contains("TARGET-RAN"), "{out}");
    assert!(
        !log.contains("snapinit: exec"),
        "the log went to stderr:\n{log}"
    );
    // One record per read; EAGAIN at the end.
    let mut lines = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = kmsg.read(&mut buf) {
        let rec = String::from_utf8_lossy(&buf[..n]).into_owned();
        if let Some((_, text)) = rec.split_once(';') {
            lines.push(text.lines().next().unwrap_or("").to_string());
        }
    }
    // The API filesystem lines come before /dev/kmsg can be opened (the
    // prepared root's /dev is empty): they went to stderr.
    let ours: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("snapinit: "))
        .collect();
    println!("--- kmsg ---\n{}", lines.join("\n"));
    assert!(
        ours.iter().any(|l| l.contains(&part)),
        "not our boot: {ours:?}"
    );
    assert!(ours.len() >= 13, "lines lost: {ours:?}");
    assert!(
        ours.iter()
            .any(|l| l.as_str() == "snapinit: exec /sbin/init"),
        "{ours:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("suppressed due to ratelimiting")),
        "{lines:?}"
    );
}

/// O_NONBLOCK without a libc dependency (asm-generic value, x86_64 and ARM).
fn libc_o_nonblock() -> i32 {
    0o4000
}

#[test]
fn failsafe_skips_the_chain() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("failsafe");
    let (out, log) = boot(&dir, "snapinit.failsafe");
    assert!(log.contains("failsafe: skipping the chain"), "{log}");
    assert!(out.contains("UPPER-OK"), "{out}");
}

/// The test hook's settings are bytes like /proc/cmdline: one that is not UTF-8 costs only
/// itself, not every setting (the chroot into the test root among them).
#[test]
fn a_stray_byte_in_snapinit_cmdline_costs_only_itself() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("cmdline-bytes");
    // Closes the hook's single quotes around a printf of 0xE9 (Latin-1 'é').
    let (out, log) = boot(&dir, "x=caf'\"$(printf '\\351')\"' snapinit.failsafe");
    assert!(
        log.contains("SNAPINIT_CMDLINE: 1 byte sequence(s) that are not UTF-8 read as '?'"),
        "{log}"
    );
    assert!(log.contains("failsafe: skipping the chain"), "{log}");
    assert!(out.contains("UPPER-OK"), "{out}");
}

// ---- chain replay -------------------------------------------------------

const ERASE: u32 = 65536;
const BLOCKS: u32 = 16;
const BACKBUF: u16 = 2;

/// A chain image built with the library's own header sealing, the way the
/// writer lays it out: snapshots from offset 0, the volatile in the slot
/// after them or at the start of the back buffer, erased (0xFF) elsewhere.
struct Image {
    /// Trial boots for the blocks put from now on (0: confirmed at write).
    trial: u16,
    data: Vec<u8>,
    generation: u64,
    prev: [u8; 32],
    next: u32,
    snapshots: u32,
}

impl Image {
    fn new() -> Self {
        Self {
            data: vec![0xFF; (ERASE * BLOCKS) as usize],
            generation: 0,
            prev: [0; 32],
            next: 0,
            snapshots: 0,
            trial: 0,
        }
    }

    fn put(&mut self, offset: u32, kind: Kind, payload: &(Vec<u8>, Compression)) -> [u8; 32] {
        use sha2::Digest;
        self.generation += 1;
        let (data, compression) = payload;
        let mut sha = [0u8; 32];
        sha.copy_from_slice(&sha2::Sha256::digest(data));
        let fields = Fields {
            kind,
            compression: *compression,
            erase_size: ERASE,
            backbuf_blocks: BACKBUF,
            trial_budget: self.trial,
            seq: if kind == Kind::Snapshot {
                self.snapshots + 1
            } else {
                self.snapshots
            },
            generation: self.generation,
            payload_len: data.len() as u64,
            unpacked_len: 0,
            created: 0,
            nonce: self.generation.to_le_bytes(),
            payload_sha256: sha,
            prev: self.prev,
        };
        let at = offset as usize;
        let sealed = fields.seal();
        self.data[at..at + sealed.len()].copy_from_slice(&sealed);
        self.data[at + 256..at + 256 + data.len()].copy_from_slice(data);
        fields.hash()
    }

    fn snapshot(&mut self, payload: &(Vec<u8>, Compression)) {
        let offset = self.next;
        self.prev = self.put(offset, Kind::Snapshot, payload);
        self.snapshots += 1;
        let span = (256 + payload.0.len() as u32).div_ceil(ERASE);
        self.next += span * ERASE;
    }

    fn volatile_in_slot(&mut self, payload: &(Vec<u8>, Compression)) {
        self.put(self.next, Kind::Volatile, payload);
    }

    fn volatile_in_backbuf(&mut self, payload: &(Vec<u8>, Compression)) {
        self.put(
            (BLOCKS - u32::from(BACKBUF)) * ERASE,
            Kind::Volatile,
            payload,
        );
    }
}

use snapinit::header::{Compression, Fields, Kind};

/// A pax tar (GNU tar, with xattrs) of the tree `build` makes.
fn payload(dir: &Path, name: &str, gzip: bool, build: &dyn Fn(&Path)) -> (Vec<u8>, Compression) {
    payload_of(dir, name, gzip, ".", build)
}

/// Like `payload`, archiving only `members` (so parents can be left out).
fn payload_of(
    dir: &Path,
    name: &str,
    gzip: bool,
    members: &str,
    build: &dyn Fn(&Path),
) -> (Vec<u8>, Compression) {
    let tree = dir.join(name);
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(&tree).unwrap();
    build(&tree);
    let tar = format!(
        "tar -C {} --format=pax --xattrs --xattrs-include='*' --sort=name -cf - {members}{}",
        tree.display(),
        if gzip { " | gzip -9c" } else { "" }
    );
    let data = run(Command::new("sh").args(["-c", &tar])).stdout;
    (
        data,
        if gzip {
            Compression::Gzip
        } else {
            Compression::None
        },
    )
}

fn write(root: &Path, path: &str, content: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

fn sh(cmd: &str) {
    run(Command::new("sh").args(["-c", cmd]));
}

/// An overlayfs whiteout (a 0:0 character device) at `path` under `root`: the path is deleted
/// in what lies below.
fn whiteout(root: &Path, path: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    sh(&format!("mknod {} c 0 0", p.display()));
}

const CHAIN_SCRIPT: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
echo "NET=$($bb cat /etc/config/network)"
$bb test -e /etc/old && echo "OLD=$($bb cat /etc/old)" || echo "OLD-GONE"
echo "DATA=$($bb ls /data | $bb tr '\n' ,)"
echo "VOL=$($bb cat /etc/volatile 2>/dev/null)"
echo "LINK=$($bb readlink /etc/link)"
echo "DMTIME=$($bb stat -c %Y /data)"
echo "HARD=$($bb stat -c %h /etc/hard 2>/dev/null)"
echo "ROMOLD=$($bb cat /rom/etc/old)"
echo "SNAPLS=$($bb ls /snapshot/etc | $bb tr '\n' ,)"
echo "UPPERLS=$($bb ls /overlay/upper/etc 2>/dev/null | $bb tr '\n' ,)"
echo "RECORD=$($bb cat /overlay/snapinit 2>/dev/null | $bb tr '\n' ,)"
"#;

/// Boots the standard root with `image` as the chain device and CHAIN_SCRIPT as the target;
/// prints both outputs for a failing test's report.
fn boot_chain(dir: &Path, image: Vec<u8>) -> (String, String) {
    boot_chain_with(dir, image, CHAIN_SCRIPT)
}

/// `boot_chain` with another target script.
fn boot_chain_with(dir: &Path, image: Vec<u8>, script: &str) -> (String, String) {
    let (out, log) = boot_with(dir, "snapinit.device=/chain.img", script, &rom_extra(image));
    println!("--- log ---\n{log}--- target ---\n{out}");
    (out, log)
}

fn rom_extra(image: Vec<u8>) -> impl Fn(&Path) {
    move |root: &Path| {
        std::fs::write(root.join("chain.img"), &image).unwrap();
        write(root, "etc/old", "rom-old");
        write(root, "data/c", "c");
    }
}

fn snap1(dir: &Path) -> (Vec<u8>, Compression) {
    payload(dir, "snap1", false, &|t| {
        write(t, "etc/config/network", "one");
        write(t, "etc/old", "snap1-old");
        write(t, "data/a", "a");
        std::os::unix::fs::symlink("config/network", t.join("etc/link")).unwrap();
    })
}

#[test]
fn replays_snapshots_and_volatile() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("chain");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.snapshot(&payload(&dir, "snap2", true, &|t| {
        write(t, "etc/config/network", "two");
        std::fs::hard_link(t.join("etc/config/network"), t.join("etc/hard")).unwrap();
        whiteout(t, "etc/old");
        write(t, "data/b", "b");
        let data = t.join("data");
        sh(&format!(
            "python3 -c \"import os; os.setxattr('{}', 'trusted.overlay.opaque', b'y')\"",
            data.display()
        ));
        sh(&format!("touch -d @1600000000 {}", data.display()));
    }));
    img.volatile_in_slot(&payload(&dir, "vol", false, &|t| {
        write(t, "etc/volatile", "vol")
    }));
    let (out, log) = boot_chain(&dir, img.data);
    assert!(
        log.contains("2 snapshot(s), 1 volatile candidate(s)"),
        "{log}"
    );
    assert!(
        log.contains("the saved changes are in place (newest copy)"),
        "{log}"
    );
    for want in [
        "NET=two",
        "OLD-GONE",
        "DATA=b,\n",
        "VOL=vol",
        "LINK=config/network",
        "DMTIME=1600000000",
        "HARD=2",
        "ROMOLD=rom-old",
        "UPPERLS=volatile,",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
}

#[test]
fn bad_snapshot_ends_chain_and_bad_volatile_falls_back() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("chain-bad");
    let hostile = {
        let base = dir.join("hostile");
        std::fs::create_dir_all(base.join("in")).unwrap();
        std::fs::write(base.join("evil"), "x").unwrap();
        let tar = format!(
            "tar -C {} --format=pax -P -cf - ../evil",
            base.join("in").display()
        );
        (
            run(Command::new("sh").args(["-c", &tar])).stdout,
            Compression::None,
        )
    };
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.snapshot(&hostile);
    img.snapshot(&payload(&dir, "snap3", false, &|t| {
        write(t, "etc/config/network", "three")
    }));
    img.volatile_in_backbuf(&payload(&dir, "vol2", false, &|t| {
        write(t, "etc/volatile", "vol2")
    }));
    // Higher generation, so tried first.
    img.volatile_in_slot(&hostile);
    let (out, log) = boot_chain(&dir, img.data);
    assert!(
        log.contains("3 snapshot(s), 2 volatile candidate(s)"),
        "{log}"
    );
    assert!(log.contains("snapshot chain ends at #1"), "{log}");
    // The volatile was saved above snapshot 3: over snapshot 1 alone it
    // would show a state that never existed.
    assert!(
        log.contains("the volatile belongs to the full chain: not applying it"),
        "{log}"
    );
    assert!(!log.contains("restored the saved changes"), "{log}");
    for want in ["NET=one", "OLD=snap1-old", "VOL=\n", "DATA=a,c,\n"] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }

    // A full chain whose current volatile fails replay: the other copy.
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.volatile_in_backbuf(&payload(&dir, "vol2", false, &|t| {
        write(t, "etc/volatile", "vol2")
    }));
    img.volatile_in_slot(&hostile);
    let (out, log) = boot_chain(&dir, img.data);
    assert!(
        log.contains("1 snapshot(s), 2 volatile candidate(s)"),
        "{log}"
    );
    assert!(
        log.contains("the newest copy of the saved changes failed"),
        "{log}"
    );
    assert!(
        log.contains("the saved changes are in place (older copy)"),
        "{log}"
    );
    for want in ["NET=one", "OLD=snap1-old", "VOL=vol2", "DATA=a,c,\n"] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
}

#[test]
fn replay_cannot_write_through_planted_symlinks() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("chain-escape");
    let mut img = Image::new();
    // An older snapshot plants symlinks out of the layer; later ones try to
    // write and hard-link through them.
    let plant = payload(&dir, "plant", false, &|t| {
        std::os::unix::fs::symlink("/etc", t.join("esc")).unwrap();
        std::os::unix::fs::symlink("../../..", t.join("up")).unwrap();
        write(t, "keep", "kept");
    });
    img.snapshot(&plant);
    // Only the file entries: their parents resolve to the planted symlinks.
    img.snapshot(&payload_of(&dir, "through", false, "esc/pwned", &|t| {
        write(t, "esc/pwned", "x");
    }));
    let script = r#"#!/bin/busybox sh
bb=/bin/busybox
echo "KEEP=$($bb cat /keep)"
for p in /etc/pwned /rom/etc/pwned /pwned /up/pwned /snapshot/up/pwned; do
    $bb test -e $p && echo "ESCAPED $p"
done
echo "ESC=$($bb readlink /esc)"
"#;
    let (out, log) = boot_chain_with(&dir, img.data, script);
    assert!(log.contains("snapshot chain ends at #1"), "{log}");
    assert!(out.contains("KEEP=kept"), "{out}");
    assert!(out.contains("ESC=/etc"), "{out}");
    assert!(!out.contains("ESCAPED"), "{out}");

    // A volatile (on a chain that replays whole) tries the other symlink.
    let mut img = Image::new();
    img.snapshot(&plant);
    img.volatile_in_slot(&payload_of(&dir, "up", false, "up/pwned", &|t| {
        write(t, "up/pwned", "x");
    }));
    let (out, log) = boot_chain_with(&dir, img.data, script);
    assert!(
        log.contains("the newest copy of the saved changes failed"),
        "{log}"
    );
    assert!(log.contains("no volatile state"), "{log}");
    assert!(out.contains("KEEP=kept"), "{out}");
    assert!(!out.contains("ESCAPED"), "{out}");
}

#[test]
fn corrupt_middle_snapshot_boots_the_prefix() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("chain-corrupt");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    let second_at = img.next;
    img.snapshot(&payload(&dir, "snap2", false, &|t| {
        write(t, "etc/config/network", "two")
    }));
    img.snapshot(&payload(&dir, "snap3", false, &|t| write(t, "data/b", "b")));
    img.volatile_in_slot(&payload(&dir, "vol", false, &|t| {
        write(t, "etc/volatile", "vol")
    }));
    // Bit rot in the middle snapshot's payload (inside its first tar header).
    img.data[second_at as usize + 256 + 10] ^= 0x20;
    let (out, log) = boot_chain(&dir, img.data);
    // Headers are fine: the walk finds all three; the hash, checked as the block replays,
    // discards the second and everything above it.
    assert!(
        log.contains("3 snapshot(s), 1 volatile candidate(s)"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "snapshot 2 at {second_at:#x}: payload SHA-256 mismatch: discarded"
        )),
        "{log}"
    );
    assert!(log.contains("snapshot chain ends at #1"), "{log}");
    assert!(
        log.contains("the volatile belongs to the full chain: not applying it"),
        "{log}"
    );
    assert!(!log.contains("restored snapshot 3"), "{log}");
    for want in ["NET=one", "DATA=a,c,\n", "VOL=\n", "UPPERLS=\n"] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    // The tool reads the same chain: it hashes every snapshot, so its chain ends before the
    // corrupt one too, without the volatile above it. The boot ran all of that chain, and the
    // record says nothing more: `save` goes ahead (over the corrupt block), as it did before
    // the record spoke of partial boots. Saying chain-partly-booted here refused every save,
    // commit and upgrade of the unit for good, one bit flip in a snapshot sufficing.
    assert!(out.contains("RECORD=failed-check-marks,\n"), "{out}");

    // Bit rot in the current volatile copy: discarded as it replays, the older copy boots.
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.volatile_in_backbuf(&payload(&dir, "vol-old", false, &|t| {
        write(t, "etc/volatile", "older")
    }));
    let current_at = img.next;
    img.volatile_in_slot(&payload(&dir, "vol-new", false, &|t| {
        write(t, "etc/volatile", "newer")
    }));
    img.data[current_at as usize + 256 + 700] ^= 0x01;
    let (out, log) = boot_chain(&dir, img.data);
    assert!(
        log.contains(&format!(
            "the saved changes (volatile above snapshot 1) at {current_at:#x}: payload SHA-256 mismatch: discarded"
        )),
        "{log}"
    );
    assert!(
        log.contains("the saved changes are in place (older copy)"),
        "{log}"
    );
    assert!(out.contains("VOL=older"), "{out}");
    // A copy that fails its hash is no volatile to the tool either: the boot ran the chain.
    assert!(out.contains("RECORD=failed-check-marks,\n"), "{out}");
}

/// A gzip payload whose one file of zeros is `mib` MiB: it compresses about 1000x, so a block
/// of one erase block carries far more than it may unpack to.
fn zeros_payload(dir: &Path, name: &str, mib: u64) -> (Vec<u8>, Compression) {
    payload(dir, name, true, &|t| {
        std::fs::create_dir_all(t.join("data")).unwrap();
        sh(&format!(
            "head -c {} /dev/zero > {}",
            mib << 20,
            t.join("data/zeros").display()
        ));
    })
}

#[test]
fn a_snapshot_that_unpacks_past_its_bound_ends_the_chain() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("chain-bound");
    let limit = snapinit::header::data_limit(1, ERASE);
    // One erase block may unpack to 64 of them; a file of one MiB more is refused at its
    // header, one of one MiB less is replayed.
    let over = (limit >> 20) + 1;
    let under = (limit >> 20) - 1;
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    let second_at = img.next;
    let bomb = zeros_payload(&dir, "over", over);
    assert!(bomb.0.len() < 64 * 1024, "{} bytes", bomb.0.len());
    img.snapshot(&bomb);
    img.volatile_in_slot(&payload(&dir, "vol", false, &|t| {
        write(t, "etc/volatile", "vol")
    }));
    let (out, log) = boot_chain(&dir, img.data);
    assert!(
        log.contains(&format!(
            "snapshot 2 at {second_at:#x}: replay failed: entry \"data/zeros\": tar: file data reaches {} bytes, more than the {limit} a block of this size may unpack to (64x its flash)",
            over << 20
        )),
        "{log}"
    );
    assert!(log.contains("snapshot chain ends at #1"), "{log}");
    for want in ["NET=one", "DATA=a,c,\n", "VOL=\n"] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    assert!(
        out.contains("RECORD=failed-check-marks,chain-partly-booted,\n"),
        "{out}"
    );

    // A volatile intact on flash that cannot be laid out: the older copy boots, and the
    // record says the boot ran every snapshot but not the volatile the tool reads.
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.volatile_in_backbuf(&payload(&dir, "vol-old", false, &|t| {
        write(t, "etc/volatile", "older")
    }));
    img.volatile_in_slot(&zeros_payload(&dir, "vol-over", over));
    let (out, log) = boot_chain(&dir, img.data);
    assert!(
        log.contains("the saved changes are in place (older copy)"),
        "{log}"
    );
    assert!(out.contains("VOL=older"), "{out}");
    assert!(
        out.contains("RECORD=failed-check-marks,volatile-not-booted,\n"),
        "{out}"
    );

    // Just under the bound: the same kind of block boots, with every byte of its file.
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.snapshot(&zeros_payload(&dir, "under", under));
    let (out, log) = boot_chain_with(
        &dir,
        img.data,
        &format!("{CHAIN_SCRIPT}echo \"ZEROS=$($bb stat -c %s /data/zeros)\"\n"),
    );
    assert!(log.contains("restored snapshot 2"), "{log}");
    assert!(out.contains(&format!("ZEROS={}\n", under << 20)), "{out}");
}

/// The volatile layer gets at most the RAM the snapshots left free, less a reserve
/// (`snapinit.reserve`, KiB): a snapshot layer near its half of RAM and a volatile filling
/// its own would leave the kernel nothing, and with PID 1 the only process it panics at
/// every boot. Here the reserve is past all of RAM, so the layer gets its smallest size
/// (1 MiB): a volatile of 2 MiB is refused for want of space, the older copy boots, and the
/// record says the volatile on flash did not.
#[test]
fn the_volatile_layer_takes_only_what_the_snapshots_left_free() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("ram-cap");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.volatile_in_backbuf(&payload(&dir, "vol-old", false, &|t| {
        write(t, "etc/volatile", "older")
    }));
    img.volatile_in_slot(&payload(&dir, "vol-big", true, &|t| {
        write(t, "etc/volatile", "newer");
        write(t, "data/big", &"x".repeat(2 << 20));
    }));
    let (out, log) = boot_with(
        &dir,
        "snapinit.device=/chain.img snapinit.reserve=4294967295",
        &format!("{CHAIN_SCRIPT}echo \"UPPERKB=$($bb df -k /overlay | $bb tail -n 1 | $bb tr -s ' ' | $bb cut -d ' ' -f 2)\"\n"),
        &rom_extra(img.data),
    );
    println!("--- log ---\n{log}--- target ---\n{out}");
    assert!(
        log.contains("the volatile layer is capped at 1024 KiB"),
        "{log}"
    );
    assert!(
        log.contains("the saved changes are in place (older copy)"),
        "{log}"
    );
    assert!(out.contains("VOL=older"), "{out}");
    assert!(out.contains("UPPERKB=1024\n"), "{out}");
    assert!(
        out.contains("RECORD=failed-check-marks,volatile-not-booted,\n"),
        "{out}"
    );

    // The default reserve on this machine leaves the same chain alone.
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.volatile_in_slot(&payload(&dir, "vol-big", true, &|t| {
        write(t, "etc/volatile", "newer");
        write(t, "data/big", &"x".repeat(2 << 20));
    }));
    let (out, log) = boot_chain(&dir, img.data);
    assert!(!log.contains("the volatile layer is capped"), "{log}");
    assert!(out.contains("VOL=newer"), "{out}");
    assert!(out.contains("RECORD=failed-check-marks,\n"), "{out}");
}

/// A chain that ends early (here a snapshot that fails its hash) boots the good prefix, and the
/// running system's layer gets what that prefix left free, as over a whole chain. Before, the
/// cap was measured only after a whole chain: a prefix boot kept the kernel's default, half
/// of RAM, however little the snapshots left.
#[test]
fn a_prefix_boot_caps_the_volatile_layer_too() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("ram-cap-prefix");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    let second_at = img.next;
    img.snapshot(&payload(&dir, "snap2", false, &|t| {
        write(t, "etc/config/network", "two")
    }));
    img.data[second_at as usize + 256 + 10] ^= 0x20;
    let (out, log) = boot_with(
        &dir,
        "snapinit.device=/chain.img snapinit.reserve=4294967295",
        &format!("{CHAIN_SCRIPT}echo \"UPPERKB=$($bb df -k /overlay | $bb tail -n 1 | $bb tr -s ' ' | $bb cut -d ' ' -f 2)\"\n"),
        &rom_extra(img.data),
    );
    println!("--- log ---\n{log}--- target ---\n{out}");
    assert!(log.contains("snapshot chain ends at #1"), "{log}");
    assert!(
        log.contains("the volatile layer is capped at 1024 KiB"),
        "{log}"
    );
    assert!(
        out.contains("NET=one") && out.contains("UPPERKB=1024\n"),
        "{out}"
    );
}

/// A volatile that fills its layer to the last page leaves no room for the boot record, which
/// PID 1 writes last: the tool then takes the boot for one without snapinit and refuses
/// nothing (a save after a commit without a reboot would mix). The record's page is taken
/// before the volatile is laid out, so such a volatile is refused like one a page larger.
#[test]
fn a_volatile_that_fills_its_layer_leaves_room_for_the_boot_record() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("ram-cap-record");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.volatile_in_backbuf(&payload(&dir, "vol-old", false, &|t| {
        write(t, "etc/volatile", "older")
    }));
    // 256 pages: etc/volatile one, data/big 255, the whole of the 1 MiB layer.
    img.volatile_in_slot(&payload(&dir, "vol-full", true, &|t| {
        write(t, "etc/volatile", "newer");
        write(t, "data/big", &"x".repeat(255 * 4096));
    }));
    let (out, log) = boot_with(
        &dir,
        "snapinit.device=/chain.img snapinit.reserve=4294967295",
        CHAIN_SCRIPT,
        &rom_extra(img.data),
    );
    println!("--- log ---\n{log}--- target ---\n{out}");
    assert!(
        log.contains("the volatile layer is capped at 1024 KiB"),
        "{log}"
    );
    assert!(!log.contains("cannot write"), "{log}");
    assert!(out.contains("VOL=older"), "{out}");
    assert!(
        out.contains("RECORD=failed-check-marks,volatile-not-booted,\n"),
        "{out}"
    );
}

/// The cap on the volatile layer is what the snapshot layer left free. When the switch to the
/// chain fails and the plain tmpfs overlay takes over, the snapshot layer is emptied: the cap
/// measured over it no longer holds, and the plain overlay's writable layer gets the kernel's
/// default again. (Before, it kept the cap, here its smallest size: 1 MiB for the running
/// system on the plain-overlay rung, with all of the snapshots' RAM free again.)
#[test]
fn the_plain_overlay_after_a_failed_switch_drops_the_chains_ram_cap() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("ram-cap-plain");
    let mut img = Image::new();
    img.snapshot(&payload(&dir, "no-init", false, &|t| {
        whiteout(t, "sbin/init");
        whiteout(t, "bin/sh");
        write(t, "etc/config/network", "chain");
    }));
    let (out, log) = boot_with(
        &dir,
        "snapinit.device=/chain.img snapinit.reserve=4294967295",
        &format!("{DEGRADED_SCRIPT}echo \"UPPERKB=$($bb df -k /overlay | $bb tail -n 1 | $bb tr -s ' ' | $bb cut -d ' ' -f 2)\"\n"),
        &rom_extra(img.data),
    );
    println!("--- log ---\n{log}--- target ---\n{out}");
    assert!(
        log.contains("the volatile layer is capped at 1024 KiB"),
        "{log}"
    );
    assert!(
        log.contains("root switched to a plain tmpfs overlay: the chain is not booted"),
        "{log}"
    );
    assert!(out.contains("chain-not-booted"), "{out}");
    assert!(out.contains("UPPERKB="), "{out}");
    assert!(!out.contains("UPPERKB=1024\n"), "{out}");
}

/// A chain on a file or block device written for another erase size than
/// `snapinit.erase_size`: the boot path rejects its first block (docs/FORMAT.md, step 5) and
/// boots an empty overlay, but the chain is there, and `snapshot` (which takes a block
/// device's erase size from the chain's headers) reads and writes it. The boot record says
/// `chain-not-booted`, as for a chain device that cannot be read: the running system's upper
/// dir holds changes against none of the chain, and saved over it they would mix with it;
/// nor may `snapshot health` vouch for a block on trial there. (Before, the record said
/// nothing.)
#[test]
fn a_chain_of_another_erase_size_is_not_booted_and_the_record_says_so() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("chain-other-erase-size");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.volatile_in_slot(&payload(&dir, "vol", false, &|t| {
        write(t, "etc/volatile", "vol")
    }));
    let (out, log) = boot_with(
        &dir,
        &format!(
            "snapinit.device=/chain.img snapinit.erase_size={}",
            2 * ERASE
        ),
        CHAIN_SCRIPT,
        &rom_extra(img.data),
    );
    println!("--- log ---\n{log}--- target ---\n{out}");
    assert!(
        log.contains("geometry does not match the partition"),
        "{log}"
    );
    assert!(out.contains("VOL=\n"), "{out}");
    assert!(
        out.contains("RECORD=failed-check-marks,chain-not-booted,\n"),
        "{out}"
    );
}

#[test]
fn empty_and_foreign_partitions_boot_a_plain_tmpfs_overlay() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("chain-empty");
    let (out, log) = boot_chain(&dir, Image::new().data);
    assert!(log.contains("empty chain: nothing to replay"), "{log}");
    assert!(
        out.contains("ROMOLD=rom-old") && out.contains("OLD=rom-old"),
        "{out}"
    );
    // Nothing to run is the chain run: the first save goes ahead.
    assert!(out.contains("RECORD=failed-check-marks,\n"), "{out}");

    // A chain device that cannot be opened may hold a chain all the same: the plain overlay
    // is no boot of it, and the record says so (the tool then stores no upper dir over it).
    let dir = scratch("chain-unopened");
    let (out, log) = boot_with(
        &dir,
        "snapinit.device=/no-such-chain.img",
        CHAIN_SCRIPT,
        &rom_extra(Image::new().data),
    );
    assert!(log.contains("cannot open /no-such-chain.img"), "{log}");
    assert!(out.contains("OLD=rom-old"), "{out}");
    assert!(
        out.contains("RECORD=failed-check-marks,chain-not-booted,\n"),
        "{out}"
    );

    let dir = scratch("chain-jffs2");
    let mut jffs2 = Image::new().data;
    // A JFFS2 node header as on a little-endian unit: magic 0x1985, a dirent node type.
    jffs2[..4].copy_from_slice(&[0x85, 0x19, 0x01, 0xe0]);
    let (out, log) = boot_chain(&dir, jffs2);
    assert!(
        log.contains("the partition holds a JFFS2 filesystem, not a snapinit chain"),
        "{log}"
    );
    assert!(out.contains("OLD=rom-old"), "{out}");
}

/// Boots `image` (a file in `dir`, kept across boots: the boot writes trial marks into it) as
/// the chain device.
fn boot_trial(dir: &Path, image: &Path) -> (String, String) {
    let (out, log) = boot_with_pre(
        dir,
        "snapinit.device=/chain.img snapinit.watchdog=0",
        CHAIN_SCRIPT,
        &rom_extra(Vec::new()),
        &format!("mount --bind {} $mnt/chain.img;", image.display()),
    );
    println!("--- log ---\n{log}--- target ---\n{out}");
    (out, log)
}

#[test]
fn a_snapshot_on_trial_rolls_back_after_its_boots_and_a_confirmed_one_stays() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("trial");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    let second_at = img.next;
    img.trial = 2;
    img.snapshot(&payload(&dir, "snap2", false, &|t| {
        write(t, "etc/config/network", "two")
    }));
    let chain = dir.join("trial.img");
    std::fs::write(&chain, &img.data).unwrap();
    let marks = |chain: &Path| {
        let data = std::fs::read(chain).unwrap();
        let at = second_at as usize + snapinit::header::TRIAL_MARKS;
        data[at..at + 3].to_vec()
    };
    // Two boots of snapshot 2, each spending one mark before the target runs. Between them
    // the first boot's health check failed its ping and marked so (the byte `snapshot health`
    // programs): the block is still booted on trial, not taken for a corrupt header.
    for boot in 1..=2u8 {
        if boot == 2 {
            let mut data = std::fs::read(&chain).unwrap();
            data[second_at as usize + snapinit::header::FAILED_MARKS + 1] = 0;
            std::fs::write(&chain, &data).unwrap();
        }
        let (out, log) = boot_trial(&dir, &chain);
        assert!(out.contains("NET=two"), "boot {boot}: {out}");
        // The boot record tells `snapshot health` that this PID 1 reads the marks.
        assert!(out.contains("RECORD=failed-check-marks,"), "{out}");
        assert!(
            log.contains(&format!("snapshot 2 is on trial: boot {boot} of 2")),
            "{log}"
        );
        let spent: Vec<u8> = (0..3).map(|i| if i < boot { 0 } else { 0xFF }).collect();
        assert_eq!(marks(&chain), spent, "after boot {boot}");
    }
    // Its boots are spent, unconfirmed: the next boot comes back on snapshot 1 by itself and
    // spends one more mark to say so (the roll-back mark: nothing else changes); later boots
    // boot snapshot 1 without writing anything.
    for boot in 0..2 {
        let before = std::fs::read(&chain).unwrap();
        let (out, log) = boot_trial(&dir, &chain);
        assert!(out.contains("NET=one"), "{out}");
        assert!(
            log.contains("on trial, every allowed boot spent without a confirmation"),
            "{log}"
        );
        assert!(!log.contains("is on trial: boot"), "{log}");
        let after = std::fs::read(&chain).unwrap();
        let changed: Vec<usize> = (0..after.len())
            .filter(|&i| before[i] != after[i])
            .collect();
        if boot == 0 {
            assert_eq!(
                changed,
                [second_at as usize + snapinit::header::TRIAL_MARKS + 2],
                "the roll-back boot wrote more than its mark"
            );
            assert_eq!(marks(&chain), [0, 0, 0]);
        } else {
            assert!(changed.is_empty(), "a rolled-back boot wrote flash");
        }
    }

    // Confirmed after its first boot (the byte `snapshot confirm` programs): it stays, and
    // later boots spend nothing.
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.trial = 1;
    img.snapshot(&payload(&dir, "snap2", false, &|t| {
        write(t, "etc/config/network", "two")
    }));
    std::fs::write(&chain, &img.data).unwrap();
    let (out, _) = boot_trial(&dir, &chain);
    assert!(out.contains("NET=two"), "{out}");
    let mut data = std::fs::read(&chain).unwrap();
    data[second_at as usize + snapinit::header::CONFIRM_MARK] = 0;
    std::fs::write(&chain, &data).unwrap();
    for _ in 0..2 {
        let (out, log) = boot_trial(&dir, &chain);
        assert!(out.contains("NET=two"), "{out}");
        assert!(!log.contains("is on trial"), "{log}");
        assert_eq!(
            std::fs::read(&chain).unwrap(),
            data,
            "a confirmed boot wrote flash"
        );
    }
}

/// A snapshot on trial that this unit cannot replay (here: past its data bound; on a unit, a
/// tree the tmpfs has no room for) ends the chain below it, and the boot runs the state below.
/// It was tried all the same: each such boot spends one of its trial marks, so it rolls back
/// after its boots like any trial that never gets confirmed. Before, no mark was ever spent:
/// it stayed on trial for good, `snapshot health` waited for a boot that never came, and
/// `fleet poll` took no bundle ("waiting: snapshot 2 is on trial") for the rest of the unit's
/// life. The boot record says the trial block did not run, so health vouches for nothing.
#[test]
fn a_snapshot_on_trial_that_fails_replay_spends_its_trial() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("trial-unreplayable");
    let limit = snapinit::header::data_limit(1, ERASE);
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    let second_at = img.next;
    img.trial = 2;
    img.snapshot(&zeros_payload(&dir, "over", (limit >> 20) + 1));
    let chain = dir.join("trial.img");
    std::fs::write(&chain, &img.data).unwrap();
    let marks = |chain: &Path| {
        let data = std::fs::read(chain).unwrap();
        let at = second_at as usize + snapinit::header::TRIAL_MARKS;
        data[at..at + 3].to_vec()
    };
    for boot in 1..=2u8 {
        let (out, log) = boot_trial(&dir, &chain);
        assert!(out.contains("NET=one"), "boot {boot}: {out}");
        assert!(log.contains("snapshot chain ends at #1"), "{log}");
        let spent: Vec<u8> = (0..3).map(|i| if i < boot { 0 } else { 0xFF }).collect();
        assert_eq!(marks(&chain), spent, "after boot {boot}:\n{log}");
        assert!(
            out.contains("RECORD=failed-check-marks,trial-not-booted,"),
            "{out}"
        );
    }
    // Its boots are spent: rolled back, as any unconfirmed trial.
    let (out, log) = boot_trial(&dir, &chain);
    assert!(out.contains("NET=one"), "{out}");
    assert!(
        log.contains("on trial, every allowed boot spent without a confirmation"),
        "{log}"
    );
    assert_eq!(marks(&chain), [0, 0, 0]);
    assert!(out.contains("RECORD=failed-check-marks,"), "{out}");
    assert!(!out.contains("trial-not-booted"), "{out}");
}

/// A boot that rolls back a block on trial but cannot write its roll-back mark (the device
/// cannot be opened for writing, a program that fails) leaves the flash saying the block is on
/// its last allowed boot: to `snapshot health` that reads as the boot running it, and passing
/// checks (of the state below, which is what runs) would confirm the very block whose trial
/// ran out. The boot record says `trial-not-booted`, so health vouches for nothing; the next
/// boot rolls it back again. Before, the record said nothing.
#[test]
fn a_roll_back_whose_mark_cannot_be_written_is_not_vouched_for() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("trial-rollback-read-only");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    let second_at = img.next;
    img.trial = 1;
    img.snapshot(&payload(&dir, "snap2", false, &|t| {
        write(t, "etc/config/network", "two")
    }));
    // Its one allowed boot is spent: this boot rolls it back.
    img.data[second_at as usize + snapinit::header::TRIAL_MARKS] = 0;
    let chain = dir.join("trial.img");
    std::fs::write(&chain, &img.data).unwrap();
    let (out, log) = boot_with_pre(
        &dir,
        "snapinit.device=/chain.img snapinit.watchdog=0",
        CHAIN_SCRIPT,
        &rom_extra(Vec::new()),
        &format!(
            "mount --bind {} $mnt/chain.img; mount -o remount,bind,ro $mnt/chain.img;",
            chain.display()
        ),
    );
    assert!(out.contains("NET=one"), "{out}");
    assert!(log.contains("to spend trial marks"), "{log}");
    assert_eq!(
        std::fs::read(&chain).unwrap(),
        img.data,
        "a read-only boot wrote"
    );
    assert!(
        out.contains("RECORD=failed-check-marks,trial-not-booted,"),
        "{out}\n{log}"
    );
    // Writable, the roll-back mark lands and the record says nothing more.
    let (out, _) = boot_trial(&dir, &chain);
    assert!(out.contains("NET=one"), "{out}");
    assert!(out.contains("RECORD=failed-check-marks,\n"), "{out}");
}

#[test]
fn a_volatile_on_trial_falls_back_to_the_previous_one() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("trial-volatile");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.volatile_in_backbuf(&payload(&dir, "vol-good", false, &|t| {
        write(t, "etc/volatile", "good")
    }));
    img.trial = 1;
    let current_at = img.next;
    img.volatile_in_slot(&payload(&dir, "vol-bad", false, &|t| {
        write(t, "etc/volatile", "changed")
    }));
    let chain = dir.join("trial.img");
    std::fs::write(&chain, &img.data).unwrap();
    let (out, log) = boot_trial(&dir, &chain);
    assert!(out.contains("VOL=changed"), "{out}");
    assert!(
        log.contains("the saved changes above snapshot 1 is on trial: boot 1 of 1"),
        "{log}"
    );
    let (out, log) = boot_trial(&dir, &chain);
    assert!(out.contains("VOL=good"), "{out}");
    assert!(
        log.contains(
            "the newest copy of the saved changes is on trial, every allowed boot spent without a confirmation: rolled back"
        ),
        "{log}"
    );
    // From then on the walk itself leaves it out.
    let (out, log) = boot_trial(&dir, &chain);
    assert!(out.contains("VOL=good"), "{out}");
    assert!(
        log.contains(&format!(
            "volatile at {current_at:#x} rejected: on trial, every allowed boot spent"
        )),
        "{log}"
    );
}

/// What the target of a boot without a console can report: through a directory of the host
/// bound at the old root's /mnt (/rom/mnt after the switch).
const NO_CONSOLE_SCRIPT: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
{ echo "TARGET-RAN"; echo "NET=$($bb cat /etc/config/network)"; } > /rom/mnt/report
"#;

/// A kernel that finds no console starts init with fds 0 to 2 closed, and without /dev/kmsg
/// (CONFIG_PRINTK off, or /dev not devtmpfs: here a tmpfs without nodes) the log had only fd
/// 2 left, which by then was whatever PID 1 had opened at the lowest free number: the chain
/// device opened read-write to spend a trial mark, so a log line was written over block 0's
/// header. The boot must change nothing on flash but the one trial mark it spends.
#[test]
fn without_a_console_nothing_but_the_trial_mark_is_written() {
    setup();
    require_root_namespace_tools();
    for (name, redirect) in [("fd2", "2>&-"), ("fd012", "0<&- 1>&- 2>&-")] {
        let dir = scratch(&format!("no-console-{name}"));
        let mut img = Image::new();
        img.trial = 2;
        img.snapshot(&snap1(&dir));
        let chain = dir.join("trial.img");
        std::fs::write(&chain, &img.data).unwrap();
        let report = dir.join("report");
        std::fs::create_dir_all(&report).unwrap();
        let (out, log) = boot_redirected(
            &dir,
            "snapinit.device=/chain.img snapinit.watchdog=0",
            NO_CONSOLE_SCRIPT,
            &rom_extra(Vec::new()),
            &format!(
                "mount --bind {} $mnt/chain.img; mount --bind {} $mnt/mnt; mount -t tmpfs dev $mnt/dev;",
                chain.display(),
                report.display()
            ),
            redirect,
        );
        println!("--- {redirect}: log ---\n{log}--- target ---\n{out}");
        let after = std::fs::read(&chain).unwrap();
        // A log line may also land past the end (fd 2 opened at offset 0, then seeked by
        // nothing) or grow the image: every byte of both counts.
        let changed: Vec<usize> = (0..after.len().max(img.data.len()))
            .filter(|&i| img.data.get(i) != after.get(i))
            .collect();
        assert_eq!(
            changed,
            [snapinit::header::TRIAL_MARKS],
            "{redirect}: the boot wrote flash beyond its trial mark (image {} -> {} bytes): {:?}",
            img.data.len(),
            after.len(),
            String::from_utf8_lossy(&after[..0x100])
        );
        assert_eq!(after[snapinit::header::TRIAL_MARKS], 0, "{redirect}");
        let report = std::fs::read_to_string(report.join("report")).unwrap_or_default();
        assert!(
            report.contains("TARGET-RAN") && report.contains("NET=one"),
            "{redirect}: {report}"
        );
    }
}

#[test]
fn a_chain_of_only_a_volatile_boots_it() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("only-volatile");
    let mut img = Image::new();
    img.volatile_in_slot(&payload(&dir, "vol", false, &|t| {
        write(t, "etc/volatile", "alone")
    }));
    let (out, log) = boot_chain(&dir, img.data);
    assert!(
        log.contains("0 snapshot(s), 1 volatile candidate(s)"),
        "{log}"
    );
    assert!(out.contains("VOL=alone"), "{out}");
}

/// What the boot rests on when the chain cannot be switched to: its programs and mounts.
const DEGRADED_SCRIPT: &str = r#"#!/bin/busybox sh
bb=/bin/busybox
echo "TARGET-RAN"
$bb test -e /proc/self/mountinfo && echo "PROC-OK" || echo "PROC-MISSING"
echo hi > /written && echo "WRITE-OK"
echo "SNAPLS=$($bb ls /snapshot | $bb tr '\n' ,)"
echo "RECORD=$($bb cat /overlay/snapinit 2>/dev/null | $bb tr '\n' ,)"
"#;

/// A chain whose snapshot hides every program PID 1 could exec (whiteouts over /sbin/init
/// and /bin/sh, a botched upgrade that was saved): the switch to it is refused before
/// anything moves, and the target runs on a plain tmpfs overlay, which says the chain is
/// not booted. (Before, PID 1 switched, found nothing to exec and exited: a kernel panic at
/// every boot.)
#[test]
fn a_chain_without_a_program_to_run_boots_a_plain_overlay() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("noinit");
    let mut img = Image::new();
    img.snapshot(&payload(&dir, "no-init", false, &|t| {
        whiteout(t, "sbin/init");
        whiteout(t, "bin/sh");
        write(t, "etc/config/network", "chain");
    }));
    let (out, log) = boot_chain_with(&dir, img.data, DEGRADED_SCRIPT);
    assert!(
        log.contains("switching root failed (find a program to run in the overlay"),
        "{log}"
    );
    assert!(
        log.contains("root switched to a plain tmpfs overlay: the chain is not booted"),
        "{log}"
    );
    assert!(!log.contains("nothing left to run"), "{log}");
    // The snapshot layer holds the mount points it made, none of the chain.
    for want in [
        "TARGET-RAN",
        "PROC-OK",
        "WRITE-OK",
        "SNAPLS=overlay,rom,snapshot,\n",
        "chain-not-booted",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
}

/// A snapshot that keeps /sbin/init (so the switch's check passes) but removes what it needs to
/// run, here its interpreter (on OpenWrt: the ELF interpreter or libc): every exec on the
/// overlay fails. PID 1 then runs the target from the read-only root at /rom, without the
/// chain. (Before, it exited: a kernel panic at every boot.)
#[test]
fn a_target_that_cannot_run_on_the_overlay_runs_from_rom() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("exec-fails");
    let mut img = Image::new();
    img.snapshot(&payload(&dir, "no-interpreter", false, &|t| {
        whiteout(t, "bin/busybox");
        write(t, "etc/config/network", "chain");
    }));
    let (out, log) = boot_chain_with(&dir, img.data, DEGRADED_SCRIPT);
    assert!(log.contains("root switched to the overlay"), "{log}");
    assert!(log.contains("exec /sbin/init failed"), "{log}");
    assert!(
        log.contains("trying the read-only root (/rom), without the chain"),
        "{log}"
    );
    assert!(!log.contains("nothing left to run"), "{log}");
    // /proc is mounted for it again; the overlay's layers are out of its sight.
    for want in ["TARGET-RAN", "PROC-OK", "SNAPLS=\n"] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
}

/// Kills a namespace boot left running (unshare --kill-child takes its PID 1 along).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// When nothing can be run, on the overlay or on /rom (the read-only root's own /sbin/init
/// cannot be executed either), PID 1 must not exit, which would panic the kernel: it logs why
/// and stays.
#[test]
fn pid1_stays_up_when_nothing_can_run() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("nothing-runs");
    let log_path = dir.join("log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    // A regular executable file, so the switch goes ahead; its interpreter does not exist.
    let cmd = namespace_boot(
        &dir,
        "snapinit.part=snapinit-test-no-such-part",
        "#!/nonexistent/sh\n",
        &|_| {},
        "",
        "",
    )
    .stdout(log_file.try_clone().unwrap())
    .stderr(log_file)
    .spawn()
    .unwrap();
    let mut boot = Running(cmd);
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let started = std::time::Instant::now();
    // Until it says so (or ends, as it did before: that fails below).
    while !read_log().contains("nothing left to run")
        && boot.0.try_wait().unwrap().is_none()
        && started.elapsed().as_secs() < 60
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let log = read_log();
    println!("--- log ---\n{log}");
    assert_eq!(
        boot.0.try_wait().unwrap(),
        None,
        "PID 1 exited (a kernel panic on a real boot):\n{log}"
    );
    assert!(log.contains("trying the read-only root (/rom)"), "{log}");
    assert!(log.contains("PID 1 waits here instead of exiting"), "{log}");
}

/// A snapshot holding `proc -> /mnt`: moving /proc onto it would follow the link (before
/// the pivot, into the old root) and the target would run without /proc. The switch is
/// refused; the plain overlay has /proc.
#[test]
fn a_mount_point_that_is_a_symlink_is_never_mounted_through() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("symlink-mountpoint");
    let mut img = Image::new();
    img.snapshot(&payload(&dir, "proc-link", false, &|t| {
        std::os::unix::fs::symlink("/mnt", t.join("proc")).unwrap();
    }));
    let (out, log) = boot_chain_with(&dir, img.data, DEGRADED_SCRIPT);
    assert!(
        log.contains("switching root failed (use a mount point that is a symlink or a file"),
        "{log}"
    );
    assert!(out.contains("PROC-OK"), "{out}");
    assert!(out.contains("chain-not-booted"), "{out}");
}

/// A snapshot whose root carries the opaque mark: overlayfs never takes a layer's root as
/// opaque, so stacked layers would show snapshot 1 through it; the shared snapshot layer now
/// keeps snapshot 1 too (before, the replay emptied the layer, and the boot lost it while the
/// mark itself hid nothing of the read-only root).
#[test]
fn an_opaque_snapshot_root_empties_nothing() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("opaque-root");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    img.snapshot(&payload(&dir, "opaque-root", false, &|t| {
        write(t, "data/b", "b");
        sh(&format!(
            "setfattr -n trusted.overlay.opaque -v y {}",
            t.display()
        ));
    }));
    let (out, log) = boot_chain(&dir, img.data);
    assert!(log.contains("2 snapshot(s)"), "{log}");
    assert!(out.contains("NET=one"), "{out}");
    assert!(out.contains("DATA=a,b,c,"), "{out}");
}

/// A directory a payload leaves out is created with the metadata of the same directory in the
/// read-only root (docs/FORMAT.md, "Replay", step 1): the squashfs's, as overlayfs shows it,
/// not that of whatever the boot has mounted over it. PID 1's scaffold tmpfs sits on /tmp
/// during the replay (and proc, sysfs, devtmpfs on /proc, /sys, /dev): an implicit `tmp` took
/// the scaffold's mode and time, so a snapshot holding `tmp/x` alone turned the squashfs's
/// sticky, world-writable /tmp into a 0755 directory.
#[test]
fn an_implicit_directory_takes_the_read_only_roots_metadata_not_a_mount_over_it() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("implicit-under-mount");
    let mut img = Image::new();
    // Only the file: its parent `tmp` is implicit.
    img.snapshot(&payload_of(&dir, "implicit-tmp", false, "tmp/x", &|t| {
        write(t, "tmp/x", "x")
    }));
    let image = img.data;
    let extra = move |root: &Path| {
        rom_extra(image.clone())(root);
        sh(&format!(
            "chmod 1777 {0}/tmp && touch -d @1500000000 {0}/tmp",
            root.display()
        ));
    };
    let script = r#"#!/bin/busybox sh
bb=/bin/busybox
echo "X=$($bb cat /tmp/x)"
echo "TMP=$($bb stat -c '%a %Y' /tmp)"
"#;
    let (out, log) = boot_with(&dir, "snapinit.device=/chain.img", script, &extra);
    println!("--- log ---\n{log}--- target ---\n{out}");
    assert!(log.contains("restored snapshot 1"), "{log}");
    assert!(out.contains("X=x"), "{out}");
    assert!(out.contains("TMP=1777 1500000000\n"), "{out}");
}

/// A directory deleted in one snapshot and made again in a later one. At run time the
/// snapshot layer held the deletion (a whiteout) and the new directory went into the upper
/// layer above it, plain: overlayfs creates a directory over a lower layer's whiteout without
/// the opaque mark, since that whiteout already hides what lies below. The commit stores it
/// so. Replayed into the one snapshot layer, the directory takes the whiteout's place, and
/// must hide what lies below as the whiteout did: without the opaque mark the read-only
/// root's files came back (DATA=c,new).
#[test]
fn a_directory_made_again_over_a_deleted_one_does_not_bring_back_the_roots_files() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("dir-over-whiteout");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    // `rm -rf /data`, committed: a whiteout (the read-only root has data/c, snapshot 1 data/a).
    img.snapshot(&payload(&dir, "rm-data", false, &|t| whiteout(t, "data")));
    // `mkdir /data; echo new > /data/new`, committed: a plain directory.
    img.snapshot(&payload(&dir, "new-data", false, &|t| {
        write(t, "data/new", "new")
    }));
    let (out, log) = boot_chain(&dir, img.data);
    assert!(log.contains("restored snapshot 3"), "{log}");
    assert!(out.contains("DATA=new,\n"), "{out}");
}

/// A directory over a file of an earlier snapshot, as a prepared tree or a bundle built from
/// a target tree gives it: plain, since in an upper dir of its own a directory over a lower
/// file hides what lies below that file (overlayfs looks no further down than a
/// non-directory). Replayed into the one snapshot layer, it takes the file's place and must
/// hide what lies below as the file did: without the opaque mark the read-only root's files
/// came back (DATA=c,new).
#[test]
fn a_directory_over_an_earlier_snapshots_file_does_not_bring_back_the_roots_files() {
    setup();
    require_root_namespace_tools();
    let dir = scratch("dir-over-file");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    // /data a file (the read-only root has data/c, snapshot 1 data/a).
    img.snapshot(&payload(&dir, "data-file", false, &|t| {
        write(t, "data", "file")
    }));
    img.snapshot(&payload(&dir, "new-data", false, &|t| {
        write(t, "data/new", "new")
    }));
    let (out, log) = boot_chain(&dir, img.data);
    assert!(log.contains("restored snapshot 3"), "{log}");
    assert!(out.contains("DATA=new,\n"), "{out}");
}

/// Sets a kernel parameter file for the life of the guard, and puts the old value back.
struct ParamGuard {
    path: &'static str,
    old: String,
}

impl ParamGuard {
    fn set(path: &'static str, value: &str) -> ParamGuard {
        let old = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        std::fs::write(path, value).unwrap_or_else(|e| panic!("{path}: {e}"));
        ParamGuard { path, old }
    }
}

impl Drop for ParamGuard {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path, self.old.trim());
    }
}

/// A kernel whose overlayfs redirects renamed directories by default
/// (CONFIG_OVERLAY_FS_REDIRECT_DIR, or the module parameter set here) kept a renamed
/// directory's files in the lower layers, and its upper copy held only a redirect to the old
/// name. Committed, the chain merges the snapshots into one layer, where the old name is a
/// whiteout: the directory booted empty. PID 1 mounts with redirect_dir=off, so the rename
/// copies the files up and a save or commit stores them (UPPER=a,c, the snapshot's and the
/// read-only root's files; before: UPPER= with only a redirect).
#[test]
fn a_renamed_directory_is_copied_up_whatever_the_kernels_redirect_default() {
    setup();
    require_root_namespace_tools();
    let _default = ParamGuard::set("/sys/module/overlay/parameters/redirect_dir", "Y");
    let dir = scratch("redirect-dir");
    let mut img = Image::new();
    img.snapshot(&snap1(&dir));
    let script = "#!/bin/busybox sh\nbb=/bin/busybox\n$bb mv /data /data2 && echo MOVED\necho \"UPPER=$($bb ls /overlay/upper/data2 | $bb tr '\\n' ,)\"\n";
    let (out, log) = boot_chain_with(&dir, img.data, script);
    assert!(log.contains("redirect_dir=off"), "{log}");
    assert!(out.contains("MOVED"), "{out}");
    assert!(out.contains("UPPER=a,c,\n"), "{out}");
}
