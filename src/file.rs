//! A regular file or block device as flash: erase writes 0xFF, program overwrites. Image files
//! for tests and the host, block2mtd-style disks and eMMC partitions all work the same way.

use crate::flash::{
    check_range, read_full, write_full, DeviceError, Durable, ErrorType, Geometry, NorFlash, Op,
    ReadNorFlash,
};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags, SeekFrom};

pub struct FileFlash {
    fd: OwnedFd,
    capacity: u64,
    erase_size: u32,
}

impl FileFlash {
    /// Opens `path` with the given erase size; the usable capacity is rounded down to whole
    /// erase blocks.
    pub fn open<P: rustix::path::Arg>(
        path: P,
        erase_size: u32,
        writable: bool,
    ) -> Result<Self, DeviceError> {
        let flags = if writable {
            OFlags::RDWR
        } else {
            OFlags::RDONLY
        } | OFlags::CLOEXEC;
        let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|errno| DeviceError::Io {
            op: Op::Open,
            offset: 0,
            errno,
        })?;
        // lseek to the end gives the size of regular files and block devices alike.
        let size = rustix::fs::seek(&fd, SeekFrom::End(0)).map_err(|errno| DeviceError::Io {
            op: Op::Info,
            offset: 0,
            errno,
        })?;
        Self::from_fd(fd, size, erase_size)
    }

    pub fn from_fd(fd: OwnedFd, size: u64, erase_size: u32) -> Result<Self, DeviceError> {
        if erase_size < 512 || !erase_size.is_power_of_two() {
            return Err(DeviceError::BadGeometry { size, erase_size });
        }
        let capacity =
            (size.min(u64::from(u32::MAX)) / u64::from(erase_size)) * u64::from(erase_size);
        if capacity < 2 * u64::from(erase_size) {
            return Err(DeviceError::BadGeometry { size, erase_size });
        }
        Ok(FileFlash {
            fd,
            capacity,
            erase_size,
        })
    }
}

impl ErrorType for FileFlash {
    type Error = DeviceError;
}

impl Geometry for FileFlash {
    fn erase_size(&self) -> u32 {
        self.erase_size
    }
}

impl ReadNorFlash for FileFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), DeviceError> {
        check_range(self.capacity, offset, bytes.len())?;
        read_full(self.fd.as_fd(), u64::from(offset), bytes)
    }

    fn capacity(&self) -> usize {
        usize::try_from(self.capacity).unwrap_or(usize::MAX)
    }
}

impl NorFlash for FileFlash {
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
        let ones = [0xFFu8; 4096];
        let mut at = from;
        while at < to {
            let n = (to - at).min(ones.len() as u32);
            write_full(
                self.fd.as_fd(),
                Op::Erase,
                u64::from(at),
                &ones[..n as usize],
            )?;
            at += n;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), DeviceError> {
        check_range(self.capacity, offset, bytes.len())?;
        write_full(self.fd.as_fd(), Op::Program, u64::from(offset), bytes)
    }
}

impl Durable for FileFlash {
    fn sync(&mut self) -> Result<(), DeviceError> {
        rustix::fs::fdatasync(&self.fd).map_err(|errno| DeviceError::Io {
            op: Op::Sync,
            offset: 0,
            errno,
        })
    }
}
