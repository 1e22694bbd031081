//! Kernel command line -> typed settings. Pure (no I/O) so it is unit-tested
//! on the host via tests/init_cmdline.rs. Nothing here is ever fatal: a bad
//! value is reported through `warn` and the default kept, because a typo on
//! the command line must not stop the router from booting.

use core::fmt;

use snapinit::text::Quoted;

pub type Text = heapless::String<128>;

/// Watchdog timeout for a boot on trial: long enough for procd (or whatever pets the watchdog)
/// to take over, short enough that a hung unit is back within minutes.
pub const DEFAULT_WATCHDOG: u32 = 120;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// MTD partition name holding the chain.
    pub part: heapless::String<32>,
    /// A block device or file holding the chain instead of an MTD partition.
    pub device: Option<Text>,
    pub erase_size: u32,
    /// Program to exec once the root is set up.
    pub init: Text,
    /// Skip the chain: plain tmpfs overlay.
    pub failsafe: bool,
    /// Directory to chroot into first and treat as the read-only root (tests).
    pub root: Option<Text>,
    /// Log to stderr instead of /dev/kmsg.
    pub log_console: bool,
    /// Seconds the watchdog is armed for when a block boots on trial; 0 never arms it.
    pub watchdog: u32,
    /// KiB of RAM the volatile layer must leave free once the snapshots are laid out; `None`:
    /// a sixteenth of RAM, at least 2 MiB (`mounts::volatile_cap`).
    pub reserve_kib: Option<u32>,
}

impl Default for Settings {
    fn default() -> Self {
        let mut part = heapless::String::new();
        let _ = part.push_str("rootfs_data");
        let mut init = Text::new();
        let _ = init.push_str("/sbin/init");
        Self {
            part,
            device: None,
            erase_size: 65536,
            init,
            failsafe: false,
            root: None,
            log_console: false,
            watchdog: DEFAULT_WATCHDOG,
            reserve_kib: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning<'a> {
    UnknownKey(&'a str),
    BadValue { key: &'a str, value: &'a str },
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey(k) => write!(f, "ignoring unknown option {k}"),
            Self::BadValue { key, value } => {
                write!(f, "ignoring bad value {} for {key}", Quoted(value))
            }
        }
    }
}

/// A value PID 1 keeps (and logs as it is): no control characters, so no value can split or
/// forge a log line (a quoted value may hold a newline).
fn text<const N: usize>(v: &str) -> Option<heapless::String<N>> {
    if v.chars().any(char::is_control) {
        return None;
    }
    let mut s = heapless::String::new();
    s.push_str(v).ok()?;
    Some(s)
}

fn abs_path(v: &str) -> Option<Text> {
    if v.starts_with('/') {
        text(v)
    } else {
        None
    }
}

fn number(v: &str) -> Option<u32> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The kernel's `isspace` on ASCII: space, \t, \n, \v, \f, \r. (Unicode's whitespace is
/// nothing the kernel splits on, and `char::is_whitespace` would link its table into PID 1.)
fn blank(c: char) -> bool {
    matches!(c, ' ' | '\t'..='\r')
}

/// Splits on whitespace; a `"..."` value may hold spaces (as the kernel allows).
fn words(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    core::iter::from_fn(move || {
        rest = rest.trim_start_matches(blank);
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                blank(c) && !quoted
            })
            .map_or(rest.len(), |(i, _)| i);
        // `end` comes from char_indices: a char boundary (`get` only avoids a panic path).
        let w = rest.get(..end).unwrap_or(rest);
        rest = rest.get(end..).unwrap_or("");
        Some(w)
    })
}

/// Makes `buf` text in place: each sequence that is not UTF-8 becomes one '?' and what follows
/// moves down. Returns the text and how many sequences were replaced. The kernel command line
/// is bytes: one stray byte (a vendor's bootargs, a Latin-1 hostname) must not cost the
/// options around it, failsafe least of all.
pub fn repair_utf8(buf: &mut [u8]) -> (&str, usize) {
    let (mut read, mut write, mut replaced) = (0, 0, 0);
    while read < buf.len() {
        let (valid, skip) = match core::str::from_utf8(&buf[read..]) {
            Ok(_) => (buf.len() - read, 0),
            Err(e) => (
                e.valid_up_to(),
                // None: a sequence cut off by the end of the buffer.
                e.error_len().unwrap_or(buf.len() - read - e.valid_up_to()),
            ),
        };
        buf.copy_within(read..read + valid, write);
        write += valid;
        read += valid;
        if skip > 0 {
            buf[write] = b'?';
            write += 1;
            read += skip;
            replaced += 1;
        }
    }
    // Valid by construction; `unwrap_or` only keeps a panic path out of PID 1.
    (core::str::from_utf8(&buf[..write]).unwrap_or(""), replaced)
}

pub fn parse<'a>(cmdline: &'a str, mut warn: impl FnMut(Warning<'a>)) -> Settings {
    // One copy of the parser in PID 1, which calls it with two different closures.
    parse_dyn(cmdline, &mut warn)
}

fn parse_dyn<'a>(cmdline: &'a str, warn: &mut dyn FnMut(Warning<'a>)) -> Settings {
    let mut s = Settings::default();
    let mut part_explicit = false;
    for word in words(cmdline) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v.trim_matches('"'))),
            None => (word, None),
        };
        let bad = |value: Option<&'a str>| Warning::BadValue {
            key,
            value: value.unwrap_or(""),
        };
        match key {
            "snapinit.part" | "fstools_overlay_name" => {
                // The snapinit-specific key wins over the fstools one.
                if key == "fstools_overlay_name" && part_explicit {
                    continue;
                }
                match value
                    .filter(|v| !v.is_empty() && !v.contains('/'))
                    .and_then(text)
                {
                    Some(v) => {
                        s.part = v;
                        part_explicit |= key == "snapinit.part";
                    }
                    None => warn(bad(value)),
                }
            }
            "snapinit.device" => match value.and_then(abs_path) {
                Some(v) => s.device = Some(v),
                None => warn(bad(value)),
            },
            "snapinit.erase_size" => match value.and_then(number) {
                Some(n) if snapinit::flash::usable_erase_size(n) => s.erase_size = n,
                _ => warn(bad(value)),
            },
            "snapinit.init" => match value.and_then(abs_path) {
                Some(v) => s.init = v,
                None => warn(bad(value)),
            },
            "snapinit.root" => match value.and_then(abs_path) {
                Some(v) => s.root = Some(v),
                None => warn(bad(value)),
            },
            "snapinit.failsafe" => match value {
                None | Some("1") | Some("y") | Some("yes") | Some("on") => s.failsafe = true,
                Some("0") | Some("n") | Some("no") | Some("off") => s.failsafe = false,
                Some(_) => warn(bad(value)),
            },
            // OpenWrt's own failsafe switch (preinit's 30_failsafe_wait looks for it too).
            "failsafe" => s.failsafe = true,
            "snapinit.watchdog" => match value.and_then(number) {
                Some(n) => s.watchdog = n,
                None => warn(bad(value)),
            },
            "snapinit.reserve" => match value.and_then(number) {
                Some(n) => s.reserve_kib = Some(n),
                None => warn(bad(value)),
            },
            "snapinit.log" => match value {
                Some("console") => s.log_console = true,
                Some("kmsg") => s.log_console = false,
                _ => warn(bad(value)),
            },
            k if k.starts_with("snapinit.") => warn(Warning::UnknownKey(k)),
            _ => {}
        }
    }
    s
}
