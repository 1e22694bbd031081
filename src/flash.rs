//! The flash interface: embedded-storage's `ReadNorFlash`/`NorFlash`, plus what that interface
//! cannot say about a Linux partition.

pub use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash,
};

/// embedded-storage fixes `ERASE_SIZE` at compile time, but an MTD partition reports its erase
/// size at run time. Drivers here set `NorFlash::ERASE_SIZE` to 1 and check real alignment in
/// `erase`; the format uses this value.
pub trait Geometry {
    fn erase_size(&self) -> u32;

    /// Whether an erase cut by a power loss can leave an erase block between its old bytes
    /// and erased ones (NOR, files, block devices). A UBI LEB is unmapped atomically.
    fn erase_tears(&self) -> bool {
        true
    }
}

/// Makes every earlier program and erase durable before the next one is issued. The writer calls
/// it at each ordering point; without it a page cache (block2mtd, a file) may reorder writes
/// across a power cut.
pub trait Durable: ErrorType {
    fn sync(&mut self) -> Result<(), Self::Error>;
}

/// An erase size the format can use: at least 512 bytes, a multiple of 64. NOR erase blocks
/// are powers of two; a UBI volume's LEB is its PEB less UBI's headers (126,976 on a NAND
/// part with 128 KiB blocks and 2 KiB pages; 65,408 on 64 KiB NOR blocks).
pub fn usable_erase_size(n: u32) -> bool {
    n >= 512 && n % 64 == 0
}

/// What a Linux-backed flash operation was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Open,
    Info,
    Read,
    Program,
    Erase,
    Sync,
}

impl Op {
    /// The variant's name, as in messages (`Read at 0x10000 failed: ...`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Open => "Open",
            Op::Info => "Info",
            Op::Read => "Read",
            Op::Program => "Program",
            Op::Erase => "Erase",
            Op::Sync => "Sync",
        }
    }
}

/// Errors of the Linux-backed drivers (MTD character device, file or block device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    Io {
        op: Op,
        offset: u64,
        errno: rustix::io::Errno,
    },
    /// The device returned fewer bytes than asked, or none.
    Short {
        op: Op,
        offset: u64,
    },
    /// An erase not aligned to the erase size.
    NotAligned {
        offset: u64,
    },
    OutOfBounds {
        offset: u64,
    },
    /// The MTD device's ECC could not correct a read of `len` bytes at `offset` (its data
    /// came back wrong).
    Uncorrectable {
        offset: u64,
        len: usize,
    },
    /// The path is a directory or another kind of file that cannot hold a chain.
    NotFlash,
    /// The device reports a geometry the format cannot use.
    BadGeometry {
        size: u64,
        erase_size: u32,
    },
    /// An MTD device that cannot take the chain's single-byte mark programs in place.
    NotNor(NotNor),
}

/// Why an MTD device is not NOR-like: the marks (FORMAT.md) are single bytes programmed over
/// bytes already written, which only a medium that programs bytes and clears bits can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNor {
    /// Raw NAND: a page is programmed once per erase and bad blocks need managing. UBI does
    /// both, and the chain lives on a UBI volume there.
    RawNand { page: u32 },
    /// gluebi's MTD view of a UBI volume: the volume's own device (`/dev/ubiX_Y`) is the way in.
    Gluebi,
    /// Another device that programs in units larger than a byte (DataFlash, ECC'd SPI-NOR).
    WriteUnit { bytes: u32 },
}

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            // UBI refuses an atomic LEB change while any other descriptor of the volume is
            // open (a probe such as fstools' `block info`): nothing was changed, and the same
            // write succeeds once it is closed.
            DeviceError::Io {
                op,
                offset,
                errno: rustix::io::Errno::BUSY,
            } => write!(
                f,
                "{} at {offset:#x} failed: {}: another process holds the device open (a UBI \
                 volume takes a write only while the writer's descriptor is the only one): run \
                 the command again once it is closed",
                op.name(),
                rustix::io::Errno::BUSY
            ),
            DeviceError::Io { op, offset, errno } => {
                write!(f, "{} at {offset:#x} failed: {errno}", op.name())
            }
            DeviceError::Short { op, offset } => write!(f, "short {} at {offset:#x}", op.name()),
            DeviceError::NotAligned { offset } => {
                write!(f, "erase at {offset:#x} is not erase-block aligned")
            }
            DeviceError::OutOfBounds { offset } => write!(f, "offset {offset:#x} out of bounds"),
            DeviceError::Uncorrectable { offset, len } => write!(
                f,
                "uncorrectable ECC error reading {len} bytes at {offset:#x}"
            ),
            DeviceError::NotFlash => f.write_str("not an MTD device, block device or regular file"),
            DeviceError::BadGeometry { size, erase_size } => {
                write!(
                    f,
                    "unusable geometry: size {size}, erase size {erase_size} (a chain needs two \
                     erase blocks or more, of a multiple of 64 bytes, at least 512)"
                )
            }
            DeviceError::NotNor(NotNor::RawNand { page }) => write!(
                f,
                "raw NAND ({page}-byte pages) cannot hold the chain: a page programs once per \
                 erase and bad blocks need managing; attach UBI (ubiattach) and put \
                 rootfs_data on a volume (ubimkvol -N rootfs_data)"
            ),
            DeviceError::NotNor(NotNor::Gluebi) => f.write_str(
                "an MTD view of a UBI volume (gluebi); use the volume itself (/dev/ubiX_Y)",
            ),
            DeviceError::NotNor(NotNor::WriteUnit { bytes }) => write!(
                f,
                "the device programs {bytes} bytes at a time; the chain's marks need \
                 single-byte programs (NOR)"
            ),
        }
    }
}

impl NorFlashError for DeviceError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            DeviceError::NotAligned { .. } => NorFlashErrorKind::NotAligned,
            DeviceError::OutOfBounds { .. } => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

pub(crate) fn check_range(capacity: u64, offset: u32, len: usize) -> Result<(), DeviceError> {
    if u64::from(offset) + len as u64 > capacity {
        return Err(DeviceError::OutOfBounds {
            offset: u64::from(offset),
        });
    }
    Ok(())
}

/// `pread` until `buf` is full.
pub(crate) fn read_full(
    fd: rustix::fd::BorrowedFd<'_>,
    mut offset: u64,
    mut buf: &mut [u8],
) -> Result<(), DeviceError> {
    while !buf.is_empty() {
        match rustix::io::pread(fd, &mut *buf, offset) {
            Ok(0) => {
                return Err(DeviceError::Short {
                    op: Op::Read,
                    offset,
                })
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(errno) => {
                return Err(DeviceError::Io {
                    op: Op::Read,
                    offset,
                    errno,
                })
            }
        }
    }
    Ok(())
}

/// `pwrite` until `data` is all written.
pub(crate) fn write_full(
    fd: rustix::fd::BorrowedFd<'_>,
    op: Op,
    mut offset: u64,
    mut data: &[u8],
) -> Result<(), DeviceError> {
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, offset) {
            Ok(0) => return Err(DeviceError::Short { op, offset }),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(errno) => return Err(DeviceError::Io { op, offset, errno }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn op_names_are_the_debug_names() {
        for op in [
            Op::Open,
            Op::Info,
            Op::Read,
            Op::Program,
            Op::Erase,
            Op::Sync,
        ] {
            assert_eq!(op.name(), std::format!("{op:?}"));
        }
    }

    #[test]
    fn a_busy_device_says_what_to_do() {
        let busy = DeviceError::Io {
            op: Op::Program,
            offset: 0x10000,
            errno: rustix::io::Errno::BUSY,
        };
        let said = std::format!("{busy}");
        assert!(said.starts_with("Program at 0x10000 failed: "), "{said}");
        assert!(
            said.contains("another process holds the device open"),
            "{said}"
        );
        assert!(
            said.ends_with("run the command again once it is closed"),
            "{said}"
        );
        let other = DeviceError::Io {
            op: Op::Program,
            offset: 0x10000,
            errno: rustix::io::Errno::IO,
        };
        assert!(!std::format!("{other}").contains("another process"));
    }
}
