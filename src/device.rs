//! A Linux partition as flash: one type for an MTD character device and for a file or block
//! device, so the boot path and the tool each carry one copy of the chain code.
//!
//! They differ only in how an erase happens (the MEMERASE ioctl, or writing 0xFF) and how
//! writes become durable (closing the MTD device, or fdatasync); mtd.rs and file.rs hold those.

use crate::flash::{
    check_range, read_full, write_full, DeviceError, Durable, ErrorType, Geometry, NorFlash, Op,
    ReadNorFlash,
};
use crate::{file, mtd, ubi};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, Mode, OFlags};

/// Longest device path kept for reopening an MTD device.
pub type DevicePath = heapless::String<64>;

pub(crate) enum Backend {
    Mtd {
        path: DevicePath,
        writable: bool,
        /// The ECC counters after the last read (None: the driver keeps none).
        ecc: Option<mtd::EccStats>,
    },
    /// A UBI volume (ubi.rs): programs are atomic LEB changes, erases atomic LEB erases.
    Ubi {
        /// The UBI device's minimum I/O unit (a NAND page), 0 if unknown.
        min_io: u32,
    },
    File,
}

/// What kind of medium a `DeviceFlash` is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// An MTD character device that programs single bytes (NOR, block2mtd, mtdram).
    Mtd,
    /// A UBI volume; the erase size is its LEB size.
    Ubi { min_io: u32 },
    /// A regular file or block device (an image).
    File,
}

pub struct DeviceFlash {
    pub(crate) fd: OwnedFd,
    pub(crate) capacity: u64,
    pub(crate) erase_size: u32,
    pub(crate) backend: Backend,
    /// Bit flips the MTD device's ECC corrected in our reads since it was opened.
    pub(crate) ecc_corrected: u32,
}

pub(crate) fn open_fd(path: &str, writable: bool) -> Result<OwnedFd, DeviceError> {
    crate::cpath::open(path, open_flags(writable), Mode::empty()).map_err(open_error)
}

fn open_flags(writable: bool) -> OFlags {
    if writable {
        OFlags::RDWR
    } else {
        OFlags::RDONLY
    }
    .union(OFlags::CLOEXEC)
}

fn open_error(errno: rustix::io::Errno) -> DeviceError {
    DeviceError::Io {
        op: Op::Open,
        offset: 0,
        errno,
    }
}

impl DeviceFlash {
    /// Opens `path` as MTD if it is a character device, else as a file or block device with
    /// the given erase size (MTD devices report their own).
    pub fn open(path: &str, erase_size: u32, writable: bool) -> Result<Self, DeviceError> {
        let st = crate::cpath::stat(path).map_err(|errno| DeviceError::Io {
            op: Op::Open,
            offset: 0,
            errno,
        })?;
        if FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice {
            // st_rdev's width differs between architectures.
            #[allow(clippy::unnecessary_cast)]
            let rdev = st.st_rdev as u64;
            if ubi::is_volume(rdev) {
                ubi::open(path, &ubi::sys_dir(rdev), writable)
            } else {
                mtd::open(path, writable)
            }
        } else {
            file::open(open_fd(path, writable)?, erase_size)
        }
    }

    pub fn open_file<P: rustix::path::Arg>(
        path: P,
        erase_size: u32,
        writable: bool,
    ) -> Result<Self, DeviceError> {
        let fd = rustix::fs::open(path, open_flags(writable), Mode::empty()).map_err(open_error)?;
        file::open(fd, erase_size)
    }

    pub fn is_mtd(&self) -> bool {
        matches!(self.backend, Backend::Mtd { .. })
    }

    pub fn medium(&self) -> Medium {
        match self.backend {
            Backend::Mtd { .. } => Medium::Mtd,
            Backend::Ubi { min_io } => Medium::Ubi { min_io },
            Backend::File => Medium::File,
        }
    }

    /// Bit flips the device's ECC corrected in the reads made through this handle: the data
    /// was right, but the part is wearing (0 on NOR, files and block devices).
    pub fn ecc_corrected(&self) -> u32 {
        self.ecc_corrected
    }
}

impl ErrorType for DeviceFlash {
    type Error = DeviceError;
}

impl Geometry for DeviceFlash {
    fn erase_size(&self) -> u32 {
        self.erase_size
    }

    fn erase_tears(&self) -> bool {
        !matches!(self.medium(), Medium::Ubi { .. })
    }
}

impl ReadNorFlash for DeviceFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), DeviceError> {
        check_range(self.capacity, offset, bytes.len())?;
        read_full(self.fd.as_fd(), u64::from(offset), bytes)?;
        // mtdchar returns the data of a read whose ECC failed as if it were good: the
        // device's counters tell. (They count for the whole device; while we hold it, only
        // our reads move them.)
        if let Backend::Mtd {
            ecc: Some(last), ..
        } = &mut self.backend
        {
            if let Some(now) = mtd::ecc_stats(self.fd.as_fd()) {
                let change = now.since(*last);
                *last = now;
                self.ecc_corrected = self.ecc_corrected.saturating_add(change.corrected);
                if change.failed != 0 {
                    return Err(DeviceError::Uncorrectable {
                        offset: u64::from(offset),
                        len: bytes.len(),
                    });
                }
            }
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        usize::try_from(self.capacity).unwrap_or(usize::MAX)
    }
}

impl NorFlash for DeviceFlash {
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
        check_range(self.capacity, from, (to - from) as usize)?;
        match self.backend {
            Backend::Mtd { .. } => mtd::erase(self.fd.as_fd(), from, to),
            Backend::Ubi { .. } => ubi::erase(&mut ubi::volume(self), from, to),
            Backend::File => file::erase(self.fd.as_fd(), from, to),
        }
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), DeviceError> {
        check_range(self.capacity, offset, bytes.len())?;
        if let Backend::Ubi { .. } = self.backend {
            return ubi::program(&mut ubi::volume(self), offset, bytes);
        }
        write_full(self.fd.as_fd(), Op::Program, u64::from(offset), bytes)
    }
}

impl Durable for DeviceFlash {
    fn sync(&mut self) -> Result<(), DeviceError> {
        match &self.backend {
            // The MTD character device answers fsync with EINVAL; closing it syncs the device
            // (mtdchar calls mtd_sync on release), so sync is a reopen, then a close.
            Backend::Mtd { path, writable, .. } => {
                self.fd = open_fd(path.as_str(), *writable)?;
                Ok(())
            }
            // UBI changes and erases are synchronous; fsync flushes the MTD below (ubi_sync).
            Backend::Ubi { .. } | Backend::File => {
                rustix::fs::fdatasync(&self.fd).map_err(|errno| DeviceError::Io {
                    op: Op::Sync,
                    offset: 0,
                    errno,
                })
            }
        }
    }
}
