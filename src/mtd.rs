//! A Linux MTD character device (`/dev/mtdN`): its geometry and erase ioctls, and finding a
//! partition by name in /proc/mtd.

use crate::device::{open_fd, Backend, DeviceFlash, DevicePath};
use crate::flash::{DeviceError, NotNor, Op};
use rustix::fd::{AsFd, BorrowedFd};
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

/// `struct mtd_ecc_stats` from <mtd/mtd-abi.h>: counters of the whole MTD device since it
/// was attached. mtdchar hands back the data of a read whose ECC failed without an error (so
/// that dump tools can see it); these counters are the only place the failure shows.
#[repr(C)]
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EccStats {
    pub(crate) corrected: u32,
    pub(crate) failed: u32,
    badblocks: u32,
    bbtblocks: u32,
}

/// What happened to the reads between two samples of the ECC counters.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EccChange {
    /// Bit flips the ECC corrected: the data read is right, the part is wearing.
    pub(crate) corrected: u32,
    /// Reads the ECC could not correct: the data read is wrong.
    pub(crate) failed: u32,
}

impl EccStats {
    /// The change since `earlier`; the kernel's counters are u32 and wrap.
    pub(crate) fn since(self, earlier: EccStats) -> EccChange {
        EccChange {
            corrected: self.corrected.wrapping_sub(earlier.corrected),
            failed: self.failed.wrapping_sub(earlier.failed),
        }
    }
}

/// `mtd_info_user.type` values (<mtd/mtd-abi.h>) that are not NOR-like.
const MTD_NANDFLASH: u8 = 4;
const MTD_UBIVOLUME: u8 = 7;
const MTD_MLCNANDFLASH: u8 = 8;

/// Refuses what cannot take single-byte programs over written bytes: the writer's marks and
/// PID 1's trial mark are such programs, and a chain could never be written there anyway.
fn check_nor(info: &MtdInfoUser) -> Result<(), NotNor> {
    match info.kind {
        MTD_NANDFLASH | MTD_MLCNANDFLASH => Err(NotNor::RawNand {
            page: info.writesize,
        }),
        MTD_UBIVOLUME => Err(NotNor::Gluebi),
        _ if info.writesize > 1 => Err(NotNor::WriteUnit {
            bytes: info.writesize,
        }),
        _ => Ok(()),
    }
}

const MEMGETINFO: rustix::ioctl::Opcode = opcode::read::<MtdInfoUser>(b'M', 1);
const MEMERASE: rustix::ioctl::Opcode = opcode::write::<EraseInfoUser>(b'M', 2);
const ECCGETSTATS: rustix::ioctl::Opcode = opcode::read::<EccStats>(b'M', 18);

/// The device's ECC counters, or None when its driver keeps none (NOR has no ECC; the
/// counters then stay 0, which is fine too).
pub(crate) fn ecc_stats(fd: BorrowedFd<'_>) -> Option<EccStats> {
    // SAFETY: ECCGETSTATS fills exactly one `mtd_ecc_stats`, which `EccStats` mirrors.
    unsafe { rustix::ioctl::ioctl(fd, Getter::<ECCGETSTATS, EccStats>::new()) }.ok()
}

pub(crate) fn open(path: &str, writable: bool) -> Result<DeviceFlash, DeviceError> {
    let fd = open_fd(path, writable)?;
    // SAFETY: MEMGETINFO fills exactly one `mtd_info_user`, which `MtdInfoUser` mirrors.
    let info = unsafe { rustix::ioctl::ioctl(&fd, Getter::<MEMGETINFO, MtdInfoUser>::new()) }
        .map_err(|errno| DeviceError::Io {
            op: Op::Info,
            offset: 0,
            errno,
        })?;
    check_nor(&info).map_err(DeviceError::NotNor)?;
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
    let ecc = ecc_stats(fd.as_fd());
    Ok(DeviceFlash {
        fd,
        capacity: u64::from(info.size - info.size % erase_size),
        erase_size,
        backend: Backend::Mtd {
            path: stored,
            writable,
            ecc,
        },
        ecc_corrected: 0,
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

/// Whether MTD device `index` is gluebi's view of a UBI volume (its sysfs type is "ubi").
pub(crate) fn is_ubi_volume(index: u32) -> bool {
    let mut path = crate::ubi::SysPath::new();
    let _ = core::fmt::Write::write_fmt(&mut path, format_args!("/sys/class/mtd/mtd{index}/type"));
    let mut buf = [0u8; 16];
    crate::ubi::read_sys(&path, &mut buf) == Some("ubi")
}

/// `/dev/mtdN` for index `N`.
pub(crate) fn dev_path(index: u32) -> DevicePath {
    let mut path = DevicePath::new();
    let _ = core::fmt::Write::write_fmt(&mut path, format_args!("/dev/mtd{index}"));
    path
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
    fn refuses_what_is_not_nor() {
        let info = |kind, writesize| MtdInfoUser {
            kind,
            writesize,
            ..MtdInfoUser::default()
        };
        // NOR (3) and block2mtd/mtdram (RAM, 1) program bytes.
        assert_eq!(check_nor(&info(3, 1)), Ok(()));
        assert_eq!(check_nor(&info(1, 1)), Ok(()));
        assert_eq!(
            check_nor(&info(MTD_NANDFLASH, 2048)),
            Err(NotNor::RawNand { page: 2048 })
        );
        assert_eq!(
            check_nor(&info(MTD_MLCNANDFLASH, 4096)),
            Err(NotNor::RawNand { page: 4096 })
        );
        assert_eq!(check_nor(&info(MTD_UBIVOLUME, 2048)), Err(NotNor::Gluebi));
        // DataFlash (6), or a SPI-NOR with on-die ECC that programs 16 bytes at a time.
        assert_eq!(
            check_nor(&info(6, 528)),
            Err(NotNor::WriteUnit { bytes: 528 })
        );
        assert_eq!(
            check_nor(&info(3, 16)),
            Err(NotNor::WriteUnit { bytes: 16 })
        );
    }

    #[test]
    fn mtd_abi_sizes() {
        assert_eq!(core::mem::size_of::<MtdInfoUser>(), 32);
        assert_eq!(core::mem::size_of::<EraseInfoUser>(), 8);
        assert_eq!(core::mem::size_of::<EccStats>(), 16);
        // _IOR('M', 18, struct mtd_ecc_stats) as <mtd/mtd-abi.h> spells it.
        assert_eq!(ECCGETSTATS, 0x8010_4d12);
    }

    #[test]
    fn ecc_change_counts_across_the_counters_wrap() {
        let at = |corrected, failed| EccStats {
            corrected,
            failed,
            ..EccStats::default()
        };
        assert_eq!(at(5, 1).since(at(5, 1)), EccChange::default());
        assert_eq!(
            at(7, 1).since(at(5, 1)),
            EccChange {
                corrected: 2,
                failed: 0
            }
        );
        assert_eq!(at(1, 0).since(at(u32::MAX, u32::MAX)).corrected, 2);
        assert_eq!(at(1, 0).since(at(u32::MAX, u32::MAX)).failed, 1);
    }
}
