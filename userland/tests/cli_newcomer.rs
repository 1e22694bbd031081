//! What a new admin meets in the CLI (issue 16): each behaviour change with its test.

mod cli_common;

use cli_common::*;
use std::fs;
use std::path::Path;
use std::process::Command;

fn e4<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--erase-size", "4096"];
    v.extend_from_slice(args);
    v
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A file with its parent directories.
fn put(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    file(path, data, 0o644, (0, 0));
}

/// A 256 KiB image (4 KiB erase blocks, [`e4`]) whose chain holds one snapshot of `etc/a`.
fn one_snapshot(base: &Path) -> std::path::PathBuf {
    let img = image(base, "flash.img", 256 << 10);
    ok(&img, &e4(&["format"]));
    let upper = base.join("upper");
    put(&upper.join("etc/a"), b"a");
    ok(&img, &e4(&["commit", "--upper", s(&upper), "--no-reboot"]));
    img
}

#[test]
fn help_names_each_alias_once() {
    let o = Command::new(bin()).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&o.stdout);
    for alias in ["list", "config", "push", "mark"] {
        let line = help
            .lines()
            .find(|l| l.contains(&format!("[alias: {alias}]")))
            .unwrap_or_else(|| panic!("no [alias: {alias}]:\n{help}"));
        assert_eq!(line.matches("alias").count(), 1, "{line}");
    }
}

/// The `fleet` feature (OpenWrt's `snapshot-fleet` package) brings the `fleet` and `bundle`
/// commands; without it (`snapshot`) they are unknown words (exit 2), and the chain commands
/// are all there; `fleet-admin` adds the build host's commands. `scripts/test.sh` runs this
/// file in the three builds.
#[test]
fn the_fleet_commands_exist_exactly_in_the_fleet_build() {
    let o = Command::new(bin()).arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&o.stdout);
    let listed = |cmd: &str| {
        help.lines()
            .any(|l| l.trim_start().starts_with(&format!("{cmd} ")))
    };
    for cmd in [
        "save", "commit", "rollback", "upgrade", "health", "confirm", "verify",
    ] {
        assert!(listed(cmd), "{cmd} missing from --help:\n{help}");
    }
    let fleet = cfg!(feature = "fleet");
    for cmd in ["fleet", "bundle"] {
        assert_eq!(
            listed(cmd),
            fleet,
            "{cmd} in --help (fleet build: {fleet}):\n{help}"
        );
        let o = Command::new(bin())
            .args([cmd, "--help"])
            .output()
            .expect("run");
        assert_eq!(o.status.success(), fleet, "{cmd} --help: {}", show(&o));
        if !fleet {
            assert_eq!(o.status.code(), Some(2), "{}", show(&o));
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("unrecognized subcommand"),
                "{}",
                show(&o)
            );
        }
    }
    // A unit's build (`fleet` without `fleet-admin`) takes, checks and reports bundles; only
    // the build host's and admin's build writes, signs and publishes them or sums up the fleet.
    let admin = cfg!(feature = "fleet-admin");
    let unit: &[&[&str]] = &[
        &["fleet", "poll"],
        &["fleet", "apply"],
        &["fleet", "publish"],
        &["fleet", "status"],
        &["bundle", "verify"],
        &["bundle", "fingerprint"],
        &["bundle", "head"],
    ];
    let host: &[&[&str]] = &[
        &["bundle", "create"],
        &["bundle", "sign"],
        &["bundle", "keygen"],
        &["bundle", "channel"],
        &["fleet", "report"],
        &["fleet", "status", "--mqtt", "b"],
    ];
    for (cmds, want) in [(unit, fleet), (host, admin)] {
        for cmd in cmds {
            let o = Command::new(bin())
                .args(*cmd)
                .arg("--help")
                .output()
                .expect("run");
            assert_eq!(o.status.success(), want, "{cmd:?}: {}", show(&o));
            if !want {
                assert_eq!(o.status.code(), Some(2), "{cmd:?}: {}", show(&o));
            }
        }
    }
}

#[test]
fn an_unchanged_save_writes_nothing_and_an_empty_one_neither() {
    let sc = scratch();
    let base = sc.path();
    let img = image(base, "flash.img", 256 << 10);
    ok(&img, &e4(&["format"]));
    let empty = base.join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let before = fs::read(&img).expect("read");
    let out = ok(&img, &e4(&["save", "--upper", s(&empty)]));
    assert!(out.contains("nothing to save"), "{out}");
    assert_eq!(fs::read(&img).expect("read"), before, "an empty save wrote");

    let upper = base.join("upper");
    put(&upper.join("etc/network"), b"lan");
    ok(&img, &e4(&["save", "--upper", s(&upper)]));
    let saved = fs::read(&img).expect("read");
    let out = ok(&img, &e4(&["save", "--upper", s(&upper)]));
    assert!(out.contains("nothing changed since the last save"), "{out}");
    assert_eq!(
        fs::read(&img).expect("read"),
        saved,
        "an unchanged save wrote"
    );
    // A change is saved.
    put(&upper.join("etc/network"), b"wan");
    let out = ok(&img, &e4(&["save", "--upper", s(&upper)]));
    assert!(out.contains("saved volatile"), "{out}");
}

#[test]
fn a_volatile_too_large_for_the_back_buffer_says_what_would_take_it() {
    let sc = scratch();
    let base = sc.path();
    let img = image(base, "flash.img", 64 << 10);
    ok(&img, &e4(&["format"]));
    let big = base.join("big");
    put(&big.join("f"), &noise(30_000, 5));
    let o = fails(&img, &e4(&["save", "--upper", s(&big)]), 6);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`snapshot commit`"), "{err}");
    assert!(err.contains("--backbuf-blocks"), "{err}");
}

#[test]
fn diff_shows_a_changed_file_of_the_read_only_root_as_modified() {
    let sc = scratch();
    let base = sc.path();
    let img = image(base, "flash.img", 256 << 10);
    ok(&img, &e4(&["format"]));
    let rom = base.join("rom");
    put(&rom.join("etc/config/network"), b"rom");
    let upper = base.join("upper");
    put(&upper.join("etc/config/network"), b"changed");
    put(&upper.join("etc/config/new"), b"new");
    ok(&img, &e4(&["save", "--upper", s(&upper)]));
    let out = ok(&img, &e4(&["diff", "--rom", s(&rom)]));
    assert!(out.contains("M etc/config/network"), "{out}");
    assert!(out.contains("A etc/config/new"), "{out}");
    // Without the read-only root, both are additions to the chain.
    let out = ok(&img, &e4(&["diff", "--rom", s(&base.join("none"))]));
    assert!(out.contains("A etc/config/network"), "{out}");
}

#[test]
fn rollback_speaks_in_words() {
    let sc = scratch();
    let base = sc.path();
    let img = one_snapshot(base);
    let out = ok(&img, &e4(&["rollback", "0", "--yes", "--no-reboot"]));
    assert!(!out.contains("..="), "{out}");
    assert!(
        out.contains("rolled back: kept no snapshot, dropped snapshot 1"),
        "{out}"
    );
}

/// `diff` takes a snapshot number or `volatile` (docs/SNAPSHOT.md); refusing another word, it
/// names what it takes, not `all`, which only `extract` takes.
#[test]
fn diff_refuses_a_bad_id_naming_what_diff_takes() {
    let sc = scratch();
    let base = sc.path();
    let img = one_snapshot(base);
    for id in ["all", "latest"] {
        let o = fails(&img, &e4(&["diff", id]), 2);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("not a snapshot number or `volatile`"), "{err}");
        assert!(!err.contains("`all`"), "{err}");
    }
}

/// On a truncated image (a chain whose back buffer this partition cannot have) every write,
/// `repair` included, refuses with exit 16; `info` lists what is there and, as SNAPSHOT.md
/// says, the same advice: what acts there (`extract --salvage`, `format --force`), not a
/// `repair` that refuses.
#[test]
fn info_on_a_truncated_image_offers_only_what_acts_there() {
    let sc = scratch();
    let base = sc.path();
    let img = image(base, "flash.img", 1 << 20);
    ok(&img, &["format"]);
    let upper = base.join("upper");
    put(&upper.join("etc/a"), b"a");
    ok(&img, &["commit", "--upper", s(&upper), "--no-reboot"]);
    // 3 of 16 erase blocks: the chain's back buffer (2) is more than half of them.
    let f = fs::OpenOptions::new().write(true).open(&img).expect("open");
    f.set_len(3 << 16).expect("truncate");
    drop(f);
    fails(&img, &["repair", "--yes"], 16);
    let out = ok(&img, &["info"]);
    assert!(!out.contains("snapshot repair"), "{out}");
    assert!(out.contains("format --force"), "{out}");
    let salvaged = base.join("salvaged");
    ok(&img, &["extract", "--salvage", "all", s(&salvaged)]);
}
