//! `&str` paths handed to the kernel as C strings. rustix converts a `&str` argument inline at
//! every call site (about 140 bytes of code each in PID 1, with a second, 4 KiB stack-buffer
//! path); calls made from many places go through [`c_str`], one function, and give rustix a
//! `&CStr`, which costs nothing. Every path snapinit passes is far below [`MAX`] bytes.

use core::ffi::CStr;

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags, Stat};
use rustix::io::Errno;

/// The longest path [`c_str`] takes (tar paths are at most 255 bytes; `/proc/self/fd/N/` and a
/// name a little more).
pub const MAX: usize = 511;

pub type Buf = [u8; MAX + 1];

/// `s` NUL-terminated in `buf`; rustix's answers for what it cannot pass (EINVAL for an
/// inner NUL, ENAMETOOLONG).
#[inline(never)]
pub fn c_str<'a>(s: &str, buf: &'a mut Buf) -> Result<&'a CStr, Errno> {
    let b = s.as_bytes();
    let Some((nul, dst)) = buf.get_mut(..=b.len()).and_then(|d| d.split_last_mut()) else {
        return Err(Errno::NAMETOOLONG);
    };
    dst.copy_from_slice(b);
    *nul = 0;
    CStr::from_bytes_with_nul(&buf[..=b.len()]).map_err(|_| Errno::INVAL)
}

pub fn open(path: &str, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    rustix::fs::open(c_str(path, &mut [0; MAX + 1])?, flags, mode)
}

pub fn stat(path: &str) -> Result<Stat, Errno> {
    rustix::fs::stat(c_str(path, &mut [0; MAX + 1])?)
}

/// `stat` of the path itself: a symlink is not followed.
pub fn lstat(path: &str) -> Result<Stat, Errno> {
    rustix::fs::lstat(c_str(path, &mut [0; MAX + 1])?)
}
