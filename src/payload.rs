//! A block's payload as a byte stream: read straight from flash through a caller's buffer, so a
//! block is verified and replayed without ever being held in RAM.

use crate::flash::ReadNorFlash;
use crate::header::{Digest32, HEADER_LEN};
use crate::Block;
use core::fmt;
use sha2::{Digest, Sha256};

/// Reads the stored (possibly compressed) payload bytes of one block.
pub struct PayloadReader<'a, F> {
    flash: &'a mut F,
    pos: u64,
    end: u64,
}

impl<'a, F: ReadNorFlash> PayloadReader<'a, F> {
    pub fn new(flash: &'a mut F, block: &Block) -> Self {
        let start = u64::from(block.offset) + HEADER_LEN as u64;
        PayloadReader {
            flash,
            pos: start,
            end: start.saturating_add(block.header.fields.payload_len),
        }
    }

    pub fn remaining(&self) -> u64 {
        self.end.saturating_sub(self.pos)
    }
}

/// The flash driver failed to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadFailed {
    pub offset: u64,
}

impl fmt::Display for ReadFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flash read failed at offset {:#x}", self.offset)
    }
}

impl embedded_io::Error for ReadFailed {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl<F> embedded_io::ErrorType for PayloadReader<'_, F> {
    type Error = ReadFailed;
}

impl<F: ReadNorFlash> embedded_io::Read for PayloadReader<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadFailed> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let offset = u32::try_from(self.pos).map_err(|_| ReadFailed { offset: self.pos })?;
        self.flash
            .read(offset, &mut buf[..n])
            .map_err(|_| ReadFailed { offset: self.pos })?;
        self.pos = self.pos.saturating_add(n as u64);
        Ok(n)
    }
}

/// SHA-256 of a block's stored payload, streamed through `buf`.
pub fn payload_sha256<F: ReadNorFlash>(
    flash: &mut F,
    block: &Block,
    buf: &mut [u8],
) -> Result<Digest32, ReadFailed> {
    let mut reader = PayloadReader::new(flash, block);
    let mut hasher = Sha256::new();
    loop {
        let n = embedded_io::Read::read(&mut reader, buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&hasher.finalize());
    Ok(out)
}
