//! Extracting a payload (see [`crate::pack`] for the dialect) into a
//! directory.
//!
//! The reader is as strict as PID 1: ustar headers only, entry types `0`,
//! `1`, `2`, `3` (device `0:0` only) and `5`, pax keys `path`, `linkpath`,
//! `mtime` and `SCHILY.xattr.*` only, and the dialect's length limits.
//! Anything else is a typed error.
//!
//! Safety: every path must consist of plain components (no `/` root, no
//! `..`, no `.`), every parent of an entry (and of a hard link's target)
//! must be a real directory inside `dest` — a symlink, whether created by
//! an earlier entry or already present in `dest`, is refused with
//! [`UnpackError::SymlinkInPath`] — and an existing non-directory at an
//! entry's own path is unlinked first, never written through. Hard links
//! may only name a regular file that an earlier entry of the same payload
//! created. The unpacker assumes nobody else changes `dest` meanwhile.
//!
//! Layering: several payloads can be unpacked into one directory in chain
//! order. A later entry replaces whatever is at its path (a directory that
//! a non-directory replaces is removed with its contents); a directory
//! entry over an existing directory merges with it (unless it is opaque:
//! then the old directory and its contents are removed first), takes the new mode,
//! owner and mtime, and sets its xattrs on top of the existing ones
//! (xattrs it does not name are kept, so a directory stays opaque).
//! Whiteouts stay `c 0:0` nodes, as in an overlay layer.
//!
//! Metadata order per entry: owner (lchown), then mode (chown clears
//! setuid/setgid), then xattrs (chown clears `security.capability`), then
//! mtime. Directories get their mode and mtime after the whole payload,
//! deepest first, so creating their contents does not disturb them.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, CWD, UTIME_OMIT};
use tar::{Archive, EntryType};

use crate::pack::{MAX_PATH, MAX_XATTRS, MAX_XATTR_NAME, MAX_XATTR_VALUE};

/// Names of the xattr that makes an overlay directory opaque (value `y`).
const OPAQUE_XATTRS: &[&str] = &["trusted.overlay.opaque", "user.overlay.opaque"];

/// Largest pax 'x' record data accepted, as in PID 1 (path + linkpath +
/// mtime + 8 xattrs at their limits take about 3.3 KiB).
pub const MAX_PAX_SIZE: u64 = 4096;

/// How to unpack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackOptions {
    /// Set each entry's uid/gid (needs root). Otherwise the unpacking user
    /// owns everything.
    pub preserve_owner: bool,
    /// Set the entries' extended attributes (`trusted.*` needs root).
    pub preserve_xattrs: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            preserve_owner: true,
            preserve_xattrs: true,
        }
    }
}

/// What was unpacked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Entries applied.
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Why unpacking failed. Paths are as named in the payload.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the payload: {0}")]
    Read(#[source] io::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path:?}: bad header field: {source}")]
    BadHeader {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path:?}: {field} {value} out of range")]
    FieldOutOfRange {
        path: PathBuf,
        field: &'static str,
        value: u64,
    },
    #[error("{path}: destination is not a directory")]
    DestNotDirectory { path: PathBuf },
    #[error("{path:?}: not a ustar header (GNU or v7 tar?)")]
    NotUstar { path: PathBuf },
    #[error("{path:?}: two pax 'x' records in a row")]
    DoublePax { path: PathBuf },
    #[error("{path:?}: pax 'x' record of {size} bytes, more than {MAX_PAX_SIZE}")]
    PaxTooLarge { path: PathBuf, size: u64 },
    #[error("{path:?}: GNU long name/link record (the dialect uses pax)")]
    GnuLongName { path: PathBuf },
    #[error("{path:?}: path or link target is not UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error("{path:?}: path is empty, absolute or has `.`/`..` components")]
    UnsafePath { path: PathBuf },
    #[error("{path:?}: path is {len} bytes, more than {MAX_PATH}")]
    PathTooLong { path: PathBuf, len: usize },
    #[error("{path:?}: link target is {len} bytes, more than {MAX_PATH}")]
    LinkTargetTooLong { path: PathBuf, len: usize },
    #[error("{path:?}: parent {parent:?} is a symlink")]
    SymlinkInPath { path: PathBuf, parent: PathBuf },
    #[error("{path:?}: parent {parent:?} is not a directory")]
    ParentNotDirectory { path: PathBuf, parent: PathBuf },
    #[error("{path:?}: parent {parent:?} does not exist (no earlier directory entry)")]
    MissingParent { path: PathBuf, parent: PathBuf },
    #[error("{path:?}: unsupported entry type {typeflag:?}")]
    UnsupportedEntryType { path: PathBuf, typeflag: char },
    #[error("{path:?}: character device {major}:{minor} is not a whiteout")]
    UnsupportedDevice {
        path: PathBuf,
        major: u32,
        minor: u32,
    },
    #[error("{path:?}: {kind} entry without a link name")]
    MissingLinkName { path: PathBuf, kind: &'static str },
    #[error("{path:?}: hard link to {target:?}, which is not an earlier regular file")]
    BadHardLink { path: PathBuf, target: PathBuf },
    #[error("{path:?}: unsupported pax key {key:?}")]
    UnsupportedPaxKey { path: PathBuf, key: String },
    #[error("{path:?}: malformed pax {key:?} record")]
    BadPaxRecord { path: PathBuf, key: String },
    #[error("{path:?}: {count} extended attributes, more than {MAX_XATTRS}")]
    TooManyXattrs { path: PathBuf, count: usize },
    #[error("{path:?}: xattr name {name:?} is empty or longer than {MAX_XATTR_NAME} bytes")]
    BadXattrName { path: PathBuf, name: String },
    #[error("{path:?}: xattr {name} value is {len} bytes, more than {MAX_XATTR_VALUE}")]
    XattrValueTooLong {
        path: PathBuf,
        name: String,
        len: usize,
    },
}

/// Unpacks one payload (gzip-compressed if `gzip`) into the existing
/// directory `dest`, on top of whatever is already there.
pub fn unpack<R: Read>(
    payload: R,
    gzip: bool,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackReport, UnpackError> {
    let meta = fs::metadata(dest).map_err(|source| UnpackError::Io {
        path: dest.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(UnpackError::DestNotDirectory {
            path: dest.to_path_buf(),
        });
    }
    let mut unpacker = Unpacker {
        dest,
        opts,
        report: UnpackReport::default(),
        files: HashSet::new(),
        dirs: Vec::new(),
        dir_index: HashMap::new(),
    };
    if gzip {
        unpacker.run(GzDecoder::new(payload))?;
    } else {
        unpacker.run(payload)?;
    }
    unpacker.finish_dirs()?;
    Ok(unpacker.report)
}

/// A directory's mode and mtime, applied once the payload is unpacked.
struct DeferredDir {
    rel: PathBuf,
    mode: u32,
    mtime: Timespec,
}

struct Unpacker<'a> {
    dest: &'a Path,
    opts: &'a UnpackOptions,
    report: UnpackReport,
    /// Regular files this payload created: the only valid hard-link targets.
    files: HashSet<PathBuf>,
    dirs: Vec<Option<DeferredDir>>,
    dir_index: HashMap<PathBuf, usize>,
}

/// What an entry's pax records add to its header.
#[derive(Default)]
struct Pax {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    mtime: Option<Timespec>,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Parses pax records (`<len> <key>=<value>\n`, `len` counting the whole
/// record) strictly by length. `path` names the entry in errors.
fn parse_pax(mut data: &[u8], path: &Path) -> Result<Pax, UnpackError> {
    let bad = |key: &[u8]| UnpackError::BadPaxRecord {
        path: path.to_path_buf(),
        key: String::from_utf8_lossy(key).into_owned(),
    };
    let mut pax = Pax::default();
    while !data.is_empty() {
        let space = data.iter().take(20).position(|b| *b == b' ');
        let len = space
            .and_then(|sp| std::str::from_utf8(&data[..sp]).ok())
            .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<usize>().ok());
        let (Some(space), Some(len)) = (space, len) else {
            return Err(bad(b""));
        };
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad(b""));
        }
        let kv = &data[space + 1..len - 1];
        data = &data[len..];
        let Some(eq) = kv.iter().position(|b| *b == b'=') else {
            return Err(bad(kv));
        };
        let (key, value) = (&kv[..eq], &kv[eq + 1..]);
        let Ok(key) = std::str::from_utf8(key) else {
            return Err(UnpackError::UnsupportedPaxKey {
                path: path.to_path_buf(),
                key: String::from_utf8_lossy(key).into_owned(),
            });
        };
        match key {
            "path" => pax.path = Some(value.to_vec()),
            "linkpath" => pax.linkpath = Some(value.to_vec()),
            "mtime" => pax.mtime = Some(parse_mtime(value).ok_or_else(|| bad(key.as_bytes()))?),
            _ => {
                let Some(name) = key.strip_prefix("SCHILY.xattr.") else {
                    return Err(UnpackError::UnsupportedPaxKey {
                        path: path.to_path_buf(),
                        key: key.to_owned(),
                    });
                };
                if name.is_empty() || name.len() > MAX_XATTR_NAME {
                    return Err(UnpackError::BadXattrName {
                        path: path.to_path_buf(),
                        name: name.to_owned(),
                    });
                }
                if value.len() > MAX_XATTR_VALUE {
                    return Err(UnpackError::XattrValueTooLong {
                        path: path.to_path_buf(),
                        name: name.to_owned(),
                        len: value.len(),
                    });
                }
                pax.xattrs.push((name.to_owned(), value.to_vec()));
            }
        }
    }
    if pax.xattrs.len() > MAX_XATTRS {
        return Err(UnpackError::TooManyXattrs {
            path: path.to_path_buf(),
            count: pax.xattrs.len(),
        });
    }
    Ok(pax)
}

/// The metadata that one entry carries.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Unpacker<'_> {
    fn run<R: Read>(&mut self, payload: R) -> Result<(), UnpackError> {
        let mut archive = Archive::new(payload);
        // Raw entries: this reader handles the 'x' records itself (the tar
        // crate's pax parser splits records at '\n', which breaks binary
        // xattr values) and sees GNU 'L'/'K' records in order to refuse them.
        let entries = archive.entries().map_err(UnpackError::Read)?.raw(true);
        let mut pending_pax: Option<Vec<u8>> = None;
        for entry in entries {
            let mut entry = entry.map_err(UnpackError::Read)?;
            let header = entry.header().clone();
            let header_path = header.path_bytes().into_owned();
            let named = || PathBuf::from(OsStr::from_bytes(&header_path));
            if header.as_ustar().is_none() {
                return Err(UnpackError::NotUstar { path: named() });
            }
            let entry_type = header.entry_type();
            match entry_type {
                EntryType::XHeader => {
                    if pending_pax.is_some() {
                        return Err(UnpackError::DoublePax { path: named() });
                    }
                    let size = entry.size();
                    if size > MAX_PAX_SIZE {
                        return Err(UnpackError::PaxTooLarge {
                            path: named(),
                            size,
                        });
                    }
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data).map_err(UnpackError::Read)?;
                    pending_pax = Some(data);
                    continue;
                }
                EntryType::GNULongName | EntryType::GNULongLink => {
                    return Err(UnpackError::GnuLongName { path: named() });
                }
                EntryType::Regular
                | EntryType::Directory
                | EntryType::Symlink
                | EntryType::Link
                | EntryType::Char => {}
                other => {
                    return Err(UnpackError::UnsupportedEntryType {
                        path: named(),
                        typeflag: char::from(other.as_byte()),
                    })
                }
            }
            let pax = match pending_pax.take() {
                Some(data) => parse_pax(&data, &named())?,
                None => Pax::default(),
            };
            let raw = pax.path.clone().unwrap_or(header_path.clone());
            let rel = safe_rel(&raw)?;
            let link = pax
                .linkpath
                .clone()
                .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
            let bad = |source| UnpackError::BadHeader {
                path: rel.clone(),
                source,
            };
            let range = |field, value| UnpackError::FieldOutOfRange {
                path: rel.clone(),
                field,
                value,
            };
            let (uid, gid) = (header.uid().map_err(bad)?, header.gid().map_err(bad)?);
            let secs = header.mtime().map_err(bad)?;
            let meta = Meta {
                mode: header.mode().map_err(bad)? & 0o7777,
                uid: u32::try_from(uid).map_err(|_| range("uid", uid))?,
                gid: u32::try_from(gid).map_err(|_| range("gid", gid))?,
                mtime: match pax.mtime {
                    Some(mtime) => mtime,
                    None => Timespec {
                        tv_sec: i64::try_from(secs).map_err(|_| range("mtime", secs))?,
                        tv_nsec: 0,
                    },
                },
                xattrs: pax.xattrs,
            };

            self.check_parents(&rel, &rel)?;
            let full = self.dest.join(&rel);
            self.files.remove(&rel);
            match entry_type {
                EntryType::Directory => self.make_dir(&rel, &full, meta)?,
                EntryType::Regular => {
                    self.replace(&full, false)?;
                    self.make_file(&mut entry, &full, &meta)?;
                    self.files.insert(rel);
                }
                EntryType::Symlink => {
                    let target = link.ok_or_else(|| UnpackError::MissingLinkName {
                        path: rel.clone(),
                        kind: "symlink",
                    })?;
                    if std::str::from_utf8(&target).is_err() || target.contains(&0) {
                        return Err(UnpackError::NotUtf8 { path: rel });
                    }
                    if target.len() > MAX_PATH {
                        return Err(UnpackError::LinkTargetTooLong {
                            path: rel,
                            len: target.len(),
                        });
                    }
                    self.replace(&full, false)?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(&target), &full)
                        .map_err(io_at(&full))?;
                    self.apply_meta(&full, &meta, false)?;
                }
                EntryType::Link => {
                    let target = link.ok_or_else(|| UnpackError::MissingLinkName {
                        path: rel.clone(),
                        kind: "hard link",
                    })?;
                    let target = safe_rel(&target)?;
                    if !self.files.contains(&target) {
                        return Err(UnpackError::BadHardLink { path: rel, target });
                    }
                    self.check_parents(&rel, &target)?;
                    self.replace(&full, false)?;
                    fs::hard_link(self.dest.join(&target), &full).map_err(io_at(&full))?;
                    self.files.insert(rel);
                }
                EntryType::Char => {
                    let major = header.device_major().map_err(bad)?.unwrap_or(0);
                    let minor = header.device_minor().map_err(bad)?.unwrap_or(0);
                    if (major, minor) != (0, 0) {
                        return Err(UnpackError::UnsupportedDevice {
                            path: rel,
                            major,
                            minor,
                        });
                    }
                    self.replace(&full, false)?;
                    rustix::fs::mknodat(
                        CWD,
                        &full,
                        FileType::CharacterDevice,
                        Mode::empty(),
                        rustix::fs::makedev(0, 0),
                    )
                    .map_err(|e| UnpackError::Io {
                        path: full.clone(),
                        source: e.into(),
                    })?;
                    self.apply_meta(&full, &meta, true)?;
                }
                other => {
                    return Err(UnpackError::UnsupportedEntryType {
                        path: rel,
                        typeflag: char::from(other.as_byte()),
                    })
                }
            }
            self.report.entries += 1;
        }
        Ok(())
    }

    /// Checks that every parent of `target` is a real directory in `dest`.
    /// Errors name `path` (the entry being unpacked).
    fn check_parents(&self, path: &Path, target: &Path) -> Result<(), UnpackError> {
        let Some(parent) = target.parent() else {
            return Ok(());
        };
        let mut prefix = PathBuf::new();
        for comp in parent.components() {
            prefix.push(comp);
            let full = self.dest.join(&prefix);
            let err_path = || (path.to_path_buf(), prefix.clone());
            match fs::symlink_metadata(&full) {
                Ok(m) if m.file_type().is_symlink() => {
                    let (path, parent) = err_path();
                    return Err(UnpackError::SymlinkInPath { path, parent });
                }
                Ok(m) if !m.is_dir() => {
                    let (path, parent) = err_path();
                    return Err(UnpackError::ParentNotDirectory { path, parent });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let (path, parent) = err_path();
                    return Err(UnpackError::MissingParent { path, parent });
                }
                Err(source) => return Err(UnpackError::Io { path: full, source }),
            }
        }
        Ok(())
    }

    /// Clears `full` for a new entry. Returns whether an existing directory
    /// was kept (only when `keep_dir` and one is there).
    fn replace(&self, full: &Path, keep_dir: bool) -> Result<bool, UnpackError> {
        match fs::symlink_metadata(full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(UnpackError::Io {
                path: full.to_path_buf(),
                source,
            }),
            Ok(m) if m.is_dir() && keep_dir => Ok(true),
            // remove_dir_all does not follow symlinks inside the tree.
            Ok(m) if m.is_dir() => fs::remove_dir_all(full)
                .map(|()| false)
                .map_err(io_at(full)),
            Ok(_) => fs::remove_file(full).map(|()| false).map_err(io_at(full)),
        }
    }

    fn make_dir(&mut self, rel: &Path, full: &Path, meta: Meta) -> Result<(), UnpackError> {
        // An opaque directory hides everything below it in earlier layers.
        let opaque = meta
            .xattrs
            .iter()
            .any(|(n, v)| OPAQUE_XATTRS.contains(&n.as_str()) && v.as_slice() == b"y");
        if !self.replace(full, !opaque)? {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(full)
                .map_err(io_at(full))?;
        }
        if self.opts.preserve_owner {
            std::os::unix::fs::lchown(full, Some(meta.uid), Some(meta.gid)).map_err(io_at(full))?;
        }
        if self.opts.preserve_xattrs {
            for (name, value) in &meta.xattrs {
                xattr::set(full, name, value).map_err(io_at(full))?;
            }
        }
        let deferred = DeferredDir {
            rel: rel.to_path_buf(),
            mode: meta.mode,
            mtime: meta.mtime,
        };
        if let Some(&i) = self.dir_index.get(rel) {
            self.dirs[i] = None;
        }
        self.dir_index.insert(rel.to_path_buf(), self.dirs.len());
        self.dirs.push(Some(deferred));
        Ok(())
    }

    fn make_file<R: Read>(
        &mut self,
        data: &mut R,
        full: &Path,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .open(full)
            .map_err(io_at(full))?;
        // Read errors come from the payload, write errors from dest; io::copy
        // cannot tell them apart, so copy by hand through a buffer.
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(UnpackError::Read(e)),
            };
            io::Write::write_all(&mut file, &buf[..n]).map_err(io_at(full))?;
            self.report.bytes += n as u64;
        }
        if self.opts.preserve_owner {
            std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))
                .map_err(io_at(full))?;
        }
        file.set_permissions(fs::Permissions::from_mode(meta.mode))
            .map_err(io_at(full))?;
        if self.opts.preserve_xattrs {
            use xattr::FileExt;
            for (name, value) in &meta.xattrs {
                file.set_xattr(name, value).map_err(io_at(full))?;
            }
        }
        rustix::fs::futimens(&file, &timestamps(meta.mtime)).map_err(|e| UnpackError::Io {
            path: full.to_path_buf(),
            source: e.into(),
        })?;
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and mtime of a node at `full`
    /// that this unpacker just created (so not followed if a symlink).
    fn apply_meta(&self, full: &Path, meta: &Meta, chmod: bool) -> Result<(), UnpackError> {
        if self.opts.preserve_owner {
            std::os::unix::fs::lchown(full, Some(meta.uid), Some(meta.gid)).map_err(io_at(full))?;
        }
        let rx = |e: rustix::io::Errno| UnpackError::Io {
            path: full.to_path_buf(),
            source: e.into(),
        };
        if chmod {
            rustix::fs::chmodat(CWD, full, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(rx)?;
        }
        if self.opts.preserve_xattrs {
            for (name, value) in &meta.xattrs {
                xattr::set(full, name, value).map_err(io_at(full))?;
            }
        }
        rustix::fs::utimensat(
            CWD,
            full,
            &timestamps(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(rx)?;
        Ok(())
    }

    /// Sets the directories' modes and mtimes, deepest first. A directory
    /// that a later entry replaced is skipped.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        for d in self.dirs.drain(..).rev().flatten() {
            let full = self.dest.join(&d.rel);
            let Some(fd) = open_dir_beneath(self.dest, &d.rel).map_err(io_at(&full))? else {
                continue;
            };
            let rx = |e: rustix::io::Errno| UnpackError::Io {
                path: full.clone(),
                source: e.into(),
            };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(d.mode)).map_err(rx)?;
            rustix::fs::futimens(&fd, &timestamps(d.mtime)).map_err(rx)?;
        }
        self.dir_index.clear();
        Ok(())
    }
}

/// Opens `dest/rel` as a directory without following any symlink on the
/// way; `None` if some component is missing or not a directory.
fn open_dir_beneath(dest: &Path, rel: &Path) -> io::Result<Option<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut fd = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for comp in rel.components() {
        match rustix::fs::openat(&fd, comp.as_os_str(), flags, Mode::empty()) {
            Ok(next) => fd = next,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(fd))
}

/// A payload path as a relative path of plain components, or an error.
fn safe_rel(raw: &[u8]) -> Result<PathBuf, UnpackError> {
    let path = Path::new(OsStr::from_bytes(raw));
    if raw.contains(&0) {
        return Err(UnpackError::UnsafePath {
            path: path.to_path_buf(),
        });
    }
    if std::str::from_utf8(raw).is_err() {
        return Err(UnpackError::NotUtf8 {
            path: path.to_path_buf(),
        });
    }
    if raw.len() > MAX_PATH {
        return Err(UnpackError::PathTooLong {
            path: path.to_path_buf(),
            len: raw.len(),
        });
    }
    let mut rel = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(c) => rel.push(c),
            _ => {
                return Err(UnpackError::UnsafePath {
                    path: path.to_path_buf(),
                })
            }
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(UnpackError::UnsafePath {
            path: path.to_path_buf(),
        });
    }
    Ok(rel)
}

/// Parses a pax `mtime` value: decimal seconds, optionally `.` and up to
/// nine fraction digits (more are truncated).
fn parse_mtime(value: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(value).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.contains('.') && frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tv_sec: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for i in 0..9 {
        let digit = frac.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        nanos = nanos * 10 + digit;
    }
    Some(Timespec {
        tv_sec,
        tv_nsec: nanos as _,
    })
}

fn timestamps(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: mtime,
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}
