//! The fleet inside network namespaces this test creates: a server namespace with a bridge on
//! 10.213.0.1, where the mirror (nginx) and the broker (mosquitto) listen, and one namespace per
//! unit, plugged into the bridge by a veth pair (10.213.0.10, .11, ...). Units reach the
//! servers by their address inside; nothing leaves this machine.
//!
//! Every unit takes a bundle on trial; the health check pings the mesh's server. A tagged
//! subset loses its link after the update (its veth goes down: the bundle broke their mesh):
//! the check fails, their trial boot runs out, they roll back by themselves, come back on the
//! mesh with the old firmware, report the rollback and its reason over MQTT, and never take
//! that bundle again. `fleet status --mqtt` shows exactly those units rolled back, and why.
//!
//! FLEET_NETNS_UNITS sets the number of units (default 20; every third is tagged);
//! FLEET_SCREENSHOT=FILE keeps Chromium's screenshot of the fleet page.

mod cli_common;
mod fleet_common;

use cli_common::*;
use fleet_common::*;
use std::fs;

const SERVER: &str = "10.213.0.1";

/// Debian's Chromium, headless, takes a screenshot of `page`: its RGB pixels, width, height.
fn screenshot(d: &std::path::Path, page: &std::path::Path) -> (Vec<[u8; 3]>, u32, u32) {
    let shot = d.join("fleet.png");
    let o = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,1200",
            &format!("--user-data-dir={}", d.join("chromium").display()),
            &format!("--screenshot={}", shot.display()),
        ])
        .arg(format!("file://{}", page.display()))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("chromium (scripts/deps.sh installs it)");
    assert!(
        o.status.success() && shot.exists(),
        "chromium made no screenshot: {}",
        show(&o)
    );
    if let Ok(keep) = std::env::var("FLEET_SCREENSHOT") {
        fs::copy(&shot, keep).expect("keep the screenshot");
    }
    let dec = png::Decoder::new(std::io::Cursor::new(fs::read(&shot).expect("png")));
    let mut r = dec.read_info().expect("a PNG");
    let mut buf = vec![0u8; r.output_buffer_size().expect("size")];
    let info = r.next_frame(&mut buf).expect("decode");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("a {other:?} screenshot"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{info:?}");
    buf.truncate(info.buffer_size());
    let px = buf.chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    (px, info.width, info.height)
}

#[test]
fn a_bundle_whose_health_check_fails_on_a_subset_rolls_back_there_and_the_status_says_why() {
    let n: usize = std::env::var("FLEET_NETNS_UNITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = scratch();
    let d = tmp.path();
    let started = std::time::Instant::now();

    // Namespaces first: dropped last, after the servers in them stop. 0: the servers and the
    // bridge; 1 + i: unit i.
    let mut names = vec!["srv".to_string()];
    names.extend((0..n).map(|i| format!("u{i:02}")));
    let ns = Netns::new(
        "snapinit-fleet",
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    ns.bridge(0, &format!("{SERVER}/24"));
    for i in 0..n {
        ns.plug(1 + i, &format!("10.213.0.{}/24", 10 + i), 0);
    }
    let srv = Some(ns.name(0));
    let at = |i: usize| Some(ns.name(1 + i));

    let keys = Keys::new(d);
    let template = template(d);
    let base_id = head(&template);
    let root = d.join("mirror");
    bundle(&keys, &root, &template, "v2", 1, 8192);
    let t0: u64 = 1_800_000_000;
    channel(&keys, &root, t0, "0", &["bundles/v2"]);
    let _nginx = Nginx::start(&d.join("nginx"), srv, &[(SERVER, 80, &root)]);
    let _broker = Mosquitto::start(&d.join("mosquitto"), srv, SERVER, 1883);
    let mirrors = vec![format!("http://{SERVER}")];
    let broker = format!("{SERVER}:1883");
    let now = (t0 + 60).to_string();
    let units = Unit::flash(d, &template, n);
    let tagged = |i: usize| i % 3 == 1;
    let poll = |u: &Unit, ns: Option<&str>| {
        u.poll(
            ns,
            &keys.keys_d,
            &mirrors,
            &["--now", &now, "--mqtt", &broker],
        )
    };
    for (i, u) in units.iter().enumerate() {
        let o = poll(u, at(i));
        assert!(o.status.success(), "{}: {}", u.id, show(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("bundle v2 applied"),
            "{}: {}",
            u.id,
            show(&o)
        );
    }
    let v2_id = head(&units[0].img);

    // The reboot into the bundle: its one trial boot is spent.
    for u in &units {
        u.boot();
    }
    // The health check: the mesh's server must answer ping.
    let conf = d.join("health.conf");
    fs::write(&conf, format!("config health\n\tlist ping {SERVER}\n")).expect("config");
    for (i, u) in units.iter().enumerate() {
        if tagged(i) {
            ns.cable(1 + i, false);
            let o = u.health(at(i), &conf);
            assert_eq!(o.status.code(), Some(17), "{}: {}", u.id, show(&o));
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("does not answer ping"),
                "{}",
                show(&o)
            );
            // Cut off, it cannot report either: exit 26, flash untouched.
            let before = fs::read(&u.img).expect("image");
            let o = u.run(
                at(i),
                &["fleet", "publish", "--mqtt", &broker, "--retries", "0"],
                true,
            );
            assert_eq!(o.status.code(), Some(26), "{}: {}", u.id, show(&o));
            assert!(fs::read(&u.img).expect("image") == before, "{}", u.id);
            // The failed check reboots it: no trial boot is left, the boot rolls back, and the
            // old firmware's mesh link works again.
            u.boot();
            ns.cable(1 + i, true);
        } else {
            let o = u.health(at(i), &conf);
            assert!(o.status.success(), "{}: {}", u.id, show(&o));
        }
    }

    // Every unit is on the mesh again and polls: the rolled-back ones record why, do not take
    // the bundle again, and report.
    for (i, u) in units.iter().enumerate() {
        let o = poll(u, at(i));
        assert!(o.status.success(), "{}: {}", u.id, show(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        if tagged(i) {
            assert!(
                out.contains(
                    "not taking bundle v2 again: it rolled back on this unit (healthCheckFailed"
                ),
                "{}: {out}",
                u.id
            );
            assert_eq!(head(&u.img), base_id, "{}: not rolled back", u.id);
        } else {
            assert!(out.contains("up to date"), "{}: {out}", u.id);
            assert_eq!(head(&u.img), v2_id, "{}", u.id);
        }
    }
    // And again: still not retaken, flash byte-identical.
    let u = &units[1];
    let before = fs::read(&u.img).expect("image");
    let o = poll(u, at(1));
    assert!(o.status.success(), "{}", show(&o));
    assert!(fs::read(&u.img).expect("image") == before);

    // The fleet, read from the broker inside the namespace.
    let html = d.join("fleet.html");
    let out = tool_ok_in(
        at(0),
        &[
            "fleet",
            "status",
            "--mqtt",
            &broker,
            "--json",
            "--html",
            s(&html),
            "--retries",
            "0",
        ],
    );
    let rep: serde_json::Value = serde_json::from_str(&out).expect("json");
    let st = &rep["status"];
    assert_eq!(st["units"], n, "{rep}");
    let want_rolled: Vec<&str> = units
        .iter()
        .enumerate()
        .filter(|(i, _)| tagged(*i))
        .map(|(_, u)| u.id.as_str())
        .collect();
    let rolled: Vec<&str> = st["rolledBack"]
        .as_array()
        .expect("rolledBack")
        .iter()
        .map(|r| r["unit"].as_str().expect("unit"))
        .collect();
    assert_eq!(rolled, want_rolled, "{rep}");
    for r in st["rolledBack"].as_array().expect("rolledBack") {
        assert_eq!(r["reason"], "healthCheckFailed", "{r}");
        assert_eq!(r["version"], "v2", "{r}");
        assert!(
            r["detail"]
                .as_str()
                .expect("detail")
                .contains(&format!("{SERVER} does not answer ping")),
            "{r}"
        );
    }
    assert_eq!(st["onTrial"].as_array().expect("onTrial").len(), 0, "{rep}");
    let chains = st["chains"].as_array().expect("chains");
    let count = |id: &str| {
        chains
            .iter()
            .filter(|c| c["chainId"] == id)
            .map(|c| c["count"].as_u64().expect("count"))
            .sum::<u64>()
    };
    assert_eq!(count(&base_id), want_rolled.len() as u64, "{rep}");
    assert_eq!(count(&v2_id), (n - want_rolled.len()) as u64, "{rep}");
    let page = fs::read_to_string(&html).expect("html");
    for u in &want_rolled {
        assert!(page.contains(u), "{u} missing from the page");
    }
    assert!(page.contains("healthCheckFailed"));
    let (png, w, h) = screenshot(d, &html);
    // Not blank: the page's green (#3a7: the per-chain bars, the rollout line) and the red of
    // the rollback reasons (#b22) are drawn, on the white page.
    let count = |rgb: [u8; 3]| png.iter().filter(|p| **p == rgb).count();
    let (white, green) = (count([255, 255, 255]), count([0x33, 0xaa, 0x77]));
    let red = png
        .iter()
        .filter(|p| p[0] > 150 && p[1] < 80 && p[2] < 80)
        .count();
    println!(
        "screenshot {w}x{h}: {white} white, {green} green, {red} red pixels ({})",
        d.join("fleet.png").display()
    );
    assert!(white > (w * h) as usize / 2, "not the white page");
    assert!(
        green > 500,
        "the bars and the rollout line are missing: {green} green pixels"
    );
    assert!(
        red > 20,
        "the rollback reasons are missing: {red} red pixels"
    );
    println!(
        "{n} units, {} rolled back by their health check, in {} ms",
        want_rolled.len(),
        started.elapsed().as_millis()
    );
}
