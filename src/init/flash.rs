//! One flash type for the boot path: the chain walk and replay are generic
//! over the driver, and instantiating them for both MTD and file-backed
//! flash would carry two copies of the replay code in a size-bound binary.

use snapinit::file::FileFlash;
use snapinit::flash::{DeviceError, ErrorType, Geometry, ReadNorFlash};
use snapinit::mtd::MtdFlash;

pub enum BootFlash {
    Mtd(MtdFlash),
    File(FileFlash),
}

impl ErrorType for BootFlash {
    type Error = DeviceError;
}

impl Geometry for BootFlash {
    fn erase_size(&self) -> u32 {
        match self {
            Self::Mtd(f) => f.erase_size(),
            Self::File(f) => f.erase_size(),
        }
    }
}

impl ReadNorFlash for BootFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), DeviceError> {
        match self {
            Self::Mtd(f) => f.read(offset, bytes),
            Self::File(f) => f.read(offset, bytes),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Self::Mtd(f) => f.capacity(),
            Self::File(f) => f.capacity(),
        }
    }
}
