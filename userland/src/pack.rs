//! Turning an overlayfs upper directory into a payload tar.
//!
//! # The payload dialect
//!
//! PID 1 replays payloads with a small, strict reader, so the writer emits
//! exactly this subset of POSIX pax and nothing else:
//!
//! * 512-byte ustar headers (magic `ustar\0`, version `00`, octal numeric
//!   fields, valid checksum, empty uname/gname, devmajor/devminor `0`), the
//!   ustar `prefix` field always empty. The archive ends with two zero
//!   records. No GNU records (`L`, `K`, base-256 numbers), no `g` records.
//! * Entry types `5` directory, `0` regular file, `2` symlink, `1` hard link
//!   (its link name is the path of an earlier `0` entry of the same archive)
//!   and `3` character device `0:0` (an overlayfs whiteout). Sockets, FIFOs,
//!   block devices and other character devices are not packed; they are
//!   returned in [`PackReport::skipped`], and a whiteout (mode 0, owner 0:0,
//!   mtime 0) takes their place, so that what a lower layer holds at their
//!   path (a file deleted before the member was made there) stays hidden.
//! * An `x` record precedes an entry when it needs any of these keys, written
//!   in this order: `path` (path longer than 100 bytes; the ustar name field
//!   then holds the first 100 bytes), `linkpath` (link target longer than
//!   100 bytes, likewise), `mtime` (only when the nanoseconds are not zero,
//!   as `<secs>.<9 digits>`), then `SCHILY.xattr.<name>` with the raw value
//!   bytes, one per extended attribute, sorted by name.
//! * Paths and link targets are UTF-8 without NUL (PID 1 keeps them as
//!   strings); anything else is an error naming the path.
//! * Paths are relative to the packed directory, `/`-separated, without a
//!   leading `/` or `./`, without `..`, without a trailing slash, at most
//!   [`MAX_PATH`] bytes; link targets at most [`MAX_PATH`] bytes, stored
//!   byte-for-byte as `readlink` returns them. Longer is an error.
//! * Each entry carries mode (12 bits), uid, gid and mtime seconds in the
//!   ustar fields. uid/gid must fit 7 octal digits, mtime and size 11.
//! * At most [`MAX_XATTRS`] extended attributes per entry, names at most
//!   [`MAX_XATTR_NAME`] bytes, values at most [`MAX_XATTR_VALUE`] bytes.
//! * Order: depth-first, the entries of each directory sorted bytewise by
//!   name, so every directory precedes its contents and packing the same tree
//!   twice gives the same bytes. The packed directory itself is not emitted:
//!   the root of an overlay upper cannot meaningfully be opaque, and its
//!   mode/owner are set by whoever mounts the layer.
//!
//! # Overlay bookkeeping that is dropped
//!
//! Every extended attribute is carried as-is except these, under both the
//! `trusted.overlay.` and the `user.overlay.` (userxattr mounts) prefixes:
//! `origin` and `upper` (file handles of an inode on one particular
//! filesystem, meaningless once replayed onto tmpfs), `impure` (says the
//! directory holds entries with `origin`/`redirect`, about inode numbers of
//! this one overlay), `nlink` (hard-link count bookkeeping of the inode
//! index) and `uuid` (identity of one upper layer). Kept: `opaque`,
//! `redirect`, `whiteout`, `whiteouts`, `protattr` and the escaped
//! `overlay.overlay.*` names, which describe the layer's content. A file
//! carrying `metacopy` is an error ([`PackError::Metacopy`]): its data lives
//! in a lower layer, so the payload would silently lose it.
//!
//! The kept `user.overlay.*` names of a userxattr mount (a rootless overlay)
//! are stored as the `trusted.overlay.*` names they stand for: a payload
//! carries only `trusted.` and `security.` (the boot path's tmpfs takes
//! `user.*` only from Linux 6.6), and the boot path's overlay reads the
//! trusted ones. A file carrying both keeps its `trusted.overlay.*` value.
//!
//! Whiteouts that share an inode (overlayfs links whiteouts to one shared
//! node) are each emitted as their own `3` entry; only regular files are
//! emitted as hard links.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use tar::{Builder, EntryType, Header};

/// Longest path or link target, in bytes, that PID 1 accepts.
pub const MAX_PATH: usize = 255;
/// Most extended attributes on one entry.
pub const MAX_XATTRS: usize = 8;
/// Longest extended attribute name, in bytes.
pub const MAX_XATTR_NAME: usize = 64;
/// Longest extended attribute value, in bytes.
pub const MAX_XATTR_VALUE: usize = 256;
/// Longest name that fits the ustar `name`/`linkname` fields.
pub const USTAR_NAME_LEN: usize = 100;
/// Largest uid/gid in 7 octal digits.
pub const MAX_ID: u64 = 0o7_777_777;
/// Largest mtime/size in 11 octal digits.
pub const MAX_OCTAL11: u64 = 0o77_777_777_777;

/// Overlay xattr suffixes (after `trusted.overlay.` / `user.overlay.`)
/// that only mean something inside one overlay instance and are dropped.
pub const DROPPED_OVERLAY_XATTRS: &[&str] = &["origin", "upper", "impure", "nlink", "uuid"];

/// Overlay xattr suffix that makes packing fail: see [`PackError::Metacopy`].
pub const METACOPY_XATTR: &str = "metacopy";

const TRUSTED_OVERLAY: &str = "trusted.overlay.";
const USER_OVERLAY: &str = "user.overlay.";
const OVERLAY_PREFIXES: &[&str] = &[TRUSTED_OVERLAY, USER_OVERLAY];

/// How to pack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// Paths relative to the packed directory that are left out with
    /// everything below them (e.g. `work` when packing a directory that
    /// also holds the overlay work directory).
    pub exclude: Vec<PathBuf>,
    /// Most bytes of regular-file content to pack: past it, packing stops at the file that
    /// crosses it ([`PackError::TooMuchData`]) before reading that file. A partition's blocks
    /// cannot unpack to more than [`snapinit::header::data_limit`] allows, so reading (and
    /// holding) more would be wasted; a sparse file of gigabytes is refused at its stat.
    pub max_data: Option<u64>,
}

/// What was packed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackReport {
    /// Entries written (not counting `x` records).
    pub entries: u64,
    /// Bytes of regular-file content read (hard links count once).
    pub bytes_in: u64,
    /// Tree members that the dialect cannot carry, in archive order.
    pub skipped: Vec<Skipped>,
}

/// A tree member that was left out of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Path relative to the packed directory.
    pub path: PathBuf,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// Why a tree member (or a part of it) was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// A Unix domain socket.
    Socket,
    /// A named pipe.
    Fifo,
    /// A block device.
    BlockDevice { major: u32, minor: u32 },
    /// A character device other than the `0:0` whiteout.
    CharDevice { major: u32, minor: u32 },
    /// An extended attribute outside the namespaces tmpfs restores on every kernel
    /// (`snapinit::tar::XATTR_NAMESPACES`); the entry itself is kept.
    Xattr { name: String },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Socket => f.write_str("socket"),
            SkipReason::Fifo => f.write_str("fifo"),
            SkipReason::BlockDevice { major, minor } => {
                write!(f, "block device {major}:{minor}")
            }
            SkipReason::CharDevice { major, minor } => {
                write!(f, "character device {major}:{minor} (not a whiteout)")
            }
            SkipReason::Xattr { name } => write!(
                f,
                "extended attribute {name} (only trusted.* and security.* are restored at boot)"
            ),
        }
    }
}

/// Why packing failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing the payload: {0}")]
    Write(#[source] io::Error),
    #[error("{path}: not a directory")]
    NotADirectory { path: PathBuf },
    #[error("exclude path {path:?} must be relative, without `.` or `..`")]
    InvalidExclude { path: PathBuf },
    #[error("{path:?}: path is {len} bytes, more than {MAX_PATH}")]
    PathTooLong { path: PathBuf, len: usize },
    #[error("{path:?}: link target is {len} bytes, more than {MAX_PATH}")]
    LinkTargetTooLong { path: PathBuf, len: usize },
    #[error("{path:?}: path is not UTF-8")]
    PathNotUtf8 { path: PathBuf },
    #[error("{path:?}: link target is not UTF-8")]
    LinkTargetNotUtf8 { path: PathBuf },
    #[error("{path:?}: {count} extended attributes, more than {MAX_XATTRS}")]
    TooManyXattrs { path: PathBuf, count: usize },
    #[error("{path:?}: xattr name {name:?} is longer than {MAX_XATTR_NAME} bytes")]
    XattrNameTooLong { path: PathBuf, name: OsString },
    #[error("{path:?}: xattr name {name:?} is not UTF-8 or contains '='")]
    XattrNameInvalid { path: PathBuf, name: OsString },
    #[error("{path:?}: xattr {name} value is {len} bytes, more than {MAX_XATTR_VALUE}")]
    XattrValueTooLong {
        path: PathBuf,
        name: String,
        len: usize,
    },
    #[error("{path:?}: overlay metacopy file (data lives in a lower layer)")]
    Metacopy { path: PathBuf },
    #[error("{path:?}: {field} {value} does not fit the ustar field")]
    FieldOverflow {
        path: PathBuf,
        field: &'static str,
        value: i128,
    },
    /// Replaced (a write to a temporary file and a rename, as `uci commit` does) or written
    /// to between its stat and the end of its copy: what was copied may be neither version.
    #[error("{path:?}: changed while being packed (replaced or written to)")]
    FileChanged { path: PathBuf },
    /// The file data would pass [`PackOptions::max_data`]: `total` with this file's `size`.
    #[error("{}", too_much_data(path, *size, *allocated, *limit))]
    TooMuchData {
        path: PathBuf,
        size: u64,
        allocated: u64,
        limit: u64,
        total: u64,
    },
}

fn too_much_data(path: &Path, size: u64, allocated: u64, limit: u64) -> String {
    // Holes make a file look larger than the memory it takes; the tar stores every byte.
    let sparse = if allocated < size / 2 {
        format!(" (a sparse file: {allocated} allocated)")
    } else {
        String::new()
    };
    format!(
        "{path:?}: its {size} bytes{sparse} take the file data past {limit} bytes, the most a block on this partition may unpack to: nothing written (move it out of the overlay)"
    )
}

/// Packs the directory `src` (not itself emitted) into `out` in the payload
/// dialect described in the [module docs](self).
pub fn pack_dir<W: Write>(src: &Path, opts: &PackOptions, out: W) -> Result<PackReport, PackError> {
    for ex in &opts.exclude {
        let ok = ex.components().next().is_some()
            && ex.components().all(|c| matches!(c, Component::Normal(_)));
        if !ok {
            return Err(PackError::InvalidExclude { path: ex.clone() });
        }
    }
    let meta = fs::symlink_metadata(src).map_err(|source| PackError::Io {
        path: src.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(PackError::NotADirectory {
            path: src.to_path_buf(),
        });
    }
    // Compressing is the caller's: one instance of the packer per output type, and a gzip
    // payload is the gzip of exactly these bytes.
    let (report, _) = pack_into(src, opts, out)?;
    Ok(report)
}

fn pack_into<W: Write>(
    src: &Path,
    opts: &PackOptions,
    out: W,
) -> Result<(PackReport, W), PackError> {
    let mut packer = Packer {
        src,
        opts,
        builder: Builder::new(out),
        report: PackReport::default(),
        links: HashMap::new(),
    };
    packer.walk_dir(Path::new(""))?;
    let Packer {
        builder,
        mut report,
        ..
    } = packer;
    let mut out = builder.into_inner().map_err(PackError::Write)?;
    out.flush().map_err(PackError::Write)?;
    report.skipped.shrink_to_fit();
    Ok((report, out))
}

struct Packer<'a, W: Write> {
    src: &'a Path,
    opts: &'a PackOptions,
    builder: Builder<W>,
    report: PackReport,
    /// (dev, ino) of regular files with several links → first archived path.
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// What kind of entry one tree member becomes.
enum Kind {
    Dir,
    File { size: u64 },
    Symlink { target: Vec<u8> },
    HardLink { target: Vec<u8> },
    Whiteout,
}

impl<W: Write> Packer<'_, W> {
    /// Emits the members of `rel` (relative to `src`), depth-first, sorted.
    fn walk_dir(&mut self, rel: &Path) -> Result<(), PackError> {
        let dir = self.src.join(rel);
        let io_err = |source| PackError::Io {
            path: dir.clone(),
            source,
        };
        let mut names: Vec<OsString> = fs::read_dir(&dir)
            .map_err(io_err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err)?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let child = rel.join(&name);
            if self.opts.exclude.contains(&child) {
                continue;
            }
            if self.pack_one(&child)? {
                self.walk_dir(&child)?;
            }
        }
        Ok(())
    }

    /// Emits one member; returns whether it is a directory to descend into.
    fn pack_one(&mut self, rel: &Path) -> Result<bool, PackError> {
        let full = self.src.join(rel);
        let io_err = |source| PackError::Io {
            path: full.clone(),
            source,
        };
        let meta = fs::symlink_metadata(&full).map_err(io_err)?;
        let ft = meta.file_type();
        let path_bytes = rel.as_os_str().as_bytes().to_vec();
        if std::str::from_utf8(&path_bytes).is_err() {
            return Err(PackError::PathNotUtf8 {
                path: rel.to_path_buf(),
            });
        }
        if path_bytes.len() > MAX_PATH {
            return Err(PackError::PathTooLong {
                path: rel.to_path_buf(),
                len: path_bytes.len(),
            });
        }

        let skip = |reason| Skipped {
            path: rel.to_path_buf(),
            reason,
        };
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            match self.links.get(&key) {
                Some(target) if meta.nlink() > 1 => Kind::HardLink {
                    target: target.clone(),
                },
                _ => {
                    if meta.nlink() > 1 {
                        self.links.insert(key, path_bytes.clone());
                    }
                    Kind::File { size: meta.len() }
                }
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(io_err)?.into_os_string();
            Kind::Symlink {
                target: target.into_vec(),
            }
        } else if ft.is_char_device() {
            let (major, minor) = split_dev(meta.rdev());
            if (major, minor) != (0, 0) {
                self.report
                    .skipped
                    .push(skip(SkipReason::CharDevice { major, minor }));
                return self.stand_in(&path_bytes);
            }
            Kind::Whiteout
        } else {
            let reason = if ft.is_socket() {
                SkipReason::Socket
            } else if ft.is_fifo() {
                SkipReason::Fifo
            } else {
                let (major, minor) = split_dev(meta.rdev());
                SkipReason::BlockDevice { major, minor }
            };
            self.report.skipped.push(skip(reason));
            return self.stand_in(&path_bytes);
        };

        // A file's content and xattrs come from the inode stat described, opened before
        // anything is taken from it: the path may be renamed over at any moment.
        let file = match kind {
            Kind::File { .. } => {
                let f = open_nofollow(&full).map_err(io_err)?;
                self.unchanged(&f, &meta, rel)?;
                Some(f)
            }
            _ => None,
        };

        let (mut header, mut pax) = named_header(&path_bytes);
        if let Kind::Symlink { target } | Kind::HardLink { target } = &kind {
            if std::str::from_utf8(target).is_err() || target.contains(&0) {
                return Err(PackError::LinkTargetNotUtf8 {
                    path: rel.to_path_buf(),
                });
            }
            if target.len() > MAX_PATH {
                return Err(PackError::LinkTargetTooLong {
                    path: rel.to_path_buf(),
                    len: target.len(),
                });
            }
            set_name_field(&mut header.as_old_mut().linkname, target);
            if target.len() > USTAR_NAME_LEN {
                pax.push(("linkpath".into(), target.clone()));
            }
        }

        let overflow = |field, value: i128| PackError::FieldOverflow {
            path: rel.to_path_buf(),
            field,
            value,
        };
        let (uid, gid) = (u64::from(meta.uid()), u64::from(meta.gid()));
        if uid > MAX_ID {
            return Err(overflow("uid", uid.into()));
        }
        if gid > MAX_ID {
            return Err(overflow("gid", gid.into()));
        }
        let secs = u64::try_from(meta.mtime())
            .ok()
            .filter(|s| *s <= MAX_OCTAL11)
            .ok_or_else(|| overflow("mtime", meta.mtime().into()))?;
        let nanos = meta.mtime_nsec();
        if nanos != 0 && !matches!(kind, Kind::HardLink { .. }) {
            pax.push(("mtime".into(), format!("{secs}.{nanos:09}").into_bytes()));
        }
        if !matches!(kind, Kind::HardLink { .. }) {
            let source = match &file {
                Some(f) => XattrSource::File(f),
                None => XattrSource::Path(&full),
            };
            self.collect_xattrs(source, &full, rel, &mut pax)?;
        }

        let (entry_type, size) = match &kind {
            Kind::Dir => (EntryType::Directory, 0),
            Kind::File { size } => (EntryType::Regular, *size),
            Kind::Symlink { .. } => (EntryType::Symlink, 0),
            Kind::HardLink { .. } => (EntryType::Link, 0),
            Kind::Whiteout => (EntryType::Char, 0),
        };
        if size > MAX_OCTAL11 {
            return Err(overflow("size", size.into()));
        }
        let total = self.report.bytes_in.saturating_add(size);
        if let Some(limit) = self.opts.max_data.filter(|&limit| total > limit) {
            return Err(PackError::TooMuchData {
                path: rel.to_path_buf(),
                size,
                allocated: meta.blocks().saturating_mul(512),
                limit,
                total,
            });
        }
        let mode = meta.mode() & 0o7777;
        fill_header(&mut header, entry_type, mode, (uid, gid), secs, size)?;
        self.append_pax(&pax)?;
        if let (Kind::File { size }, Some(file)) = (&kind, file) {
            let size = *size;
            let mut data = CountingReader {
                inner: (&file).take(size),
                count: 0,
                error: None,
            };
            self.builder
                .append(&header, &mut data)
                .map_err(PackError::Write)?;
            if let Some(source) = data.error {
                return Err(PackError::Io { path: full, source });
            }
            // Written to while copied (shorter, or the same size with another mtime or
            // ctime): the archive is now wrong and the caller must discard it.
            if data.count != size {
                return Err(PackError::FileChanged {
                    path: rel.to_path_buf(),
                });
            }
            self.unchanged(&file, &meta, rel)?;
            self.report.bytes_in += size;
        } else {
            self.builder
                .append(&header, io::empty())
                .map_err(PackError::Write)?;
        }
        self.report.entries += 1;
        Ok(matches!(kind, Kind::Dir))
    }

    /// Emits a whiteout (mode 0, owner 0:0, mtime 0, no xattrs) in place of a member the
    /// dialect cannot carry: in an overlay upper directory such a member may stand where a
    /// lower layer holds something deleted first (`rm f; mkfifo f` replaces the whiteout of
    /// `f`), and leaving the path out of the payload would bring that back at boot.
    fn stand_in(&mut self, path_bytes: &[u8]) -> Result<bool, PackError> {
        let (mut header, pax) = named_header(path_bytes);
        fill_header(&mut header, EntryType::Char, 0, (0, 0), 0, 0)?;
        self.append_pax(&pax)?;
        self.builder
            .append(&header, io::empty())
            .map_err(PackError::Write)?;
        self.report.entries += 1;
        Ok(false)
    }

    /// The entry's pax record, if it needs one, ahead of its header.
    fn append_pax(&mut self, pax: &[(String, Vec<u8>)]) -> Result<(), PackError> {
        if pax.is_empty() {
            return Ok(());
        }
        self.builder
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(PackError::Write)
    }

    /// `Err(FileChanged)` unless the open `file` is still the inode `meta` describes, with
    /// the same size, mtime and ctime (a write or a changed xattr moves ctime).
    fn unchanged(&self, file: &File, meta: &fs::Metadata, rel: &Path) -> Result<(), PackError> {
        let now = file.metadata().map_err(|source| PackError::Io {
            path: self.src.join(rel),
            source,
        })?;
        let key = |m: &fs::Metadata| {
            (
                m.dev(),
                m.ino(),
                m.len(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            )
        };
        if key(&now) == key(meta) {
            Ok(())
        } else {
            Err(PackError::FileChanged {
                path: rel.to_path_buf(),
            })
        }
    }

    /// Appends the `SCHILY.xattr.*` records of `source` (the member at `full`), sorted by name.
    fn collect_xattrs(
        &mut self,
        source: XattrSource<'_>,
        full: &Path,
        rel: &Path,
        pax: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<(), PackError> {
        let io_err = |source| PackError::Io {
            path: full.to_path_buf(),
            source,
        };
        let mut names: Vec<OsString> = source.list().map_err(io_err)?.collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut kept = Vec::new();
        for name in &names {
            let Some(name_str) = name.to_str().filter(|n| !n.contains('=')) else {
                return Err(PackError::XattrNameInvalid {
                    path: rel.to_path_buf(),
                    name: name.clone(),
                });
            };
            // A userxattr overlay (rootless) marks opaque directories, redirects and
            // whiteouts under user.overlay.*: stored as the trusted.overlay.* marks they stand
            // for (those the boot path's overlay reads), unless the file has those already.
            let translated;
            let mut name_str = name_str;
            if let Some(suffix) = overlay_suffix(name_str) {
                if suffix == METACOPY_XATTR {
                    return Err(PackError::Metacopy {
                        path: rel.to_path_buf(),
                    });
                }
                if DROPPED_OVERLAY_XATTRS.contains(&suffix) {
                    continue;
                }
                if name_str.starts_with(USER_OVERLAY) {
                    translated = format!("{TRUSTED_OVERLAY}{suffix}");
                    if names.iter().any(|n| n.as_bytes() == translated.as_bytes()) {
                        continue;
                    }
                    name_str = &translated;
                }
            }
            if !snapinit::tar::XATTR_NAMESPACES
                .iter()
                .any(|ns| name_str.starts_with(ns))
            {
                self.report.skipped.push(Skipped {
                    path: rel.to_path_buf(),
                    reason: SkipReason::Xattr {
                        name: name_str.to_owned(),
                    },
                });
                continue;
            }
            if name_str.len() > MAX_XATTR_NAME {
                return Err(PackError::XattrNameTooLong {
                    path: rel.to_path_buf(),
                    name: name_str.into(),
                });
            }
            // Removed between list and get: nothing to carry.
            let Some(value) = source.get(name).map_err(io_err)? else {
                continue;
            };
            if value.len() > MAX_XATTR_VALUE {
                return Err(PackError::XattrValueTooLong {
                    path: rel.to_path_buf(),
                    name: name_str.to_owned(),
                    len: value.len(),
                });
            }
            kept.push((format!("SCHILY.xattr.{name_str}"), value));
        }
        if kept.len() > MAX_XATTRS {
            return Err(PackError::TooManyXattrs {
                path: rel.to_path_buf(),
                count: kept.len(),
            });
        }
        pax.extend(kept);
        Ok(())
    }
}

/// Where a member's xattrs are read: a regular file's from its open descriptor (the inode
/// whose content is stored), anything else's by path (without following a symlink).
enum XattrSource<'a> {
    File(&'a File),
    Path(&'a Path),
}

impl XattrSource<'_> {
    fn list(&self) -> io::Result<xattr::XAttrs> {
        use xattr::FileExt;
        match self {
            XattrSource::File(f) => f.list_xattr(),
            XattrSource::Path(p) => xattr::list(p),
        }
    }

    fn get(&self, name: &std::ffi::OsStr) -> io::Result<Option<Vec<u8>>> {
        use xattr::FileExt;
        match self {
            XattrSource::File(f) => f.get_xattr(name),
            XattrSource::Path(p) => xattr::get(p, name),
        }
    }
}

/// The part after `trusted.overlay.` / `user.overlay.`, if `name` has one.
fn overlay_suffix(name: &str) -> Option<&str> {
    OVERLAY_PREFIXES
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
}

fn split_dev(rdev: u64) -> (u32, u32) {
    (rustix::fs::major(rdev), rustix::fs::minor(rdev))
}

/// Writes at most the field's length of `bytes` into a NUL-filled field.
/// A ustar header named `path_bytes`, and the pax keys it starts with: `path` when the name
/// field cannot hold it.
fn named_header(path_bytes: &[u8]) -> (Header, Vec<(String, Vec<u8>)>) {
    let mut header = Header::new_ustar();
    set_name_field(&mut header.as_old_mut().name, path_bytes);
    let mut pax = Vec::new();
    if path_bytes.len() > USTAR_NAME_LEN {
        pax.push(("path".into(), path_bytes.to_vec()));
    }
    (header, pax)
}

/// The header's type, metadata and size (device 0:0, as whiteouts need), and its checksum.
fn fill_header(
    header: &mut Header,
    entry_type: EntryType,
    mode: u32,
    (uid, gid): (u64, u64),
    mtime: u64,
    size: u64,
) -> Result<(), PackError> {
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_uid(uid);
    header.set_gid(gid);
    header.set_mtime(mtime);
    header.set_size(size);
    header.set_device_major(0).map_err(PackError::Write)?;
    header.set_device_minor(0).map_err(PackError::Write)?;
    header.set_cksum();
    Ok(())
}

fn set_name_field(field: &mut [u8], bytes: &[u8]) {
    let n = bytes.len().min(field.len());
    field.fill(0);
    field[..n].copy_from_slice(&bytes[..n]);
}

fn open_nofollow(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        // NONBLOCK: a FIFO renamed over the path after its stat must not hang the open (and
        // the lock held meanwhile); regular files ignore it.
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )?;
    Ok(File::from(fd))
}

/// Counts what the tar builder copied and keeps the source's read error
/// apart from the output's write errors.
struct CountingReader<R> {
    inner: R,
    count: u64,
    error: Option<io::Error>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.error = Some(e);
                // End the entry; the recorded error is reported by the caller.
                Ok(0)
            }
        }
    }
}
