//! `snapshot upgrade` with stand-in package managers: one that changes the upper dir (→ a new
//! snapshot), one that fails (→ flash byte-identical, exit 10), one that changes nothing.

mod cli_common;

use cli_common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn script(path: &Path, body: &str) {
    fs::write(path, format!("#!/bin/sh\nset -e\n{body}\n")).expect("write script");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// An image of `size` bytes whose chain holds one snapshot: an upper dir with one file,
/// given back with the image.
fn one_commit(base: &Path, size: u64) -> (std::path::PathBuf, std::path::PathBuf) {
    let img = image(base, "flash.img", size);
    let upper = base.join("upper");
    fs::create_dir(&upper).expect("mkdir");
    file(&upper.join("f"), b"1\n", 0o644, (0, 0));
    ok(&img, &["format"]);
    ok(&img, &["commit", "--upper", s(&upper), "--no-reboot"]);
    (img, upper)
}

#[test]
fn upgrade_stores_changes_and_a_failure_touches_nothing() {
    let sc = scratch();
    let base = sc.path();
    let img = image(base, "flash.img", 2 << 20);
    let upper = base.join("upper");
    fs::create_dir(&upper).expect("mkdir");
    dir(&upper.join("usr"), 0o755, (0, 0));
    file(&upper.join("usr/pkg-version"), b"1.0\n", 0o644, (0, 0));
    ok(&img, &["format"]);
    ok(&img, &["commit", "--upper", s(&upper), "--no-reboot"]);
    assert_eq!(info(&img)["snapshots"].as_array().map(Vec::len), Some(1));

    // A package manager that upgrades: changes a file, adds one, removes one.
    let good = base.join("pm-good.sh");
    script(
        &good,
        "echo 2.0 > \"$SNAPSHOT_UPPER/usr/pkg-version\"\n\
         mkdir -p \"$SNAPSHOT_UPPER/usr/lib\"\n\
         echo new > \"$SNAPSHOT_UPPER/usr/lib/libnew.so\"\n\
         echo upgraded",
    );
    let out = ok(&img, &["upgrade", "--upper", s(&upper), "--pm", s(&good)]);
    assert!(out.contains("upgraded"), "{out}");
    assert!(out.contains("snapshot 2"), "{out}");
    let j = info(&img);
    assert_eq!(j["snapshots"].as_array().map(Vec::len), Some(2));
    let got = base.join("got");
    ok(&img, &["extract", "2", s(&got)]);
    assert_same_tree(&got, &upper);
    assert_eq!(
        fs::read(got.join("usr/pkg-version")).expect("read"),
        b"2.0\n"
    );

    // One that fails half-way: it changed the upper dir, but flash must stay byte-identical.
    let before = fs::read(&img).expect("read image");
    let bad = base.join("pm-bad.sh");
    script(
        &bad,
        "echo 3.0-broken > \"$SNAPSHOT_UPPER/usr/pkg-version\"\necho 'download failed' >&2\nexit 1",
    );
    let o = fails(
        &img,
        &["upgrade", "--upper", s(&upper), "--pm", s(&bad)],
        10,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("flash untouched"), "{err}");
    assert!(
        fs::read(&img).expect("read image") == before,
        "failed upgrade changed flash"
    );

    // One that succeeds but changes nothing: no new snapshot, flash untouched.
    let noop = base.join("pm-noop.sh");
    script(&noop, "echo 'everything up to date'");
    let out = ok(&img, &["upgrade", "--upper", s(&upper), "--pm", s(&noop)]);
    assert!(out.contains("changed nothing"), "{out}");
    assert!(
        fs::read(&img).expect("read image") == before,
        "no-op upgrade changed flash"
    );

    // A metadata-only change (mode) counts as a change.
    let chmod_pm = base.join("pm-chmod.sh");
    script(&chmod_pm, "chmod 600 \"$SNAPSHOT_UPPER/usr/pkg-version\"");
    ok(
        &img,
        &["upgrade", "--upper", s(&upper), "--pm", s(&chmod_pm)],
    );
    assert_eq!(info(&img)["snapshots"].as_array().map(Vec::len), Some(3));
    ok(&img, &["verify"]);
}

/// An upgrade the package manager carried out but that cannot be stored (here: the flash is
/// too full for it) leaves the running system upgraded and flash as it was: the refusal must
/// say that the upgrade lives in RAM only, not just why nothing was written.
#[test]
fn an_upgrade_that_cannot_be_stored_says_it_runs_from_ram_only() {
    let sc = scratch();
    let base = sc.path();
    let (img, upper) = one_commit(base, 512 << 10);
    let before = fs::read(&img).expect("read image");

    let big = base.join("pm-big.sh");
    script(
        &big,
        "head -c 600000 /dev/urandom > \"$SNAPSHOT_UPPER/big\"",
    );
    let o = fails(&img, &["upgrade", "--upper", s(&upper), "--pm", s(&big)], 6);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not enough space"), "{err}");
    assert!(
        err.contains("not stored") && err.contains("RAM"),
        "the refusal does not say the upgrade runs from RAM only:\n{err}"
    );
    assert!(
        fs::read(&img).expect("read image") == before,
        "a refused upgrade changed flash"
    );
}

/// `snapshot upgrade` sent a signal while its package manager runs (a timeout, `kill`, a
/// service stop) must not let go of the partition lock while the package manager goes on: it
/// would change the upper dir while another command packs it, and a `commit` or `save` would
/// store a moment in the middle of the upgrade. The command waits for the package manager,
/// then stops without writing.
#[test]
fn a_signalled_upgrade_keeps_the_lock_until_the_package_manager_ends() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let sc = scratch();
    let base = sc.path();
    let (img, upper) = one_commit(base, 2 << 20);
    let before = fs::read(&img).expect("read image");

    // A package manager that changes one file, works for a while, then changes another.
    let pm = base.join("pm-slow.sh");
    script(
        &pm,
        "echo half > \"$SNAPSHOT_UPPER/half\"\n\
         sleep 3\n\
         echo done > \"$SNAPSHOT_UPPER/done\"",
    );
    let up = Command::new(BIN)
        .arg("--device")
        .arg(&img)
        .args(["upgrade", "--upper", s(&upper), "--pm", s(&pm)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn upgrade");
    let t = Instant::now();
    while !upper.join("half").exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the package manager never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = rustix::process::Pid::from_child(&up);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("signal upgrade");
    std::thread::sleep(Duration::from_millis(300));

    // The package manager is still at work: no other writer may take the partition.
    let o = fails(
        &img,
        &["commit", "--upper", s(&upper), "--no-reboot", "--no-wait"],
        4,
    );
    assert!(!upper.join("done").exists(), "{}", show(&o));
    let o = up.wait_with_output().expect("wait upgrade");
    assert!(!o.status.success(), "a signalled upgrade succeeded");
    assert!(
        upper.join("done").exists(),
        "the package manager did not finish"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("flash untouched"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        fs::read(&img).expect("read image") == before,
        "a signalled upgrade changed flash"
    );
}

/// A signal the caller set to be ignored stays ignored, for the package manager too: under
/// `nohup` (SIGHUP) or as a background job of a script (SIGINT), the hangup of the ssh session
/// that started `snapshot upgrade` once left the package manager running to its end, and the
/// upgrade was stored. Recording it would make the package manager's exec reset it to its
/// default action: killed mid-install, and the upgrade not stored.
#[test]
fn an_ignored_hangup_stays_ignored_for_the_package_manager() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let sc = scratch();
    let base = sc.path();
    let (img, upper) = one_commit(base, 2 << 20);

    // The session hangs up in the middle of the package manager's run.
    let pm = base.join("pm-hangup.sh");
    script(
        &pm,
        "echo half > \"$SNAPSHOT_UPPER/half\"\n\
         kill -HUP 0\n\
         sleep 0.3\n\
         echo done > \"$SNAPSHOT_UPPER/done\"",
    );
    // `nohup snapshot upgrade ...`, in a process group of its own (the hangup's reach).
    let o = Command::new("/bin/sh")
        .arg("-c")
        .arg("trap '' HUP; exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg("--device")
        .arg(&img)
        .args(["upgrade", "--upper", s(&upper), "--pm", s(&pm)])
        .process_group(0)
        .stdin(Stdio::null())
        .output()
        .expect("run upgrade");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        upper.join("done").exists(),
        "the package manager was killed"
    );
    assert_eq!(info(&img)["snapshots"].as_array().map(Vec::len), Some(2));
}
