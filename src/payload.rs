//! A block's payload as a byte stream: read straight from flash through a caller's buffer, so a
//! block is verified and replayed without ever being held in RAM.

use crate::flash::ReadNorFlash;
use crate::gzip::{GzipError, GzipReader};
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

/// A reader that hashes every byte it passes on: a payload verified in the same pass that
/// replays it.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// SHA-256 of everything read so far.
    pub fn digest(&self) -> Digest32 {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.hasher.clone().finalize());
        out
    }
}

impl<R: embedded_io::ErrorType> embedded_io::ErrorType for Hashing<R> {
    type Error = R::Error;
}

impl<R: embedded_io::Read> embedded_io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, R::Error> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl<R: embedded_io::Read> TarSource<R> {
    /// The payload reader below the gzip layer, if any.
    pub fn payload(&self) -> &R {
        match self {
            TarSource::Plain(r) => r,
            TarSource::Gzip(g) => g.inner(),
        }
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

/// A payload as tar bytes, plain or gunzipped. One type for both, so the tar reader and the
/// replay are compiled once, not once per reader (about 11 KiB of PID 1). No heap to box the
/// gzip state into; a plain payload leaves the unused part of the frame untouched.
#[allow(clippy::large_enum_variant)]
pub enum TarSource<R> {
    Plain(R),
    Gzip(GzipReader<R>),
}

impl<R: embedded_io::Read> TarSource<R> {
    pub fn new(payload: R, gzip: bool) -> Self {
        if gzip {
            TarSource::Gzip(GzipReader::new(payload))
        } else {
            TarSource::Plain(payload)
        }
    }
}

/// Reading a payload failed: the storage below, or the gzip layer above it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SourceError<E> {
    Read(E),
    Gzip(GzipError<E>),
}

// Debug gives the readable text too: the tool's messages may print it with `{:?}`.
impl<E: fmt::Display> fmt::Debug for SourceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<E: fmt::Display> fmt::Display for SourceError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "read error: {e}"),
            Self::Gzip(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: fmt::Display> embedded_io::Error for SourceError<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::InvalidData
    }
}

impl<R: embedded_io::Read> embedded_io::ErrorType for TarSource<R>
where
    R::Error: fmt::Display,
{
    type Error = SourceError<R::Error>;
}

impl<R: embedded_io::Read> embedded_io::Read for TarSource<R>
where
    R::Error: fmt::Display,
{
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        match self {
            Self::Plain(r) => r.read(buf).map_err(SourceError::Read),
            Self::Gzip(r) => r.read(buf).map_err(SourceError::Gzip),
        }
    }
}
