//! Streaming gzip (RFC 1952) decoder over any `embedded_io::Read`, without a heap.
//!
//! Deflate's back-references reach at most 32 KiB back, so a 32 KiB circular
//! window owned by the reader is the only output memory inflate needs; the
//! caller's buffer is filled from that window.

use core::fmt;

use embedded_io::{ErrorType, Read};
use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

/// Deflate's maximum distance; inflate needs a power of two this large to wrap.
const WINDOW: usize = 32 * 1024;
/// Compressed bytes read from the payload at a time: fewer, larger flash reads.
const INPUT: usize = 8 * 1024;

const FTEXT: u8 = 0x01;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// Why a gzip stream could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GzipError<E> {
    /// The underlying reader failed.
    Io(E),
    /// The stream ended inside the header, the deflate data or the trailer.
    Truncated,
    /// The first two bytes are not 1f 8b.
    BadMagic,
    /// Compression method other than 8 (deflate).
    UnsupportedMethod(u8),
    /// A reserved FLG bit is set (RFC 1952 says such streams must be rejected).
    ReservedFlags(u8),
    /// The header CRC16 (FHCRC) does not match.
    HeaderCrc { stored: u16, computed: u16 },
    /// The deflate data is corrupt; carries miniz_oxide's status code.
    Inflate(i8),
    /// CRC32 of the inflated data does not match the trailer.
    Crc { stored: u32, computed: u32 },
    /// Inflated length (mod 2^32) does not match the trailer's ISIZE.
    Size { stored: u32, computed: u32 },
    /// Bytes follow the member's trailer (a second member or garbage): a payload is exactly one
    /// gzip member.
    TrailingData,
}

impl<E: fmt::Display> fmt::Display for GzipError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "gzip: read error: {e}"),
            Self::Truncated => f.write_str("gzip: stream truncated"),
            Self::BadMagic => f.write_str("gzip: bad magic"),
            Self::UnsupportedMethod(m) => write!(f, "gzip: unsupported method {m}"),
            Self::ReservedFlags(b) => write!(f, "gzip: reserved flag bits {b:#04x}"),
            Self::HeaderCrc { stored, computed } => {
                write!(f, "gzip: header crc {stored:#06x} != {computed:#06x}")
            }
            Self::Inflate(s) => write!(f, "gzip: corrupt deflate data (status {s})"),
            Self::Crc { stored, computed } => {
                write!(f, "gzip: crc32 {stored:#010x} != computed {computed:#010x}")
            }
            Self::Size { stored, computed } => {
                write!(f, "gzip: isize {stored} != computed {computed}")
            }
            Self::TrailingData => f.write_str("gzip: data after the member's trailer"),
        }
    }
}

impl<E: embedded_io::Error> embedded_io::Error for GzipError<E> {
    fn kind(&self) -> embedded_io::ErrorKind {
        match self {
            Self::Io(e) => e.kind(),
            _ => embedded_io::ErrorKind::InvalidData,
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, poly 0xedb88320) as used by gzip.
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

/// Slicing-by-8 tables: `[0]` is the classic byte table, `[k][b]` the CRC of byte `b` followed
/// by `k` zero bytes, so eight input bytes take eight independent lookups (about 4x the
/// byte-at-a-time speed).
pub type CrcTables = [[u32; 256]; 8];

/// Builds the tables at run time (8 KiB the PID 1 binary does not carry; a few microseconds).
#[inline(never)]
pub fn crc_tables() -> CrcTables {
    let mut t = [[0u32; 256]; 8];
    for (i, slot) in t[0].iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *slot = c;
    }
    for j in 1..8 {
        for i in 0..256 {
            let prev = t[j - 1][i];
            t[j][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
        }
    }
    t
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    pub const fn new() -> Self {
        Self(0xffff_ffff)
    }

    pub fn update(&mut self, t: &CrcTables, data: &[u8]) {
        let mut c = self.0;
        let mut chunks = data.chunks_exact(8);
        for b in &mut chunks {
            let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            c = t[7][(lo & 0xff) as usize]
                ^ t[6][((lo >> 8) & 0xff) as usize]
                ^ t[5][((lo >> 16) & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][usize::from(b[4])]
                ^ t[2][usize::from(b[5])]
                ^ t[1][usize::from(b[6])]
                ^ t[0][usize::from(b[7])];
        }
        for &b in chunks.remainder() {
            c = t[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    pub const fn finish(&self) -> u32 {
        !self.0
    }

    /// The bare register starting at `register`, for CRCs that skip gzip's inversions (JFFS2's
    /// `crc32(0, ...)`): read it back with [`Crc32::register`].
    pub const fn with_register(register: u32) -> Self {
        Self(register)
    }

    /// The register as it stands, without the final inversion [`Crc32::finish`] applies.
    pub const fn register(&self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Body,
    Trailer,
    Done,
}

/// Decodes exactly one gzip member from `R`: the trailer's CRC32 and ISIZE are checked when the
/// deflate stream ends, and any byte after the trailer (a second member, garbage) is an error,
/// so the end of the stream is reported only once all of it has been checked.
pub struct GzipReader<R> {
    inner: R,
    state: State,
    inflate: DecompressorOxide,
    window: [u8; WINDOW],
    /// Where inflate writes next in `window`.
    out_pos: usize,
    /// `out_pos` has gone round the window once: 32 KiB of output lie behind it.
    wrapped: bool,
    /// Inflated bytes in `window[pending_start..pending_start + pending_len]`
    /// not yet handed to the caller; never wraps.
    pending_start: usize,
    pending_len: usize,
    input: [u8; INPUT],
    in_pos: usize,
    in_len: usize,
    in_eof: bool,
    crc: Crc32,
    crc_tables: CrcTables,
    size: u32,
}

impl<R: Read> ErrorType for GzipReader<R> {
    type Error = GzipError<R::Error>;
}

impl<R: Read> GzipReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            state: State::Header,
            inflate: DecompressorOxide::new(),
            window: [0; WINDOW],
            out_pos: 0,
            wrapped: false,
            pending_start: 0,
            pending_len: 0,
            input: [0; INPUT],
            in_pos: 0,
            in_len: 0,
            in_eof: false,
            crc: Crc32::new(),
            crc_tables: crc_tables(),
            size: 0,
        }
    }

    /// Gives the underlying reader back (e.g. to re-read a payload).
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The underlying reader.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Refills the input buffer when it is empty; false at end of input.
    fn fill(&mut self) -> Result<bool, GzipError<R::Error>> {
        if self.in_pos < self.in_len {
            return Ok(true);
        }
        if self.in_eof {
            return Ok(false);
        }
        let n = self.inner.read(&mut self.input).map_err(GzipError::Io)?;
        self.in_pos = 0;
        self.in_len = n;
        if n == 0 {
            self.in_eof = true;
        }
        Ok(n != 0)
    }

    fn byte(&mut self, hcrc: &mut Crc32) -> Result<u8, GzipError<R::Error>> {
        if !self.fill()? {
            return Err(GzipError::Truncated);
        }
        let b = self.input[self.in_pos];
        self.in_pos += 1;
        hcrc.update(&self.crc_tables, &[b]);
        Ok(b)
    }

    fn header(&mut self) -> Result<(), GzipError<R::Error>> {
        let mut h = Crc32::new();
        let id1 = self.byte(&mut h)?;
        let id2 = self.byte(&mut h)?;
        if (id1, id2) != (0x1f, 0x8b) {
            return Err(GzipError::BadMagic);
        }
        let cm = self.byte(&mut h)?;
        if cm != 8 {
            return Err(GzipError::UnsupportedMethod(cm));
        }
        let flg = self.byte(&mut h)?;
        if flg & FRESERVED != 0 {
            return Err(GzipError::ReservedFlags(flg & FRESERVED));
        }
        // MTIME(4) XFL OS: informational only.
        for _ in 0..6 {
            self.byte(&mut h)?;
        }
        if flg & FEXTRA != 0 {
            let lo = self.byte(&mut h)?;
            let hi = self.byte(&mut h)?;
            for _ in 0..u16::from_le_bytes([lo, hi]) {
                self.byte(&mut h)?;
            }
        }
        for flag in [FNAME, FCOMMENT] {
            if flg & flag != 0 {
                while self.byte(&mut h)? != 0 {}
            }
        }
        if flg & FHCRC != 0 {
            let computed = (h.finish() & 0xffff) as u16;
            let mut unused = Crc32::new();
            let lo = self.byte(&mut unused)?;
            let hi = self.byte(&mut unused)?;
            let stored = u16::from_le_bytes([lo, hi]);
            if stored != computed {
                return Err(GzipError::HeaderCrc { stored, computed });
            }
        }
        // FTEXT is only a hint about the content; nothing to do.
        let _ = FTEXT;
        Ok(())
    }

    fn trailer(&mut self) -> Result<(), GzipError<R::Error>> {
        let mut t = [0u8; 8];
        let mut unused = Crc32::new();
        for b in &mut t {
            *b = self.byte(&mut unused)?;
        }
        let stored = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let computed = self.crc.finish();
        if stored != computed {
            return Err(GzipError::Crc { stored, computed });
        }
        let stored = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        if stored != self.size {
            return Err(GzipError::Size {
                stored,
                computed: self.size,
            });
        }
        Ok(())
    }

    /// Runs inflate until it produces output or the deflate stream ends.
    fn inflate_some(&mut self) -> Result<(), GzipError<R::Error>> {
        loop {
            let more = self.fill()?;
            let mut flags = if more {
                inflate_flags::TINFL_FLAG_HAS_MORE_INPUT
            } else {
                0
            };
            // A circular window lets a distance reach before the first byte of output (into
            // the window's initial zeros) unchecked; RFC 1951 forbids it, and zlib refuses it
            // ("invalid distance too far back"). Until the window has gone round once the
            // output so far is exactly `window[..out_pos]`, which inflate checks distances
            // against when told the buffer does not wrap.
            if !self.wrapped {
                flags |= inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
            }
            let (status, consumed, produced) = decompress(
                &mut self.inflate,
                &self.input[self.in_pos..self.in_len],
                &mut self.window,
                self.out_pos,
                flags,
            );
            self.in_pos += consumed;
            if produced > 0 {
                let out = &self.window[self.out_pos..self.out_pos + produced];
                self.crc.update(&self.crc_tables, out);
                self.size = self.size.wrapping_add(produced as u32);
                self.pending_start = self.out_pos;
                self.pending_len = produced;
                self.out_pos = (self.out_pos + produced) & (WINDOW - 1);
                self.wrapped |= self.out_pos == 0;
            }
            match status {
                TINFLStatus::Done => {
                    self.state = State::Trailer;
                    return Ok(());
                }
                TINFLStatus::NeedsMoreInput => {
                    if !more {
                        return Err(GzipError::Truncated);
                    }
                }
                TINFLStatus::HasMoreOutput => {}
                // Negative statuses are corruption; FailedCannotMakeProgress
                // means the input ended mid-stream.
                TINFLStatus::FailedCannotMakeProgress => return Err(GzipError::Truncated),
                other => {
                    if (other as i8) < 0 {
                        return Err(GzipError::Inflate(other as i8));
                    }
                }
            }
            if produced > 0 {
                return Ok(());
            }
        }
    }
}

impl<R: Read> Read for GzipReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pending_len > 0 {
                let n = self.pending_len.min(buf.len());
                let start = self.pending_start;
                buf[..n].copy_from_slice(&self.window[start..start + n]);
                self.pending_start += n;
                self.pending_len -= n;
                return Ok(n);
            }
            match self.state {
                State::Header => {
                    self.header()?;
                    self.state = State::Body;
                }
                State::Body => self.inflate_some()?,
                State::Trailer => {
                    self.trailer()?;
                    if self.fill()? {
                        return Err(GzipError::TrailingData);
                    }
                    self.state = State::Done;
                }
                State::Done => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    // `printf 'hello, snapinit\n' | gzip -c -n` (no FNAME, mtime 0).
    const HELLO_GZ: &[u8] = &[
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9, 0xc9,
        0xd7, 0x51, 0x28, 0xce, 0x4b, 0x2c, 0xc8, 0xcc, 0xcb, 0x2c, 0xe1, 0x02, 0x00, 0xab, 0x05,
        0xdb, 0xf5, 0x10, 0x00, 0x00, 0x00,
    ];

    struct Chunked<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl ErrorType for Chunked<'_> {
        type Error = core::convert::Infallible;
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = self.data.len().min(buf.len()).min(self.chunk);
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn inflate_all(
        data: &[u8],
        chunk: usize,
        bufsize: usize,
    ) -> Result<Vec<u8>, GzipError<core::convert::Infallible>> {
        let mut r = GzipReader::new(Chunked { data, chunk });
        let mut out = Vec::new();
        let mut buf = std::vec![0u8; bufsize];
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn crc32_check_value() {
        let t = crc_tables();
        let mut c = Crc32::new();
        c.update(&t, b"123456789");
        assert_eq!(c.finish(), 0xcbf4_3926);
        // Slicing and the byte-wise tail agree however the input is split.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut whole = Crc32::new();
        whole.update(&t, &data);
        for split in [1, 7, 8, 9, 500] {
            let mut parts = Crc32::new();
            parts.update(&t, &data[..split]);
            parts.update(&t, &data[split..]);
            assert_eq!(parts.finish(), whole.finish(), "split {split}");
        }
        let mut bytewise = Crc32::new();
        for b in &data {
            bytewise.update(&t, core::slice::from_ref(b));
        }
        assert_eq!(bytewise.finish(), whole.finish());
    }

    #[test]
    fn hello_fixture() {
        for chunk in [1, 3, 1000] {
            for bufsize in [1, 7, 4096] {
                let out = inflate_all(HELLO_GZ, chunk, bufsize).unwrap();
                assert_eq!(out, b"hello, snapinit\n");
            }
        }
    }

    #[test]
    fn bad_crc_is_detected() {
        let mut bad = HELLO_GZ.to_vec();
        let n = bad.len();
        bad[n - 8] ^= 1;
        assert!(matches!(
            inflate_all(&bad, 1000, 64),
            Err(GzipError::Crc { .. })
        ));
        let mut bad = HELLO_GZ.to_vec();
        bad[n - 4] ^= 1;
        assert!(matches!(
            inflate_all(&bad, 1000, 64),
            Err(GzipError::Size { .. })
        ));
    }

    #[test]
    fn trailing_bytes_and_second_members_are_refused() {
        let mut two = HELLO_GZ.to_vec();
        two.extend_from_slice(HELLO_GZ);
        assert_eq!(inflate_all(&two, 1000, 64), Err(GzipError::TrailingData));
        let mut junk = HELLO_GZ.to_vec();
        junk.push(0);
        for chunk in [1, 7, 1000] {
            assert_eq!(inflate_all(&junk, chunk, 64), Err(GzipError::TrailingData));
        }
    }

    #[test]
    fn truncation_and_magic() {
        let n = HELLO_GZ.len();
        for cut in [0, 5, 12, n - 8, n - 5, n - 3, n - 1] {
            assert_eq!(
                inflate_all(&HELLO_GZ[..cut], 1000, 64),
                Err(GzipError::Truncated),
                "cut at {cut}"
            );
        }
        let mut bad = HELLO_GZ.to_vec();
        bad[1] = 0;
        assert_eq!(inflate_all(&bad, 1000, 64), Err(GzipError::BadMagic));
        let mut bad = HELLO_GZ.to_vec();
        bad[3] = 0x20;
        assert_eq!(
            inflate_all(&bad, 1000, 64),
            Err(GzipError::ReservedFlags(0x20))
        );
    }

    /// A gzip member around the raw deflate stream `deflate` that inflates to `data`.
    fn member(deflate: &[u8], data: &[u8]) -> Vec<u8> {
        let mut gz = HELLO_GZ[..10].to_vec();
        gz.extend_from_slice(deflate);
        let mut crc = Crc32::new();
        crc.update(&crc_tables(), data);
        gz.extend_from_slice(&crc.finish().to_le_bytes());
        gz.extend_from_slice(&(data.len() as u32).to_le_bytes());
        gz
    }

    #[test]
    fn a_distance_before_the_first_byte_is_refused() {
        // One fixed-Huffman block: a match of length 3 at distance 1 before any literal, then
        // end of block (zlib: "invalid distance too far back"). A circular window would
        // copy its initial zeros.
        let too_far = member(&[0x03, 0x02, 0x00], &[0, 0, 0]);
        for chunk in [1, 1000] {
            assert_eq!(
                inflate_all(&too_far, chunk, 64),
                Err(GzipError::Inflate(TINFLStatus::Failed as i8)),
                "chunk {chunk}"
            );
        }
        // The same match after a literal 'a' reaches the first byte exactly: "aaaa".
        // Bits: BFINAL 1, BTYPE 01, literal 0x61 (8-bit code 0x91), 257, distance code 0, 256.
        let ok = member(&[0x4b, 0x04, 0x02, 0x00], b"aaaa");
        assert_eq!(inflate_all(&ok, 1, 64).unwrap(), b"aaaa");
    }

    /// Runs the system `gzip`, so fixtures come from the real tool.
    fn system_gzip(data: &[u8], args: &[&str]) -> Vec<u8> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("gzip")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the `gzip` command is needed for these tests");
        let mut stdin = child.stdin.take().unwrap();
        let input = data.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn large_streams_from_real_gzip() {
        // Long-distance repeats exercise the window wrap; the pseudo-random
        // part keeps stored/dynamic blocks in the mix.
        let mut data = Vec::new();
        let mut x: u32 = 12345;
        for i in 0..300_000u32 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            data.push(if i % 3 == 0 {
                (x >> 16) as u8
            } else {
                b"snapinit"[(i % 8) as usize]
            });
        }
        for level in ["-1", "-6", "-9"] {
            let gz = system_gzip(&data, &["-c", level]);
            assert_eq!(inflate_all(&gz, 997, 4093).unwrap(), data, "level {level}");
            assert_eq!(inflate_all(&gz, 65536, 100_000).unwrap(), data);
        }
        // Incompressible data makes gzip emit stored blocks.
        let random: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let gz = system_gzip(&random, &["-c"]);
        assert_eq!(inflate_all(&gz, 512, 333).unwrap(), random);
        let empty = system_gzip(&[], &["-c"]);
        assert_eq!(inflate_all(&empty, 512, 333).unwrap(), b"");
    }

    #[test]
    fn optional_header_fields() {
        // FNAME from gzip itself (it records the file name of a named file).
        let dir = std::env::temp_dir().join(std::format!("snapinit-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("named-file.txt");
        std::fs::write(&path, b"named content\n").unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-c")
            .arg("-N")
            .arg(&path)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(out.stdout[3] & FNAME, FNAME);
        assert_eq!(inflate_all(&out.stdout, 5, 5).unwrap(), b"named content\n");

        // gzip never writes FEXTRA/FCOMMENT/FHCRC; splice them into a real stream.
        let body = &HELLO_GZ[10..];
        let mut gz = HELLO_GZ[..10].to_vec();
        gz[3] = FTEXT | FHCRC | FEXTRA | FNAME | FCOMMENT;
        gz.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
        gz.extend_from_slice(b"name\0comment\0");
        let mut h = Crc32::new();
        h.update(&crc_tables(), &gz);
        let hcrc = (h.finish() & 0xffff) as u16;
        gz.extend_from_slice(&hcrc.to_le_bytes());
        gz.extend_from_slice(body);
        assert_eq!(inflate_all(&gz, 2, 3).unwrap(), b"hello, snapinit\n");
        let n = gz.len() - body.len() - 1;
        gz[n] ^= 0xff;
        assert!(matches!(
            inflate_all(&gz, 2, 3),
            Err(GzipError::HeaderCrc { .. })
        ));
    }
}
