//! Unit tests for PID 1's command-line parser (a pure module of the binary,
//! compiled here on the host).

#[path = "../src/init/cmdline.rs"]
#[allow(dead_code)]
mod cmdline;

use cmdline::{parse, Settings, Warning};

fn parse_all(s: &str) -> (Settings, Vec<String>) {
    let mut warnings = Vec::new();
    let settings = parse(s, |w: Warning<'_>| warnings.push(w.to_string()));
    (settings, warnings)
}

#[test]
fn defaults() {
    let (s, w) = parse_all("console=ttyS0,115200 root=/dev/mtdblock3 rootfstype=squashfs quiet");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(s, Settings::default());
    assert_eq!(s.part.as_str(), "rootfs_data");
    assert_eq!(s.init.as_str(), "/sbin/init");
    assert_eq!(s.erase_size, 65536);
    assert!(!s.failsafe && s.device.is_none() && s.root.is_none());
}

#[test]
fn all_keys() {
    let (s, w) = parse_all(
        "snapinit.part=data snapinit.device=/dev/sda3 snapinit.erase_size=0x20000 \
         snapinit.init=/bin/sh snapinit.failsafe snapinit.root=/mnt/root snapinit.log=console",
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(s.part.as_str(), "data");
    assert_eq!(s.device.as_deref(), Some("/dev/sda3"));
    assert_eq!(s.erase_size, 0x20000);
    assert_eq!(s.init.as_str(), "/bin/sh");
    assert!(s.failsafe);
    assert_eq!(s.root.as_deref(), Some("/mnt/root"));
    assert!(s.log_console);
}

#[test]
fn fstools_name_and_precedence() {
    assert_eq!(
        parse_all("fstools_overlay_name=ubi_data").0.part.as_str(),
        "ubi_data"
    );
    let (s, _) = parse_all("snapinit.part=mine fstools_overlay_name=theirs");
    assert_eq!(s.part.as_str(), "mine");
    let (s, _) = parse_all("fstools_overlay_name=theirs snapinit.part=mine");
    assert_eq!(s.part.as_str(), "mine");
}

#[test]
fn failsafe_values() {
    assert!(parse_all("snapinit.failsafe=1").0.failsafe);
    assert!(!parse_all("snapinit.failsafe=0").0.failsafe);
    let (s, w) = parse_all("snapinit.failsafe=maybe");
    assert!(!s.failsafe);
    assert_eq!(w.len(), 1);
}

#[test]
fn bad_values_warn_and_keep_defaults() {
    let (s, w) = parse_all(
        "snapinit.init=sbin/init snapinit.erase_size=1000 snapinit.device=sda \
         snapinit.part= snapinit.part=a/b snapinit.whatever=1 snapinit.log=syslog",
    );
    assert_eq!(s, Settings::default());
    assert_eq!(w.len(), 7, "{w:?}");
    assert!(w
        .iter()
        .any(|m| m.contains("unknown option snapinit.whatever")));
    assert!(w.iter().any(|m| m.contains("\"sbin/init\"")));
}

#[test]
fn quoted_values_and_overlong() {
    let (s, w) = parse_all("x=\"a b\" snapinit.init=\"/sbin/my init\" y");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(s.init.as_str(), "/sbin/my init");
    let long = format!("snapinit.init=/{}", "a".repeat(200));
    let (s, w) = parse_all(&long);
    assert_eq!(s.init.as_str(), "/sbin/init");
    assert_eq!(w.len(), 1);
}

/// PID 1 logs the target, device and partition as given: a quoted value holding a newline
/// or another control character would split or forge a log line, so it is refused.
#[test]
fn control_characters_are_refused() {
    let (s, w) = parse_all(
        "snapinit.init=\"/sbin/init\nsnapinit: FORGED root switched\" \
         snapinit.device=\"/dev/mtd1\r\" snapinit.part=\"data\u{1b}[2J\"",
    );
    assert_eq!(s, Settings::default());
    assert_eq!(w.len(), 3, "{w:?}");
    // The warning itself quotes the value: no line break reaches the log.
    assert!(w.iter().all(|m| !m.contains('\n')), "{w:?}");
}
