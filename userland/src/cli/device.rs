//! Opening the partition: an MTD character device, a block device or an image file, behind one
//! flash type that also drives the progress display.

use super::error::CliError;
use indicatif::ProgressBar;
use snapinit::file::FileFlash;
use snapinit::flash::{DeviceError, Durable, ErrorType, Geometry, NorFlash, ReadNorFlash};
use snapinit::mtd::{find_partition, MtdFlash};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

enum Backend {
    Mtd(MtdFlash),
    File(FileFlash),
}

pub struct Device {
    backend: Backend,
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
        let meta = std::fs::metadata(path).map_err(|source| CliError::DeviceIo {
            path: path.to_path_buf(),
            source,
        })?;
        let dev_err = |err| CliError::Device {
            path: path.to_path_buf(),
            err,
        };
        let backend = if meta.file_type().is_char_device() {
            let s = path.to_str().ok_or_else(|| CliError::DeviceIo {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "path is not UTF-8"),
            })?;
            Backend::Mtd(MtdFlash::open(s, writable).map_err(dev_err)?)
        } else {
            Backend::File(FileFlash::open(path, erase_size, writable).map_err(dev_err)?)
        };
        Ok(Device {
            backend,
            path: path.to_path_buf(),
            progress: ProgressBar::hidden(),
        })
    }

    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Mtd(_) => "mtd",
            Backend::File(_) => "file",
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
        match &self.backend {
            Backend::Mtd(f) => f.erase_size(),
            Backend::File(f) => f.erase_size(),
        }
    }
}

impl ReadNorFlash for Device {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), DeviceError> {
        match &mut self.backend {
            Backend::Mtd(f) => f.read(offset, bytes),
            Backend::File(f) => f.read(offset, bytes),
        }
    }

    fn capacity(&self) -> usize {
        match &self.backend {
            Backend::Mtd(f) => f.capacity(),
            Backend::File(f) => f.capacity(),
        }
    }
}

impl NorFlash for Device {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = 1;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), DeviceError> {
        match &mut self.backend {
            Backend::Mtd(f) => f.erase(from, to)?,
            Backend::File(f) => f.erase(from, to)?,
        }
        self.progress.inc(u64::from(to.saturating_sub(from)));
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), DeviceError> {
        match &mut self.backend {
            Backend::Mtd(f) => f.write(offset, bytes)?,
            Backend::File(f) => f.write(offset, bytes)?,
        }
        self.progress.inc(bytes.len() as u64);
        Ok(())
    }
}

impl Durable for Device {
    fn sync(&mut self) -> Result<(), DeviceError> {
        match &mut self.backend {
            Backend::Mtd(f) => f.sync(),
            Backend::File(f) => f.sync(),
        }
    }
}
