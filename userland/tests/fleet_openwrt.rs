//! The OpenWrt side of the fleet: openwrt/files/usr/libexec/snapshot-fleet.sh, which procd runs
//! (/etc/init.d/snapshot-fleet, /etc/init.d/snapshot-health), under busybox sh as on a router.
//! `snapshot`, `sleep` and `reboot` are stubs that log their arguments, so the test sees the
//! helper's decisions: the backoff when no mirror or broker answers, the full interval after a
//! refusal or a good poll, the health verdict published before the reboot. The stubs are given
//! by path (SNAPSHOT, FLEET_SLEEP, FLEET_REBOOT), never found through PATH: busybox sh runs its
//! own applets first, and its `reboot` would signal this machine's init.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../openwrt/files/usr/libexec/snapshot-fleet.sh")
}

fn stub(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("stub");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A scratch directory with the stubs: `snapshot` logs `snapshot ARGS` and exits with the next
/// code of `codes` (one per line; 0 when they run out), `sleep` and `reboot` log themselves.
fn stubs(codes: &[i32]) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path();
    fs::write(
        p.join("codes"),
        codes.iter().map(|c| format!("{c}\n")).collect::<String>(),
    )
    .expect("codes");
    let log = p.join("log");
    let codes = p.join("codes");
    stub(
        p,
        "snapshot",
        &format!(
            "echo \"snapshot $*\" >>{log}\n\
             c=$(head -n 1 {codes}); sed -i 1d {codes}\n\
             exit ${{c:-0}}",
            log = log.display(),
            codes = codes.display()
        ),
    );
    stub(
        p,
        "sleep",
        &format!("echo \"sleep $*\" >>{}", log.display()),
    );
    stub(p, "reboot", &format!("echo reboot >>{}", log.display()));
    d
}

fn run(d: &Path, env: &[(&str, &str)], args: &[&str]) -> (Output, Vec<String>) {
    for stub in ["snapshot", "sleep", "reboot"] {
        assert!(d.join(stub).exists(), "no {stub} stub");
    }
    let o = Command::new("busybox")
        .arg("sh")
        .arg(helper())
        .args(args)
        .env("SNAPSHOT", d.join("snapshot"))
        .env("FLEET_SLEEP", d.join("sleep"))
        .env("FLEET_REBOOT", d.join("reboot"))
        .envs(env.iter().copied())
        .output()
        .expect("busybox sh (Debian's busybox-static: scripts/deps.sh)");
    let log = fs::read_to_string(d.join("log")).unwrap_or_default();
    (o, log.lines().map(str::to_string).collect())
}

/// The seconds of each `sleep` the stubs logged, in order.
fn sleeps(log: &[String]) -> Vec<u64> {
    log.iter()
        .filter_map(|l| l.strip_prefix("sleep "))
        .map(|s| s.parse().expect("seconds"))
        .collect()
}

#[test]
fn poll_loop_backs_off_without_mirror_or_broker_and_waits_the_interval_otherwise() {
    // No mirror, no mirror, no broker, a refusal (21: wrong base), then a good poll.
    let d = stubs(&[25, 25, 26, 21, 0]);
    let (o, log) = run(
        d.path(),
        &[
            ("FLEET_INTERVAL", "200"),
            ("FLEET_BACKOFF", "60"),
            ("FLEET_LOOPS", "5"),
        ],
        &[
            "poll-loop",
            "--mirror",
            "http://m1/fleet",
            "--channel",
            "stable",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let polls: Vec<&String> = log.iter().filter(|l| l.starts_with("snapshot")).collect();
    assert_eq!(polls.len(), 5, "{log:?}");
    for p in &polls {
        assert_eq!(
            p.as_str(),
            "snapshot fleet poll --mirror http://m1/fleet --channel stable",
            "{log:?}"
        );
    }
    // The waits between polls: the first spread at random over [0, backoff]; then 60 and 120
    // (doubling), 200 (240 capped at the interval), 200 after the refusal.
    let sleeps = sleeps(&log);
    let between: Vec<u64> = if log[0].starts_with("sleep") {
        assert!(sleeps[0] <= 60, "{log:?}");
        sleeps[1..].to_vec()
    } else {
        sleeps.clone()
    };
    assert_eq!(between, [60, 120, 200, 200], "{log:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no mirror or no broker (exit 25); next try in 60 s"),
        "{err}"
    );
    assert!(err.contains("exit 21; next poll in 200 s"), "{err}");
}

/// A poll whose reboot into the bundle failed (exit 12) is followed after the short wait, not
/// the interval: that poll reboots into the bundle already on flash.
#[test]
fn poll_loop_retries_a_failed_reboot_after_the_backoff() {
    let d = stubs(&[12, 0]);
    let (o, log) = run(
        d.path(),
        &[
            ("FLEET_INTERVAL", "1800"),
            ("FLEET_BACKOFF", "60"),
            ("FLEET_LOOPS", "2"),
        ],
        &["poll-loop", "--mirror", "http://m1/fleet"],
    );
    assert!(o.status.success(), "{o:?}");
    let sleeps = sleeps(&log);
    let between = if log[0].starts_with("sleep") {
        &sleeps[1..]
    } else {
        &sleeps[..]
    };
    assert_eq!(between.first(), Some(&60), "{log:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the reboot into the bundle failed (exit 12); next try in 60 s"),
        "{err}"
    );
}

#[test]
fn poll_loop_after_a_good_poll_waits_the_interval_and_a_tenth_at_most() {
    let d = stubs(&[0, 25, 0]);
    let (o, log) = run(
        d.path(),
        &[
            ("FLEET_INTERVAL", "1000"),
            ("FLEET_BACKOFF", "0"),
            ("FLEET_LOOPS", "3"),
        ],
        &["poll-loop", "--mirror", "http://m1/"],
    );
    assert!(o.status.success(), "{o:?}");
    let sleeps = sleeps(&log);
    // Backoff 0 counts as 1 s (the loop never spins): a first wait of 0 or 1 s, then
    // 1000-1100 s after the good poll and 1 s after the failed one.
    let between = match sleeps.len() {
        3 => {
            assert_eq!(sleeps[0], 1, "{log:?}");
            &sleeps[1..]
        }
        _ => &sleeps[..],
    };
    assert_eq!(between.len(), 2, "{log:?}");
    assert!((1000..=1100).contains(&between[0]), "{log:?}");
    assert_eq!(between[1], 1, "{log:?}");
    // The last poll's status is the loop's (FLEET_LOOPS).
    let d = stubs(&[25]);
    let (o, _) = run(
        d.path(),
        &[("FLEET_BACKOFF", "0"), ("FLEET_LOOPS", "1")],
        &["poll-loop", "--mirror", "http://m1/"],
    );
    assert_eq!(o.status.code(), Some(25), "{o:?}");
}

#[test]
fn poll_loop_never_spins_on_a_zero_or_garbled_setting() {
    // interval '0' and backoff 'x' (a typo in /etc/config/snapshot): a minute at least.
    let d = stubs(&[0, 25, 0]);
    let (o, log) = run(
        d.path(),
        &[
            ("FLEET_INTERVAL", "0"),
            ("FLEET_BACKOFF", "x"),
            ("FLEET_LOOPS", "3"),
        ],
        &["poll-loop", "--mirror", "http://m1/"],
    );
    assert!(o.status.success(), "{o:?}");
    let sleeps = sleeps(&log);
    let between = &sleeps[sleeps.len() - 2..];
    assert!((60..=66).contains(&between[0]), "{log:?}");
    assert_eq!(between[1], 60, "{log:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("not a number of seconds: 'x'; using 60"),
        "{err}"
    );
}

/// The waits are spread by ash's own $RANDOM: OpenWrt's busybox has no `od` (a loop that
/// drew nothing without it would have every unit poll in lockstep). The script's own
/// `random_upto`, with `od` failing as it would there, drawn eight times in one shell.
#[test]
fn random_waits_need_no_od() {
    let script = fs::read_to_string(helper()).expect("script");
    let body: String = script
        .lines()
        .skip_while(|l| !l.starts_with("random_upto()"))
        .take_while(|l| *l != "}")
        .chain(["}"])
        .map(|l| format!("{l}\n"))
        .collect();
    let o = Command::new("busybox")
        .args(["sh", "-c"])
        .arg(format!(
            "od() {{ return 127; }}\n{body}for i in 1 2 3 4 5 6 7 8; do random_upto 3600; echo $rnd; done\n"
        ))
        .output()
        .expect("busybox sh");
    assert!(o.status.success(), "{o:?}");
    let draws: std::collections::BTreeSet<u64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| l.parse().expect("a number"))
        .collect();
    assert!(draws.iter().all(|&d| d <= 3600), "{draws:?}");
    assert!(draws.len() > 1, "eight draws gave {draws:?}");
}

#[test]
fn health_publishes_the_verdict_then_reboots_on_a_failure() {
    // A failed check (17): published, then the reboot.
    let d = stubs(&[17, 0]);
    let (o, log) = run(
        d.path(),
        &[
            ("FLEET_MQTT", "10.213.0.1:1883"),
            ("FLEET_PUBLISH_ARGS", "--unit-id u7 --channel beta"),
        ],
        &["health", "--deadline-test"],
    );
    assert_eq!(o.status.code(), Some(17), "{o:?}");
    assert_eq!(
        log,
        [
            "snapshot health --no-reboot --deadline-test",
            "snapshot fleet publish --mqtt 10.213.0.1:1883 --retries 0 --timeout 5 --unit-id u7 --channel beta",
            "reboot",
        ],
        "{o:?}"
    );
    // Passed: published, no reboot. A broker that is down (26) changes nothing.
    let d = stubs(&[0, 26]);
    let (o, log) = run(d.path(), &[("FLEET_MQTT", "b")], &["health"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        log,
        [
            "snapshot health --no-reboot",
            "snapshot fleet publish --mqtt b --retries 0 --timeout 5",
        ]
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("not published"));
    // No broker configured: the check alone; FLEET_NO_REBOOT keeps the unit up.
    let d = stubs(&[17]);
    let (o, log) = run(d.path(), &[("FLEET_NO_REBOOT", "1")], &["health"]);
    assert_eq!(o.status.code(), Some(17), "{o:?}");
    assert_eq!(log, ["snapshot health --no-reboot"]);
}

/// The hook for systems without procd: the same verdict, published when the unit's
/// fleet.env names a broker, then the reboot on a failure; it returns at once.
#[test]
fn the_hook_without_procd_publishes_from_fleet_env() {
    let d = stubs(&[17, 0]);
    let p = d.path();
    let env = p.join("fleet.env");
    fs::write(
        &env,
        "FLEET_MQTT=10.213.0.1:1883\nFLEET_PUBLISH_ARGS=\"--unit-id u7 --mqtt-user u7 \
         --mqtt-password-file /etc/snapshot/mqtt.pass\"\n",
    )
    .expect("fleet.env");
    let hook = |env: &Path| {
        let o = Command::new("busybox")
            .arg("sh")
            .arg(helper().with_file_name("snapshot-health.sh"))
            .env("SNAPSHOT", p.join("snapshot"))
            .env("FLEET_SLEEP", p.join("sleep"))
            .env("FLEET_REBOOT", p.join("reboot"))
            .env("FLEET_ENV", env)
            .env("FLEET_HELPER", helper())
            .env("FLEET_LOG", p.join("out"))
            .output()
            .expect("busybox sh");
        assert!(o.status.success(), "{o:?}");
        // It returned at once; the check runs on in the background and ends in the reboot.
        for _ in 0..100 {
            let log = fs::read_to_string(p.join("log")).unwrap_or_default();
            // The reboot stub's own line: "snapshot health --no-reboot" contains the word too.
            if log.lines().any(|l| l == "reboot") {
                return log.lines().map(str::to_string).collect::<Vec<_>>();
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "the hook's check never ran: {:?}",
            fs::read_to_string(p.join("out"))
        );
    };
    assert_eq!(
        hook(&env),
        [
            "snapshot health --no-reboot",
            "snapshot fleet publish --mqtt 10.213.0.1:1883 --retries 0 --timeout 5 --unit-id u7 \
             --mqtt-user u7 --mqtt-password-file /etc/snapshot/mqtt.pass",
            "reboot",
        ]
    );
    // Without fleet.env: the check and the reboot, nothing published.
    fs::remove_file(p.join("log")).expect("rm log");
    fs::write(p.join("codes"), "17\n").expect("codes");
    assert_eq!(
        hook(&p.join("no-such-env")),
        ["snapshot health --no-reboot", "reboot"]
    );
}

#[test]
fn an_unknown_mode_is_a_usage_error() {
    let d = stubs(&[]);
    let (o, log) = run(d.path(), &[], &["pol"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(log.is_empty());
}

/// Runs `start_service` of an init script of openwrt/files/etc/init.d under busybox sh, with
/// OpenWrt's config_* and procd_* functions stubbed: what procd would be told, one line per
/// call. `uci` holds `section_option` and its value: an `option`; `+section_option` adds an
/// item to a `list`. As in /lib/functions.sh, config_get gives an option's value or a list's
/// items joined by spaces, and config_list_foreach walks list items only (an option is no list).
fn start_service(script: &str, uci: &[(&str, &str)]) -> Vec<String> {
    let init = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../openwrt/files/etc/init.d")
        .join(script);
    let mut sh = String::from(
        "config_load() { [ \"$1\" = snapshot ] || echo \"config_load $1\"; }\n\
         config_get() { eval \"v=\\${CONFIG_$2_$3-}\"; [ -n \"$v\" ] || v=${4-}; eval \"$1=\\$v\"; }\n\
         config_get_bool() { config_get \"$@\"; eval \"v=\\$$1\"; \
           case $v in 1|on|true|yes|enabled) eval \"$1=1\" ;; *) eval \"$1=0\" ;; esac; }\n\
         config_list_foreach() { eval \"n=\\${CONFIG_$1_$2_LENGTH-}\"; [ -n \"$n\" ] || return 0; \
           i=1; while [ $i -le $n ]; do eval \"x=\\$CONFIG_$1_$2_ITEM$i\"; \"$3\" \"$x\"; \
           i=$((i + 1)); done; }\n\
         list_add() { eval \"n=\\${CONFIG_$1_LENGTH:-0}\"; n=$((n + 1)); \
           eval \"CONFIG_$1_ITEM$n=\\$2; CONFIG_$1_LENGTH=$n; CONFIG_$1=\\${CONFIG_$1:+\\$CONFIG_$1 }\\$2\"; }\n\
         procd_open_instance() { echo \"open $*\"; }\n\
         procd_set_param() { echo \"set $*\"; }\n\
         procd_append_param() { echo \"append $*\"; }\n\
         procd_close_instance() { echo close; }\n",
    );
    for (k, v) in uci {
        sh += &match k.strip_prefix('+') {
            Some(k) => format!("list_add {k} '{v}'\n"),
            None => format!("CONFIG_{k}='{v}'\n"),
        };
    }
    sh += &format!(". {}\nstart_service\n", init.display());
    let o = Command::new("busybox")
        .args(["sh", "-c", &sh])
        .output()
        .expect("busybox sh");
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_procd_services_follow_the_uci_fleet_section() {
    // Off by default, and without a mirror: no instance.
    assert!(start_service("snapshot-fleet", &[]).is_empty());
    assert!(start_service("snapshot-fleet", &[("fleet_enabled", "1")]).is_empty());
    let on = [
        ("fleet_enabled", "1"),
        ("+fleet_mirror", "http://m1/fleet"),
        ("+fleet_mirror", "http://m2/fleet"),
        ("fleet_min_sigs", "2"),
        ("fleet_mqtt", "broker.mesh:1883"),
        ("fleet_unit_id", "u7"),
        ("fleet_interval", "900"),
        ("fleet_mqtt_user", "u7"),
        ("fleet_mqtt_password_file", "/etc/snapshot/mqtt.pass"),
    ];
    assert_eq!(
        start_service("snapshot-fleet", &on),
        [
            "open poll",
            "set command /usr/libexec/snapshot-fleet.sh poll-loop --channel stable --min-sigs 2 --retries 0",
            "append command --mirror http://m1/fleet",
            "append command --mirror http://m2/fleet",
            "append command --mqtt broker.mesh:1883",
            "append command --mqtt-user u7 --mqtt-password-file /etc/snapshot/mqtt.pass",
            "append command --unit-id u7",
            "set env FLEET_INTERVAL=900 FLEET_BACKOFF=60",
            "set respawn 3600 5 0",
            "set stdout 1",
            "set stderr 1",
            "close",
        ]
    );
    // One mirror as an `option`, as `uci set snapshot.fleet.mirror=URL` writes it: a mirror
    // all the same (config_list_foreach sees no list there), not a loop polling without one.
    let one = start_service(
        "snapshot-fleet",
        &[("fleet_enabled", "1"), ("fleet_mirror", "http://m1/fleet")],
    );
    assert_eq!(
        one[..3],
        [
            "open poll",
            "set command /usr/libexec/snapshot-fleet.sh poll-loop --channel stable --min-sigs 1 --retries 0",
            "append command --mirror http://m1/fleet",
        ],
        "{one:?}"
    );
    // The health check: publishes only with a broker.
    let plain = start_service("snapshot-health", &[]);
    assert_eq!(
        plain,
        [
            "open health",
            "set command /usr/libexec/snapshot-fleet.sh health",
            "set stdout 1",
            "set stderr 1",
            "close",
        ]
    );
    let with = start_service("snapshot-health", &on);
    assert_eq!(
        with[2],
        "set env FLEET_MQTT=broker.mesh:1883 FLEET_UNIT_ID=u7 FLEET_CHANNEL=stable \
         FLEET_MQTT_USER=u7 FLEET_MQTT_PASSWORD_FILE=/etc/snapshot/mqtt.pass",
        "{with:?}"
    );
}

/// A boot on trial whose checks cannot be read (a typo'd option in /etc/config/snapshot, which
/// the trial itself may have brought: exit 18) is not vouched for. Left at that, the unit
/// would run the unvetted state until some power cut, with procd petting the watchdog: cut off
/// for good by a bad mesh setting. The helper reboots, as for a failed check, so the trial
/// runs out and the unit comes back on the state below it.
#[test]
fn health_reboots_when_its_checks_cannot_be_read() {
    let d = stubs(&[18]);
    let (o, log) = run(d.path(), &[], &["health"]);
    assert_eq!(o.status.code(), Some(18), "{o:?}");
    assert_eq!(log, ["snapshot health --no-reboot", "reboot"], "{o:?}");
    // Anything else (the lock held by another command, 4) is no verdict on the boot.
    let d = stubs(&[4]);
    let (o, log) = run(d.path(), &[], &["health"]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert!(!log.iter().any(|l| l == "reboot"), "{log:?}");
}

/// Sources openwrt/files/lib/preinit/79_snapinit under busybox sh as /etc/preinit does, with
/// `mounts` and `cmdline` as /proc/mounts and /proc/cmdline (a `grep` function maps the paths),
/// runs its preinit_main hooks, then calls `mount_root` as 80_mount_root's do_mount_root does:
/// what the hook printed, and `mount_root ran` when fstools' mount_root would have run.
fn preinit(mounts: &str, cmdline: &str) -> Vec<String> {
    let hook =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../openwrt/files/lib/preinit/79_snapinit");
    let d = tempfile::tempdir().expect("tempdir");
    fs::write(d.path().join("mounts"), mounts).expect("mounts");
    fs::write(d.path().join("cmdline"), cmdline).expect("cmdline");
    let sh = format!(
        "D='{d}'\n\
         grep() {{ a=; for x; do case $x in /proc/*) x=$D/${{x#/proc/}} ;; esac; \
           a=\"$a '$x'\"; done; eval \"command grep $a\"; }}\n\
         hooks=\n\
         boot_hook_add() {{ [ \"$1\" = preinit_main ] || echo \"hook $1\"; hooks=\"$hooks $2\"; }}\n\
         mount_root() {{ echo 'mount_root ran'; }}\n\
         . '{hook}'\n\
         for h in $hooks; do $h; done\n\
         mount_root\n",
        d = d.path().display(),
        hook = hook.display()
    );
    let o = Command::new("busybox")
        .args(["sh", "-c", &sh])
        .output()
        .expect("busybox sh");
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// fstools' mount_root never probes rootfs_data when snapinit was PID 1: over the chain's
/// layers (/snapshot mounted), and on the read-only squashfs of snapinit's last rungs
/// (docs/BOOT.md section 11: no layer, no /snapshot in sight, the chain still on rootfs_data).
/// There mount_root would take the chain for no filesystem and put a tmpfs overlay over / (a
/// writable root: `snapshot health` would judge the boot as one that ran the chain), and
/// /etc/init.d/done's `mount_root done` would then mount the chain as JFFS2, which erases
/// every erase block it cannot parse. Without snapinit on the command line, mount_root runs.
#[test]
fn preinit_leaves_rootfs_data_alone_whenever_snapinit_was_pid_1() {
    let base = "/dev/root /rom squashfs ro,relatime 0 0\nproc /proc proc rw 0 0\n\
                tmpfs /tmp tmpfs rw,nosuid,nodev 0 0\n";
    let layers = format!("{base}snapshot /snapshot tmpfs rw,relatime 0 0\n");
    let snapinit = "console=ttyS0 rootfstype=squashfs init=/sbin/snapinit\n";
    assert_eq!(
        preinit(&layers, snapinit),
        ["- snapinit set up the root: skipping mount_root -"]
    );
    // The read-only rung: snapinit was init, nothing mounted at /snapshot.
    assert_eq!(
        preinit(base, snapinit),
        ["- snapinit left the read-only root: skipping mount_root -"]
    );
    // Not snapinit: OpenWrt's own boot.
    for cmdline in [
        "console=ttyS0 rootfstype=squashfs\n",
        "console=ttyS0 init=/sbin/snapinit2\n",
        "console=ttyS0 init=/sbin/procd snapinit.init=/sbin/snapinit\n",
    ] {
        assert_eq!(preinit(base, cmdline), ["mount_root ran"], "{cmdline}");
    }
}

/// /etc/init.d/snapshot-health and the helper it starts, end to end under busybox sh: the UCI
/// `fleet` section's values, through procd's environment (each `procd_set_param env` pair
/// exported), reach `snapshot fleet publish` one argument each, a password file's path or a
/// unit id with a space in it included; the `snapshot` stub logs its arguments in brackets.
#[test]
fn the_health_service_publishes_each_setting_as_one_argument() {
    let d = stubs(&[]);
    let p = d.path();
    stub(
        p,
        "snapshot",
        &format!(
            "{{ printf snapshot; printf ' [%s]' \"$@\"; echo; }} >>{}",
            p.join("log").display()
        ),
    );
    let init =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../openwrt/files/etc/init.d/snapshot-health");
    let sh = format!(
        "config_load() {{ :; }}\n\
         config_get() {{ eval \"v=\\${{CONFIG_$2_$3-}}\"; [ -n \"$v\" ] || v=${{4-}}; eval \"$1=\\$v\"; }}\n\
         procd_open_instance() {{ :; }}\n\
         procd_close_instance() {{ :; }}\n\
         procd_set_param() {{ case $1 in command) shift; cmd=$1 ;; \
           env) shift; for kv; do export \"$kv\"; done ;; esac; }}\n\
         CONFIG_fleet_mqtt=broker.mesh\n\
         CONFIG_fleet_unit_id='roof 7'\n\
         CONFIG_fleet_mqtt_user=u7\n\
         CONFIG_fleet_mqtt_password_file='/etc/snapshot/mqtt pass'\n\
         . '{init}'\n\
         start_service\n\
         [ \"$cmd\" = /usr/libexec/snapshot-fleet.sh ] || exit 9\n\
         exec busybox sh '{helper}' health\n",
        init = init.display(),
        helper = helper().display()
    );
    let o = Command::new("busybox")
        .args(["sh", "-c", &sh])
        .env("SNAPSHOT", p.join("snapshot"))
        .env("FLEET_REBOOT", p.join("reboot"))
        .env("FLEET_NO_REBOOT", "1")
        .output()
        .expect("busybox sh");
    assert!(o.status.success(), "{o:?}");
    let log = fs::read_to_string(p.join("log")).unwrap_or_default();
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "snapshot [health] [--no-reboot]",
            "snapshot [fleet] [publish] [--mqtt] [broker.mesh] [--retries] [0] [--timeout] [5] \
             [--unit-id] [roof 7] [--channel] [stable] [--mqtt-user] [u7] \
             [--mqtt-password-file] [/etc/snapshot/mqtt pass]",
        ],
        "{o:?}"
    );
}
