//! A regular file or block device as flash: erase writes 0xFF, program overwrites. Image files
//! for tests and the host, block2mtd-style disks and eMMC partitions all work the same way.

use crate::device::{Backend, DeviceFlash};
use crate::flash::{write_full, DeviceError, Op};
use rustix::fd::{BorrowedFd, OwnedFd};
use rustix::fs::SeekFrom;

/// The file or block device open at `fd`, with the given erase size; the usable capacity is
/// rounded down to whole erase blocks.
pub(crate) fn open(fd: OwnedFd, erase_size: u32) -> Result<DeviceFlash, DeviceError> {
    let st = rustix::fs::fstat(&fd).map_err(|errno| DeviceError::Io {
        op: Op::Info,
        offset: 0,
        errno,
    })?;
    if !matches!(
        rustix::fs::FileType::from_raw_mode(st.st_mode),
        rustix::fs::FileType::RegularFile | rustix::fs::FileType::BlockDevice
    ) {
        return Err(DeviceError::NotFlash);
    }
    // lseek to the end gives the size of regular files and block devices alike.
    let size = rustix::fs::seek(&fd, SeekFrom::End(0)).map_err(|errno| DeviceError::Io {
        op: Op::Info,
        offset: 0,
        errno,
    })?;
    if !crate::flash::usable_erase_size(erase_size) {
        return Err(DeviceError::BadGeometry { size, erase_size });
    }
    let capacity = (size.min(u64::from(u32::MAX)) / u64::from(erase_size)) * u64::from(erase_size);
    if capacity < 2 * u64::from(erase_size) {
        return Err(DeviceError::BadGeometry { size, erase_size });
    }
    Ok(DeviceFlash {
        fd,
        capacity,
        erase_size,
        backend: Backend::File,
        ecc_corrected: 0,
    })
}

/// Erasing a file is writing 0xFF, as erased NOR reads.
pub(crate) fn erase(fd: BorrowedFd<'_>, from: u32, to: u32) -> Result<(), DeviceError> {
    // A quarter of a typical erase block per write: few calls, a small stack.
    let ones = [0xFFu8; 16 * 1024];
    let mut at = from;
    while at < to {
        let n = (to - at).min(ones.len() as u32);
        write_full(fd, Op::Erase, u64::from(at), &ones[..n as usize])?;
        at += n;
    }
    Ok(())
}
