//! `--trial`, `confirm` and `health` from the command line, against image files. The boot's
//! side (spending marks, rolling back) is tested with the real PID 1 in tests/init_boot.rs.

mod cli_common;

use cli_common::*;
use std::fs;
use std::path::Path;

fn upper(dir: &Path, content: &str) -> std::path::PathBuf {
    let u = dir.join(format!("upper-{content}"));
    fs::create_dir_all(u.join("etc")).expect("mkdir");
    fs::write(u.join("etc/network"), content).expect("write");
    u
}

fn config(dir: &Path, body: &str) -> String {
    let p = dir.join("snapshot.conf");
    fs::write(&p, body).expect("config");
    p.to_str().expect("utf-8").to_string()
}

#[test]
fn trial_confirm_and_health() {
    let tmp = scratch();
    let dir = tmp.path();
    let img = image(dir, "flash.img", 1 << 20);
    ok(&img, &["--erase-size", "4096", "format"]);
    let e = ["--erase-size", "4096"];
    let with =
        |args: &[&str]| -> Vec<String> { e.iter().chain(args).map(|s| s.to_string()).collect() };
    let run_ok = |args: &[&str]| {
        let a = with(args);
        ok(&img, &a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let u1 = upper(dir, "one");
    run_ok(&[
        "commit",
        "--upper",
        u1.to_str().expect("utf-8"),
        "--no-reboot",
    ]);
    let u2 = upper(dir, "two");
    run_ok(&[
        "commit",
        "--upper",
        u2.to_str().expect("utf-8"),
        "--no-reboot",
        "--trial",
        "3",
    ]);
    let i = info(&img);
    let s = &i["snapshots"];
    assert_eq!(s[0]["trial_budget"], 0);
    assert_eq!(s[1]["trial_budget"], 3);
    assert_eq!(s[1]["trials_used"], 0);
    assert_eq!(s[1]["confirmed"], false);
    let text = run_ok(&["info"]);
    assert!(
        text.contains("snapshot 2 (0 of 3 boots spent) on trial"),
        "{text}"
    );

    // No boot has tried it: health leaves it alone, whatever its checks say (a rerun of the
    // service after the write must not vouch for what never booted).
    let passing = config(
        dir,
        "config health 'health'\n\tlist command 'test -e /'\n\tlist ping '127.0.0.1'\n",
    );
    let before = std::fs::read(&img).expect("image");
    let out = run_ok(&["health", "--config", &passing, "--once"]);
    assert!(out.contains("has not been booted yet"), "{out}");
    assert!(
        std::fs::read(&img).expect("image") == before,
        "health wrote"
    );
    // The boot: PID 1 spends its first trial mark before it runs anything.
    spend_mark(&img, offset_of(&info(&img)["snapshots"][1]), 0);
    assert_eq!(info(&img)["snapshots"][1]["trials_used"], 1);

    // A failing check: exit 17, nothing confirmed (no reboot: --no-reboot).
    let failing = config(
        dir,
        "config health 'health'\n\tlist command 'true'\n\tlist command 'exit 3'\n",
    );
    let a = with(&["health", "--config", &failing, "--once", "--no-reboot"]);
    let o = fails(&img, &a.iter().map(String::as_str).collect::<Vec<_>>(), 17);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("command `exit 3` exit status: 3"),
        "{}",
        show(&o)
    );
    assert_eq!(info(&img)["snapshots"][1]["confirmed"], false);
    // The kind of check that failed is marked on the block (for the rollback's reason after
    // the reboot); its trial state is unchanged, and a second failure adds nothing.
    let marked = |img: &Path| info(img)["snapshots"][1]["failed_checks"].clone();
    assert_eq!(marked(&img), serde_json::json!(["command"]));
    assert_eq!(info(&img)["snapshots"][1]["trials_used"], 1);
    let before = std::fs::read(&img).expect("image");
    fails(&img, &a.iter().map(String::as_str).collect::<Vec<_>>(), 17);
    assert!(
        std::fs::read(&img).expect("image") == before,
        "marked twice"
    );
    assert!(
        run_ok(&["info"]).contains("ON TRIAL: 1 of 3 boots spent, failed: command"),
        "{}",
        run_ok(&["info"])
    );

    // A bad config is an error with its own code, before anything is checked.
    let bad = config(dir, "config health\n\toption deadlin '5'\n");
    let a = with(&["health", "--config", &bad, "--once", "--no-reboot"]);
    let o = fails(&img, &a.iter().map(String::as_str).collect::<Vec<_>>(), 18);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown option deadlin"),
        "{}",
        show(&o)
    );

    // So is a --config that names no file: a typo must not read as "no checks" and confirm.
    let missing = dir.join("no-such-config").display().to_string();
    let a = with(&["health", "--config", &missing, "--once", "--no-reboot"]);
    let o = fails(&img, &a.iter().map(String::as_str).collect::<Vec<_>>(), 18);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no-such-config"),
        "{}",
        show(&o)
    );
    assert!(
        std::fs::read(&img).expect("image") == before,
        "a missing config changed the flash"
    );

    // Passing checks confirm the trial; the next health run finds nothing to do.
    let passing = config(
        dir,
        "config health 'health'\n\tlist command 'test -e /'\n\tlist ping '127.0.0.1'\n",
    );
    let out = run_ok(&["health", "--config", &passing, "--once"]);
    assert!(out.contains("the boot on trial is confirmed"), "{out}");
    assert_eq!(info(&img)["snapshots"][1]["confirmed"], true);
    let out = run_ok(&["health", "--config", &passing, "--once"]);
    assert!(out.contains("nothing is on trial"), "{out}");

    // `confirm` directly, for a volatile saved on trial.
    let u3 = upper(dir, "three");
    run_ok(&[
        "save",
        "--upper",
        u3.to_str().expect("utf-8"),
        "--trial",
        "1",
    ]);
    assert_eq!(info(&img)["volatile"]["confirmed"], false);
    let before = fs::read(&img).expect("read");
    let out = run_ok(&["confirm"]);
    assert!(out.contains("confirmed: 1 block(s)"), "{out}");
    let after = fs::read(&img).expect("read");
    // Exactly one byte changed, from 0xFF to 0x00: the volatile's confirm mark.
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!((before[changed[0]], after[changed[0]]), (0xFF, 0x00));
    assert_eq!(info(&img)["volatile"]["confirmed"], true);
    let out = run_ok(&["confirm"]);
    assert!(out.contains("nothing is on trial"), "{out}");

    // --trial is bounded by the 16 trial marks.
    let a = with(&[
        "save",
        "--upper",
        u3.to_str().expect("utf-8"),
        "--trial",
        "17",
    ]);
    fails(&img, &a.iter().map(String::as_str).collect::<Vec<_>>(), 2);
}

/// A snapshot committed on trial over saved changes, its one boot spent and rolled back by the
/// next boot (marks written as PID 1 writes them): commands that refuse leave every byte as
/// it was, the rollback reads as a trial rollback, and the first write makes it permanent
/// without bringing back the saved changes the commit had moved to the back buffer.
/// The last rung of the boot ladder runs the target on the read-only squashfs alone: that
/// boot spent a trial mark but never ran the block, and there is no overlay to leave a boot
/// record in. health on a read-only root vouches for nothing: the trial is left to the next
/// boot, flash untouched (before, it confirmed the block).
#[test]
fn health_on_a_read_only_root_confirms_nothing() {
    let tmp = scratch();
    let dir = tmp.path();
    let e = E;
    let arg = |p: &Path| p.to_str().expect("utf-8").to_string();
    let img = booted_trial(dir, "3");
    let passing = config(dir, "config health 'health'\n\tlist command 'true'\n");
    let before = fs::read(&img).expect("image");
    // A mount namespace of its own whose / is read-only; the image stays where it is (on a
    // writable tmpfs when the temp dir is one, read-only with / otherwise).
    let o = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -o remount,bind,ro / && exec "$@""#)
        .arg("sh")
        .arg(bin())
        .args(["--device", &arg(&img), e[0], e[1]])
        .args(["health", "--config", &passing, "--once", "--no-reboot"])
        .output()
        .expect("run unshare");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        out.contains("this boot does not run the chain (/ is read-only)"),
        "{}",
        show(&o)
    );
    assert!(fs::read(&img).expect("image") == before, "health wrote");
    assert_eq!(info(&img)["snapshots"][0]["confirmed"], false);
    // The same on a writable root confirms it: the check above is the read-only root's.
    let out = ok(
        &img,
        &[
            e[0],
            e[1],
            "health",
            "--config",
            &passing,
            "--once",
            "--no-reboot",
        ],
    );
    assert!(out.contains("the boot on trial is confirmed"), "{out}");
    assert_eq!(info(&img)["snapshots"][0]["confirmed"], true);
}

#[test]
fn a_trial_rollback_is_left_alone_by_refusals_and_settled_by_the_next_write() {
    let tmp = scratch();
    let dir = tmp.path();
    let img = image(dir, "flash.img", 1 << 20);
    ok(&img, &["--erase-size", "4096", "format"]);
    let arg = |p: &Path| p.to_str().expect("utf-8").to_string();
    let u1 = arg(&upper(dir, "one"));
    ok(&img, &["commit", "--upper", &u1, "--no-reboot"]);
    let saved = arg(&upper(dir, "saved"));
    ok(&img, &["save", "--upper", &saved]);
    let u2 = arg(&upper(dir, "two"));
    ok(
        &img,
        &["commit", "--upper", &u2, "--no-reboot", "--trial", "1"],
    );
    let off = offset_of(&info(&img)["snapshots"][1]);
    // The trial boot's mark, then the roll-back boot's.
    spend_mark(&img, off, 0);
    spend_mark(&img, off, 1);
    let rolled = info(&img);
    assert_eq!(
        rolled["snapshots"].as_array().map(Vec::len),
        Some(1),
        "{rolled}"
    );
    assert!(rolled["volatile"].is_null(), "{rolled}");
    let before = fs::read(&img).expect("read");

    fails(&img, &["format"], 5);
    let o = run(
        &img,
        &["commit", "--upper", "/nonexistent-upper", "--no-reboot"],
    );
    assert!(!o.status.success(), "{}", show(&o));
    let o = run(&img, &["verify"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        fs::read(&img).expect("read") == before,
        "a command that refused or only read programmed flash"
    );
    assert_eq!(info(&img), rolled, "info changed without a write");

    // The next write settles it: snapshot 1 and the new saved changes, never the old ones.
    let again = arg(&upper(dir, "again"));
    ok(&img, &["save", "--upper", &again]);
    let out = dir.join("out");
    ok(&img, &["extract", "all", &arg(&out)]);
    assert_eq!(
        fs::read_to_string(out.join("etc/network")).expect("extracted"),
        "again"
    );
    ok(&img, &["repair"]);
    let after = info(&img);
    assert_eq!(
        after["snapshots"].as_array().map(Vec::len),
        Some(1),
        "{after}"
    );
    assert!(!after["volatile"].is_null(), "{after}");
}

/// PID 1's trial mark `i` on the block at `offset` (0xC2 + i), as a boot spends it.
fn spend_mark(img: &Path, offset: u64, i: u64) {
    patch(img, offset + 0xC2 + i, &[0]);
}

fn offset_of(j: &serde_json::Value) -> u64 {
    j["offset"].as_u64().expect("offset")
}

/// The erase size of the images of `booted_trial`.
const E: [&str; 2] = ["--erase-size", "4096"];

/// A 1 MiB image (4 KiB erase blocks, [`E`]) with one snapshot on trial for `trials` boots,
/// of which the boot spent the first (PID 1's mark, written here by hand).
fn booted_trial(dir: &Path, trials: &str) -> std::path::PathBuf {
    let img = image(dir, "flash.img", 1 << 20);
    ok(&img, &[E[0], E[1], "format"]);
    let u = upper(dir, "trial");
    let u = u.to_str().expect("utf-8");
    ok(
        &img,
        &[
            E[0],
            E[1],
            "commit",
            "--upper",
            u,
            "--no-reboot",
            "--trial",
            trials,
        ],
    );
    spend_mark(&img, offset_of(&info(&img)["snapshots"][0]), 0);
    img
}

/// `one_snapshot` with a second snapshot on trial for 3 boots, of which the boot spent the
/// first: the image, the second's upper dir and its offset.
fn second_on_trial(dir: &Path) -> (std::path::PathBuf, String, u64) {
    let img = one_snapshot(dir);
    let u = upper(dir, "trial");
    let u = u.to_str().expect("utf-8").to_string();
    ok(
        &img,
        &["commit", "--upper", &u, "--no-reboot", "--trial", "3"],
    );
    let trial = offset_of(&info(&img)["snapshots"][1]);
    spend_mark(&img, trial, 0);
    (img, u, trial)
}

/// A formatted 1 MiB image (4 KiB erase blocks) with one confirmed snapshot.
fn one_snapshot(dir: &Path) -> std::path::PathBuf {
    let img = image(dir, "flash.img", 1 << 20);
    ok(&img, &["--erase-size", "4096", "format"]);
    let base = upper(dir, "base");
    ok(
        &img,
        &[
            "commit",
            "--upper",
            base.to_str().expect("utf-8"),
            "--no-reboot",
        ],
    );
    img
}

/// Two `save --trial` in a row keep the last confirmed volatile: the second replaces the
/// first trial copy, not the confirmed one, so when the trial runs out the unit comes back
/// on the confirmed state (before, the confirmed copy was overwritten and the unit came
/// back with no volatile at all).
#[test]
fn a_second_save_on_trial_keeps_the_confirmed_volatile() {
    let tmp = scratch();
    let dir = tmp.path();
    let img = one_snapshot(dir);
    let arg = |p: &Path| p.to_str().expect("utf-8").to_string();
    ok(&img, &["save", "--upper", &arg(&upper(dir, "good"))]);
    ok(
        &img,
        &["save", "--upper", &arg(&upper(dir, "bad1")), "--trial", "1"],
    );
    ok(
        &img,
        &["save", "--upper", &arg(&upper(dir, "bad2")), "--trial", "1"],
    );
    let j = info(&img);
    assert_eq!(j["volatile"]["trial_budget"], 1, "{j}");
    assert_eq!(j["volatile_old_copy"]["confirmed"], true, "{j}");
    // The trial copy's boot is spent, then the boot after rolls it back (PID 1's marks).
    let cur = offset_of(&j["volatile"]);
    spend_mark(&img, cur, 0);
    spend_mark(&img, cur, 1);
    let out = dir.join("out");
    ok(&img, &["extract", "all", &arg(&out)]);
    assert_eq!(
        fs::read_to_string(out.join("etc/network")).unwrap_or_default(),
        "good",
        "{}",
        info(&img)
    );
}

/// A volatile on its last trial boot is not committed, wherever it lies: in the back buffer
/// as in the chain slot (before, only the slot refused, and from the back buffer it became a
/// confirmed snapshot nobody confirmed). The refusal comes before any write, also when the
/// write would first have erased garbage, and `upgrade` refuses before the package manager
/// runs.
#[test]
fn a_volatile_on_its_last_trial_boot_is_not_committed_from_either_slot() {
    let tmp = scratch();
    let dir = tmp.path();
    let arg = |p: &Path| p.to_str().expect("utf-8").to_string();
    for good_first in [true, false] {
        let img = one_snapshot(dir);
        if good_first {
            // The trial copy then lands in the back buffer.
            ok(&img, &["save", "--upper", &arg(&upper(dir, "good"))]);
        }
        let trial = upper(dir, "trial");
        ok(&img, &["save", "--upper", &arg(&trial), "--trial", "1"]);
        let v = info(&img)["volatile"].clone();
        assert_eq!(
            v["location"],
            if good_first { "backbuf" } else { "chain" },
            "{v}"
        );
        spend_mark(&img, offset_of(&v), 0);
        // Leftovers of an interrupted write: garbage the next write would erase first.
        patch(&img, 0x20000, &[0x5a; 100]);
        assert_eq!(info(&img)["garbage_blocks"], 1);
        let before = fs::read(&img).expect("image");
        for args in [
            vec!["commit", "--no-reboot"],
            vec![
                "commit",
                "--upper",
                trial.to_str().expect("utf-8"),
                "--no-reboot",
            ],
        ] {
            let empty = dir.join("empty");
            fs::create_dir_all(&empty).expect("mkdir");
            let mut a = args.clone();
            if a.len() == 2 {
                a.extend(["--upper", empty.to_str().expect("utf-8")]);
            }
            let o = fails(&img, &a, 5);
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("last allowed boot is spent"),
                "{}",
                show(&o)
            );
            assert!(fs::read(&img).expect("image") == before, "{a:?} wrote");
        }
        let ran = dir.join("pm-ran");
        let _ = fs::remove_file(&ran);
        let o = fails(
            &img,
            &[
                "upgrade",
                "--upper",
                trial.to_str().expect("utf-8"),
                "--pm",
                &format!("touch {}", ran.display()),
            ],
            5,
        );
        assert!(!ran.exists(), "the package manager ran:\n{}", show(&o));
        assert!(fs::read(&img).expect("image") == before, "upgrade wrote");
        // Confirmed, the commit goes ahead.
        ok(&img, &["confirm"]);
        ok(
            &img,
            &[
                "commit",
                "--no-reboot",
                "--upper",
                dir.join("empty").to_str().expect("utf-8"),
            ],
        );
        assert_eq!(info(&img)["snapshots"].as_array().map(Vec::len), Some(2));
    }
}

/// A check that never finishes (a command waiting on a dead server, a DNS lookup that hangs)
/// must not hold the verdict past the deadline: on OpenWrt procd owns the watchdog, so
/// nothing else would ever reboot the unit or confirm it. The check is killed (with what it
/// started) when the round's time is up, and fails.
#[test]
fn a_hung_check_fails_at_the_deadline() {
    let tmp = scratch();
    let dir = tmp.path();
    let e = E;
    let arg = |p: &Path| p.to_str().expect("utf-8").to_string();
    let img = booted_trial(dir, "2");
    // The deadline has passed (the test host has been up longer than 0 s): one round of at
    // most `interval` seconds, then the verdict. `sleep` runs as a child of sh, which must
    // not outlive the check either.
    let pid_file = dir.join("sleep.pid");
    let hung = config(
        dir,
        &format!(
            "config health 'health'\n\toption deadline '0'\n\toption interval '2'\n\
             \tlist command 'sleep 300 & echo $! >{}; wait'\n",
            pid_file.display()
        ),
    );
    let start = std::time::Instant::now();
    let mut child = std::process::Command::new(bin())
        .args(["--device", &arg(&img), e[0], e[1]])
        .args(["health", "--config", &hung, "--no-reboot"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run snapshot");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    // The sleeper first: it holds the output pipes while it lives.
    let sleeper: Option<i32> = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse().ok());
    // Running, that is, neither gone nor a zombie nobody reaped yet (given a moment to die).
    let running = |p: i32| {
        fs::read_to_string(format!("/proc/{p}/stat"))
            .is_ok_and(|s| s.rsplit(')').next().is_some_and(|t| !t.starts_with(" Z")))
    };
    let alive = sleeper.is_some_and(|p| {
        (0..20).all(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            running(p)
        })
    });
    if let Some(p) = sleeper.filter(|_| alive) {
        let _ = std::process::Command::new("kill")
            .arg(p.to_string())
            .status();
    }
    let o = child.wait_with_output().expect("output");
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(17),
        "health did not give up on a hung check within 30 s ({:?}): {}",
        start.elapsed(),
        show(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("did not finish"),
        "{}",
        show(&o)
    );
    assert!(!alive, "the hung check's child outlived the verdict");
    assert_eq!(info(&img)["snapshots"][0]["confirmed"], false);
    assert_eq!(
        info(&img)["snapshots"][0]["failed_checks"],
        serde_json::json!(["command"])
    );
}

/// The service's helper reboots on a config that cannot be read (exit 18), so health reads the
/// config only when it has a boot on trial to judge: with nothing on trial, or a trial no
/// boot has tried, a bad config must not be an error (it would reboot the unit at every boot).
#[test]
fn a_bad_config_is_an_error_only_with_a_boot_to_judge() {
    let tmp = scratch();
    let dir = tmp.path();
    let img = image(dir, "flash.img", 1 << 20);
    let e = ["--erase-size", "4096"];
    let arg = |p: &Path| p.to_str().expect("utf-8").to_string();
    ok(&img, &[e[0], e[1], "format"]);
    let bad = config(dir, "config health\n\toption deadlin '5'\n");
    let health = ["health", "--config", &bad, "--once", "--no-reboot"];
    let out = ok(&img, &health);
    assert!(out.contains("nothing is on trial"), "{out}");
    let u = upper(dir, "trial");
    ok(
        &img,
        &["commit", "--upper", &arg(&u), "--no-reboot", "--trial", "2"],
    );
    let out = ok(&img, &health);
    assert!(out.contains("has not been booted yet"), "{out}");
    // Booted: now the config is needed, and its error is exit 18.
    spend_mark(&img, offset_of(&info(&img)["snapshots"][0]), 0);
    let o = fails(&img, &health, 18);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown option deadlin"),
        "{}",
        show(&o)
    );
}

/// Another command holding the partition (an admin's `snapshot save` packing a large tree, an
/// `upgrade` running its package manager) when the checks pass must not lose the verdict: the
/// service's helper takes exit 4 as no verdict, so the good trial would stay unconfirmed and
/// the next reboot would spend its next trial boot (roll back, on its last). health confirms
/// once the lock is free.
#[test]
fn health_confirms_after_another_command_releases_the_lock() {
    let tmp = scratch();
    let dir = tmp.path();
    let e = E;
    let img = booted_trial(dir, "1");
    // The check passes, and meanwhile (once) another command takes the partition for 3 s.
    let once = dir.join("locked-once");
    let busy = config(
        dir,
        &format!(
            "config health 'health'\n\toption deadline '1000000000'\n\toption interval '1'\n\
             \tlist command '[ -e {once} ] || {{ touch {once}; flock -x {img} sleep 3 & sleep 0.5; }}'\n",
            once = once.display(),
            img = img.display()
        ),
    );
    let o = run(
        &img,
        &[
            "--wait",
            "1",
            e[0],
            e[1],
            "health",
            "--config",
            &busy,
            "--no-reboot",
        ],
    );
    assert!(once.exists(), "the check never ran: {}", show(&o));
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(info(&img)["snapshots"][0]["confirmed"], true);
}

/// `uci set snapshot.health.command='...'` (and `option ping`, as `uci set` writes a single
/// value) is a check like a `list` entry: it once read as no check, and health confirmed a
/// trial whose check failed.
#[test]
fn a_failing_check_written_as_an_option_is_not_confirmed() {
    let tmp = scratch();
    let dir = tmp.path();
    let img = booted_trial(dir, "2");
    let failing = config(dir, "config health 'health'\n\toption command 'exit 3'\n");
    let o = fails(
        &img,
        &["health", "--config", &failing, "--once", "--no-reboot"],
        17,
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("command `exit 3` exit status: 3"),
        "{}",
        show(&o)
    );
    assert_eq!(info(&img)["snapshots"][0]["confirmed"], false);
}

/// Confirming programs a byte in a header the chain read verifies, and erases nothing: a
/// block the chain does not show elsewhere on the partition (which makes every write refuse, exit
/// 13) must not keep a good boot on trial from being confirmed, nor its failed checks from
/// being marked; it would roll back for something that has nothing to do with it.
#[test]
fn a_trial_is_confirmed_beside_data_the_chain_does_not_show() {
    let tmp = scratch();
    let dir = tmp.path();
    let (img, u, trial) = second_on_trial(dir);
    let u = u.as_str();
    // A copy of the trial's block where the chain does not reach: valid, and nothing visible
    // supersedes it, so it might be data (every write refuses, exit 13).
    let copy = fs::read(&img).expect("image")[trial as usize..trial as usize + 65536].to_vec();
    patch(&img, 0x80000, &copy);
    let o = fails(&img, &["save", "--upper", u], 13);
    let before = fs::read(&img).expect("image");
    let failing = config(dir, "config health 'health'\n\tlist command 'false'\n");
    let o2 = fails(
        &img,
        &["health", "--config", &failing, "--once", "--no-reboot"],
        17,
    );
    assert_eq!(
        info(&img)["snapshots"][1]["failed_checks"],
        serde_json::json!(["command"]),
        "{}\n{}",
        show(&o),
        show(&o2)
    );
    ok(&img, &["confirm"]);
    assert_eq!(info(&img)["snapshots"][1]["confirmed"], true);
    // The failed-check mark and the confirm byte, in the trial's header; nothing else.
    let after = fs::read(&img).expect("image");
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert!(
        changed
            .iter()
            .all(|&i| (i as u64) >= trial && (i as u64) < trial + 256),
        "{changed:x?}"
    );
    assert!(after[0x80000..0x90000] == copy[..]);
}

/// The batman-adv check counts the lines `batctl n -H` prints, read while it runs: a count
/// below the option fails (and is marked `batman-adv neighbours`), one that reaches it
/// passes; a `batctl` that prints more than a pipe holds (64 KiB) before it exits is read
/// to its end rather than left blocked until the round's time is up.
#[test]
fn the_batman_check_counts_what_batctl_prints() {
    let tmp = scratch();
    let dir = tmp.path();
    let (img, _, _) = second_on_trial(dir);
    let health = |lines: usize, need: u32| {
        let checks = format!("\toption batman_neighbours '{need}'\n\toption interval '20'\n");
        health_with_batctl(dir, &img, lines, &checks)
    };
    let o = health(2, 3);
    assert_eq!(o.status.code(), Some(17), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("2 batman-adv neighbour(s), at least 3 needed"),
        "{}",
        show(&o)
    );
    // Left blocked on a full pipe, batctl would be killed at the round's end (20 s): exit 17.
    let o = health(1000, 1000);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(info(&img)["snapshots"][1]["confirmed"], true);
}

/// `health --once` on `img` with `checks` (UCI option and list lines), a `batctl` in PATH
/// that prints `lines` neighbours (each padded to 100 bytes: 1,000 of them overflow a pipe).
fn health_with_batctl(dir: &Path, img: &Path, lines: usize, checks: &str) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let bindir = dir.join("bin");
    fs::create_dir_all(&bindir).expect("mkdir");
    let batctl = bindir.join("batctl");
    fs::write(
        &batctl,
        format!(
            "#!/bin/sh\ni=0\nwhile [ $i -lt {lines} ]; do printf 'bat0 02:00:00:00:00:%02x %088d\\n' $((i % 256)) 0; i=$((i+1)); done\n"
        ),
    )
    .expect("batctl");
    fs::set_permissions(&batctl, fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let conf = config(dir, &format!("config health 'health'\n{checks}"));
    std::process::Command::new(bin())
        .env("PATH", &path)
        .arg("--device")
        .arg(img)
        .args(["health", "--config", &conf, "--once", "--no-reboot"])
        .output()
        .expect("health")
}

/// A check that hangs ends the round: it is killed and marked failed, and the checks after it
/// are not run, rather than killed at once and marked failed for its hang (a rollback would
/// then blame batman-adv for a command that hung).
#[test]
fn a_hung_check_alone_is_blamed() {
    let tmp = scratch();
    let dir = tmp.path();
    let (img, _, _) = second_on_trial(dir);
    let o = health_with_batctl(
        dir,
        &img,
        2,
        "\toption batman_neighbours '1'\n\toption interval '2'\n\tlist command 'exec sleep 60'\n",
    );
    assert_eq!(o.status.code(), Some(17), "{}", show(&o));
    assert_eq!(
        info(&img)["snapshots"][1]["failed_checks"],
        serde_json::json!(["command"]),
        "{}",
        show(&o)
    );
}

/// `--once` is one round, then the verdict "at once": a check that hangs is killed after
/// `interval` seconds (docs/SNAPSHOT.md), not left to run until a deadline that is still
/// minutes away.
#[test]
fn once_gives_a_hung_check_interval_seconds_not_the_deadline() {
    let tmp = scratch();
    let dir = tmp.path();
    let (img, _, _) = second_on_trial(dir);
    let hung = config(
        dir,
        "config health 'health'\n\toption deadline '1000000000'\n\toption interval '2'\n\
         \tlist command 'exec sleep 60'\n",
    );
    let start = std::time::Instant::now();
    let mut child = std::process::Command::new(bin())
        .arg("--device")
        .arg(&img)
        .args(["health", "--config", &hung, "--once", "--no-reboot"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run snapshot");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if start.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(17),
        "health --once held a hung check for {:?}",
        start.elapsed()
    );
}

/// Another command holding the partition when health starts (an admin's `save` packing a
/// large tree, a cron job) must not end it without a verdict either: exit 4 reboots nothing,
/// and on OpenWrt, where procd owns the watchdog, the trial would run unjudged until some
/// power cut, neither confirmed nor spent. health waits for the lock, then judges the boot.
/// Before, it gave up after `--wait` with exit 4.
#[test]
fn health_waits_for_a_lock_held_when_it_starts() {
    let tmp = scratch();
    let dir = tmp.path();
    let e = E;
    let img = booted_trial(dir, "1");
    let passing = config(
        dir,
        "config health 'health'\n\toption deadline '1000000000'\n\toption interval '1'\n\tlist command 'true'\n",
    );
    let started = dir.join("holding");
    let mut holder = std::process::Command::new("flock")
        .arg("-x")
        .arg(&img)
        .args(["sh", "-c"])
        .arg(format!("touch {}; sleep 3", started.display()))
        .spawn()
        .expect("flock");
    while !started.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = run(
        &img,
        &[
            "--wait",
            "1",
            e[0],
            e[1],
            "health",
            "--config",
            &passing,
            "--no-reboot",
        ],
    );
    holder.wait().expect("flock ends");
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(info(&img)["snapshots"][0]["confirmed"], true);
    // `--once` has no later round: it still says the partition is busy (exit 4).
    let img = booted_trial(dir, "1");
    let mut holder = std::process::Command::new("flock")
        .arg("-x")
        .arg(&img)
        .args(["sleep", "3"])
        .spawn()
        .expect("flock");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let o = run(
        &img,
        &[
            "--no-wait",
            e[0],
            e[1],
            "health",
            "--config",
            &passing,
            "--once",
            "--no-reboot",
        ],
    );
    holder.wait().expect("flock ends");
    assert_eq!(o.status.code(), Some(4), "{}", show(&o));
    assert_eq!(info(&img)["snapshots"][0]["confirmed"], false);
}

/// A block on trial rolled back by another command while health's checks run leaves nothing
/// for health to confirm: it must not say it confirmed the boot (it once did, and an admin
/// reading the log took the rolled-back bundle for kept).
#[test]
fn health_does_not_claim_a_trial_rolled_back_while_its_checks_ran() {
    let tmp = scratch();
    let dir = tmp.path();
    let (img, _, _) = second_on_trial(dir);
    // The check itself rolls the block on trial back, then passes.
    let check = config(
        dir,
        &format!(
            "config health 'health'\n\tlist command '{bin} --device {img} rollback 1 --yes --no-reboot >/dev/null'\n",
            bin = bin(),
            img = img.display()
        ),
    );
    let state = dir.join("state");
    let out = ok(
        &img,
        &[
            "health",
            "--config",
            &check,
            "--once",
            "--no-reboot",
            "--state",
            state.to_str().expect("utf-8"),
        ],
    );
    assert!(
        !out.contains("is confirmed") && out.contains("rolled back meanwhile"),
        "{out}"
    );
    // No verdict recorded on the block gone: the fleet's status would show it passed.
    assert!(!state.join("health.json").exists());
    let j = info(&img);
    assert_eq!(j["snapshots"].as_array().map(Vec::len), Some(1), "{j}");
}

/// Runs `snapshot --device IMG ARGS...` while another command holds the image's lock for a
/// moment, in a mount namespace whose /dev holds a regular file for `/dev/watchdog`: what
/// health wrote to the watchdog.
fn health_with_a_watchdog_after_a_wait(dir: &Path, img: &Path, args: &[&str]) -> Vec<u8> {
    health_with_a_watchdog_in_state(dir, img, args, None)
}

/// `health_with_a_watchdog_after_a_wait`, with the kernel's view of the watchdog's state
/// (`/sys/class/watchdog/watchdog0/state`) given as `state` when `Some`.
fn health_with_a_watchdog_in_state(
    dir: &Path,
    img: &Path,
    args: &[&str],
    state: Option<&str>,
) -> Vec<u8> {
    require_root();
    let dev = dir.join("dev");
    fs::create_dir_all(&dev).expect("mkdir dev");
    let null = dev.join("null");
    if !null.exists() {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &null,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .expect("mknod null");
    }
    let dog = dev.join("watchdog");
    fs::write(&dog, b"").expect("watchdog");
    let started = dir.join("holding");
    let _ = fs::remove_file(&started);
    let mut holder = std::process::Command::new("flock")
        .arg("-x")
        .arg(img)
        .args(["sh", "-c"])
        .arg(format!("touch {}; sleep 1", started.display()))
        .spawn()
        .expect("flock");
    while !started.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let sysfs = match state {
        Some(st) => format!(
            "mount -t tmpfs none /sys/class && mkdir -p /sys/class/watchdog/watchdog0 && echo {st} >/sys/class/watchdog/watchdog0/state && "
        ),
        None => String::new(),
    };
    let o = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "{sysfs}mount --bind \"$1\" /dev && shift && exec \"$@\""
        ))
        .arg("sh")
        .arg(&dev)
        .arg(bin())
        .arg("--device")
        .arg(img)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("unshare");
    holder.wait().expect("flock ends");
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("busy"),
        "{}",
        show(&o)
    );
    fs::read(&dog).expect("watchdog")
}

/// Health that waits for a lock held when it starts pets the watchdog meanwhile, which opens
/// it, and opening a watchdog starts it. When the wait ends with no trial boot to judge
/// (nothing on trial, or a block on trial no boot has tried), PID 1 armed nothing: the
/// watchdog health started must be stopped (magic close), not left running unpetted to reset
/// the unit (it once was).
#[test]
fn health_stops_the_watchdog_its_wait_started_when_no_trial_boot_runs() {
    let tmp = scratch();
    let dir = tmp.path();
    // A deadline far off: this machine's uptime is no unit's just booted.
    let passing = config(
        dir,
        "config health 'health'\n\toption deadline '1000000000'\n\tlist command 'true'\n",
    );
    let stopped = |w: &[u8]| w.contains(&0) && w.last() == Some(&b'V');
    // Nothing on trial.
    let img = one_snapshot(dir);
    let w = health_with_a_watchdog_after_a_wait(
        dir,
        &img,
        &["health", "--config", &passing, "--no-reboot"],
    );
    assert!(stopped(&w), "{w:?}");
    // A block on trial that no boot has tried.
    let u = upper(dir, "unbooted");
    ok(
        &img,
        &[
            "commit",
            "--upper",
            u.to_str().expect("utf-8"),
            "--no-reboot",
            "--trial",
            "2",
        ],
    );
    let w = health_with_a_watchdog_after_a_wait(
        dir,
        &img,
        &["health", "--config", &passing, "--no-reboot"],
    );
    assert!(stopped(&w), "{w:?}");
}

/// A watchdog the kernel says is not running (PID 1 armed none: `snapinit.watchdog=0`) is not
/// opened by health's wait for a lock held at its start: opening it would start it, and on a
/// way out that leaves it as PID 1 left it (here a boot that did not run the chain) nothing
/// would pet it. One the kernel says is running (PID 1 armed it) is petted meanwhile and
/// left running there.
#[test]
fn health_pets_only_a_running_watchdog_while_it_waits() {
    let tmp = scratch();
    let dir = tmp.path();
    // A deadline far off: this machine's uptime is no unit's just booted.
    let passing = config(
        dir,
        "config health 'health'\n\toption deadline '1000000000'\n\tlist command 'true'\n",
    );
    let record = dir.join("record");
    fs::write(&record, "failed-check-marks\nchain-not-booted\n").expect("record");
    let (img, _, _) = second_on_trial(dir);
    let args = [
        "--boot-record",
        record.to_str().expect("utf-8"),
        "health",
        "--config",
        &passing,
        "--no-reboot",
    ];
    let w = health_with_a_watchdog_in_state(dir, &img, &args, Some("inactive"));
    assert!(w.is_empty(), "an inactive watchdog was opened: {w:?}");
    let w = health_with_a_watchdog_in_state(dir, &img, &args, Some("active"));
    assert!(w.contains(&0) && w.last() != Some(&b'V'), "{w:?}");
    // Past the deadline (here 0 s after boot) it is left unpetted: a command holding the lock
    // for good must not keep a trial boot unjudged; the watchdog then resets the unit.
    let late = config(
        dir,
        "config health 'health'\n\toption deadline '0'\n\tlist command 'true'\n",
    );
    let mut args = args;
    args[4] = &late;
    let w = health_with_a_watchdog_in_state(dir, &img, &args, Some("active"));
    assert!(w.is_empty(), "petted past the deadline: {w:?}");
}
