//! Two `snapshot` commands at once: one holding the lock makes the other wait (bounded) or,
//! with --no-wait, refuse; concurrent writers are serialized and the chain stays valid.

mod cli_common;

use cli_common::*;
use rustix::fs::FlockOperation;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn a_held_lock_makes_writers_wait_or_refuse() {
    let sc = scratch();
    let base = sc.path();
    let img = image(base, "flash.img", 2 << 20);
    let upper = base.join("upper");
    fs::create_dir(&upper).expect("mkdir");
    file(&upper.join("f"), b"data", 0o644, (0, 0));
    ok(&img, &["format"]);
    ok(&img, &["save", "--upper", s(&upper)]);
    let before = fs::read(&img).expect("read image");

    // Hold the lock as another snapshot command would.
    let holder = fs::File::open(&img).expect("open image");
    rustix::fs::flock(&holder, FlockOperation::LockExclusive).expect("flock");

    let o = fails(&img, &["save", "--upper", s(&upper), "--no-wait"], 4);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("locked"),
        "{}",
        show(&o)
    );
    let t = Instant::now();
    fails(
        &img,
        &["commit", "--upper", s(&upper), "--no-reboot", "--wait", "1"],
        4,
    );
    assert!(t.elapsed() >= Duration::from_millis(900), "did not wait");
    // Readers wait for writers too.
    fails(&img, &["info", "--no-wait"], 4);
    assert!(
        fs::read(&img).expect("read image") == before,
        "a refused command wrote"
    );

    // Released while the second one waits: it proceeds.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(holder);
    });
    let t = Instant::now();
    ok(
        &img,
        &[
            "commit",
            "--upper",
            s(&upper),
            "--no-reboot",
            "--wait",
            "20",
        ],
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "did not wait for the lock"
    );
    release.join().expect("join");
    assert_eq!(info(&img)["snapshots"].as_array().map(Vec::len), Some(1));
}

#[test]
fn concurrent_writers_are_serialized() {
    let sc = scratch();
    let base = sc.path();
    let img = image(base, "flash.img", 4 << 20);
    ok(&img, &["format"]);
    let n = 6;
    let mut uppers = Vec::new();
    for i in 0..n {
        let u = base.join(format!("upper{i}"));
        fs::create_dir(&u).expect("mkdir");
        file(
            &u.join(format!("file{i}")),
            &noise(20_000, i as u64 + 1),
            0o644,
            (0, 0),
        );
        uppers.push(u);
    }
    // Half commit new snapshots, half save volatiles, all at once.
    let children: Vec<_> = uppers
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let mut c = Command::new(BIN);
            c.arg("--device").arg(&img);
            if i % 2 == 0 {
                c.args(["commit", "--no-reboot", "--upper"]);
            } else {
                c.args(["save", "--upper"]);
            }
            c.arg(u)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().expect("wait");
        assert!(
            o.status.success(),
            "concurrent writer failed:\n{}",
            show(&o)
        );
    }
    let j = info(&img);
    assert_eq!(j["snapshots"].as_array().map(Vec::len), Some(n / 2), "{j}");
    assert_eq!(j["end"], serde_json::Value::Null, "{j}");
    assert!(j["rejected_volatiles"]
        .as_array()
        .is_some_and(Vec::is_empty));
    ok(&img, &["verify"]);
}
