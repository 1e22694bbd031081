//! Opening the partition: an MTD character device, a block device or an image file, behind one
//! flash type that also drives the progress display.

use super::error::CliError;
use super::ui::Progress;
use snapinit::device::{DeviceFlash, Medium};
use snapinit::flash::{DeviceError, Durable, ErrorType, Geometry, NorFlash, ReadNorFlash};
use snapinit::header::HEADER_LEN;
use std::path::{Path, PathBuf};

pub struct Device {
    flash: DeviceFlash,
    pub path: PathBuf,
    progress: Progress,
    /// Per erase block: its header was read erased (all 0xFF) and this handle has not written
    /// over it since. A write surveys every block's header twice (the command's survey before
    /// packing, the writer's own after): on a mostly free 128 MiB partition that was 4,096
    /// reads, nearly all of erased headers. The lock is held, so only this handle changes them.
    erased_headers: Vec<bool>,
}

/// Where the partition is and how to open it.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub device: Option<PathBuf>,
    pub partition: String,
    /// `--erase-size`, if given.
    pub erase_size: Option<u32>,
}

impl DeviceSpec {
    /// The device path: `--device`, else `/dev/mtdN` of the named partition in /proc/mtd, else
    /// `/dev/ubiX_Y` of the UBI volume of that name (NAND units: rootfs_data is a volume).
    pub fn resolve(&self) -> Result<PathBuf, CliError> {
        if let Some(p) = &self.device {
            return Ok(p.clone());
        }
        let text = std::fs::read("/proc/mtd");
        let proc_mtd = text.as_deref().unwrap_or_default();
        if let Some(dev) = snapinit::locate::partition(proc_mtd, &self.partition) {
            return Ok(PathBuf::from(dev.as_str()));
        }
        match text {
            Err(source) if !Path::new("/sys/class/ubi").exists() => Err(CliError::ProcMtd {
                name: self.partition.clone(),
                source,
            }),
            _ => Err(CliError::NoPartition(self.partition.clone())),
        }
    }
}

/// Erase size for files and block devices when neither `--erase-size` nor a chain says.
pub const DEFAULT_ERASE_SIZE: u32 = 65536;

/// A missing path is "not found" (its own exit code), before any lock is tried; a directory or
/// another kind of file that is no flash is refused.
pub fn check_path(path: &Path) -> Result<(), CliError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(CliError::NotFound(path.to_path_buf()))
        }
        Err(source) => Err(CliError::DeviceIo {
            path: path.to_path_buf(),
            source,
        }),
        Ok(m) => {
            use std::os::unix::fs::FileTypeExt;
            let t = m.file_type();
            if t.is_file() || t.is_block_device() || t.is_char_device() {
                Ok(())
            } else {
                Err(CliError::DeviceIo {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        if t.is_dir() {
                            "is a directory, not a flash partition, block device or image file"
                        } else {
                            "is not a flash partition, block device or image file"
                        },
                    ),
                })
            }
        }
    }
}

/// The erase size the chain on flash records: the header at offset 0, else the first valid
/// header anywhere whose offset is a multiple of the erase size it records (only there can a
/// reader at that erase size find it). `None` when there is no such header.
///
/// Headers are looked for at every 64 bytes, the finest step a usable erase size has: a UBI
/// LEB such as 65,408 is no multiple of 512, and with slot 0 mid-rewrite the chain's only
/// header is the volatile in the back buffer (29 × 65,408 is not on a 512-byte boundary
/// either). Missed, the partition read as empty at the default erase size and `repair` or
/// `save` erased that only copy. The cost is one read of the partition, as before: the step
/// only changes how often an 8-byte compare runs in memory.
fn recorded_erase_size(dev: &mut Device) -> Option<u32> {
    use snapinit::header::{decode, HEADER_LEN, MAGIC};
    const STEP: usize = 64;
    let capacity = dev.capacity() as u64;
    let mut raw = [0u8; HEADER_LEN];
    // A multiple of STEP, so every chunk starts on a step.
    let mut chunk = vec![0u8; 1 << 16];
    let mut base = 0u64;
    while base < capacity {
        let n = (capacity - base).min(chunk.len() as u64) as usize;
        dev.flash.read(base as u32, &mut chunk[..n]).ok()?;
        let mut at = 0usize;
        while at + MAGIC.len() <= n {
            if chunk[at..at + MAGIC.len()] == MAGIC {
                let off = base + at as u64;
                if off + HEADER_LEN as u64 <= capacity
                    && dev.flash.read(off as u32, &mut raw).is_ok()
                {
                    // A header elsewhere is no chain's (a chain image stored inside a
                    // payload, say) and would only mislead the geometry.
                    match decode(&raw) {
                        Ok(h)
                            if h.fields.erase_size != 0
                                && off % u64::from(h.fields.erase_size) == 0 =>
                        {
                            return Some(h.fields.erase_size)
                        }
                        _ => {}
                    }
                }
            }
            at += STEP;
        }
        base += n as u64;
    }
    None
}

/// Opens the device; the geometry recorded in the chain's headers wins. A file or block device
/// opened without `--erase-size` takes the chain's erase size; with another `--erase-size`, or
/// an MTD device reporting another one, it is an error (exit 16), never an empty-looking chain.
pub fn open_checked(
    path: &Path,
    erase_size: Option<u32>,
    writable: bool,
) -> Result<Device, CliError> {
    // Probed at the finest granularity a file can have, unless the size was given.
    let mut dev = Device::open(path, erase_size.unwrap_or(512), writable)?;
    let chain = recorded_erase_size(&mut dev);
    let have = dev.erase_size();
    let err = |chain, how, fix| CliError::Geometry {
        path: path.to_path_buf(),
        chain,
        given: have,
        how,
        fix,
    };
    match (chain, erase_size) {
        (Some(c), _) if c == have => Ok(dev),
        (Some(c), _) if dev.reports_geometry() => Err(err(
            c,
            "the erase size the device reports (MTD erase block or UBI LEB)",
            "this chain was made for another flash part; `snapshot format --force` starts over",
        )),
        (Some(c), Some(_)) => Err(err(
            c,
            "--erase-size",
            "run without --erase-size, or with the chain's",
        )),
        (Some(c), None) if !snapinit::flash::usable_erase_size(c) => Err(err(
            c,
            "no size usable",
            "the header's erase size is not usable; `snapshot format --force` starts over",
        )),
        (Some(c), None) => Device::open(path, c, writable),
        (None, Some(_)) => Ok(dev),
        (None, None) if dev.reports_geometry() => Ok(dev),
        (None, None) => Device::open(path, DEFAULT_ERASE_SIZE, writable),
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
            progress: Progress::hidden(),
            erased_headers: Vec::new(),
        })
    }

    /// Forgets the erased headers that `[from, to)` touches.
    fn forget(&mut self, from: u32, to: u32) {
        let e = self.flash.erase_size().max(1) as usize;
        let first = (from as usize).saturating_sub(HEADER_LEN - 1).div_ceil(e);
        let end = (to as usize).div_ceil(e).min(self.erased_headers.len());
        if first < end {
            self.erased_headers[first..end].fill(false);
        }
    }

    /// Bit flips the device's ECC corrected in this handle's reads (MTD only).
    pub fn ecc_corrected(&self) -> u32 {
        self.flash.ecc_corrected()
    }

    pub fn kind(&self) -> &'static str {
        match self.flash.medium() {
            Medium::Mtd => "mtd",
            Medium::Ubi { .. } => "ubi",
            Medium::File => "file",
        }
    }

    pub fn medium(&self) -> Medium {
        self.flash.medium()
    }

    /// An MTD device or UBI volume says its own erase size (LEB size); a file cannot.
    fn reports_geometry(&self) -> bool {
        self.flash.medium() != Medium::File
    }

    /// Every later erase and program advances `bar` by its byte count.
    pub fn set_progress(&mut self, bar: Progress) {
        self.progress = bar;
    }

    pub fn finish_progress(&mut self) {
        self.progress.finish_and_clear();
        self.progress = Progress::hidden();
    }
}

impl ErrorType for Device {
    type Error = DeviceError;
}

impl Geometry for Device {
    fn erase_size(&self) -> u32 {
        self.flash.erase_size()
    }

    fn erase_tears(&self) -> bool {
        self.flash.erase_tears()
    }
}

impl ReadNorFlash for Device {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), DeviceError> {
        let e = self.flash.erase_size().max(1);
        let block = (bytes.len() == HEADER_LEN && offset % e == 0).then_some((offset / e) as usize);
        if let Some(b) = block {
            if self.erased_headers.get(b) == Some(&true) {
                bytes.fill(0xFF);
                return Ok(());
            }
        }
        self.flash.read(offset, bytes)?;
        if let Some(b) = block.filter(|_| bytes.iter().all(|&x| x == 0xFF)) {
            if self.erased_headers.len() <= b {
                self.erased_headers.resize(b + 1, false);
            }
            self.erased_headers[b] = true;
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.flash.capacity()
    }
}

impl NorFlash for Device {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = 1;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), DeviceError> {
        self.forget(from, to);
        self.flash.erase(from, to)?;
        self.progress.inc(u64::from(to.saturating_sub(from)));
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), DeviceError> {
        self.forget(offset, offset.saturating_add(bytes.len() as u32));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A header known erased never hides a write of this handle.
    #[test]
    fn header_reads_see_every_write_and_erase() {
        let dir = tempfile::tempdir().expect("tempdir");
        let img = dir.path().join("img");
        std::fs::write(&img, vec![0xFFu8; 4 * 4096]).expect("image");
        let mut dev = Device::open(&img, 4096, true).expect("open");
        let mut h = [0u8; HEADER_LEN];
        let mut header = |dev: &mut Device, at: u32| {
            dev.read(at, &mut h).expect("read");
            h
        };
        assert_eq!(header(&mut dev, 4096), [0xFF; HEADER_LEN]);
        // A write inside the header, one that ends just inside it, and one just past it.
        dev.write(4096 + 200, &[0x11]).expect("write");
        assert_eq!(header(&mut dev, 4096)[200], 0x11);
        dev.write(4096 - 8, &[0x22; 9]).expect("write");
        assert_eq!(header(&mut dev, 4096)[0], 0x22);
        dev.write(4096 + HEADER_LEN as u32, &[0x33]).expect("write");
        assert_eq!(header(&mut dev, 4096)[..1], [0x22]);
        dev.erase(4096, 8192).expect("erase");
        assert_eq!(header(&mut dev, 4096), [0xFF; HEADER_LEN]);
        // What the file holds is what the handle read.
        dev.write(8192 + 1, &[0x44]).expect("write");
        let _ = header(&mut dev, 8192);
        dev.sync().expect("sync");
        assert_eq!(std::fs::read(&img).expect("image")[8192 + 1], 0x44);
        // Other reads are not cached: a partial header read goes to the file.
        let mut part = [0u8; 16];
        dev.read(8192, &mut part).expect("read");
        assert_eq!(part[1], 0x44);
    }
}
