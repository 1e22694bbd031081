//! Directory trees: packing one into a payload, and fingerprinting one to see whether it changed.

use super::error::CliError;
use super::ui;
use sha2::{Digest, Sha256};
use snapinit::header::Compression;
use snapshot::gzip::GzipWriter;
use snapshot::pack::{pack_dir, PackError, PackOptions, PackReport};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A payload ready for the writer.
pub struct Packed {
    pub data: Vec<u8>,
    pub compression: Compression,
    pub unpacked_len: u64,
    pub report: PackReport,
}

impl Packed {
    pub fn payload(&self) -> snapshot::writer::Payload<'_> {
        snapshot::writer::Payload {
            data: &self.data,
            compression: self.compression,
            unpacked_len: self.unpacked_len,
        }
    }
}

/// How many times a tree whose files keep changing is packed before `save` gives up.
const PACK_ATTEMPTS: u32 = 3;

/// Counts the bytes written through it: the tar's length, streamed into the compressor so that
/// only the compressed payload is ever held.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }

    /// Not passed on: the packer flushes at the end, and a gzip writer flushed writes a
    /// sync-flush block into the payload (bytes the gzip of the whole tar never had, so every
    /// payload would differ from what earlier versions wrote for the same tree). `finish`
    /// ends the stream; a `Vec` has nothing to flush.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Packs `dir` into `out`; gives back `out`, the tar's length and the report.
fn pack_through<W: Write>(
    dir: &Path,
    opts: &PackOptions,
    out: W,
) -> Result<(W, u64, PackReport), PackError> {
    let mut tar = Counting { inner: out, n: 0 };
    // One instance of the packer for every output: generic over each, it is 25 KB of MIPS
    // code per instance.
    let report = pack_dir(dir, opts, &mut tar as &mut dyn Write)?;
    Ok((tar.inner, tar.n, report))
}

/// Packs `dir` in the payload dialect, gzip-compressed if `gzip`; reports skipped members on
/// stderr. At most `max_data` bytes of file content are packed ([`PackOptions::max_data`]).
pub fn pack(dir: &Path, gzip: bool, max_data: Option<u64>) -> Result<Packed, CliError> {
    let spin = ui::spinner("packing");
    let pack_err = |source| CliError::Pack {
        dir: dir.to_path_buf(),
        source,
    };
    let io_err = |source| CliError::Io {
        what: "compressing the payload of",
        path: dir.to_path_buf(),
        source,
    };
    let opts = PackOptions {
        max_data,
        ..PackOptions::default()
    };
    // A file replaced or written to while it was copied (a `uci commit` during a save) makes
    // the archive wrong: packed again, a few times, before giving up.
    let mut attempt = 1;
    let (data, unpacked_len, report) = loop {
        let packed = if gzip {
            match GzipWriter::new(Vec::new()) {
                Ok(enc) => {
                    pack_through(dir, &opts, enc).map(|(enc, n, report)| (enc.finish(), n, report))
                }
                Err(e) => return Err(io_err(e)),
            }
        } else {
            pack_through(dir, &opts, Vec::new()).map(|(tar, n, report)| (Ok(tar), n, report))
        };
        match packed {
            Ok((data, n, report)) => break (data.map_err(io_err)?, n, report),
            Err(e @ PackError::FileChanged { .. }) if attempt < PACK_ATTEMPTS => {
                spin.suspend(|| eprintln!("snapshot: {e}; packing again"));
                attempt += 1;
            }
            Err(e) => return Err(pack_err(e)),
        }
    };
    let compression = if gzip {
        Compression::Gzip
    } else {
        Compression::None
    };
    spin.finish_and_clear();
    for s in &report.skipped {
        // A member the format cannot carry is left out; of a file with an xattr outside the
        // restored namespaces only that xattr is, and its reason says why.
        let what = match s.reason {
            snapshot::pack::SkipReason::Xattr { .. } => "",
            _ => " (not storable)",
        };
        eprintln!("snapshot: skipped {}: {}{what}", s.path.display(), s.reason);
    }
    Ok(Packed {
        data,
        compression,
        unpacked_len,
        report,
    })
}

/// Whether `dir` holds anything.
pub fn has_content(dir: &Path) -> Result<bool, CliError> {
    let mut it = std::fs::read_dir(dir).map_err(|source| CliError::Io {
        what: "reading",
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(it.next().is_some())
}

/// SHA-256 over everything a snapshot of `dir` would store: names, types, modes, owners,
/// mtimes, link targets, xattrs and file contents.
pub fn fingerprint(dir: &Path) -> Result<[u8; 32], CliError> {
    let mut h = Sha256::new();
    walk(dir, Path::new(""), &mut h)?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&h.finalize());
    Ok(out)
}

fn walk(root: &Path, rel: &Path, h: &mut Sha256) -> Result<(), CliError> {
    let dir = root.join(rel);
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CliError::Io {
            what: "fingerprinting",
            path,
            source,
        }
    };
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io_err(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(&dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let child = rel.join(&name);
        let full = root.join(&child);
        let m = std::fs::symlink_metadata(&full).map_err(io_err(&full))?;
        let path = child.as_os_str().as_bytes();
        h.update((path.len() as u64).to_le_bytes());
        h.update(path);
        for v in [
            u64::from(m.mode()),
            u64::from(m.uid()),
            u64::from(m.gid()),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            m.rdev(),
            m.len(),
        ] {
            h.update(v.to_le_bytes());
        }
        let mut xattrs: Vec<_> = xattr::list(&full).map_err(io_err(&full))?.collect();
        xattrs.sort();
        for x in xattrs {
            h.update(x.as_bytes());
            if let Some(v) = xattr::get(&full, &x).map_err(io_err(&full))? {
                h.update((v.len() as u64).to_le_bytes());
                h.update(&v);
            }
        }
        let ft = m.file_type();
        if ft.is_symlink() {
            let t = std::fs::read_link(&full).map_err(io_err(&full))?;
            h.update(t.as_os_str().as_bytes());
        } else if ft.is_file() {
            let mut f = std::fs::File::open(&full).map_err(io_err(&full))?;
            std::io::copy(&mut f, h).map_err(io_err(&full))?;
        } else if ft.is_dir() {
            walk(root, &child, h)?;
        }
    }
    Ok(())
}
