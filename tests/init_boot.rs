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
"#;

/// Prepares a squashfs root holding busybox and a stand-in /sbin/init.
fn squashfs_root(dir: &Path) -> PathBuf {
    let root = dir.join("rootdir");
    for d in ["bin", "sbin", "proc", "sys", "dev", "tmp", "mnt", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("sbin/init"), TARGET_SCRIPT).unwrap();
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
    let img = squashfs_root(dir);
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let script = format!(
        "set -e; mount -t squashfs -o loop,ro {img} {mnt}; exec env SNAPINIT_TEST=passed-through SNAPINIT_CMDLINE='snapinit.root={mnt} snapinit.log=console {cmdline}' {bin} quiet extra-arg",
        img = img.display(),
        mnt = mnt.display(),
        bin = release_binary().display(),
    );
    let out = Command::new("unshare")
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
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
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
