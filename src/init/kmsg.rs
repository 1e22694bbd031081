//! Logging to the kernel log, the only log there is before procd runs.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

use rustix::fd::BorrowedFd;
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
    if !console {
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
    let fd = if console || kmsg < 0 {
        2
    } else {
        kmsg_fd(kmsg)
    };
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
