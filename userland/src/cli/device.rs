//! Opening the partition: an MTD character device, a block device or an image file, behind one
//! flash type that also drives the progress display.

use super::error::CliError;
use indicatif::ProgressBar;
use snapinit::device::DeviceFlash;
use snapinit::flash::{DeviceError, Durable, ErrorType, Geometry, NorFlash, ReadNorFlash};
use snapinit::mtd::find_partition;
use std::path::{Path, PathBuf};

pub struct Device {
    flash: DeviceFlash,
    pub path: PathBuf,
    progress: ProgressBar,
}

/// Where the partition is and how to open it.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub device: Option<PathBuf>,
    pub partition: String,
    pub erase_size: u32,
}

impl DeviceSpec {
    /// The device path: `--device`, or `/dev/mtdN` of the named partition in /proc/mtd.
    pub fn resolve(&self) -> Result<PathBuf, CliError> {
        if let Some(p) = &self.device {
            return Ok(p.clone());
        }
        let text = std::fs::read("/proc/mtd").map_err(|source| CliError::ProcMtd {
            name: self.partition.clone(),
            source,
        })?;
        let index = find_partition(&text, &self.partition)
            .ok_or_else(|| CliError::NoPartition(self.partition.clone()))?;
        Ok(PathBuf::from(format!("/dev/mtd{index}")))
    }
}

impl Device {
    pub fn open(path: &Path, erase_size: u32, writable: bool) -> Result<Self, CliError> {
        let s = path.to_str().ok_or_else(|| CliError::DeviceIo {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
        })?;
        let flash = DeviceFlash::open(s, erase_size, writable).map_err(|err| CliError::Device {
            path: path.to_path_buf(),
            err,
        })?;
        Ok(Device {
            flash,
            path: path.to_path_buf(),
            progress: ProgressBar::hidden(),
        })
    }

    pub fn kind(&self) -> &'static str {
        if self.flash.is_mtd() {
            "mtd"
        } else {
            "file"
        }
    }

    /// Every later erase and program advances `bar` by its byte count.
    pub fn set_progress(&mut self, bar: ProgressBar) {
        self.progress = bar;
    }

    pub fn finish_progress(&mut self) {
        self.progress.finish_and_clear();
        self.progress = ProgressBar::hidden();
    }
}

impl ErrorType for Device {
    type Error = DeviceError;
}

impl Geometry for Device {
    fn erase_size(&self) -> u32 {
        self.flash.erase_size()
    }
}

impl ReadNorFlash for Device {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), DeviceError> {
        self.flash.read(offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.flash.capacity()
    }
}

impl NorFlash for Device {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = 1;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), DeviceError> {
        self.flash.erase(from, to)?;
        self.progress.inc(u64::from(to.saturating_sub(from)));
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), DeviceError> {
        self.flash.write(offset, bytes)?;
        self.progress.inc(bytes.len() as u64);
        Ok(())
    }
}

impl Durable for Device {
    fn sync(&mut self) -> Result<(), DeviceError> {
        self.flash.sync()
    }
}
