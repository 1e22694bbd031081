//! Writing a gzip member (RFC 1952): flate2's raw deflate inside the header and trailer, the
//! trailer's CRC-32 computed by the same code PID 1 checks it with (`snapinit::gzip::Crc32`).
//! flate2's own gzip writer would bring a second CRC-32 implementation (crc32fast, 16 KiB of
//! table on every architecture) into a tool that carries PID 1's already.

use std::io::{self, Write};

use flate2::write::DeflateEncoder;
use flate2::Compression;
use snapinit::gzip::{crc_tables, Crc32, CrcTables};

/// The member header: no name, no comment, no extra field, mtime 0, XFL 0 (the default
/// level) and OS 255 ("unknown"): the bytes flate2's `GzEncoder` wrote for earlier versions of
/// this tool, so that one tree still packs to one payload.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A gzip member written to `W` as data arrives; [`GzipWriter::finish`] ends it.
pub struct GzipWriter<W: Write> {
    deflate: DeflateEncoder<W>,
    crc: Crc32,
    tables: Box<CrcTables>,
    /// ISIZE: the input length modulo 2^32.
    isize: u32,
}

impl<W: Write> GzipWriter<W> {
    /// Writes the header to `out` and starts the deflate stream at flate2's default level (6).
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&HEADER)?;
        Ok(Self {
            deflate: DeflateEncoder::new(out, Compression::default()),
            crc: Crc32::new(),
            tables: Box::new(crc_tables()),
            isize: 0,
        })
    }

    /// Ends the deflate stream, writes the trailer (CRC-32 and ISIZE, little-endian) and gives
    /// back the writer.
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.deflate.finish()?;
        out.write_all(&self.crc.finish().to_le_bytes())?;
        out.write_all(&self.isize.to_le_bytes())?;
        Ok(out)
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.deflate.write(buf)?;
        let taken = &buf[..n];
        self.crc.update(&self.tables, taken);
        // ISIZE is defined modulo 2^32: the truncation is the format's.
        self.isize = self.isize.wrapping_add(n as u32);
        Ok(n)
    }

    /// A deflate sync flush: the bytes so far become decodable, at the cost of an empty
    /// stored block in the stream.
    fn flush(&mut self) -> io::Result<()> {
        self.deflate.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::GzipWriter;
    use std::io::Write;

    fn ours(data: &[u8], chunk: usize) -> Vec<u8> {
        let mut w = GzipWriter::new(Vec::new()).expect("header");
        for part in data.chunks(chunk.max(1)) {
            w.write_all(part).expect("write");
        }
        w.finish().expect("finish")
    }

    fn flate2s(data: &[u8]) -> Vec<u8> {
        let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(data).expect("write");
        w.finish().expect("finish")
    }

    fn inputs() -> Vec<Vec<u8>> {
        let mut noise = Vec::with_capacity(300_000);
        let mut x: u32 = 0x1234_5678;
        for _ in 0..300_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.push((x >> 24) as u8);
        }
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("option name 'value{}'\n", i % 97).into_bytes())
            .collect();
        vec![Vec::new(), b"a".to_vec(), vec![0; 1 << 20], noise, text]
    }

    /// The payloads earlier versions wrote (flate2's gzip writer), byte for byte, however the
    /// data arrives.
    #[test]
    fn writes_the_bytes_flate2s_gzip_writer_wrote() {
        for data in inputs() {
            let want = flate2s(&data);
            for chunk in [1 << 20, 4096, 509] {
                assert!(
                    ours(&data, chunk) == want,
                    "{} bytes, chunk {chunk}",
                    data.len()
                );
            }
        }
    }

    /// What PID 1 reads back: the data, with the trailer's CRC and length checked.
    #[test]
    fn pid1s_reader_takes_it_back() {
        for data in inputs() {
            let gz = ours(&data, 4096);
            let mut r = snapinit::gzip::GzipReader::new(crate::unpack::IoReader(&gz[..]));
            let mut back = Vec::new();
            let mut buf = vec![0; 65536];
            loop {
                let n = embedded_io::Read::read(&mut r, &mut buf).expect("gzip");
                if n == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..n]);
            }
            assert!(back == data, "{} bytes", data.len());
        }
    }
}
