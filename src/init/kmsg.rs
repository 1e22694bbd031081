//! Logging to the kernel log, the only log there is before procd runs.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use rustix::fd::BorrowedFd;
use rustix::fs::{Mode, OFlags};

/// -1 until /dev/kmsg is open; then writes go there.
static KMSG: AtomicI32 = AtomicI32::new(-1);
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
    if let Ok(fd) = rustix::fs::open("/dev/kmsg", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty()) {
        KMSG.store(rustix::fd::IntoRawFd::into_raw_fd(fd), Ordering::Relaxed);
    }
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
        let _ = write!(line, "<{}>", level as u8);
    }
    let _ = write!(line, "snapinit: {args}");
    line.buf[line.len] = b'\n';
    line.len += 1;
    let fd = if console || kmsg < 0 { 2 } else { kmsg };
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
