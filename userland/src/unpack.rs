//! Unpacking a payload into a directory with PID 1's own code: the boot path's gzip and tar
//! readers and its replay rules ([`snapinit::replay`]) applied through the same confined
//! [`DirLayer`], so `snapshot extract` shows exactly the tree the boot path builds and refuses
//! exactly what it refuses, with the same reason.

use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use snapinit::chain::Block;
use snapinit::dirlayer::DirLayer;
use snapinit::flash::ReadNorFlash;
use snapinit::header::HEADER_LEN;
use snapinit::payload::TarSource;
use snapinit::replay::{replay, ReplayError, Stats};
use snapinit::tar::TarReader;

/// A std reader as the embedded-io reader PID 1's decoders take.
pub struct IoReader<R>(pub R);

/// A read error, kept small and `Copy` as the no_std decoders want their errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadError(pub io::ErrorKind);

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl embedded_io::Error for ReadError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::Other
    }
}

impl<R: Read> embedded_io::ErrorType for IoReader<R> {
    type Error = ReadError;
}

impl<R: Read> embedded_io::Read for IoReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r.map_err(|e| ReadError(e.kind())),
            }
        }
    }
}

/// Counts the bytes that pass through: the length of a payload's tar stream, read by the boot
/// path's decoder.
pub struct Count<R> {
    pub inner: R,
    pub n: u64,
}

impl<R> Count<R> {
    pub fn new(inner: R) -> Self {
        Count { inner, n: 0 }
    }
}

impl<R: embedded_io::Read> embedded_io::ErrorType for Count<R> {
    type Error = R::Error;
}

impl<R: embedded_io::Read> embedded_io::Read for Count<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, R::Error> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// A payload's bytes as tar, plain or gunzipped by the boot path's decoder, counted (`n`: the
/// tar stream's length so far). Whatever the payload is read from (memory, the flash through
/// [`StdReader`]), it is one type: the decoders are instantiated once in the tool (about 10 KB
/// each time; docs/SIZE.md).
pub type Source<'a> = Count<TarSource<IoReader<Box<dyn Read + 'a>>>>;

/// An embedded-io reader (the boot path's flash readers) as a std one, for [`tar_reader`]. Its
/// errors keep only that they happened: a payload that cannot be read fails its hash too,
/// which is what its reader reports.
pub struct StdReader<R>(pub R);

impl<R: embedded_io::Read> Read for StdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|_| io::Error::from(io::ErrorKind::Other))
    }
}

/// Why the payload's bytes could not be read.
pub type SourceError = snapinit::payload::SourceError<ReadError>;

/// A tar reader over a payload, boxed: its record buffers are large. `data_limit` is the
/// block's [`Header::data_limit`](snapinit::header::Header::data_limit), as the boot reads it.
pub fn tar_reader<'a>(
    payload: impl Read + 'a,
    gzip: bool,
    data_limit: u64,
) -> Box<TarReader<Source<'a>>> {
    let payload: Box<dyn Read + 'a> = Box::new(payload);
    Box::new(TarReader::new(
        Count::new(TarSource::new(IoReader(payload), gzip)),
        data_limit,
    ))
}

/// A replay failure of the boot path's code, as the boot path would log it.
pub type Rejection = ReplayError<SourceError, rustix::io::Errno>;

/// Why unpacking failed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("{path}: {source}")]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: destination is not a directory")]
    DestNotDirectory { path: PathBuf },
    /// The boot path's replay refused the payload (or the destination failed under it).
    #[error("{0}")]
    Replay(Box<Rejection>),
}

/// What was unpacked.
pub type UnpackReport = Stats;

/// Unpacks one payload (gzip-compressed if `gzip`) into the existing directory `dest`, on top
/// of whatever is already there, as PID 1 replays a block into a layer. Directories the
/// payload omits get 0755 root:root (PID 1 takes them from the layers below, which an extract
/// has none of). Needs root for owners and `trusted.*` xattrs, as the boot path does.
pub fn unpack<R: Read>(
    payload: R,
    gzip: bool,
    data_limit: u64,
    dest: &Path,
) -> Result<UnpackReport, UnpackError> {
    let dest_err = |source| UnpackError::Dest {
        path: dest.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(dest).map_err(dest_err)?;
    if !meta.is_dir() {
        return Err(UnpackError::DestNotDirectory {
            path: dest.to_path_buf(),
        });
    }
    let dir = std::fs::File::open(dest).map_err(dest_err)?;
    let mut tar = tar_reader(payload, gzip, data_limit);
    // Not this process's umask: a default ACL on the destination (or on a directory below it)
    // takes its place for what is created there, so no file may be taken to have its entry's
    // mode from its creation alone; each gets its chmod.
    let mut layer = DirLayer::new(dir.as_fd(), &[], snapinit::dirlayer::UMASK_UNKNOWN);
    let mut buf = vec![0u8; 64 * 1024];
    replay(&mut tar, &mut layer, &mut buf).map_err(|e| UnpackError::Replay(Box::new(e)))
}

/// Why a block's payload could not be read for unpacking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadRead<E> {
    /// The flash failed to read.
    Read(E),
    /// The bytes read are not those the header's SHA-256 names: the chain was verified on
    /// an earlier read, and the flash answered differently this time (a flaky part, a failing
    /// read that reported no error).
    Changed { offset: u32 },
}

/// A block's payload, read once into memory and checked against its SHA-256 as read: what is
/// judged and unpacked is then exactly the bytes hashed (the boot path hashes the very bytes
/// it replays), not a second read of a block an earlier read verified.
pub fn read_verified<F: ReadNorFlash>(
    flash: &mut F,
    b: &Block,
) -> Result<Vec<u8>, PayloadRead<F::Error>> {
    let len = usize::try_from(b.header.fields.payload_len).unwrap_or(usize::MAX);
    let mut data = vec![0u8; len];
    flash
        .read(b.offset + HEADER_LEN as u32, &mut data)
        .map_err(PayloadRead::Read)?;
    if crate::writer::sha256(&data) != b.header.fields.payload_sha256 {
        return Err(PayloadRead::Changed { offset: b.offset });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::writer::{Payload, Writer};
    use snapinit::flash::ErrorType;
    use snapinit::sim::SimFlash;

    /// A flash whose payload byte at `at` reads back flipped once `good_reads` reads are done.
    struct Flaky {
        inner: SimFlash,
        good_reads: usize,
        at: u32,
    }

    impl ErrorType for Flaky {
        type Error = <SimFlash as ErrorType>::Error;
    }

    impl ReadNorFlash for Flaky {
        const READ_SIZE: usize = 1;

        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
            self.inner.read(offset, bytes)?;
            match self.good_reads.checked_sub(1) {
                Some(left) => self.good_reads = left,
                None => {
                    if let Some(b) = self
                        .at
                        .checked_sub(offset)
                        .and_then(|i| bytes.get_mut(i as usize))
                    {
                        *b ^= 1;
                    }
                }
            }
            Ok(())
        }

        fn capacity(&self) -> usize {
            self.inner.capacity()
        }
    }

    #[test]
    fn a_payload_that_reads_back_changed_is_not_handed_out() {
        let mut flash = SimFlash::new(4096, 16);
        let data = vec![7u8; 3000];
        Writer::new(&mut flash)
            .append_snapshot(&Payload::plain(&data))
            .expect("append");
        let view = Writer::new(&mut flash).read();
        let b = view.snapshots[0];
        let at = b.offset + HEADER_LEN as u32 + 1234;
        let mut steady = Flaky {
            inner: flash.clone(),
            good_reads: usize::MAX,
            at,
        };
        assert_eq!(read_verified(&mut steady, &b), Ok(data));
        // The chain verified on the reads before; this one answers differently.
        let mut flaky = Flaky {
            inner: flash,
            good_reads: 0,
            at,
        };
        assert_eq!(
            read_verified(&mut flaky, &b),
            Err(PayloadRead::Changed { offset: b.offset })
        );
    }
}
