//! Logging to the kernel log, the only log there is before procd runs.

use core::fmt::{self, Write};
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU8, Ordering};

use rustix::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags};

/// -1 until /dev/kmsg is open; then writes go there.
static KMSG: AtomicI32 = AtomicI32::new(-1);
/// Lines written through the current KMSG descriptor.
static LINES: AtomicU32 = AtomicU32::new(0);

/// The kernel rate-limits writes to /dev/kmsg per open file (printk.devkmsg=
/// ratelimit, the default: 10 lines per 5 s, the rest dropped while write()
/// still reports success). A boot logs two or three times that within
/// milliseconds, so the descriptor is replaced before it reaches the limit:
/// each open file has a fresh allowance.
const KMSG_BURST: u32 = 10;
/// Tests (and `snapinit.log=console`) read the log on stderr instead.
static CONSOLE: AtomicBool = AtomicBool::new(false);
/// Whether fd 2 may take log lines: it was open when the kernel started PID 1 (the console),
/// or has been given /dev/console since. Without a console the kernel leaves fds 0 to 2
/// closed; a line written to fd 2 could then land in whatever took that number, such as the
/// chain device opened read-write for a trial mark.
static STDERR: AtomicBool = AtomicBool::new(false);
/// The standard descriptors (bit n: fd n) holding `hold_std_fds`'s placeholder.
static HELD: AtomicU8 = AtomicU8::new(0);

/// At entry, before any open: every closed one of fds 0, 1 and 2 gets a placeholder nothing
/// can be read or written through (an `O_PATH` descriptor of "/"), so no file PID 1 opens
/// later, the flash least of all, takes a standard number. Not close-on-exec: the target
/// gets them too, or what `console_on_std_fds` puts there.
pub fn hold_std_fds() {
    // SAFETY: only asks whether fd 2 is open; nothing is done through it.
    let open = rustix::io::fcntl_getfd(unsafe { BorrowedFd::borrow_raw(2) }).is_ok();
    STDERR.store(open, Ordering::Relaxed);
    // open() returns the lowest free number: the closed standard ones first.
    while let Ok(fd) = rustix::fs::open(c"/", OFlags::PATH, Mode::empty()) {
        match fd.into_raw_fd() {
            n @ 0..=2 => {
                HELD.fetch_or(1 << n, Ordering::Relaxed);
            }
            n => {
                // SAFETY: `n` was just opened here and is owned by nothing else.
                drop(unsafe { OwnedFd::from_raw_fd(n) });
                return;
            }
        }
    }
}

/// Once /dev is mounted: the placeholders become /dev/console, what the kernel gives init
/// when it can, else /dev/null; if neither opens they stay.
pub fn console_on_std_fds() {
    let held = HELD.load(Ordering::Relaxed);
    if held == 0 {
        return;
    }
    let Some((console, dev)) = [c"/dev/console", c"/dev/null"]
        .into_iter()
        .enumerate()
        .find_map(|(i, path)| {
            let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
            Some((i == 0, rustix::fs::open(path, flags, Mode::empty()).ok()?))
        })
    else {
        return;
    };
    for n in 0..3 {
        if held & (1 << n) == 0 {
            continue;
        }
        // SAFETY: fd `n` is the placeholder `hold_std_fds` left there; dup2 replaces it, and
        // ManuallyDrop keeps it open (as the target's fd `n`) when this returns.
        let mut slot = ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(n) });
        if rustix::io::dup2(&dev, &mut slot).is_ok() {
            HELD.fetch_and(!(1 << n), Ordering::Relaxed);
            if n == 2 && console {
                STDERR.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[derive(Clone, Copy)]
pub enum Level {
    Err = 3,
    Warn = 4,
    Info = 6,
}

/// Opens /dev/kmsg; call again after devtmpfs is mounted.
pub fn open() {
    if KMSG.load(Ordering::Relaxed) >= 0 {
        return;
    }
    if let Some(fd) = open_kmsg() {
        KMSG.store(fd, Ordering::Relaxed);
    }
}

fn open_kmsg() -> Option<i32> {
    rustix::fs::open(
        c"/dev/kmsg",
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
    .map(rustix::fd::IntoRawFd::into_raw_fd)
}

/// The kmsg descriptor for the next line, replaced by a fresh open every
/// `KMSG_BURST` lines (after the root switch that is the new root's /dev,
/// the same devtmpfs). If the reopen fails the old one is kept.
fn kmsg_fd(current: i32) -> i32 {
    if LINES.fetch_add(1, Ordering::Relaxed) < KMSG_BURST {
        return current;
    }
    let Some(fresh) = open_kmsg() else {
        return current;
    };
    // SAFETY: `current` is the kmsg descriptor this module opened and owns;
    // the process is single-threaded, and it is replaced before any reuse.
    drop(unsafe { <rustix::fd::OwnedFd as rustix::fd::FromRawFd>::from_raw_fd(current) });
    KMSG.store(fresh, Ordering::Relaxed);
    LINES.store(1, Ordering::Relaxed);
    fresh
}

pub fn use_console(on: bool) {
    CONSOLE.store(on, Ordering::Relaxed);
}

struct Line {
    buf: [u8; 512],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Truncate rather than fail: a clipped log line beats none.
        let room = self.buf.len() - 1 - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

pub fn log(level: Level, args: fmt::Arguments<'_>) {
    let mut line = Line {
        buf: [0; 512],
        len: 0,
    };
    let console = CONSOLE.load(Ordering::Relaxed);
    let kmsg = KMSG.load(Ordering::Relaxed);
    let stderr = STDERR.load(Ordering::Relaxed);
    // fd 2 only when STDERR vouches for it; with no kernel log either the line is dropped:
    // there is nowhere safe to put it.
    let to_kmsg = kmsg >= 0 && !(console && stderr);
    if !to_kmsg && !stderr {
        return;
    }
    // The level prefix is for the kernel log: also with `snapinit.log=console` when there is no
    // console to write to.
    if to_kmsg || !console {
        let _ = line.write_str(match level {
            Level::Err => "<3>",
            Level::Warn => "<4>",
            Level::Info => "<6>",
        });
    }
    let _ = line.write_str("snapinit: ");
    let _ = line.write_fmt(args);
    line.buf[line.len] = b'\n';
    line.len += 1;
    let fd = if to_kmsg { kmsg_fd(kmsg) } else { 2 };
    // SAFETY: fd is either stderr or the kmsg fd we own for the process's life.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let _ = rustix::io::write(fd, &line.buf[..line.len]);
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::init::kmsg::log($crate::init::kmsg::Level::Info, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::init::kmsg::log($crate::init::kmsg::Level::Warn, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::init::kmsg::log($crate::init::kmsg::Level::Err, format_args!($($t)*)) };
}
