//! The chain on a UBI volume (`/dev/ubiX_Y`), as on NAND routers.
//!
//! The format is byte for byte the NOR one, with the erase size E = the volume's LEB size. NAND
//! cannot program a page twice, so the NOR operations map onto the two operations UBI makes
//! atomic across a power cut, and nothing else:
//!
//! * erase of an erase block = `UBI_IOCEBER` (unmap the LEB and erase its PEB before
//!   returning): after a cut the LEB holds its old content or reads erased;
//! * program of any bytes = one *atomic LEB change* (`UBI_IOCEBCH`) per LEB touched, whose new
//!   content is the old content with the programmed bytes ANDed in (as NOR programming only
//!   clears bits): after a cut the LEB holds exactly its old or exactly its new content.
//!
//! So a single-byte mark program is one atomic LEB change: it lands whole or not at all, which
//! is the one physical assumption the NOR format makes. A longer program tears at most between
//! LEBs, a case of the NOR model's tears (any prefix, any subset of bits). Every argument of
//! docs/FORMAT.md therefore holds unchanged; UBI adds wear levelling and bad-block handling.
//! No plain (non-atomic) write is ever issued, so a cut never leaves a half-programmed NAND
//! page that would read back as an ECC error.

use crate::device::{open_fd, Backend, DeviceFlash};
use crate::flash::{read_full, DeviceError, ErrorType, Op};
use rustix::fd::{AsFd, BorrowedFd};
use rustix::ioctl::{opcode, Setter};

/// What the NOR rules need from a UBI volume. Offsets are volume offsets (LEB × LEB size +
/// offset in the LEB); an unmapped LEB reads as erased (0xFF).
pub trait Leb: ErrorType {
    fn leb_size(&self) -> u32;
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Unmaps `lnum` and erases its PEB before returning (atomic: old content or erased).
    fn erase_leb(&mut self, lnum: u32) -> Result<(), Self::Error>;
    /// Starts the atomic change of `lnum` to `len` bytes (the rest of the LEB reads erased).
    /// The change lands when `change_data` has been handed all `len` bytes, and not before.
    fn change_begin(&mut self, lnum: u32, len: u32) -> Result<(), Self::Error>;
    fn change_data(&mut self, data: &[u8]) -> Result<(), Self::Error>;
}

/// Bytes handled at a time by a LEB change: on the stack, so PID 1 can spend a trial mark
/// without a LEB-sized buffer.
const CHUNK: usize = 2048;

/// Erases `[from, to)`, one atomic LEB erase per LEB. Alignment is checked by the caller.
pub fn erase<L: Leb>(leb: &mut L, from: u32, to: u32) -> Result<(), L::Error> {
    let e = leb.leb_size();
    let mut lnum = from / e;
    while lnum < to / e {
        leb.erase_leb(lnum)?;
        lnum += 1;
    }
    Ok(())
}

/// Programs `data` at `offset` as NOR would (each byte ANDed into what is there), as one atomic
/// change per LEB touched.
pub fn program<L: Leb>(leb: &mut L, offset: u32, data: &[u8]) -> Result<(), L::Error> {
    let e = leb.leb_size();
    let mut at = offset;
    let mut rest = data;
    while !rest.is_empty() {
        let in_leb = at % e;
        let n = rest.len().min((e - in_leb) as usize);
        change(leb, at / e, in_leb, &rest[..n])?;
        rest = &rest[n..];
        at += n as u32;
    }
    Ok(())
}

/// Applies the bytes of `patch` (at `at` in the LEB) that overlap `[from, from + buf.len())`.
fn apply(buf: &mut [u8], from: u32, at: u32, patch: &[u8]) {
    let end = from + buf.len() as u32;
    let p_end = at + patch.len() as u32;
    let (lo, hi) = (from.max(at), end.min(p_end));
    for i in lo..hi {
        buf[(i - from) as usize] &= patch[(i - at) as usize];
    }
}

/// One atomic change of LEB `lnum`: its content with `patch` ANDed in at `at`. The first pass
/// finds where the new content ends (trailing erased bytes are not written: UBI then leaves
/// those pages erased), the second streams it into the change.
fn change<L: Leb>(leb: &mut L, lnum: u32, at: u32, patch: &[u8]) -> Result<(), L::Error> {
    let e = leb.leb_size();
    let base = lnum * e;
    let mut buf = [0u8; CHUNK];
    let mut len = 0u32;
    let mut changes = false;
    let mut from = 0u32;
    while from < e {
        let n = (e - from).min(CHUNK as u32) as usize;
        let chunk = &mut buf[..n];
        leb.read(base + from, chunk)?;
        let (lo, hi) = (from.max(at), (from + n as u32).min(at + patch.len() as u32));
        changes |= (lo..hi).any(|i| {
            let b = chunk[(i - from) as usize];
            b & patch[(i - at) as usize] != b
        });
        apply(chunk, from, at, patch);
        if let Some(i) = chunk.iter().rposition(|&b| b != 0xFF) {
            len = from + i as u32 + 1;
        }
        from += n as u32;
    }
    if !changes {
        // Erased bytes programmed as erased, or bits already clear: a NOR program of these
        // bytes changes nothing either, so no change is issued.
        return Ok(());
    }
    leb.change_begin(lnum, len)?;
    let mut from = 0u32;
    while from < len {
        let n = (len - from).min(CHUNK as u32) as usize;
        let chunk = &mut buf[..n];
        leb.read(base + from, chunk)?;
        apply(chunk, from, at, patch);
        leb.change_data(chunk)?;
        from += n as u32;
    }
    Ok(())
}

/// `struct ubi_leb_change_req` from <mtd/ubi-user.h>.
#[repr(C, packed)]
struct LebChangeReq {
    lnum: i32,
    bytes: i32,
    /// Obsolete; 3 ("unknown") as the header asks.
    dtype: i8,
    padding: [i8; 7],
}

// <mtd/ubi-user.h> declares both with an `__s32` argument: EBER reads an `__s32`, EBCH a
// `struct ubi_leb_change_req` through the same pointer.
const UBI_IOCEBER: rustix::ioctl::Opcode = opcode::write::<i32>(b'O', 1);
const UBI_IOCEBCH: rustix::ioctl::Opcode = opcode::write::<i32>(b'O', 2);

/// A UBI volume's character device, as `Leb`.
pub(crate) struct Volume<'a> {
    pub(crate) fd: BorrowedFd<'a>,
    pub(crate) leb_size: u32,
}

impl ErrorType for Volume<'_> {
    type Error = DeviceError;
}

impl Leb for Volume<'_> {
    fn leb_size(&self) -> u32 {
        self.leb_size
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), DeviceError> {
        read_full(self.fd, u64::from(offset), buf)
    }

    fn erase_leb(&mut self, lnum: u32) -> Result<(), DeviceError> {
        let offset = u64::from(lnum) * u64::from(self.leb_size);
        let lnum = i32::try_from(lnum).map_err(|_| DeviceError::OutOfBounds { offset })?;
        // SAFETY: UBI_IOCEBER reads one `__s32`, which `Setter` passes by pointer.
        unsafe { rustix::ioctl::ioctl(self.fd, Setter::<UBI_IOCEBER, i32>::new(lnum)) }.map_err(
            |errno| DeviceError::Io {
                op: Op::Erase,
                offset,
                errno,
            },
        )
    }

    fn change_begin(&mut self, lnum: u32, len: u32) -> Result<(), DeviceError> {
        let offset = u64::from(lnum) * u64::from(self.leb_size);
        let req = LebChangeReq {
            lnum: i32::try_from(lnum).map_err(|_| DeviceError::OutOfBounds { offset })?,
            bytes: i32::try_from(len).map_err(|_| DeviceError::OutOfBounds { offset })?,
            dtype: 3,
            padding: [0; 7],
        };
        // SAFETY: UBI_IOCEBCH reads one `struct ubi_leb_change_req`, which `LebChangeReq`
        // mirrors (packed, 16 bytes).
        unsafe { rustix::ioctl::ioctl(self.fd, Setter::<UBI_IOCEBCH, LebChangeReq>::new(req)) }
            .map_err(|errno| DeviceError::Io {
                op: Op::Program,
                offset,
                errno,
            })
    }

    fn change_data(&mut self, mut data: &[u8]) -> Result<(), DeviceError> {
        // The kernel appends what it is handed to the pending change; the file offset plays
        // no part.
        while !data.is_empty() {
            match rustix::io::write(self.fd, data) {
                Ok(0) => {
                    return Err(DeviceError::Short {
                        op: Op::Program,
                        offset: 0,
                    })
                }
                Ok(n) => data = &data[n..],
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => {
                    return Err(DeviceError::Io {
                        op: Op::Program,
                        offset: 0,
                        errno,
                    })
                }
            }
        }
        Ok(())
    }
}

/// A sysfs path under `dir`, bounded.
pub type SysPath = heapless::String<96>;

fn sys_path(dir: &str, file: &str) -> SysPath {
    let mut p = SysPath::new();
    let _ = p.push_str(dir);
    let _ = p.push('/');
    let _ = p.push_str(file);
    p
}

/// Reads a small sysfs file (a number or a name) into `buf`; the text without its newline.
pub(crate) fn read_sys<'b>(path: &str, buf: &'b mut [u8]) -> Option<&'b str> {
    let fd = crate::cpath::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let n = rustix::io::read(&fd, &mut *buf).ok()?;
    // The newline sysfs ends a value with, and any other ASCII blank (`trim_end` would pull
    // Unicode's whitespace table into PID 1).
    core::str::from_utf8(&buf[..n])
        .ok()
        .map(|s| s.trim_end_matches(|c: char| c.is_ascii_whitespace()))
}

fn read_sys_u32(path: &str) -> Option<u32> {
    let mut buf = [0u8; 24];
    read_sys(path, &mut buf)?.parse().ok()
}

/// The sysfs directory of a character device: `/sys/dev/char/MAJ:MIN`.
pub fn sys_dir(rdev: u64) -> SysPath {
    let mut p = SysPath::new();
    let _ = core::fmt::Write::write_fmt(
        &mut p,
        format_args!(
            "/sys/dev/char/{}:{}",
            rustix::fs::major(rdev),
            rustix::fs::minor(rdev)
        ),
    );
    p
}

/// Whether the character device `rdev` is a UBI volume (its sysfs entry has a LEB size).
pub fn is_volume(rdev: u64) -> bool {
    read_sys_u32(&sys_path(&sys_dir(rdev), "usable_eb_size")).is_some()
}

/// Opens the UBI volume at `path` (a character device whose sysfs directory is `sys`).
pub(crate) fn open(path: &str, sys: &str, writable: bool) -> Result<DeviceFlash, DeviceError> {
    let sys_number = |file| {
        read_sys_u32(&sys_path(sys, file)).ok_or(DeviceError::Io {
            op: Op::Info,
            offset: 0,
            errno: rustix::io::Errno::NODEV,
        })
    };
    let leb_size = sys_number("usable_eb_size")?;
    let lebs = sys_number("reserved_ebs")?;
    // The device's minimum I/O unit (a NAND page), for `info`; UBI pads a change to it.
    let min_io = read_sys_u32(&sys_path(sys, "../min_io_size")).unwrap_or(0);
    let fd = open_fd(path, writable)?;
    let capacity = u64::from(leb_size) * u64::from(lebs);
    if leb_size == 0 || lebs < 2 {
        return Err(DeviceError::BadGeometry {
            size: capacity,
            erase_size: leb_size,
        });
    }
    Ok(DeviceFlash {
        fd,
        capacity,
        erase_size: leb_size,
        backend: Backend::Ubi { min_io },
        ecc_corrected: 0,
    })
}

/// The volume named `name` on any attached UBI device: its `/dev/ubiX_Y` path.
pub fn find_volume(name: &str) -> Option<crate::device::DevicePath> {
    let dir = rustix::fs::open(
        c"/sys/class/ubi",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 1024];
    let mut entries = rustix::fs::RawDir::new(&dir, &mut buf);
    while let Some(Ok(entry)) = entries.next() {
        let Ok(volume) = entry.file_name().to_str() else {
            continue;
        };
        // Volumes are ubiX_Y; ubiX is the device, ubi_ctrl the control node.
        let Some(rest) = volume.strip_prefix("ubi") else {
            continue;
        };
        if !rest.contains('_') || rest.starts_with('_') {
            continue;
        }
        let mut sys = SysPath::new();
        let _ = sys.push_str("/sys/class/ubi/");
        let _ = sys.push_str(volume);
        let mut nbuf = [0u8; 128];
        if read_sys(&sys_path(&sys, "name"), &mut nbuf) == Some(name) {
            let mut dev = crate::device::DevicePath::new();
            let _ = dev.push_str("/dev/");
            dev.push_str(volume).ok()?;
            return Some(dev);
        }
    }
    None
}

/// `Leb` for the volume behind `flash` (whose backend is UBI).
pub(crate) fn volume(flash: &DeviceFlash) -> Volume<'_> {
    Volume {
        fd: flash.fd.as_fd(),
        leb_size: flash.erase_size,
    }
}
