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
         snapinit.init=/bin/sh snapinit.failsafe snapinit.root=/mnt/root snapinit.log=console \
         snapinit.reserve=8192",
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(s.part.as_str(), "data");
    assert_eq!(s.device.as_deref(), Some("/dev/sda3"));
    assert_eq!(s.erase_size, 0x20000);
    assert_eq!(s.init.as_str(), "/bin/sh");
    assert!(s.failsafe);
    assert_eq!(s.root.as_deref(), Some("/mnt/root"));
    assert!(s.log_console);
    assert_eq!(s.reserve_kib, Some(8192));
}

#[test]
fn a_bad_reserve_is_a_warning_and_the_default_stays() {
    let (s, w) = parse_all("snapinit.reserve=lots");
    assert_eq!(s.reserve_kib, None);
    assert_eq!(w.len(), 1, "{w:?}");
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

/// One byte that is not UTF-8 anywhere on the command line (a vendor's bootargs, a Latin-1
/// hostname) used to drop the whole line, failsafe included, without a word: each invalid
/// sequence becomes one '?' and the rest is parsed.
#[test]
fn invalid_utf8_is_replaced_and_the_rest_parsed() {
    let mut buf = [0u8; 4096];
    let raw: &[u8] =
        b"console=ttyS0 x=caf\xe9 snapinit.failsafe y=\xf0\x9f\x98 snapinit.init=/bin/sh \xff\xfe\n";
    buf[..raw.len()].copy_from_slice(raw);
    let (text, replaced) = cmdline::repair_utf8(&mut buf[..raw.len()]);
    let (s, w) = parse_all(text);
    assert!(s.failsafe, "failsafe lost: {text:?}");
    assert_eq!(s.init.as_str(), "/bin/sh");
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        text,
        "console=ttyS0 x=caf? snapinit.failsafe y=? snapinit.init=/bin/sh ??\n"
    );
    assert_eq!(replaced, 4);

    // Valid text is left as it is, a sequence cut off at the end is one '?' too.
    let mut ok = *b"snapinit.part=caf\xc3\xa9 failsafe";
    assert_eq!(
        cmdline::repair_utf8(&mut ok),
        ("snapinit.part=caf\u{e9} failsafe", 0)
    );
    let mut cut = *b"failsafe \xe2\x82";
    assert_eq!(cmdline::repair_utf8(&mut cut), ("failsafe ?", 1));
    assert!(parse_all("failsafe ?").0.failsafe);
}
