//! Unit status over MQTT against a real broker (Debian's mosquitto on a loopback port, started
//! here): N units take a bundle through nginx and publish their state retained; `fleet status
//! --mqtt`, connecting after every unit has gone, sees the whole fleet, and so does mosquitto's
//! own `mosquitto_sub`; the retained states survive a broker restart; with the broker down a
//! poll, a publish and a status read exit 26 with the flash byte-identical, and the next poll
//! publishes again.
//!
//! FLEET_MQTT_UNITS sets the number of units (default 10).

mod cli_common;
mod fleet_common;

use cli_common::*;
use fleet_common::*;
use std::fs;
use std::process::{Command, Output, Stdio};

/// mosquitto's own subscriber: the first `count` retained messages under `topic` (with
/// `with_topic`, each line is "topic payload"); it gives up after 10 s rather than hang.
fn mosquitto_sub(host: &str, port: u16, topic: &str, count: usize, with_topic: bool) -> Output {
    let (port, count) = (port.to_string(), count.to_string());
    let mut args = vec!["-h", host, "-p", &port, "-t", topic];
    if with_topic {
        args.push("-v");
    }
    args.extend(["--retained-only", "-C", &count, "-W", "10"]);
    Command::new("mosquitto_sub")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_sub (scripts/deps.sh installs mosquitto-clients)")
}

fn fleet_json(broker: &str) -> serde_json::Value {
    let out = tool_ok(&[
        "fleet",
        "status",
        "--mqtt",
        broker,
        "--json",
        "--retries",
        "0",
        "--timeout",
        "5",
    ]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn units_publish_retained_state_that_a_later_subscriber_reads_and_a_dead_broker_is_survived() {
    let n: usize = std::env::var("FLEET_MQTT_UNITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let tmp = scratch();
    let d = tmp.path();
    let OneBundle {
        keys,
        template,
        root,
    } = one_bundle(d, 2, 4096);
    let base_id = head(&template);
    let t0 = T0;

    let lo = "127.0.0.1";
    let (p_http, p_mqtt) = (free_port(), free_port());
    let _nginx = Nginx::start(&d.join("nginx"), None, &[(lo, p_http, &root)]);
    let mut broker = Mosquitto::start(&d.join("mosquitto"), None, lo, p_mqtt);
    let mirrors = vec![format!("http://{lo}:{p_http}")];
    let url = broker.url();
    let now = (t0 + 60).to_string();

    // Every unit polls, takes v2 on trial and publishes; the first half then pass their health
    // check (confirmed) and publish again.
    let units = Unit::flash(d, &template, n);
    for u in &units {
        let o = u.poll(
            None,
            &keys.keys_d,
            &mirrors,
            &["--now", &now, "--mqtt", &url],
        );
        assert!(o.status.success(), "{}: {}", u.id, show(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("bundle v2 applied"), "{}: {out}", u.id);
        assert!(
            out.contains(&format!("as snapinit/{}/state (retained", u.id)),
            "{}: {out}",
            u.id
        );
    }
    let v2_id = head(&units[0].img);
    assert_ne!(v2_id, base_id);
    let conf = d.join("health.conf");
    fs::write(&conf, "config health\n\tlist command 'true'\n").expect("health config");
    let healthy = n / 2;
    for u in &units[..healthy] {
        u.boot(); // the reboot into the bundle spends its first trial boot
        let o = u.health(None, &conf);
        assert!(o.status.success(), "{}: {}", u.id, show(&o));
        let o = u.run(None, &["fleet", "publish", "--mqtt", &url], true);
        assert!(o.status.success(), "{}: {}", u.id, show(&o));
    }

    // A subscriber that connects now, after every unit has disconnected, reads the fleet.
    let t = std::time::Instant::now();
    let rep = fleet_json(&url);
    println!(
        "fleet status --mqtt over {n} retained states: {} ms",
        t.elapsed().as_millis()
    );
    let st = &rep["status"];
    assert_eq!(rep["kind"], "FleetReport");
    assert_eq!(st["units"], n, "{rep}");
    assert_eq!(st["chains"].as_array().expect("chains").len(), 1, "{rep}");
    assert_eq!(st["chains"][0]["chainId"], v2_id.as_str());
    assert_eq!(st["chains"][0]["version"], "v2");
    assert_eq!(st["chains"][0]["count"], n);
    let on_trial: Vec<String> = st["onTrial"]
        .as_array()
        .expect("onTrial")
        .iter()
        .map(|v| v.as_str().expect("unit").to_string())
        .collect();
    let want: Vec<String> = units[healthy..].iter().map(|u| u.id.clone()).collect();
    assert_eq!(on_trial, want, "the units that did not pass health");
    assert_eq!(st["rolledBack"].as_array().expect("rolledBack").len(), 0);

    // mosquitto's own client sees the same retained documents (another implementation of the
    // subscriber side; -C: exit after n messages, -W: give up after 10 s rather than hang).
    let o = mosquitto_sub(lo, p_mqtt, "snapinit/+/state", n, true);
    assert!(o.status.success(), "mosquitto_sub: {}", show(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for u in &units {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("snapinit/{}/state ", u.id)))
            .unwrap_or_else(|| panic!("{}: not retained:\n{text}", u.id));
        let doc: serde_json::Value =
            serde_json::from_str(line.split_once(' ').expect("topic payload").1).expect("json");
        assert_eq!(doc["kind"], "UnitStatus");
        assert_eq!(doc["status"]["unit"], u.id.as_str());
        assert_eq!(doc["status"]["chainId"], v2_id.as_str());
        let passed = units[..healthy].iter().any(|h| h.id == u.id);
        assert_eq!(doc["status"]["onTrial"], !passed, "{line}");
        if passed {
            assert_eq!(doc["status"]["lastHealth"]["ok"], true, "{line}");
        }
    }

    // Retained states survive a broker restart (mosquitto persists them).
    broker.stop();
    broker.restart();
    assert_eq!(fleet_json(&url)["status"]["units"], n);

    // Broker down: a poll (nothing to take), a publish and a status read exit 26; flash
    // untouched; the unit keeps working.
    broker.stop();
    let u = &units[0];
    let before = fs::read(&u.img).expect("image");
    let o = u.poll(
        None,
        &keys.keys_d,
        &mirrors,
        &["--now", &now, "--mqtt", &url],
    );
    assert_eq!(o.status.code(), Some(26), "poll, broker down: {}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("status not published"), "{err}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("up to date"),
        "{}",
        show(&o)
    );
    let o = u.run(
        None,
        &[
            "fleet",
            "publish",
            "--mqtt",
            &url,
            "--retries",
            "1",
            "--backoff-ms",
            "10",
        ],
        true,
    );
    assert_eq!(
        o.status.code(),
        Some(26),
        "publish, broker down: {}",
        show(&o)
    );
    let o = Command::new(bin())
        .args([
            "fleet",
            "status",
            "--mqtt",
            &url,
            "--retries",
            "0",
            "--timeout",
            "2",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(
        o.status.code(),
        Some(26),
        "status, broker down: {}",
        show(&o)
    );
    assert!(
        fs::read(&u.img).expect("image") == before,
        "the image changed"
    );

    // The broker is back: the next poll publishes the unit's newest state.
    broker.restart();
    let o = u.poll(
        None,
        &keys.keys_d,
        &mirrors,
        &["--now", &now, "--mqtt", &url],
    );
    assert!(o.status.success(), "{}", show(&o));
    let rep = fleet_json(&url);
    assert_eq!(rep["status"]["units"], n);
    let o = mosquitto_sub(lo, p_mqtt, &format!("snapinit/{}/state", u.id), 1, false);
    let doc: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    let detail = doc["status"]["lastPoll"]["detail"].as_str().unwrap_or("");
    assert!(detail.contains("up to date"), "{doc}");
}

#[test]
fn the_broker_keeps_the_failed_verdict_that_names_a_rollback_after_the_unit_lost_it() {
    let tmp = scratch();
    let d = tmp.path();
    let OneBundle {
        keys,
        template,
        root,
    } = one_bundle(d, 1, 0);
    let t0 = T0;
    let lo = "127.0.0.1";
    let (p_http, p_mqtt) = (free_port(), free_port());
    let _nginx = Nginx::start(&d.join("nginx"), None, &[(lo, p_http, &root)]);
    let broker = Mosquitto::start(&d.join("mosquitto"), None, lo, p_mqtt);
    let url = broker.url();
    let u = &Unit::flash(d, &template, 1)[0];
    let publish = || {
        let o = u.run(None, &["fleet", "publish", "--mqtt", &url], true);
        assert!(o.status.success(), "{}", show(&o));
    };
    // A reboot of a real unit: the state directory is RAM.
    let reboot = || {
        let _ = fs::remove_dir_all(&u.state);
        u.boot();
    };

    let o = u.poll(
        None,
        &keys.keys_d,
        &[format!("http://{lo}:{p_http}")],
        &["--now", &(t0 + 60).to_string(), "--mqtt", &url],
    );
    assert!(o.status.success(), "{}", show(&o));
    reboot();
    // The check fails on the one trial boot; the verdict is published (the health service
    // does so before it reboots the unit), also under snapinit/<unit>/health.
    let conf = d.join("health.conf");
    fs::write(
        &conf,
        "config health\n\tlist command 'test -e /nonexistent/mesh-ok'\n",
    )
    .expect("config");
    let o = u.health(None, &conf);
    assert_eq!(o.status.code(), Some(17), "{}", show(&o));
    publish();
    let o = mosquitto_sub(lo, p_mqtt, &format!("snapinit/{}/health", u.id), 1, false);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&o)));
    assert_eq!(v["ok"], false, "{v}");
    // The reboot rolls back and empties the RAM: the unit itself can only say which kind of
    // check failed (its block's failed-check marks). The fleet view joins the words of the
    // verdict the broker kept for that very block.
    reboot();
    publish();
    let o = u.run(None, &["fleet", "status", "--json"], true);
    let own: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let own_r = &own["status"]["lastRollback"];
    assert_eq!(own_r["reason"], "healthCheckFailed", "{own}");
    assert_eq!(
        own_r["detail"], "failed on a trial boot: command (from the block's marks on flash)",
        "{own}"
    );
    let rep = fleet_json(&url);
    let r = &rep["status"]["rolledBack"][0];
    assert_eq!(r["unit"], u.id.as_str(), "{rep}");
    assert_eq!(r["reason"], "healthCheckFailed", "{rep}");
    assert!(
        r["detail"]
            .as_str()
            .expect("detail")
            .contains("test -e /nonexistent/mesh-ok"),
        "{rep}"
    );
}

/// A broker set up as docs/FLEET.md says for production: no anonymous clients, one login per
/// unit that may only write its own topics, one for the operator that may only read.
#[test]
fn units_and_the_operator_log_in_and_the_broker_holds_each_to_its_own_topics() {
    let tmp = scratch();
    let d = tmp.path();
    let OneBundle { template, .. } = one_bundle(d, 1, 0);
    let lo = "127.0.0.1";
    let port = free_port();
    let broker = Mosquitto::start_with_logins(
        &d.join("mosquitto"),
        lo,
        port,
        &[("unit-00", "pw-0"), ("unit-01", "pw-1"), ("ops", "pw-ops")],
        // `fleet status` marks the end of the retained messages on its own client's topic.
        "pattern write snapinit/%u/#\npattern readwrite snapinit/%c/end\n\
         user ops\ntopic read snapinit/#\n",
    );
    let url = broker.url();
    let units = Unit::flash(d, &template, 2);
    let pw = |name: &str, text: &str| {
        let p = d.join(name);
        fs::write(&p, text).expect("password file");
        p
    };
    let (pw0, pw1, pw_ops, wrong) = (
        pw("pw0", "pw-0\n"),
        pw("pw1", "pw-1\n"),
        pw("pw-ops", "pw-ops\n"),
        pw("wrong", "pw-1\n"),
    );
    let publish = |u: &Unit, login: &[&str]| {
        let mut a = vec!["fleet", "publish", "--mqtt", &url, "--retries", "0"];
        a.extend_from_slice(login);
        u.run(None, &a, true)
    };
    let before: Vec<Vec<u8>> = units
        .iter()
        .map(|u| fs::read(&u.img).expect("img"))
        .collect();

    // Without a login, and with another unit's password: refused by the broker (exit 26).
    let o = publish(&units[0], &[]);
    assert_eq!(o.status.code(), Some(26), "{}", show(&o));
    assert!(show(&o).contains("refused the connection"), "{}", show(&o));
    let o = publish(
        &units[0],
        &["--mqtt-user", "unit-00", "--mqtt-password-file", s(&wrong)],
    );
    assert_eq!(o.status.code(), Some(26), "{}", show(&o));
    assert!(show(&o).contains("refused the connection"), "{}", show(&o));
    // A password file that is not there is a configuration error (18), before any connection.
    let o = publish(
        &units[0],
        &[
            "--mqtt-user",
            "unit-00",
            "--mqtt-password-file",
            "/nonexistent/pw",
        ],
    );
    assert_eq!(o.status.code(), Some(18), "{}", show(&o));
    // A user without a password file is a usage error.
    let o = publish(&units[0], &["--mqtt-user", "unit-00"]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));

    // Each unit with its own login.
    let o = publish(
        &units[0],
        &["--mqtt-user", "unit-00", "--mqtt-password-file", s(&pw0)],
    );
    assert!(o.status.success(), "{}", show(&o));
    // unit-01's login used to publish as unit-00 (a stolen unit posing as another, here on
    // another channel): the broker takes the packet but, by its ACL, keeps nothing under
    // unit-00's topic. Then unit-01 as itself.
    let as_unit = |id: &str, channel: &str| {
        run_in(
            None,
            &units[1].img,
            &[
                "--erase-size",
                "4096",
                "fleet",
                "publish",
                "--mqtt",
                &url,
                "--retries",
                "0",
                "--mqtt-user",
                "unit-01",
                "--mqtt-password-file",
                s(&pw1),
                "--state",
                s(&units[1].state),
                "--unit-id",
                id,
                "--channel",
                channel,
            ],
        )
    };
    let o = as_unit("unit-00", "beta");
    assert!(o.status.success(), "{}", show(&o));
    let o = as_unit("unit-01", "stable");
    assert!(o.status.success(), "{}", show(&o));

    // The operator reads the fleet with its login; anonymously it cannot.
    let status = |login: &[&str]| {
        let mut a = vec![
            "fleet",
            "status",
            "--mqtt",
            &url,
            "--json",
            "--retries",
            "0",
            "--timeout",
            "5",
        ];
        a.extend_from_slice(login);
        cmd_in(None, &bin())
            .args(&a)
            .stdin(Stdio::null())
            .output()
            .expect("run snapshot")
    };
    let o = status(&[]);
    assert_eq!(o.status.code(), Some(26), "{}", show(&o));
    let o = status(&["--mqtt-user", "ops", "--mqtt-password-file", s(&pw_ops)]);
    assert!(o.status.success(), "{}", show(&o));
    let rep: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(rep["status"]["units"], 2, "{rep}");
    let chains = rep["status"]["chains"].as_array().expect("chains");
    assert_eq!(chains.len(), 1, "the impostor's document was kept: {rep}");
    assert_eq!(chains[0]["channel"], "stable", "{rep}");
    assert_eq!(
        chains[0]["units"],
        serde_json::json!(["unit-00", "unit-01"]),
        "{rep}"
    );
    // Reports never touch flash.
    for (u, b) in units.iter().zip(&before) {
        assert!(fs::read(&u.img).expect("img") == *b, "{} changed", u.id);
    }
}

/// mosquitto's own publisher: `payload` retained under `topic` (what a stolen broker, or anyone
/// who may publish there, can leave for `fleet status --mqtt`); `login`: `-u NAME -P PASSWORD`.
fn mosquitto_pub(broker: &Mosquitto, login: &[&str], topic: &str, payload: &str) {
    let port = broker.port.to_string();
    let o = Command::new("mosquitto_pub")
        .args([
            "-h",
            &broker.addr,
            "-p",
            &port,
            "-r",
            "-t",
            topic,
            "-m",
            payload,
        ])
        .args(login)
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_pub (scripts/deps.sh installs mosquitto-clients)");
    assert!(o.status.success(), "mosquitto_pub: {}", show(&o));
}

#[test]
fn a_hostile_chain_id_does_not_crash_the_fleet_view() {
    let tmp = scratch();
    let d = tmp.path();
    let lo = "127.0.0.1";
    let broker = Mosquitto::start(&d.join("mosquitto"), None, lo, free_port());
    // 17 bytes: the 16th falls inside the last 'é'; the chain id is cut to 16 for display.
    let chain = format!("a{}", "é".repeat(8));
    mosquitto_pub(
        &broker,
        &[],
        "snapinit/u1/state",
        &serde_json::json!({"apiVersion": "snapinit.fleet/v1", "kind": "UnitStatus",
            "status": {"unit": "u1", "chainId": chain, "version": "v2", "channel": "stable"}})
        .to_string(),
    );
    let html = d.join("fleet.html");
    let url = broker.url();
    for extra in [&["--json"][..], &[][..]] {
        let mut a = vec![
            "fleet",
            "status",
            "--mqtt",
            &url,
            "--retries",
            "0",
            "--timeout",
            "5",
            "--html",
            s(&html),
        ];
        a.extend_from_slice(extra);
        let out = tool_ok(&a);
        assert!(out.contains("u1") || out.contains("1 unit"), "{out}");
    }
    let page = fs::read_to_string(&html).expect("html");
    assert!(page.contains("Fleet: 1 unit(s)"), "{page}");
}

#[test]
fn a_unit_cannot_pose_as_another_in_the_fleet_view_by_the_id_in_its_document() {
    let tmp = scratch();
    let d = tmp.path();
    let lo = "127.0.0.1";
    let broker = Mosquitto::start_with_logins(
        &d.join("mosquitto"),
        lo,
        free_port(),
        &[("unit-03", "pw-3"), ("unit-07", "pw-7"), ("ops", "pw-ops")],
        "pattern write snapinit/%u/#\npattern readwrite snapinit/%c/end\n\
         user ops\ntopic read snapinit/#\n",
    );
    let doc = |unit: &str, version: &str| {
        serde_json::json!({"apiVersion": "snapinit.fleet/v1", "kind": "UnitStatus",
            "status": {"unit": unit, "chainId": "00", "version": version, "channel": "stable",
                "lastRollback": {"reason": "trialExhausted", "version": "v2", "detail": "x"}}})
        .to_string()
    };
    mosquitto_pub(
        &broker,
        &["-u", "unit-03", "-P", "pw-3"],
        "snapinit/unit-03/state",
        &doc("unit-03", "v1"),
    );
    // unit-07, under the only topic its login may write, claims to be unit-03.
    mosquitto_pub(
        &broker,
        &["-u", "unit-07", "-P", "pw-7"],
        "snapinit/unit-07/state",
        &doc("unit-03", "v9"),
    );
    let pw = d.join("pw-ops");
    fs::write(&pw, "pw-ops\n").expect("password file");
    let url = broker.url();
    let out = tool_ok(&[
        "fleet",
        "status",
        "--mqtt",
        &url,
        "--json",
        "--retries",
        "0",
        "--timeout",
        "5",
        "--mqtt-user",
        "ops",
        "--mqtt-password-file",
        s(&pw),
    ]);
    let rep: serde_json::Value = serde_json::from_str(&out).expect("json");
    let by_version = |v: &str| {
        rep["status"]["chains"]
            .as_array()
            .expect("chains")
            .iter()
            .find(|c| c["version"] == v)
            .map(|c| c["units"].clone())
    };
    assert_eq!(
        by_version("v1"),
        Some(serde_json::json!(["unit-03"])),
        "{rep}"
    );
    assert_eq!(
        by_version("v9"),
        Some(serde_json::json!(["unit-07"])),
        "{rep}"
    );
    let rolled: Vec<_> = rep["status"]["rolledBack"]
        .as_array()
        .expect("rolled back")
        .iter()
        .map(|r| r["unit"].clone())
        .collect();
    assert_eq!(
        rolled,
        [serde_json::json!("unit-03"), serde_json::json!("unit-07")],
        "{rep}"
    );
}

#[test]
fn a_volatile_saved_on_trial_is_published_as_on_trial() {
    let tmp = scratch();
    let d = tmp.path();
    let u = &Unit::flash(d, &template(d), 1)[0];
    let upper = d.join("upper");
    fs::create_dir_all(upper.join("etc")).expect("mkdir");
    fs::write(upper.join("etc/network"), "changed").expect("write");
    let o = u.run(None, &["save", "--upper", s(&upper), "--trial", "2"], false);
    assert!(o.status.success(), "{}", show(&o));
    let o = u.run(None, &["fleet", "status", "--json"], true);
    assert!(o.status.success(), "{}", show(&o));
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    // `snapshot health` judges it, `fleet poll` waits for it: the unit is on trial.
    assert_eq!(st["status"]["onTrial"], true, "{st}");
}

#[test]
fn a_unit_id_or_password_too_long_for_mqtt_is_refused_not_a_panic() {
    let tmp = scratch();
    let d = tmp.path();
    let lo = "127.0.0.1";
    let broker = Mosquitto::start(&d.join("mosquitto"), None, lo, free_port());
    let url = broker.url();
    let u = &Unit::flash(d, &template(d), 1)[0];
    // MQTT strings have 16-bit lengths: client id `snapinit-<unit>`, user name, password.
    let long = "u".repeat(65_530);
    let pw = d.join("pw");
    fs::write(&pw, format!("{}\n", "p".repeat(70_000))).expect("password file");
    for (unit, login) in [
        (long.as_str(), &[][..]),
        (
            u.id.as_str(),
            &["--mqtt-user", "x", "--mqtt-password-file", s(&pw)][..],
        ),
    ] {
        let mut a = vec![
            "--erase-size",
            "4096",
            "fleet",
            "publish",
            "--mqtt",
            &url,
            "--retries",
            "0",
            "--state",
            s(&u.state),
            "--unit-id",
            unit,
        ];
        a.extend_from_slice(login);
        let o = run_in(None, &u.img, &a);
        assert!(
            !o.status.success() && o.status.code().is_some_and(|c| c != 101),
            "{}",
            show(&o)
        );
        assert!(!show(&o).contains("panicked"), "{}", show(&o));
    }
}
