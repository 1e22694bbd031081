//! What each fuzz target checks, shared by the libFuzzer targets (fuzz_targets/*.rs) and the
//! regression test that replays every saved crash and seed (userland/tests/fuzz_regressions.rs).
//! The including crate root provides `mod cmdline` (src/init/cmdline.rs, a module of PID 1).

use core::fmt::Write as _;
use embedded_io::Read as _;
use embedded_storage::nor_flash::{ErrorType, NorFlashError, NorFlashErrorKind, ReadNorFlash};
use snapinit::chain::{read_chain, read_chain_with, Volatiles};
use snapinit::flash::Geometry;
use snapinit::gzip::GzipReader;
use snapinit::header::{damage, decode, span_blocks, HEADER_LEN, SEALED_LEN};
use snapinit::tar::TarReader;

/// The header decoder on any 256 bytes (shorter input is padded with 0xFF): never panics;
/// what it accepts re-seals to the same bytes; `damage` classifies what it rejects.
pub fn header(data: &[u8]) {
    let mut raw = [0xFFu8; HEADER_LEN];
    let n = data.len().min(HEADER_LEN);
    raw[..n].copy_from_slice(&data[..n]);
    match decode(&raw) {
        Ok(h) => {
            assert_eq!(&h.fields.seal()[..], &raw[..SEALED_LEN]);
            assert_eq!(h.fields.hash(), h.hash);
            let _ = h.span_blocks();
        }
        Err(_) => {
            let _ = damage(&raw);
        }
    }
    if data.len() >= 12 {
        let mut len = [0u8; 8];
        len.copy_from_slice(&data[..8]);
        let mut e = [0u8; 4];
        e.copy_from_slice(&data[8..12]);
        let _ = span_blocks(u64::from_le_bytes(len), u32::from_le_bytes(e));
    }
}

#[derive(Debug)]
pub struct Eio;

impl NorFlashError for Eio {
    fn kind(&self) -> NorFlashErrorKind {
        NorFlashErrorKind::Other
    }
}

/// An image in memory as flash, with a range of reads that fail (EIO).
pub struct Image<'a> {
    pub data: &'a [u8],
    pub erase_size: u32,
    pub fail: (u32, u32),
}

impl ErrorType for Image<'_> {
    type Error = Eio;
}

impl Geometry for Image<'_> {
    fn erase_size(&self) -> u32 {
        self.erase_size
    }
}

impl ReadNorFlash for Image<'_> {
    const READ_SIZE: usize = 1;
    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Eio> {
        let start = offset as usize;
        let end = start.checked_add(bytes.len()).ok_or(Eio)?;
        if end > self.data.len() {
            return Err(Eio);
        }
        let (a, b) = self.fail;
        if u64::from(offset) < u64::from(b) && u64::from(a) < end as u64 {
            return Err(Eio);
        }
        bytes.copy_from_slice(&self.data[start..end]);
        Ok(())
    }
    fn capacity(&self) -> usize {
        self.data.len()
    }
}

/// The chain walker (PID 1's and the tool's) over an arbitrary image with an arbitrary erase
/// size and an injected read error: never panics, and what it accepts lies inside the image.
/// Input: byte 0 picks the erase size (2^(9 + b % 8): 512 .. 64 KiB), bytes 1..9 a range of
/// failing reads (start and length, u32 LE, modulo the image size), the rest is the image.
pub fn chain(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let erase_size = 1u32 << (9 + u32::from(data[0] % 8));
    let image = &data[9..];
    let len = image.len().max(1) as u32;
    let start = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) % len;
    let span = u32::from_le_bytes([data[5], data[6], data[7], data[8]]) % len;
    let mut flash = Image {
        data: image,
        erase_size,
        fail: (start, start.saturating_add(span)),
    };
    let mut buf = [0u8; 97];
    let view = read_chain(&mut flash, &mut buf);
    let cap = image.len() as u64;
    for b in view.snapshots.iter().chain(view.volatiles.iter()) {
        assert!(b.end() <= cap, "accepted a block past the end of the image");
        assert_eq!(u64::from(b.offset) % u64::from(erase_size), 0);
    }
    let lazy = read_chain_with(&mut flash, &mut buf, Volatiles::VerifyCurrent);
    assert_eq!(lazy.snapshots, view.snapshots);
}

/// PID 1's streaming tar reader over arbitrary bytes: never panics, always terminates.
pub fn tar(data: &[u8]) {
    let mut tr = TarReader::new(data, u64::MAX);
    let mut buf = [0u8; 700];
    for _ in 0..10_000 {
        match tr.next_entry() {
            Ok(Some(_)) => {
                let mut guard = 0usize;
                while let Ok(n) = tr.read_data(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    guard += 1;
                    assert!(guard <= data.len() + 1, "read_data does not advance");
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
}

/// PID 1's gzip decoder over arbitrary bytes: never panics, always terminates, output bounded
/// by deflate's expansion limit. Reading stops after 80 KiB of output (past a full turn of the
/// 32 KiB window): a small input can
/// legitimately expand a thousandfold, and decompressing those bombs whole would slow the
/// fuzzer tenfold without reaching new code.
pub fn gzip(data: &[u8]) {
    const ENOUGH: usize = 80 << 10;
    let mut gz = Box::new(GzipReader::new(data));
    let mut buf = [0u8; 1024];
    let mut total = 0usize;
    while total < ENOUGH {
        match gz.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                // Deflate expands at most ~1032:1; more output than that is a loop.
                assert!(total <= data.len().saturating_mul(1100) + 65536);
            }
        }
    }
}

/// PID 1's kernel command-line parser on any UTF-8 string: never panics.
pub fn cmdline(data: &[u8]) {
    let Ok(s) = core::str::from_utf8(data) else {
        return;
    };
    let mut sink = heapless::String::<512>::new();
    let settings = super::cmdline::parse(s, |w| {
        sink.clear();
        let _ = write!(sink, "{w}");
    });
    let _ = settings.erase_size;
}

/// The writer's survey (what a write may erase) over the same inputs as `chain`: never panics,
/// never lists a visible erase block as garbage or suspect, and lists no block twice.
pub fn survey(data: &[u8]) {
    use snapinit::chain::Layout;
    if data.len() < 9 {
        return;
    }
    let erase_size = 1u32 << (9 + u32::from(data[0] % 8));
    let image = &data[9..];
    let len = image.len().max(1) as u32;
    let start = u32::from_le_bytes([data[1], data[2], data[3], data[4]]) % len;
    let span = u32::from_le_bytes([data[5], data[6], data[7], data[8]]) % len;
    let mut flash = Image {
        data: image,
        erase_size,
        fail: (start, start.saturating_add(span)),
    };
    let mut buf = [0u8; 97];
    let view = read_chain(&mut flash, &mut buf);
    let mut layout = view.layout;
    let total = layout.total_blocks();
    if total < 2 {
        return;
    }
    if layout.backbuf_blocks == 0 {
        layout.backbuf_blocks = Layout::default_backbuf_blocks(total);
    }
    let Ok(s) = snapshot::writer::survey(&mut flash, &view, &layout) else {
        return;
    };
    let mut seen = std::collections::HashSet::new();
    for &i in s.garbage.iter().chain(s.suspect_blocks.iter()) {
        assert!(i < total, "erase block {i} out of range");
        assert!(seen.insert(i), "erase block {i} listed twice");
        let at = u64::from(i) * u64::from(erase_size);
        for b in view.snapshots.iter().chain(view.volatiles.iter()) {
            assert!(
                at < u64::from(b.offset) || at >= b.end(),
                "visible block at {:#x} would be erased",
                b.offset
            );
        }
    }
}

/// The replay on any tar (plain), twice: into a real scratch directory through PID 1's
/// `DirLayer`, and into the in-memory model `snapshot verify` uses. Nothing may appear or change
/// outside the scratch layer, and the two must give one verdict: both accept, or both refuse
/// with the same words (a system error of the real directory, which the model cannot have, is
/// the only exception).
pub fn replay(data: &[u8]) {
    use snapinit::dirlayer::DirLayer;
    use snapinit::replay::{replay, Cause};
    use std::os::fd::AsFd;
    let base = std::env::temp_dir().join(format!("snapinit-fuzz-replay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let layer = base.join("layer");
    let outside = base.join("outside");
    std::fs::create_dir_all(&layer).expect("scratch layer");
    std::fs::create_dir_all(&outside).expect("scratch outside");
    std::fs::write(outside.join("canary"), b"canary").expect("canary");
    let dir = std::fs::File::open(&layer).expect("open layer");
    let mut buf = [0u8; 4096];

    let mut real = DirLayer::new(dir.as_fd(), &[], snapinit::dirlayer::UMASK_UNKNOWN);
    let got = replay(&mut TarReader::new(data, u64::MAX), &mut real, &mut buf).map_err(|e| {
        let sys = matches!(e.cause, Cause::Sys { .. });
        (e.to_string(), sys)
    });
    let mut model = snapshot::model::ModelLayer::new();
    let want = replay(&mut TarReader::new(data, u64::MAX), &mut model, &mut buf)
        .map_err(|e| e.to_string());

    let mut names: Vec<_> = std::fs::read_dir(&base)
        .expect("read scratch")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["layer", "outside"],
        "something was created next to the layer"
    );
    let inside: Vec<_> = std::fs::read_dir(&outside)
        .expect("read outside")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        inside,
        ["canary"],
        "something was created outside the layer"
    );
    assert_eq!(
        std::fs::read(outside.join("canary")).expect("canary"),
        b"canary",
        "the canary outside the layer changed"
    );
    match (&got, &want) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "real and model counted differently"),
        (Err((_, true)), _) => {}
        (Err((a, false)), Err(b)) => assert_eq!(a, b, "real and model refuse differently"),
        (a, b) => panic!("one verdict for two layers: real {a:?}, model {b:?}"),
    }
    let _ = std::fs::remove_dir_all(&base);
}
