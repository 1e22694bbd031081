//! A Linux MTD character device (`/dev/mtdN`): its geometry and erase ioctls, and finding a
//! partition by name in /proc/mtd.

use crate::device::{open_fd, Backend, DeviceFlash, DevicePath};
use crate::flash::{DeviceError, Op};
use rustix::fd::BorrowedFd;
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

pub(crate) fn open(path: &str, writable: bool) -> Result<DeviceFlash, DeviceError> {
    let fd = open_fd(path, writable)?;
    // SAFETY: MEMGETINFO fills exactly one `mtd_info_user`, which `MtdInfoUser` mirrors.
    let info = unsafe { rustix::ioctl::ioctl(&fd, Getter::<MEMGETINFO, MtdInfoUser>::new()) }
        .map_err(|errno| DeviceError::Io {
            op: Op::Info,
            offset: 0,
            errno,
        })?;
    let erase_size = info.erasesize;
    let bad = DeviceError::BadGeometry {
        size: u64::from(info.size),
        erase_size,
    };
    if erase_size == 0 || info.size < 2 * erase_size {
        return Err(bad);
    }
    let mut stored = DevicePath::new();
    stored.push_str(path).map_err(|_| bad)?;
    Ok(DeviceFlash {
        fd,
        capacity: u64::from(info.size - info.size % erase_size),
        erase_size,
        backend: Backend::Mtd {
            path: stored,
            writable,
        },
    })
}

pub(crate) fn erase(fd: BorrowedFd<'_>, from: u32, to: u32) -> Result<(), DeviceError> {
    let arg = EraseInfoUser {
        start: from,
        length: to - from,
    };
    // SAFETY: MEMERASE reads exactly one `erase_info_user`, which `EraseInfoUser` mirrors.
    unsafe { rustix::ioctl::ioctl(fd, Setter::<MEMERASE, EraseInfoUser>::new(arg)) }.map_err(
        |errno| DeviceError::Io {
            op: Op::Erase,
            offset: u64::from(from),
            errno,
        },
    )
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
