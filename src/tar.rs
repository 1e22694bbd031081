//! Streaming reader for the payload's tar dialect, without a heap.
//!
//! The dialect (docs/FORMAT.md, "The payload") is what GNU tar, busybox tar and bsdtar write
//! for a tree of files, directories, symlinks, hard links and overlayfs whiteouts: POSIX pax
//! (ustar headers with per-entry 'x' records) and the GNU format's long-name records. Anything
//! that would change what lands on disk and that the reader cannot honour exactly (global pax
//! headers, sparse maps, devices other than whiteouts, unknown pax keys) is rejected rather
//! than guessed at, because the result is replayed as root into the live root.
//!
//! The project reads tar itself rather than through a crate: PID 1 must stream a payload from
//! flash through fixed buffers (no heap, no whole-archive slice), and `verify`/`extract` must
//! accept exactly what PID 1 accepts, so both use this one reader.

use core::fmt;

use crate::text::{Quoted, QuotedChar};

use embedded_io::Read;
use heapless::Vec;

pub const BLOCK: usize = 512;
pub const MAX_PATH: usize = 255;
pub const MAX_XATTRS: usize = 8;
pub const MAX_XATTR_NAME: usize = 64;
pub const MAX_XATTR_VALUE: usize = 256;
/// Enough for a long path, a long link target and 8 full xattrs with keys.
pub const MAX_PAX: usize = 4096;
/// Most zero bytes after the end-of-archive record: the second zero record and a tar's
/// blocking padding (10,240-byte records for GNU tar, bsdtar and busybox; 1 MiB is a blocking
/// factor of 2048). Every byte is read at boot, so a gzip of gigabytes of zeros there would
/// hold the boot as long as a file of them.
pub const MAX_TRAILING: u64 = 1 << 20;

/// overlayfs marks a directory whose lower contents are hidden with this xattr.
pub const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// Which of an entry's paths a path error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathField {
    Path,
    LinkTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    Empty,
    Absolute,
    DotDot,
    Nul,
    TooLong,
    NotUtf8,
}

/// Why an archive was rejected. `E` is the underlying reader's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarError<E> {
    Io(E),
    /// The stream ended inside a header, pax data or file data.
    Truncated,
    BadChecksum {
        stored: u32,
        computed: u32,
    },
    /// Neither POSIX "ustar\0" "00" nor GNU "ustar  \0" (e.g. v7).
    NotUstar,
    /// A numeric field is neither octal nor positive base-256.
    BadNumber(&'static str),
    /// Entry type that the dialect does not allow, e.g. 'g', 'L', 'K', '4'.
    UnsupportedType(u8),
    /// A character device other than 0:0 (the only device is a whiteout).
    Device {
        major: u32,
        minor: u32,
    },
    BadPath(PathField, PathError),
    /// The pax record block is larger than [`MAX_PAX`].
    PaxTooLarge(u64),
    /// A pax record's framing ("len key=value\n") is broken.
    BadPaxRecord,
    /// A pax value (size, mtime, uid, gid) does not parse.
    BadPaxValue(&'static str),
    TooManyXattrs,
    XattrTooLarge,
    /// A pax header was followed by the end of the archive.
    DanglingPax,
    /// Symlink or hard link without a target.
    MissingLinkTarget,
    /// A pax key the dialect neither reads nor may ignore.
    UnsupportedPaxKey(ShortName),
    /// An xattr outside the `trusted.` and `security.` namespaces, which tmpfs does not store
    /// on every kernel a router runs.
    XattrNamespace,
    /// A directory, symlink, whiteout or hard link header that declares data.
    UnexpectedData(u64),
    /// A uid or gid of 4294967295: chown takes `(uid_t)-1` as "leave unchanged", so the
    /// owner could not be applied.
    UnsettableId(&'static str),
    /// A `security.capability` value the kernel refuses to set (setxattr's EINVAL): only a
    /// revision 2 (20 bytes) or revision 3 (24 bytes, a mappable root uid) header is taken.
    BadCapability,
    /// A GNU long name or link record longer than a path may be.
    BadLongName,
    /// A second `x`, `L` or `K` record before one entry.
    RepeatedRecord(u8),
    /// Non-zero bytes after the end-of-archive record.
    TrailingData,
    /// More than [`MAX_TRAILING`] bytes of zeros after the end-of-archive record.
    TrailingZeros,
    /// The entries' file data would pass the reader's limit (the block's
    /// [`data_limit`](crate::header::data_limit)): refused at the header that announces it,
    /// before any of it is read.
    DataLimit {
        total: u64,
        limit: u64,
    },
}

impl<E: fmt::Display> fmt::Display for TarError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "tar: read error: {e}"),
            Self::Truncated => f.write_str("tar: archive truncated"),
            Self::BadChecksum { stored, computed } => {
                write!(f, "tar: header checksum {stored} != computed {computed}")
            }
            Self::NotUstar => f.write_str("tar: not a POSIX ustar/pax header"),
            Self::BadNumber(field) => write!(f, "tar: bad number in {field}"),
            Self::UnsupportedType(t) => {
                write!(
                    f,
                    "tar: unsupported entry type {}",
                    QuotedChar(char::from(*t))
                )
            }
            Self::Device { major, minor } => {
                write!(f, "tar: device {major}:{minor} is not a whiteout")
            }
            Self::BadPath(field, why) => write!(
                f,
                "tar: {} {}",
                match field {
                    PathField::Path => "path",
                    PathField::LinkTarget => "hard link target",
                },
                match why {
                    PathError::Empty => "is empty",
                    PathError::Absolute => "is absolute",
                    PathError::DotDot => "has a .. component",
                    PathError::Nul => "contains a NUL byte",
                    PathError::TooLong => "is longer than 255 bytes",
                    PathError::NotUtf8 => "is not UTF-8",
                }
            ),
            Self::PaxTooLarge(n) => write!(f, "tar: pax header of {n} bytes too large"),
            Self::BadPaxRecord => f.write_str("tar: malformed pax record"),
            Self::BadPaxValue(key) => write!(f, "tar: bad pax value for {key}"),
            Self::TooManyXattrs => write!(f, "tar: more than {MAX_XATTRS} xattrs"),
            Self::XattrTooLarge => f.write_str("tar: xattr name or value too large"),
            Self::DanglingPax => f.write_str("tar: pax header without an entry"),
            Self::MissingLinkTarget => f.write_str("tar: link without target"),
            Self::UnsupportedPaxKey(k) => {
                write!(f, "tar: unsupported pax key {}", Quoted(k.as_str()))
            }
            Self::XattrNamespace => {
                f.write_str("tar: xattr outside the trusted. and security. namespaces")
            }
            Self::UnexpectedData(n) => write!(f, "tar: {n} bytes of data on a non-file entry"),
            Self::UnsettableId(what) => write!(f, "tar: {what} 4294967295 cannot be set"),
            Self::BadCapability => f.write_str(
                "tar: security.capability is not a revision 2 or 3 value the kernel takes",
            ),
            Self::BadLongName => f.write_str("tar: bad GNU long name record"),
            Self::RepeatedRecord(t) => write!(
                f,
                "tar: a second {} record for one entry",
                QuotedChar(char::from(*t))
            ),
            Self::TrailingData => f.write_str("tar: data after the end-of-archive record"),
            Self::TrailingZeros => write!(
                f,
                "tar: more than {MAX_TRAILING} bytes of zeros after the end-of-archive record"
            ),
            Self::DataLimit { total, limit } => write!(
                f,
                "tar: file data reaches {total} bytes, more than the {limit} a block of this size may unpack to ({}x its flash)",
                crate::header::MAX_DATA_PER_FLASH_BYTE
            ),
        }
    }
}

/// The first 32 bytes of a name for an error message (non-printable bytes as `?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortName {
    bytes: [u8; 32],
    len: u8,
}

impl ShortName {
    pub fn new(name: &[u8]) -> Self {
        let mut s = Self {
            bytes: [0; 32],
            len: 0,
        };
        for (d, &b) in s.bytes.iter_mut().zip(name) {
            *d = if b.is_ascii_graphic() { b } else { b'?' };
            s.len += 1;
        }
        s
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?")
    }
}

/// A validated relative path: no leading "/", no "..", no NUL, no "./" prefix,
/// no trailing "/". Empty only for the archive's root directory entry ("./").
pub type TarPath = heapless::String<MAX_PATH>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink {
        target: TarPath,
    },
    /// Target is a path inside the same archive, validated like `path`.
    HardLink {
        target: TarPath,
    },
    /// overlayfs whiteout: character device 0:0.
    Whiteout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    pub name: heapless::String<MAX_XATTR_NAME>,
    pub value: Vec<u8, MAX_XATTR_VALUE>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Empty means the archive root ("./"), which can only be a directory.
    pub path: TarPath,
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (12 bits).
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime_secs: i64,
    pub mtime_nanos: u32,
    /// Bytes of data that follow (regular files only; zero otherwise).
    pub size: u64,
    pub xattrs: Vec<Xattr, MAX_XATTRS>,
}

impl Default for Entry {
    fn default() -> Self {
        Self::new()
    }
}

impl Entry {
    /// A blank entry for [`TarReader::read_entry`] to fill.
    pub fn new() -> Self {
        Self {
            path: TarPath::new(),
            kind: EntryKind::Dir,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_secs: 0,
            mtime_nanos: 0,
            size: 0,
            xattrs: Vec::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.path.is_empty()
    }

    pub fn xattr(&self, name: &[u8]) -> Option<&[u8]> {
        self.xattrs
            .iter()
            .find(|x| x.name.as_bytes() == name)
            .map(|x| x.value.as_slice())
    }

    /// overlayfs opaque directory: lower layers' contents are hidden.
    pub fn is_opaque(&self) -> bool {
        matches!(self.kind, EntryKind::Dir) && self.xattr(OPAQUE_XATTR) == Some(b"y")
    }
}

/// Overrides collected from pax 'x' and GNU 'L'/'K' records for the next entry.
#[derive(Default)]
struct Pax {
    path: Option<TarPath>,
    linkpath: Option<TarPath>,
    size: Option<u64>,
    mtime: Option<(i64, u32)>,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// pax keys that carry nothing the replay restores; they are skipped. Every other key that
/// the reader does not read is an error: silently dropping, say, a sparse map or an ACL would
/// replay something other than what was saved.
const IGNORED_PAX_KEYS: [&[u8]; 11] = [
    b"atime",
    b"ctime",
    b"comment",
    b"uname",
    b"gname",
    b"charset",
    b"hdrcharset",
    b"SCHILY.dev",
    b"SCHILY.ino",
    b"SCHILY.nlink",
    b"LIBARCHIVE.creationtime",
];
/// bsdtar writes every xattr twice: base64 under this prefix, raw under `SCHILY.xattr.`.
const IGNORED_PAX_PREFIX: &[u8] = b"LIBARCHIVE.xattr.";

/// xattr namespaces an entry may carry: tmpfs stores these on every kernel (`user.` only
/// since Linux 6.6, `system.` only with ACL support).
pub const XATTR_NAMESPACES: [&str; 2] = ["trusted.", "security."];

/// Bytes read ahead from the payload: tar headers are 512 bytes, and reading them one by one
/// from flash cost a system call each.
const AHEAD: usize = 16 * 1024;

/// The payload stream with a read-ahead buffer.
struct Ahead<R> {
    inner: R,
    buf: [u8; AHEAD],
    /// Unconsumed bytes: `buf[pos..len]`.
    pos: usize,
    len: usize,
}

impl<R: Read> Ahead<R> {
    /// Reads up to `out.len()` bytes: from the read-ahead, or, when that is empty and `out` is
    /// large, straight from the payload (file data skips the copy).
    fn read_some(&mut self, out: &mut [u8]) -> Result<usize, TarError<R::Error>> {
        if self.pos == self.len && out.len() >= AHEAD {
            return self.inner.read(out).map_err(TarError::Io);
        }
        // No scratch: `chunk` serves it from the read-ahead, refilled when empty.
        let from = self.chunk(&mut [], out.len())?;
        out[..from.len()].copy_from_slice(from);
        Ok(from.len())
    }

    /// Up to `max` bytes, without a copy: a slice of the read-ahead when it holds any, or,
    /// when it is empty and `max` is large, read straight into `scratch`. Empty at the end.
    fn chunk<'s>(
        &'s mut self,
        scratch: &'s mut [u8],
        max: usize,
    ) -> Result<&'s [u8], TarError<R::Error>> {
        if self.pos == self.len {
            let direct = max.min(scratch.len());
            if direct >= AHEAD {
                let n = self
                    .inner
                    .read(&mut scratch[..direct])
                    .map_err(TarError::Io)?;
                return Ok(&scratch[..n]);
            }
            self.pos = 0;
            self.len = self.inner.read(&mut self.buf).map_err(TarError::Io)?;
        }
        let start = self.pos;
        self.pos += max.min(self.len - start);
        Ok(&self.buf[start..self.pos])
    }

    fn fill(&mut self, out: &mut [u8]) -> Result<(), TarError<R::Error>> {
        let mut off = 0;
        while off < out.len() {
            match self.read_some(&mut out[off..])? {
                0 => return Err(TarError::Truncated),
                n => off += n,
            }
        }
        Ok(())
    }

    fn skip(&mut self, mut n: u64) -> Result<(), TarError<R::Error>> {
        while n > 0 {
            if self.pos == self.len {
                self.pos = 0;
                self.len = self.inner.read(&mut self.buf).map_err(TarError::Io)?;
                if self.len == 0 {
                    return Err(TarError::Truncated);
                }
            }
            let k = n.min((self.len - self.pos) as u64) as usize;
            self.pos += k;
            n -= k as u64;
        }
        Ok(())
    }

    /// Reads what is left of the stream: zeros to its end, at most `max` of them.
    fn rest(&mut self, max: u64) -> Result<Rest, TarError<R::Error>> {
        let mut zeros = 0u64;
        loop {
            let left = &self.buf[self.pos..self.len];
            if left.iter().any(|&b| b != 0) {
                return Ok(Rest::NonZero);
            }
            zeros += left.len() as u64;
            if zeros > max {
                return Ok(Rest::TooLong);
            }
            self.pos = 0;
            self.len = self.inner.read(&mut self.buf).map_err(TarError::Io)?;
            if self.len == 0 {
                return Ok(Rest::Zeros);
            }
        }
    }
}

/// What follows the end-of-archive record.
enum Rest {
    Zeros,
    NonZero,
    /// More than [`MAX_TRAILING`] zeros.
    TooLong,
}

pub struct TarReader<R> {
    src: Ahead<R>,
    /// Unread data bytes of the current entry.
    remaining: u64,
    /// Zero padding after the current entry's data up to the next record.
    padding: u64,
    done: bool,
    /// File data announced so far, and the most the archive may announce.
    data_total: u64,
    data_limit: u64,
    record: [u8; BLOCK],
    pax: [u8; MAX_PAX],
}

impl<R: Read> TarReader<R> {
    /// A reader of `inner` whose entries may announce at most `data_limit` bytes of file data
    /// in all: a block's payload is read with the block's
    /// [`Header::data_limit`](crate::header::Header::data_limit); `u64::MAX` for none.
    pub fn new(inner: R, data_limit: u64) -> Self {
        Self {
            src: Ahead {
                inner,
                buf: [0; AHEAD],
                pos: 0,
                len: 0,
            },
            remaining: 0,
            padding: 0,
            done: false,
            data_total: 0,
            data_limit,
            record: [0; BLOCK],
            pax: [0; MAX_PAX],
        }
    }

    pub fn into_inner(self) -> R {
        self.src.inner
    }

    pub fn get_ref(&self) -> &R {
        &self.src.inner
    }

    /// Reads the current regular file's data; 0 at its end.
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError<R::Error>> {
        let want = (buf.len() as u64).min(self.remaining) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.src.read_some(&mut buf[..want])?;
        if n == 0 {
            return Err(TarError::Truncated);
        }
        self.remaining -= n as u64;
        Ok(n)
    }

    /// The next piece of the current entry's data, empty after its last byte: a slice of the
    /// read-ahead (small files: no copy), or read into `scratch` (large ones).
    pub fn data_chunk<'s>(
        &'s mut self,
        scratch: &'s mut [u8],
    ) -> Result<&'s [u8], TarError<R::Error>> {
        let max = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        if max == 0 {
            return Ok(&[]);
        }
        let chunk = self.src.chunk(scratch, max)?;
        if chunk.is_empty() {
            return Err(TarError::Truncated);
        }
        self.remaining -= chunk.len() as u64;
        Ok(chunk)
    }

    /// Next entry, or `None` at the end-of-archive zero record.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, TarError<R::Error>> {
        let mut e = Entry::new();
        Ok(self.read_entry(&mut e)?.then_some(e))
    }

    /// Reads the next entry into `out` (true), or finds the end-of-archive zero record
    /// (false). An entry is a few KiB (path, link target, xattrs): filled in place, it is not
    /// copied on its way out, which a replay of many small files would pay for each. On an
    /// error, `out.path` still names the entry read before.
    pub fn read_entry(&mut self, out: &mut Entry) -> Result<bool, TarError<R::Error>> {
        if self.done {
            return Ok(false);
        }
        // Apart: a declared size near 2^64 would overflow the sum (and wrap in a release
        // build, skipping nothing); skipped on its own it runs out of data (`Truncated`).
        self.src.skip(self.remaining)?;
        self.src.skip(self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        let mut pax = Pax::default();
        out.xattrs.clear();
        // The extension records (`x`, `L`, `K`) read for this entry, one bit each: at most one
        // of each kind, so that a flood of them (4 KiB each, compressing 1000:1) cannot stand
        // before one entry and cost the boot their inflation.
        let mut ext = 0u8;
        loop {
            self.src.fill(&mut self.record)?;
            if self.record.iter().all(|&b| b == 0) {
                self.done = true;
                return if ext != 0 {
                    Err(TarError::DanglingPax)
                } else {
                    Ok(false)
                };
            }
            let h = Header(&self.record);
            let gnu = h.verify()?;
            let size = h.number(124, 12, "size")?;
            let kind = h.0[156];
            let bit = match kind {
                b'x' => 1,
                b'L' if gnu => 2,
                b'K' if gnu => 4,
                _ => 0,
            };
            if ext & bit != 0 {
                return Err(TarError::RepeatedRecord(kind));
            }
            ext |= bit;
            match kind {
                b'x' => {
                    if size > MAX_PAX as u64 {
                        return Err(TarError::PaxTooLarge(size));
                    }
                    let n = size as usize;
                    self.src.fill(&mut self.pax[..n])?;
                    parse_pax(&self.pax[..n], &mut pax, &mut out.xattrs)?;
                    self.src.skip(pad(size))?;
                }
                kind @ (b'L' | b'K') if gnu => {
                    // The name, NUL-terminated, as the record's data.
                    if size > (MAX_PATH + 1) as u64 {
                        return Err(TarError::BadLongName);
                    }
                    let n = size as usize;
                    self.src.fill(&mut self.pax[..n])?;
                    let name = cstr(&self.pax[..n]);
                    let field = if kind == b'L' {
                        PathField::Path
                    } else {
                        PathField::LinkTarget
                    };
                    let p = to_path(name).map_err(|e| TarError::BadPath(field, e))?;
                    let slot = if kind == b'L' {
                        &mut pax.path
                    } else {
                        &mut pax.linkpath
                    };
                    // A pax record for the same entry wins; a second long name does not.
                    if slot.is_none() {
                        *slot = Some(p);
                    }
                    self.src.skip(pad(size))?;
                }
                _ => {
                    let pax_size = pax.size;
                    let size = pax_size.unwrap_or(size);
                    build_entry(&h, gnu, size, pax, out)?;
                    let data = match out.kind {
                        EntryKind::File => out.size,
                        // A hard link's header size is not data (POSIX 1988; GNU tar, bsdtar
                        // and busybox tar read it so, and some writers put the target's size
                        // there). A pax `size` may give it data (POSIX 2001): skipped, the
                        // link shares its target's content.
                        EntryKind::HardLink { .. } => pax_size.unwrap_or(0),
                        _ if size == 0 => 0,
                        _ => return Err(TarError::UnexpectedData(size)),
                    };
                    // Every byte announced is inflated at boot, written or skipped.
                    self.data_total = self.data_total.saturating_add(data);
                    if self.data_total > self.data_limit {
                        return Err(TarError::DataLimit {
                            total: self.data_total,
                            limit: self.data_limit,
                        });
                    }
                    self.remaining = data;
                    self.padding = pad(data);
                    return Ok(true);
                }
            }
        }
    }

    /// Reads the rest of the stream after the end-of-archive record: it must be zeros (the
    /// second zero record, blocking padding) up to the end, so that nothing stored in the
    /// payload goes unchecked; for gzip this also reaches and checks the trailer.
    pub fn finish(&mut self) -> Result<(), TarError<R::Error>> {
        if !self.done {
            let mut e = Entry::new();
            while self.read_entry(&mut e)? {}
        }
        match self.src.rest(MAX_TRAILING)? {
            Rest::Zeros => Ok(()),
            Rest::NonZero => Err(TarError::TrailingData),
            Rest::TooLong => Err(TarError::TrailingZeros),
        }
    }
}

const fn pad(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

struct Header<'a>(&'a [u8; BLOCK]);

impl Header<'_> {
    /// The header checksum: the sum of its bytes with the chksum field (148..156) counted as
    /// spaces. Summed 8 bytes at a time in four 16-bit lanes (64 words of at most 2 x 255
    /// per lane cannot overflow one): a byte loop is a tenth of a small file's replay.
    fn sum(&self) -> u32 {
        const LOW: u64 = 0x00ff_00ff_00ff_00ff;
        let mut lanes = 0u64;
        for w in self.0.chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(w);
            let w = u64::from_le_bytes(word);
            lanes += (w & LOW) + ((w >> 8) & LOW);
        }
        let all =
            (lanes & 0xffff) + ((lanes >> 16) & 0xffff) + ((lanes >> 32) & 0xffff) + (lanes >> 48);
        let field: u64 = self.0[148..156].iter().map(|&b| u64::from(b)).sum();
        (all - field + 8 * u64::from(b' ')) as u32
    }

    /// Checks the checksum and the magic; true for the GNU format (no `prefix` field).
    fn verify<E>(&self) -> Result<bool, TarError<E>> {
        let stored = self.number(148, 8, "chksum")?;
        let computed = self.sum();
        if stored != u64::from(computed) {
            return Err(TarError::BadChecksum {
                stored: stored as u32,
                computed,
            });
        }
        match (&self.0[257..263], &self.0[263..265]) {
            (b"ustar\0", b"00") => Ok(false),
            (b"ustar ", b" \0") => Ok(true),
            _ => Err(TarError::NotUstar),
        }
    }

    /// A numeric field: octal digits (optional leading spaces, then NUL/space padding), or
    /// GNU base-256 (first byte 0x80, big-endian value in the rest).
    fn number<E>(&self, off: usize, len: usize, what: &'static str) -> Result<u64, TarError<E>> {
        let field = &self.0[off..off + len];
        if field[0] == 0x80 {
            return field[1..].iter().try_fold(0u64, |v, &b| {
                v.checked_mul(256)
                    .map(|v| v + u64::from(b))
                    .ok_or(TarError::BadNumber(what))
            });
        }
        let mut value: u64 = 0;
        let mut seen_digit = false;
        let mut ended = false;
        for &b in field {
            match b {
                b'0'..=b'7' if !ended => {
                    value = value
                        .checked_mul(8)
                        .map(|v| v + u64::from(b - b'0'))
                        .ok_or(TarError::BadNumber(what))?;
                    seen_digit = true;
                }
                b' ' if !seen_digit => {}
                b' ' | 0 => ended = true,
                _ => return Err(TarError::BadNumber(what)),
            }
        }
        Ok(value)
    }

    fn id<E>(&self, off: usize, what: &'static str) -> Result<u32, TarError<E>> {
        u32::try_from(self.number(off, 8, what)?).map_err(|_| TarError::BadNumber(what))
    }

    fn cstr(&self, off: usize, len: usize) -> &[u8] {
        cstr(&self.0[off..off + len])
    }
}

/// Fills `out` (whose xattrs the pax records already gave) from the header and the overrides;
/// `out` is written only once everything is checked.
fn build_entry<E>(
    h: &Header<'_>,
    gnu: bool,
    size: u64,
    pax: Pax,
    out: &mut Entry,
) -> Result<(), TarError<E>> {
    let typeflag = h.0[156];
    let mode = h.number(100, 8, "mode")?;
    let uid = match pax.uid {
        Some(v) => v,
        None => h.id(108, "uid")?,
    };
    let gid = match pax.gid {
        Some(v) => v,
        None => h.id(116, "gid")?,
    };
    if uid == u32::MAX {
        return Err(TarError::UnsettableId("uid"));
    }
    if gid == u32::MAX {
        return Err(TarError::UnsettableId("gid"));
    }
    let (mtime_secs, mtime_nanos) = match pax.mtime {
        Some(t) => t,
        None => (
            i64::try_from(h.number(136, 12, "mtime")?).map_err(|_| TarError::BadNumber("mtime"))?,
            0,
        ),
    };
    let raw_path = match pax.path {
        Some(p) => p,
        None => {
            let name = h.cstr(0, 100);
            // The GNU format keeps other fields where ustar has `prefix`.
            let prefix = if gnu { &[][..] } else { h.cstr(345, 155) };
            let mut joined: Vec<u8, { MAX_PATH + 1 }> = Vec::new();
            let too_long = |_: u8| TarError::BadPath(PathField::Path, PathError::TooLong);
            if !prefix.is_empty() {
                joined.extend_from_slice(prefix).map_err(|_| too_long(0))?;
                joined.push(b'/').map_err(too_long)?;
            }
            joined.extend_from_slice(name).map_err(|_| too_long(0))?;
            to_path(&joined).map_err(|e| TarError::BadPath(PathField::Path, e))?
        }
    };
    let link = || -> Result<TarPath, TarError<E>> {
        match &pax.linkpath {
            Some(p) => Ok(p.clone()),
            None => {
                to_path(h.cstr(157, 100)).map_err(|e| TarError::BadPath(PathField::LinkTarget, e))
            }
        }
    };
    let kind = match typeflag {
        b'0' | 0 | b'7' => EntryKind::File,
        b'5' => EntryKind::Dir,
        b'2' => {
            let target = link()?;
            if target.is_empty() {
                return Err(TarError::MissingLinkTarget);
            }
            EntryKind::Symlink { target }
        }
        b'1' => {
            let target = normalize(link()?.as_bytes())
                .map_err(|e| TarError::BadPath(PathField::LinkTarget, e))?;
            if target.is_empty() {
                return Err(TarError::MissingLinkTarget);
            }
            EntryKind::HardLink { target }
        }
        b'3' => {
            let major = h.number(329, 8, "devmajor")?;
            let minor = h.number(337, 8, "devminor")?;
            if (major, minor) != (0, 0) {
                return Err(TarError::Device {
                    major: major as u32,
                    minor: minor as u32,
                });
            }
            EntryKind::Whiteout
        }
        other => return Err(TarError::UnsupportedType(other)),
    };
    let path = normalize(raw_path.as_bytes()).map_err(|e| TarError::BadPath(PathField::Path, e))?;
    if path.is_empty() && kind != EntryKind::Dir {
        return Err(TarError::BadPath(PathField::Path, PathError::Empty));
    }
    out.size = if kind == EntryKind::File { size } else { 0 };
    out.path = path;
    out.kind = kind;
    out.mode = (mode & 0o7777) as u16;
    out.uid = uid;
    out.gid = gid;
    out.mtime_secs = mtime_secs;
    out.mtime_nanos = mtime_nanos;
    Ok(())
}

fn to_path(bytes: &[u8]) -> Result<TarPath, PathError> {
    if bytes.contains(&0) {
        return Err(PathError::Nul);
    }
    let s = core::str::from_utf8(bytes).map_err(|_| PathError::NotUtf8)?;
    let mut p = TarPath::new();
    p.push_str(s).map_err(|_| PathError::TooLong)?;
    Ok(p)
}

/// Applies the path rules and gives the canonical form: components separated by single
/// slashes, no `.` components, no leading or trailing slash; `""` is the layer root (what
/// `.`, `./` and `tar -C dir .` name). `"./a//b/./c/"` becomes `"a/b/c"`.
pub fn normalize(bytes: &[u8]) -> Result<TarPath, PathError> {
    if bytes.contains(&0) {
        return Err(PathError::Nul);
    }
    if bytes.is_empty() {
        return Err(PathError::Empty);
    }
    if bytes.first() == Some(&b'/') {
        return Err(PathError::Absolute);
    }
    let s = core::str::from_utf8(bytes).map_err(|_| PathError::NotUtf8)?;
    let mut p = TarPath::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(PathError::DotDot),
            c => {
                if !p.is_empty() {
                    p.push('/').map_err(|_| PathError::TooLong)?;
                }
                p.push_str(c).map_err(|_| PathError::TooLong)?;
            }
        }
    }
    Ok(p)
}

fn parse_pax<E>(
    mut data: &[u8],
    pax: &mut Pax,
    xattrs: &mut Vec<Xattr, MAX_XATTRS>,
) -> Result<(), TarError<E>> {
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or(TarError::BadPaxRecord)?;
        let len = parse_decimal(&data[..sp]).ok_or(TarError::BadPaxRecord)?;
        let len = usize::try_from(len).map_err(|_| TarError::BadPaxRecord)?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(TarError::BadPaxRecord);
        }
        let record = &data[sp + 1..len - 1];
        data = &data[len..];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or(TarError::BadPaxRecord)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"path" => {
                pax.path = Some(to_path(value).map_err(|e| TarError::BadPath(PathField::Path, e))?)
            }
            b"linkpath" => {
                pax.linkpath =
                    Some(to_path(value).map_err(|e| TarError::BadPath(PathField::LinkTarget, e))?)
            }
            b"size" => pax.size = Some(parse_decimal(value).ok_or(TarError::BadPaxValue("size"))?),
            b"uid" => pax.uid = Some(parse_u32(value).ok_or(TarError::BadPaxValue("uid"))?),
            b"gid" => pax.gid = Some(parse_u32(value).ok_or(TarError::BadPaxValue("gid"))?),
            b"mtime" => pax.mtime = Some(parse_time(value).ok_or(TarError::BadPaxValue("mtime"))?),
            k if IGNORED_PAX_KEYS.contains(&k) || k.starts_with(IGNORED_PAX_PREFIX) => {}
            k => match k.strip_prefix(b"SCHILY.xattr.") {
                Some(name) => add_xattr(xattrs, name, value)?,
                None => return Err(TarError::UnsupportedPaxKey(ShortName::new(k))),
            },
        }
    }
    Ok(())
}

const CAPABILITY_XATTR: &str = "security.capability";

/// Whether Linux's setxattr takes `value` as a file capability (security/commoncap.c,
/// `cap_convert_nscap` since 4.14): a revision 2 header of 20 bytes, or a revision 3 header of
/// 24 bytes whose root uid maps (not 4294967295); the effective flag may be set on either.
/// Checked here so that the boot path and `verify` give one verdict: without it PID 1's
/// fsetxattr failed while verify's model, which sets no xattrs, said good.
fn capability_settable(value: &[u8]) -> bool {
    const REVISION_2: u32 = 0x0200_0000;
    const REVISION_3: u32 = 0x0300_0000;
    const FLAGS_EFFECTIVE: u32 = 0x0000_0001;
    let word = |at: usize| {
        value
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let Some(magic) = word(0).map(|m| m & !FLAGS_EFFECTIVE) else {
        return false;
    };
    match value.len() {
        20 => magic == REVISION_2,
        24 => magic == REVISION_3 && word(20) != Some(u32::MAX),
        _ => false,
    }
}

fn add_xattr<E>(
    xattrs: &mut Vec<Xattr, MAX_XATTRS>,
    name: &[u8],
    value: &[u8],
) -> Result<(), TarError<E>> {
    let name = core::str::from_utf8(name).map_err(|_| TarError::BadPaxRecord)?;
    if name.is_empty() || name.contains('\0') {
        return Err(TarError::BadPaxRecord);
    }
    if !XATTR_NAMESPACES
        .iter()
        .any(|ns| name.len() > ns.len() && name.starts_with(ns))
    {
        return Err(TarError::XattrNamespace);
    }
    if name == CAPABILITY_XATTR && !capability_settable(value) {
        return Err(TarError::BadCapability);
    }
    let mut x = Xattr {
        name: heapless::String::new(),
        value: Vec::new(),
    };
    x.name.push_str(name).map_err(|_| TarError::XattrTooLarge)?;
    x.value
        .extend_from_slice(value)
        .map_err(|_| TarError::XattrTooLarge)?;
    // A repeated key overrides, like any other pax key.
    if let Some(old) = xattrs.iter_mut().find(|o| o.name == x.name) {
        *old = x;
    } else {
        xattrs.push(x).map_err(|_| TarError::TooManyXattrs)?;
    }
    Ok(())
}

fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

fn parse_u32(s: &[u8]) -> Option<u32> {
    parse_decimal(s).and_then(|v| u32::try_from(v).ok())
}

/// pax time: `[-]secs[.fraction]`, fraction truncated to nanoseconds.
fn parse_time(s: &[u8]) -> Option<(i64, u32)> {
    let (neg, s) = match s.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], Some(&s[dot + 1..])),
        None => (s, None),
    };
    let secs = i64::try_from(parse_decimal(int)?).ok()?;
    let mut nanos: u32 = 0;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut scale = 100_000_000;
        for &d in frac.iter().take(9) {
            nanos += u32::from(d - b'0') * scale;
            scale /= 10;
        }
    }
    if neg {
        // -1.5 means 1.5 s before the epoch: secs -2, nanos 0.5e9.
        if nanos == 0 {
            Some((-secs, 0))
        } else {
            Some((-secs - 1, 1_000_000_000 - nanos))
        }
    } else {
        Some((secs, nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rules() {
        assert_eq!(normalize(b"./a/b/").unwrap().as_str(), "a/b");
        assert_eq!(normalize(b"a").unwrap().as_str(), "a");
        assert_eq!(normalize(b"/etc"), Err(PathError::Absolute));
        assert_eq!(normalize(b"a/../b"), Err(PathError::DotDot));
        assert_eq!(normalize(b".."), Err(PathError::DotDot));
        assert_eq!(normalize(b"./").unwrap().as_str(), "");
        assert_eq!(normalize(b".").unwrap().as_str(), "");
        assert_eq!(normalize(b"./a//b/./c/").unwrap().as_str(), "a/b/c");
        assert_eq!(normalize(b"a/./../b"), Err(PathError::DotDot));
        assert_eq!(normalize(b""), Err(PathError::Empty));
        assert_eq!(normalize(b"a\0b"), Err(PathError::Nul));
        assert_eq!(normalize(&[b'a'; 256]), Err(PathError::TooLong));
        assert!(normalize(&[b'a'; 255]).is_ok());
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_time(b"1.0000000019"), Some((1, 1)));
        assert_eq!(parse_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_time(b"1."), None);
        assert_eq!(parse_time(b"x"), None);
    }
}
