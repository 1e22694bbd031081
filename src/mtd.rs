//! A Linux MTD character device (`/dev/mtdN`) as flash, and finding a partition by name.

use crate::flash::{
    check_range, read_full, write_full, DeviceError, Durable, ErrorType, Geometry, NorFlash, Op,
    ReadNorFlash,
};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::ioctl::{opcode, Getter, Setter};

/// `struct mtd_info_user` from <mtd/mtd-abi.h>.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct MtdInfoUser {
    kind: u8,
    flags: u32,
    size: u32,
    erasesize: u32,
    writesize: u32,
    oobsize: u32,
    padding: u64,
}

/// `struct erase_info_user` from <mtd/mtd-abi.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct EraseInfoUser {
    start: u32,
    length: u32,
}

const MEMGETINFO: rustix::ioctl::Opcode = opcode::read::<MtdInfoUser>(b'M', 1);
const MEMERASE: rustix::ioctl::Opcode = opcode::write::<EraseInfoUser>(b'M', 2);

/// Longest device path kept for reopening.
pub type DevicePath = heapless::String<64>;

pub struct MtdFlash {
    fd: OwnedFd,
    path: DevicePath,
    writable: bool,
    size: u32,
    erase_size: u32,
}

fn open_fd(path: &str, writable: bool) -> Result<OwnedFd, DeviceError> {
    let flags = if writable {
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    } | OFlags::CLOEXEC;
    rustix::fs::open(path, flags, Mode::empty()).map_err(|errno| DeviceError::Io {
        op: Op::Open,
        offset: 0,
        errno,
    })
}

impl MtdFlash {
    pub fn open(path: &str, writable: bool) -> Result<Self, DeviceError> {
        let fd = open_fd(path, writable)?;
        // SAFETY: MEMGETINFO fills exactly one `mtd_info_user`, which `MtdInfoUser` mirrors.
        let info = unsafe { rustix::ioctl::ioctl(&fd, Getter::<MEMGETINFO, MtdInfoUser>::new()) }
            .map_err(|errno| DeviceError::Io {
            op: Op::Info,
            offset: 0,
            errno,
        })?;
        let erase_size = info.erasesize;
        if erase_size == 0 || info.size < 2 * erase_size {
            return Err(DeviceError::BadGeometry {
                size: u64::from(info.size),
                erase_size,
            });
        }
        let mut stored = DevicePath::new();
        stored
            .push_str(path)
            .map_err(|_| DeviceError::BadGeometry {
                size: u64::from(info.size),
                erase_size,
            })?;
        Ok(MtdFlash {
            fd,
            path: stored,
            writable,
            size: info.size - info.size % erase_size,
            erase_size,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

impl ErrorType for MtdFlash {
    type Error = DeviceError;
}

impl Geometry for MtdFlash {
    fn erase_size(&self) -> u32 {
        self.erase_size
    }
}

impl ReadNorFlash for MtdFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), DeviceError> {
        check_range(u64::from(self.size), offset, bytes.len())?;
        read_full(self.fd.as_fd(), u64::from(offset), bytes)
    }

    fn capacity(&self) -> usize {
        self.size as usize
    }
}

impl NorFlash for MtdFlash {
    const WRITE_SIZE: usize = 1;
    /// The real erase size is `Geometry::erase_size`, checked at run time.
    const ERASE_SIZE: usize = 1;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), DeviceError> {
        let e = self.erase_size;
        if from % e != 0 || to % e != 0 || to < from {
            return Err(DeviceError::NotAligned {
                offset: u64::from(from),
            });
        }
        check_range(u64::from(self.size), from, (to - from) as usize)?;
        let arg = EraseInfoUser {
            start: from,
            length: to - from,
        };
        // SAFETY: MEMERASE reads exactly one `erase_info_user`, which `EraseInfoUser` mirrors.
        unsafe { rustix::ioctl::ioctl(&self.fd, Setter::<MEMERASE, EraseInfoUser>::new(arg)) }
            .map_err(|errno| DeviceError::Io {
                op: Op::Erase,
                offset: u64::from(from),
                errno,
            })
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), DeviceError> {
        check_range(u64::from(self.size), offset, bytes.len())?;
        write_full(self.fd.as_fd(), Op::Program, u64::from(offset), bytes)
    }
}

impl Durable for MtdFlash {
    /// The MTD character device answers fsync with EINVAL; closing it syncs the device
    /// (mtdchar calls mtd_sync on release), so sync is a close and reopen.
    fn sync(&mut self) -> Result<(), DeviceError> {
        let fresh = open_fd(&self.path, self.writable)?;
        // Dropping the old descriptor after the new one is open keeps the device referenced.
        self.fd = fresh;
        Ok(())
    }
}

/// Finds the `/dev/mtdN` index of the partition called `name` in the text of /proc/mtd:
/// `mtd3: 00e80000 00010000 "rootfs_data"`.
pub fn find_partition(proc_mtd: &[u8], name: &str) -> Option<u32> {
    proc_mtd.split(|&b| b == b'\n').find_map(|line| {
        let rest = line.strip_prefix(b"mtd")?;
        let colon = rest.iter().position(|&b| b == b':')?;
        let index = core::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
        let open = line.iter().position(|&b| b == b'"')?;
        let quoted = &line[open + 1..];
        let close = quoted.iter().position(|&b| b == b'"')?;
        (&quoted[..close] == name.as_bytes()).then_some(index)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_partition_by_name() {
        let text = b"dev:    size   erasesize  name\nmtd0: 00040000 00010000 \"u-boot\"\nmtd5: 00e80000 00010000 \"rootfs_data\"\n";
        assert_eq!(find_partition(text, "rootfs_data"), Some(5));
        assert_eq!(find_partition(text, "u-boot"), Some(0));
        assert_eq!(find_partition(text, "rootfs"), None);
        assert_eq!(find_partition(b"garbage\n", "rootfs"), None);
    }

    #[test]
    fn mtd_abi_sizes() {
        assert_eq!(core::mem::size_of::<MtdInfoUser>(), 32);
        assert_eq!(core::mem::size_of::<EraseInfoUser>(), 8);
    }
}
