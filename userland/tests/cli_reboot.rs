//! Commands that reboot by default never reboot the machine when the chain is an image file:
//! a workstation preparing an image for a fleet must not go down.

mod cli_common;

use cli_common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn writing_an_image_never_reboots_this_machine() {
    let sc = scratch();
    let base = sc.path();
    let img = image(base, "flash.img", 1 << 20);
    ok(&img, &["format"]);
    // A stand-in `reboot` first on PATH records a call instead of rebooting the test host.
    let bin = base.join("bin");
    fs::create_dir(&bin).expect("mkdir");
    let marker = base.join("rebooted");
    let fake = bin.join("reboot");
    fs::write(&fake, format!("#!/bin/sh\ntouch {}\n", marker.display())).expect("write");
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let upper = base.join("upper");
    fs::create_dir(&upper).expect("mkdir");
    file(&upper.join("f"), b"x", 0o644, (0, 0));
    let upper = upper.to_str().expect("utf-8");
    for args in [
        vec!["commit", "--upper", upper],
        vec!["commit", "--upper", upper],
        vec!["rollback", "1", "--yes"],
    ] {
        let o = Command::new(BIN)
            .arg("--device")
            .arg(&img)
            .args(&args)
            .env("PATH", &path)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run snapshot");
        assert!(o.status.success(), "{args:?}:\n{}", show(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("not rebooting"), "{args:?}:\n{out}");
        assert!(!marker.exists(), "{args:?} ran reboot");
    }
    assert_eq!(info(&img)["snapshots"].as_array().map(Vec::len), Some(1));
}
