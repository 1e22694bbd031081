//! `snapshot fleet poll` against real nginx mirrors (Debian's nginx, started here on loopback
//! ports, stopped at the end): N units as image files, each with its own state directory, take a
//! signed bundle staggered as the channel's rollout says; a mirror that is down and one whose
//! copy is cut mid-way are survived (HTTP Range resume on the next mirror); unsigned, stale,
//! oversized and unreachable are refused with the image byte-identical.
//!
//! FLEET_UNITS sets the number of units (default 20).

mod cli_common;
mod fleet_common;

use cli_common::*;
use fleet_common::*;
use snapshot::fleet::channel::{jitter, rollout};
use std::fs;
use std::path::Path;
use std::process::Output;

fn poll(u: &Unit, keys: &Path, mirrors: &[String], extra: &[&str]) -> Output {
    u.poll(None, keys, mirrors, extra)
}

/// A poll that must refuse with `code` and leave the image byte-identical.
fn refused(u: &Unit, keys: &Path, mirrors: &[String], extra: &[&str], code: i32, why: &str) {
    let before = fs::read(&u.img).expect("image");
    let o = poll(u, keys, mirrors, extra);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{why}: wrong exit code:\n{}",
        show(&o)
    );
    assert!(
        fs::read(&u.img).expect("image") == before,
        "{why}: the image changed"
    );
}

#[test]
fn a_signed_bundle_reaches_every_unit_staggered_through_nginx_mirrors() {
    let n: usize = std::env::var("FLEET_UNITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = scratch();
    let d = tmp.path();

    // Keys: two, both required.
    let keys = d.join("keys.d");
    fs::create_dir_all(&keys).expect("keys.d");
    for k in ["a", "b"] {
        tool_ok(&["bundle", "keygen", s(&d.join(k))]);
        let fp = tool_ok(&["bundle", "fingerprint", s(&d.join(format!("{k}.pub")))]);
        fs::copy(d.join(format!("{k}.pub")), keys.join(fp.trim())).expect("install key");
    }
    let sign = |f: &Path| {
        for k in ["a", "b"] {
            tool_ok(&[
                "bundle",
                "sign",
                "--key",
                s(&d.join(format!("{k}.sec"))),
                s(f),
            ]);
        }
    };

    // The firmware every unit runs: one snapshot.
    let template = template(d);
    let base_id = head(&template);

    // The update: a new config and a few KiB of new files.
    let up = d.join("v2");
    fs::create_dir_all(up.join("etc/config")).expect("mkdir");
    fs::create_dir_all(up.join("usr/lib/mesh")).expect("mkdir");
    fs::write(up.join("etc/config/network"), "v2\n").expect("write");
    for i in 0..8 {
        fs::write(
            up.join(format!("usr/lib/mesh/part{i}.bin")),
            noise(40_000, i),
        )
        .expect("write");
    }
    let root = d.join("mirror-good");
    let bdir = root.join("bundles/v2");
    tool_ok(&[
        "--device",
        s(&template),
        "--erase-size",
        "4096",
        "bundle",
        "create",
        "--base",
        s(&template),
        "--upper",
        s(&up),
        "-o",
        s(&bdir),
        "--bundle-version",
        "v2",
        "--trial",
        "3",
    ]);
    sign(&bdir);
    let t0: u64 = 1_800_000_000;
    let priority_days = 1.0;
    tool_ok(&[
        "bundle",
        "channel",
        "--root",
        s(&root),
        "--channel",
        "stable",
        "--priority",
        "1",
        "--published",
        &t0.to_string(),
        "bundles/v2",
    ]);
    sign(&root.join("stable.json"));

    // Mirror "cut": its copy of the payload stops half-way.
    let cut = d.join("mirror-cut");
    copy_tree(&root, &cut);
    let payload = bdir.join("payload.tar.gz");
    let plen = fs::metadata(&payload).expect("payload").len();
    let half = fs::read(&payload).expect("payload")[..(plen / 2) as usize].to_vec();
    fs::write(cut.join("bundles/v2/payload.tar.gz"), half).expect("cut");
    // Mirror "unsigned": the channel without its signatures.
    let unsigned = d.join("mirror-unsigned");
    copy_tree(&root, &unsigned);
    fs::remove_file(unsigned.join("stable.json.sig")).expect("rm");
    // Mirror "stale": an older channel manifest, properly signed.
    let stale = d.join("mirror-stale");
    copy_tree(&root, &stale);
    tool_ok(&[
        "bundle",
        "channel",
        "--root",
        s(&stale),
        "--channel",
        "stable",
        "--priority",
        "1",
        "--published",
        &(t0 - 86_400).to_string(),
        "bundles/v2",
    ]);
    sign(&stale.join("stable.json"));
    // A rollout every unit would refuse (exit 23) is refused when the channel is written.
    for bad in ["--priority=-1", "--priority=NaN", "--priority=inf"] {
        let o = std::process::Command::new(bin())
            .args([
                "bundle",
                "channel",
                "--root",
                s(&stale),
                "--channel",
                "stable",
                bad,
            ])
            .arg("bundles/v2")
            .output()
            .expect("run snapshot");
        assert!(!o.status.success(), "{bad}: {}", show(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("priority"),
            "{bad}: {}",
            show(&o)
        );
    }
    assert!(
        fs::read(stale.join("stable.json.sig")).is_ok(),
        "a refused channel removed the signed one"
    );

    let (p_good, p_cut, p_unsigned, p_stale, p_down) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let lo = "127.0.0.1";
    let _nginx = Nginx::start(
        &d.join("nginx"),
        None,
        &[
            (lo, p_good, &root),
            (lo, p_cut, &cut),
            (lo, p_unsigned, &unsigned),
            (lo, p_stale, &stale),
        ],
    );
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let mirrors = vec![url(p_down), url(p_cut), url(p_good)];

    let units = Unit::flash(d, &template, n);

    // Refusals first, on unit 0, each with the image unchanged.
    let u0 = &units[0];
    refused(u0, &keys, &[url(p_unsigned)], &[], 19, "unsigned channel");
    refused(u0, &keys, &[url(p_down)], &[], 25, "no mirror");
    refused(
        u0,
        &keys,
        &mirrors,
        &[
            "--in-order",
            "--max-size",
            "1000",
            "--now",
            &(t0 + 86_400).to_string(),
        ],
        22,
        "oversized",
    );
    // Taken once (published t0, too early to act), an older manifest is a replay.
    let o = poll(u0, &keys, &[url(p_good)], &["--now", &t0.to_string()]);
    assert!(o.status.success(), "{}", show(&o));
    refused(u0, &keys, &[url(p_stale)], &[], 24, "stale channel");

    // The rollout: every 2 hours over the PRIORITY day (and a step past it), every unit polls.
    let mut taken_at: Vec<Option<usize>> = vec![None; n];
    let mut timeline = Vec::new();
    let mut resumed = 0;
    let steps = 13;
    for k in 0..steps {
        let now = t0 + k as u64 * 7_200;
        for (i, u) in units.iter().enumerate() {
            if taken_at[i].is_some() {
                continue;
            }
            // The cut mirror first for every other unit: the resume path runs for certain.
            let o = if i % 2 == 0 {
                poll(
                    u,
                    &keys,
                    &mirrors,
                    &["--in-order", "--now", &now.to_string()],
                )
            } else {
                poll(u, &keys, &mirrors, &["--now", &now.to_string()])
            };
            assert!(o.status.success(), "unit {i} at step {k}:\n{}", show(&o));
            let err = String::from_utf8_lossy(&o.stderr);
            if err.contains("resumed") {
                resumed += 1;
            }
            if head(&u.img) != base_id {
                taken_at[i] = Some(k);
            }
            // The decision is the rollout's: take iff p(t) > the unit's point.
            let p = rollout(now as i64 - t0 as i64, priority_days);
            let should = p > jitter(&u.id, "v2");
            assert_eq!(
                taken_at[i].is_some(),
                should,
                "unit {i} at step {k}: p {p}:\n{}",
                show(&o)
            );
        }
        let done = taken_at.iter().filter(|t| t.is_some()).count();
        timeline.push((k * 2, rollout(k as i64 * 7_200, priority_days), done));
    }
    println!("rollout over {priority_days} day(s), {n} units: hour, p(t), units on v2");
    for (h, p, done) in &timeline {
        println!("  {h:>2} h  p={p:.3}  {done:>2}/{n}");
    }
    println!(
        "payload {plen} bytes; {resumed} download(s) resumed on the next mirror after the cut one"
    );
    assert_eq!(timeline[0].2, 0, "nobody takes the bundle at publication");
    assert_eq!(
        timeline[steps - 1].2,
        n,
        "every unit has it after PRIORITY days"
    );
    assert!(resumed > 0, "no download was resumed after the cut mirror");

    // Every unit: the same chain, snapshot 2 on trial, the same content.
    let want = head(&units[0].img);
    let ref_tree = d.join("x-ref");
    ok(
        &units[0].img,
        &["--erase-size", "4096", "extract", "all", s(&ref_tree)],
    );
    for u in &units {
        assert_eq!(head(&u.img), want, "{}: another chain", u.id);
        let i = info(&u.img);
        assert_eq!(i["snapshots"][1]["trial_budget"], 3, "{}", u.id);
        assert_eq!(i["snapshots"][1]["confirmed"], false, "{}", u.id);
        let x = d.join(format!("x-{}", u.id));
        ok(&u.img, &["--erase-size", "4096", "extract", "all", s(&x)]);
        assert_same_tree(&x, &ref_tree);
    }
    // The status document of a unit that took it.
    let u = &units[3];
    let st = ok(
        &u.img,
        &[
            "--erase-size",
            "4096",
            "fleet",
            "status",
            "--json",
            "--state",
            s(&u.state),
            "--unit-id",
            &u.id,
        ],
    );
    let st: serde_json::Value = serde_json::from_str(&st).expect("status json");
    assert_eq!(st["apiVersion"], "snapinit.fleet/v1");
    assert_eq!(st["kind"], "UnitStatus");
    assert_eq!(st["status"]["unit"], u.id.as_str());
    assert_eq!(st["status"]["version"], "v2");
    assert_eq!(st["status"]["chainId"], want.as_str());
    assert_eq!(st["status"]["onTrial"], true);
    assert_eq!(st["status"]["snapshots"][1]["trial"], "onTrial");
    assert_eq!(st["status"]["channelPublished"], t0);
    // The fleet summed up from every unit's status document.
    let mut docs = Vec::new();
    for u in &units {
        let st = ok(
            &u.img,
            &[
                "--erase-size",
                "4096",
                "fleet",
                "status",
                "--json",
                "--state",
                s(&u.state),
                "--unit-id",
                &u.id,
            ],
        );
        let f = d.join(format!("status-{}.json", u.id));
        fs::write(&f, st).expect("status");
        docs.push(f);
    }
    let html = d.join("fleet.html");
    let mut args = vec!["fleet", "report", "--json", "--html", s(&html)];
    args.extend(docs.iter().map(|p| s(p)));
    let rep: serde_json::Value = serde_json::from_str(&tool_ok(&args)).expect("report json");
    assert_eq!(rep["kind"], "FleetReport");
    assert_eq!(rep["status"]["units"], n);
    assert_eq!(rep["status"]["chains"].as_array().expect("chains").len(), 1);
    assert_eq!(rep["status"]["chains"][0]["chainId"], want.as_str());
    assert_eq!(rep["status"]["chains"][0]["version"], "v2");
    assert_eq!(rep["status"]["chains"][0]["count"], n);
    assert_eq!(
        rep["status"]["onTrial"].as_array().expect("on trial").len(),
        n
    );
    let page = fs::read_to_string(&html).expect("html");
    assert!(page.contains(&format!("Fleet: {n} unit(s)")) && page.contains("v2"));

    // Polling again: up to date, nothing written.
    let before = fs::read(&units[1].img).expect("image");
    let o = poll(&units[1], &keys, &mirrors, &[]);
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("up to date"),
        "{}",
        show(&o)
    );
    assert!(fs::read(&units[1].img).expect("image") == before);
}

#[test]
fn a_channel_manifest_past_its_expiry_is_refused_with_flash_unchanged() {
    let tmp = scratch();
    let d = tmp.path();
    let keys = Keys::new(d);
    let template = template(d);
    let root = d.join("mirror");
    bundle(&keys, &root, &template, "v2", 2, 0);
    let t0: u64 = 1_800_000_000;
    channel(
        &keys,
        &root,
        t0,
        "0",
        &["--expires-days", "2", "bundles/v2"],
    );
    let m: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("stable.json")).expect("channel"))
            .expect("json");
    assert_eq!(m["spec"]["expires"], t0 + 2 * 86_400);
    // A manifest that expires when it is published is malformed (23), even signed.
    let bad = d.join("mirror-bad");
    copy_tree(&root, &bad);
    let mut m2 = m.clone();
    m2["spec"]["expires"] = serde_json::json!(t0);
    fs::write(bad.join("stable.json"), m2.to_string()).expect("write");
    fs::remove_file(bad.join("stable.json.sig")).expect("rm");
    keys.sign(&bad.join("stable.json"));

    let lo = "127.0.0.1";
    let (p, p_bad) = (free_port(), free_port());
    let _nginx = Nginx::start(&d.join("nginx"), None, &[(lo, p, &root), (lo, p_bad, &bad)]);
    let mirrors = vec![format!("http://{lo}:{p}")];
    let u = &Unit::flash(d, &template, 1)[0];

    // At expiry and after it: refused (27), flash byte-identical, nothing recorded as taken.
    for now in [t0 + 2 * 86_400, t0 + 30 * 86_400] {
        refused(
            u,
            &keys.keys_d,
            &mirrors,
            &["--now", &now.to_string()],
            27,
            "expired",
        );
    }
    assert!(
        !u.state.join("stable.published").exists(),
        "an expired manifest was recorded as taken"
    );
    refused(
        u,
        &keys.keys_d,
        &[format!("http://{lo}:{p_bad}")],
        &["--now", &(t0 + 60).to_string()],
        23,
        "expires at publication",
    );
    // Before expiry: taken.
    let o = poll(
        u,
        &keys.keys_d,
        &mirrors,
        &["--now", &(t0 + 86_400).to_string()],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("bundle v2 applied"),
        "{}",
        show(&o)
    );
}

/// `fleet status --json` of `u`: its `status` object.
fn unit_status(u: &Unit) -> serde_json::Value {
    let o = u.run(None, &["fleet", "status", "--json"], true);
    assert!(o.status.success(), "{}", show(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    v["status"].clone()
}

/// A reboot of a real unit: the state directory is RAM (the overlay's volatile layer), so it
/// is gone; then PID 1's trial mark.
fn reboot(u: &Unit) {
    let _ = fs::remove_dir_all(&u.state);
    u.boot();
}

#[test]
fn what_the_fleet_reports_survives_the_reboots_that_empty_the_state_directory() {
    let tmp = scratch();
    let d = tmp.path();
    let OneBundle {
        keys,
        template,
        root,
    } = one_bundle(d, 1, 0);
    let t0 = T0;
    let payload_sha = {
        let m: serde_json::Value = serde_json::from_slice(
            &fs::read(root.join("bundles/v2/manifest.json")).expect("manifest"),
        )
        .expect("json");
        m["spec"]["payload"]["sha256"]
            .as_str()
            .expect("sha")
            .to_string()
    };
    let lo = "127.0.0.1";
    let p = free_port();
    let _nginx = Nginx::start(&d.join("nginx"), None, &[(lo, p, &root)]);
    let mirrors = vec![format!("http://{lo}:{p}")];
    let now = (t0 + 60).to_string();
    let units = Unit::flash(d, &template, 2);
    let poll = |u: &Unit| {
        let o = u.poll(None, &keys.keys_d, &mirrors, &["--now", &now]);
        assert!(o.status.success(), "{}: {}", u.id, show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let pass = d.join("pass.conf");
    fs::write(&pass, "config health\n\tlist command 'true'\n").expect("config");
    let broken = d.join("broken.conf");
    fs::write(&broken, "config health\n\tlist command 'false'\n").expect("config");

    // Unit 0 takes v2 and keeps it: after the reboot into it the state directory is empty, and
    // the next poll learns the version it runs from the signed manifest of its top snapshot.
    let (good, bad) = (&units[0], &units[1]);
    assert!(poll(good).contains("bundle v2 applied"));
    reboot(good);
    assert!(unit_status(good)["version"].is_null());
    assert!(poll(good).contains("up to date"));
    assert_eq!(unit_status(good)["version"], "v2");
    let o = good.health(None, &pass);
    assert!(o.status.success(), "{}", show(&o));
    // The next reboot empties it again: the verdict is read from the confirm mark on flash.
    reboot(good);
    let st = unit_status(good);
    assert_eq!(st["onTrial"], false, "{st}");
    assert_eq!(st["lastHealth"]["ok"], true, "{st}");
    assert_eq!(st["lastHealth"]["source"], "flash", "{st}");
    assert_eq!(st["lastHealth"]["snapshot"], 2, "{st}");
    assert_eq!(st["snapshots"][1]["trial"], "confirmed", "{st}");
    assert_eq!(st["snapshots"][1]["trialBudget"], 1, "{st}");
    assert_eq!(st["snapshots"][1]["trialsUsed"], 1, "{st}");
    assert!(st["lastRollback"].is_null(), "{st}");

    // Unit 1 takes v2, fails its health check and reboots: its one trial boot is spent, the
    // boot after rolls back. Every reboot emptied the state directory.
    assert!(poll(bad).contains("bundle v2 applied"));
    reboot(bad);
    let o = bad.health(None, &broken);
    assert_eq!(o.status.code(), Some(17), "{}", show(&o));
    reboot(bad);
    // The rollback is on flash: found, with the payload and the kind of check that failed
    // (the block's failed-check marks), but the version and the verdict's words went with
    // the RAM.
    let st = unit_status(bad);
    let r = &st["lastRollback"];
    assert_eq!(r["payloadSha256"], payload_sha.as_str(), "{st}");
    assert_eq!(r["reason"], "healthCheckFailed", "{st}");
    assert_eq!(
        r["detail"], "failed on a trial boot: command (from the block's marks on flash)",
        "{st}"
    );
    assert!(r["version"].is_null(), "{st}");
    // Another reboot (the rolled-back block stays on flash until the next write): the poll
    // finds the rollback again, knows the bundle by its payload, and does not take it.
    reboot(bad);
    let before = fs::read(&bad.img).expect("image");
    let out = poll(bad);
    assert!(
        out.contains("not taking bundle v2 again: it rolled back on this unit (healthCheckFailed"),
        "{out}"
    );
    assert!(fs::read(&bad.img).expect("image") == before, "retaken");
    // And the record now names the version.
    let st = unit_status(bad);
    assert_eq!(st["lastRollback"]["version"], "v2", "{st}");
    assert_eq!(st["chainId"], head(&template), "{st}");
}

/// A rollback found on flash after a reboot has no version; the next poll names it from the
/// bundle whose signed manifest has its payload. A mirror (or anyone on the path: plain HTTP)
/// that answers the manifest of the fix, v3, with the signed manifest of v2, which rolled back
/// here, must not get v2's record named v3: a unit skips every bundle whose version a
/// rollback record names, so that one answer kept it from the fix for good, from honest
/// mirrors too. A manifest that is not the bundle its channel entry names is refused (23).
#[test]
fn a_rolled_back_bundles_manifest_served_for_the_fix_does_not_block_the_fix() {
    let tmp = scratch();
    let d = tmp.path();
    let OneBundle {
        keys,
        template,
        root,
    } = one_bundle(d, 1, 0);
    let lo = "127.0.0.1";
    let (p, q) = (free_port(), free_port());
    let evil = d.join("evil");
    let units = Unit::flash(d, &template, 1);
    let u = &units[0];
    let fail = d.join("broken.conf");
    fs::write(&fail, "config health\n\tlist command 'false'\n").expect("config");
    {
        let _nginx = Nginx::start(&d.join("nginx0"), None, &[(lo, p, &root)]);
        let mirrors = vec![format!("http://{lo}:{p}")];
        let o = poll(
            u,
            &keys.keys_d,
            &mirrors,
            &["--now", &(T0 + 60).to_string()],
        );
        assert!(o.status.success(), "{}", show(&o));
    }
    // v2 fails its health check and rolls back; every reboot empties the state directory.
    let reboot = |u: &Unit| {
        let _ = fs::remove_dir_all(&u.state);
        u.boot();
    };
    reboot(u);
    let o = u.health(None, &fail);
    assert_eq!(o.status.code(), Some(17), "{}", show(&o));
    reboot(u);
    // The fix, v3, on the same base; the hostile mirror serves v2's signed manifest for it.
    bundle(&keys, &root, &template, "v3", 1, 0);
    channel(&keys, &root, T0 + 100, "0", &["bundles/v3"]);
    copy_tree(&root, &evil);
    for f in ["manifest.json", "manifest.json.sig"] {
        fs::copy(
            root.join("bundles/v2").join(f),
            evil.join("bundles/v3").join(f),
        )
        .expect("cp");
    }
    let _nginx = Nginx::start(&d.join("nginx"), None, &[(lo, p, &root), (lo, q, &evil)]);
    let now = (T0 + 200).to_string();
    refused(
        u,
        &keys.keys_d,
        &[format!("http://{lo}:{q}")],
        &["--now", &now],
        23,
        "v2's manifest for v3",
    );
    let st = {
        let o = u.run(None, &["fleet", "status", "--json"], true);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        v["status"].clone()
    };
    assert_ne!(st["lastRollback"]["version"], "v3", "{st}");
    // The honest mirror's v3 is taken.
    let o = poll(
        u,
        &keys.keys_d,
        &[format!("http://{lo}:{p}")],
        &["--now", &now],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("bundle v3 applied"),
        "{}",
        show(&o)
    );
}

/// An https:// mirror (nginx with TLS, a certificate made here) through the external fetcher
/// `--https-fetch` names: uclient-fetch on OpenWrt; here a stand-in with uclient-fetch's
/// command line that runs curl, checking the server against that certificate. The bundle is
/// taken; a fetcher that is missing or does not trust the server, and plain HTTP to the TLS
/// port, are mirrors that do not answer (exit 25), with flash unchanged; a channel without its
/// `.sig` is unsigned (exit 19), as over plain HTTP.
#[test]
fn an_https_mirror_through_the_external_fetcher() {
    let tmp = scratch();
    let d = tmp.path();
    let OneBundle {
        keys,
        template,
        root,
    } = one_bundle(d, 2, 0);
    let t0 = T0;
    let (cert, key) = (d.join("tls.crt"), d.join("tls.key"));
    let o = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-keyout", s(&key), "-out", s(&cert)])
        .output()
        .expect("openssl (scripts/deps.sh)");
    assert!(o.status.success(), "{}", show(&o));
    let unsigned = d.join("mirror-unsigned");
    copy_tree(&root, &unsigned);
    fs::remove_file(unsigned.join("stable.json.sig")).expect("rm");
    let lo = "127.0.0.1";
    let (p, p_unsigned) = (free_port(), free_port());
    let _nginx = Nginx::start_tls(
        &d.join("nginx"),
        None,
        &[(lo, p, &root), (lo, p_unsigned, &unsigned)],
        Some((&cert, &key)),
    );
    // uclient-fetch's command line (-q -T N -O - URL; the URL comes last) and its answer to
    // an HTTP error: exit 8, nothing on stdout, and `HTTP error NNN` on stderr unless -q
    // (uclient-fetch.c prints it only when not quiet), with its other status lines.
    let bin_d = d.join("bin");
    fs::create_dir(&bin_d).expect("mkdir bin");
    let fetch = bin_d.join("uclient-fetch");
    fs::write(
        &fetch,
        format!(
            "#!/bin/sh\nquiet=\nfor a; do [ \"$a\" = -q ] && quiet=1; url=$a; done\n\
             [ -n \"$quiet\" ] || echo \"Connecting to 127.0.0.1\" >&2\nbody=$(mktemp)\n\
             code=$(curl -sS --max-time 5 --cacert {} -o \"$body\" -w '%{{http_code}}' \"$url\") \
             || {{ rm -f \"$body\"; exit 4; }}\n\
             if [ \"$code\" = 200 ]; then cat \"$body\"; rm -f \"$body\"; exit 0; fi\n\
             rm -f \"$body\"; [ -n \"$quiet\" ] || echo \"HTTP error $code\" >&2; exit 8\n",
            s(&cert)
        ),
    )
    .expect("write fetcher");
    let mut perm = fs::metadata(&fetch).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    fs::set_permissions(&fetch, perm).expect("chmod");
    let now = (t0 + 60).to_string();
    let https = vec![format!("https://{lo}:{p}")];
    let u = &Unit::flash(d, &template, 1)[0];

    // Plain HTTP to a TLS port fails (nginx answers 400), as does a missing fetcher: both are
    // mirrors that do not answer (25), flash unchanged.
    refused(
        u,
        &keys.keys_d,
        &https,
        &[
            "--now",
            &now,
            "--https-fetch",
            "/nonexistent/uclient-fetch -q",
        ],
        25,
        "missing fetcher",
    );
    refused(
        u,
        &keys.keys_d,
        &[format!("http://{lo}:{p}")],
        &["--now", &now],
        25,
        "http to a TLS port",
    );
    // A fetcher that does not trust the server (curl without --cacert) fails: 25.
    refused(
        u,
        &keys.keys_d,
        &https,
        &["--now", &now, "--https-fetch", "curl -sS --fail -o -"],
        25,
        "untrusted certificate",
    );
    let fetch_cmd = format!("{} -T 5 -O -", s(&fetch));
    refused(
        u,
        &keys.keys_d,
        &[format!("https://{lo}:{p_unsigned}")],
        &["--now", &now, "--https-fetch", &fetch_cmd],
        19,
        "https channel without its signatures",
    );
    // The same through the default command line, uclient-fetch found on PATH: the status
    // must come through it too (with -q, uclient-fetch prints none, and the missing .sig was
    // a mirror that did not answer, 25).
    let before = fs::read(&u.img).expect("image");
    let path = format!(
        "{}:{}",
        s(&bin_d),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut args: Vec<String> = ["--erase-size", "4096", "fleet", "poll", "--keys"]
        .iter()
        .map(|x| x.to_string())
        .collect();
    args.push(s(&keys.keys_d).to_string());
    for a in [
        "--min-sigs",
        "2",
        "--retries",
        "1",
        "--backoff-ms",
        "20",
        "--timeout",
        "3",
        "--no-reboot",
        "--now",
        &now,
        "--state",
        s(&u.state),
        "--unit-id",
        &u.id,
    ] {
        args.push(a.to_string());
    }
    args.push("--mirror".into());
    args.push(format!("https://{lo}:{p_unsigned}"));
    let o = std::process::Command::new(bin())
        .arg("--device")
        .arg(&u.img)
        .args(&args)
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run snapshot");
    assert_eq!(
        o.status.code(),
        Some(19),
        "default https fetcher, channel without its signatures:\n{}",
        show(&o)
    );
    assert!(
        fs::read(&u.img).expect("image") == before,
        "the image changed"
    );
    let o = poll(
        u,
        &keys.keys_d,
        &https,
        &["--now", &now, "--https-fetch", &fetch_cmd],
    );
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("bundle v2 applied"),
        "{}",
        show(&o)
    );
}

/// A channel with v2 (on v1) and v3 (on v1+v2): a unit booted into v2 on trial waits for its
/// verdict before it takes v3. Taking v3 at once (the poll loop's first poll comes before the
/// health check's) would reboot into it, spend v2's one trial boot, and roll a good v2 back
/// for good ("not taking bundle v2 again").
#[test]
fn a_unit_on_trial_waits_for_the_verdict_before_the_next_bundle() {
    let tmp = scratch();
    let d = tmp.path();
    let keys = Keys::new(d);
    let template = template(d);
    let root = d.join("mirror");
    bundle(&keys, &root, &template, "v2", 1, 0);
    // An image at v1+v2 to build v3 on.
    let mid = d.join("mid.img");
    fs::copy(&template, &mid).expect("copy");
    tool_ok(&[
        "--device",
        s(&mid),
        "--erase-size",
        "4096",
        "fleet",
        "apply",
        "--keys",
        s(&keys.keys_d),
        "--min-sigs",
        "2",
        "--no-reboot",
        s(&root.join("bundles/v2")),
    ]);
    bundle(&keys, &root, &mid, "v3", 1, 0);
    channel(&keys, &root, T0, "0", &["bundles/v2", "bundles/v3"]);
    let lo = "127.0.0.1";
    let p = free_port();
    let _nginx = Nginx::start(&d.join("nginx"), None, &[(lo, p, &root)]);
    let mirrors = vec![format!("http://{lo}:{p}")];
    let now = (T0 + 60).to_string();
    let u = &Unit::flash(d, &template, 1)[0];
    let poll = || {
        let o = u.poll(None, &keys.keys_d, &mirrors, &["--now", &now]);
        assert!(o.status.success(), "{}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = poll();
    assert!(out.contains("bundle v2 applied"), "{out}");
    u.boot(); // v2's one trial boot: running, not yet confirmed

    let before = fs::read(&u.img).expect("image");
    let out = poll();
    assert!(out.contains("waiting: snapshot 2 is on trial"), "{out}");
    assert!(
        fs::read(&u.img).expect("image") == before,
        "a waiting poll wrote"
    );

    // Confirmed (the health check passed): the next poll takes v3.
    let o = u.run(None, &["confirm"], false);
    assert!(o.status.success(), "{}", show(&o));
    let out = poll();
    assert!(out.contains("bundle v3 applied"), "{out}");
}

/// A bundle written whose reboot failed is booted by the next poll of the same boot, without
/// the network: it once waited on trial for whatever reboot came next ("waiting: snapshot 2
/// is on trial"). Once its trial boot is spent, polls reboot nothing.
#[test]
fn a_poll_reboots_again_into_a_bundle_whose_reboot_failed() {
    require_root();
    let tmp = scratch();
    let d = tmp.path();
    let OneBundle {
        keys,
        template,
        root,
    } = one_bundle(d, 2, 0);
    let lo = "127.0.0.1";
    let p = free_port();
    let nginx = Nginx::start(&d.join("nginx"), None, &[(lo, p, &root)]);
    let mirrors = [format!("http://{lo}:{p}")];
    let units = Unit::flash(d, &template, 1);
    let part = LoopDevice::attach(&units[0].img);
    let unit = Unit {
        id: units[0].id.clone(),
        img: part.0.clone(),
        state: units[0].state.clone(),
    };
    // A stand-in `reboot`: the first call fails, later ones succeed; each is counted.
    let bin_dir = d.join("bin");
    fs::create_dir(&bin_dir).expect("mkdir");
    let calls = d.join("reboots");
    let fake = bin_dir.join("reboot");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho x >> {c}\n[ \"$(wc -l < {c})\" -ge 2 ]\n",
            c = calls.display()
        ),
    )
    .expect("write");
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let now = (T0 + 60).to_string();
    let poll = |mirror: &str| {
        std::process::Command::new(bin())
            .env("PATH", &path)
            .args(["--device", s(&unit.img), "--erase-size", "4096"])
            .args([
                "fleet",
                "poll",
                "--keys",
                s(&keys.keys_d),
                "--min-sigs",
                "2",
            ])
            .args(["--retries", "0", "--timeout", "3", "--mirror", mirror])
            .args([
                "--now",
                &now,
                "--state",
                s(&unit.state),
                "--unit-id",
                &unit.id,
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run snapshot")
    };
    let reboots = || {
        fs::read_to_string(&calls)
            .map(|c| c.lines().count())
            .unwrap_or(0)
    };
    let o = poll(&mirrors[0]);
    assert_eq!(o.status.code(), Some(12), "{}", show(&o));
    assert!(show(&o).contains("bundle v2 applied"), "{}", show(&o));
    assert_eq!(reboots(), 1);
    // The mirror gone: the bundle is on flash already, only its reboot is due.
    drop(nginx);
    let o = poll(&mirrors[0]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        show(&o).contains("the reboot after it was written did not happen"),
        "{}",
        show(&o)
    );
    assert_eq!(reboots(), 2);
    // Booted (a trial mark spent): nothing more to reboot for.
    unit.boot();
    let o = poll(&mirrors[0]);
    assert_eq!(reboots(), 2, "{}", show(&o));
    assert!(!show(&o).contains("did not happen"), "{}", show(&o));
}

/// A unit whose boot left part of its chain out (its boot record says so: a snapshot that no
/// longer fits in RAM, a refused volatile, failsafe) still answers and polls; its status says
/// what the record says, and the fleet report lists it apart. Before, nothing in the status
/// told such a unit from a healthy one on the same chain.
#[test]
fn the_fleet_report_shows_units_whose_boot_did_not_run_their_chain() {
    let tmp = scratch();
    let d = tmp.path();
    let template = template(d);
    let units = Unit::flash(d, &template, 3);
    let records = [
        Some("failed-check-marks\nchain-partly-booted\n"),
        Some("failed-check-marks\n"),
        None,
    ];
    let mut docs = Vec::new();
    for (u, rec) in units.iter().zip(records) {
        let path = d.join(format!("record-{}", u.id));
        if let Some(r) = rec {
            fs::write(&path, r).expect("record");
        }
        let args = [
            "--erase-size",
            "4096",
            "--boot-record",
            s(&path),
            "fleet",
            "status",
            "--state",
            s(&u.state),
            "--unit-id",
            &u.id,
        ];
        let text = ok(&u.img, &args);
        assert_eq!(
            text.contains("does not run the whole chain: chain-partly-booted"),
            rec.is_some_and(|r| r.contains("partly")),
            "{text}"
        );
        let mut json_args = args.to_vec();
        json_args.push("--json");
        let st = ok(&u.img, &json_args);
        let v: serde_json::Value = serde_json::from_str(&st).expect("status json");
        match rec {
            None => assert!(v["status"]["boot"].is_null(), "{v}"),
            Some(r) => {
                let want = r.contains("partly").then_some("chain-partly-booted");
                assert_eq!(v["status"]["boot"]["notRun"].as_str(), want, "{v}");
                assert_eq!(v["status"]["boot"]["chainMoved"], false, "{v}");
            }
        }
        let f = d.join(format!("status-{}.json", u.id));
        fs::write(&f, st).expect("status");
        docs.push(f);
    }
    let html = d.join("fleet.html");
    let mut args = vec!["fleet", "report", "--json", "--html", s(&html)];
    args.extend(docs.iter().map(|p| s(p)));
    let rep: serde_json::Value = serde_json::from_str(&tool_ok(&args)).expect("report json");
    assert_eq!(
        rep["status"]["notRunning"],
        serde_json::json!([{"unit": "unit-00", "notRun": "chain-partly-booted"}]),
        "{rep}"
    );
    let page = fs::read_to_string(&html).expect("html");
    assert!(
        page.contains("Not running their whole chain: 1") && page.contains("chain-partly-booted"),
        "{page}"
    );
    let mut text_args = vec!["fleet", "report"];
    text_args.extend(docs.iter().map(|p| s(p)));
    let text = tool_ok(&text_args);
    assert!(
        text.contains("not running its whole chain: unit-00 (chain-partly-booted)"),
        "{text}"
    );
}

/// A poll of an image file reboots nothing ("not rebooting: ... is an image file"), so no
/// reboot is due: the next poll of the same boot asks the mirrors as ever. It
/// once noted a reboot due, and every later poll of the image took the bundle for one whose
/// reboot failed ("... did not happen", result "taken") without asking the mirrors.
#[test]
fn a_poll_of_an_image_file_notes_no_reboot_due() {
    let tmp = scratch();
    let d = tmp.path();
    let OneBundle {
        keys,
        template,
        root,
    } = one_bundle(d, 2, 0);
    let lo = "127.0.0.1";
    let p = free_port();
    let _nginx = Nginx::start(&d.join("nginx"), None, &[(lo, p, &root)]);
    let mirror = format!("http://{lo}:{p}");
    let u = &Unit::flash(d, &template, 1)[0];
    let now = (T0 + 60).to_string();
    let poll = || {
        let o = std::process::Command::new(bin())
            .args(["--device", s(&u.img), "--erase-size", "4096"])
            .args([
                "fleet",
                "poll",
                "--keys",
                s(&keys.keys_d),
                "--min-sigs",
                "2",
            ])
            .args(["--retries", "0", "--timeout", "3", "--mirror", &mirror])
            .args(["--now", &now, "--state", s(&u.state), "--unit-id", &u.id])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run snapshot");
        assert!(o.status.success(), "{}", show(&o));
        show(&o)
    };
    let out = poll();
    assert!(out.contains("bundle v2 applied"), "{out}");
    assert!(out.contains("not rebooting"), "{out}");
    assert!(!u.state.join("reboot-due.json").exists(), "{out}");
    let out = poll();
    assert!(!out.contains("did not happen"), "{out}");
    let last: serde_json::Value =
        serde_json::from_slice(&fs::read(u.state.join("poll.json")).expect("poll.json"))
            .expect("json");
    assert_eq!(last["result"], "nothing", "{last}");
}
