//! Creation confined to a layer directory. Every parent lookup goes through
//! openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS), and
//! final components are acted on with *at calls that do not follow symlinks,
//! so an archive cannot write outside the layer or through a symlink it (or an
//! older snapshot) planted.

use core::mem::MaybeUninit;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, ResolveFlags};
use rustix::io::Errno;

const CONFINED: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// The parent directory of an entry, and its last component.
pub struct Parent<'a> {
    fd: Option<OwnedFd>,
    layer: BorrowedFd<'a>,
    pub name: &'a str,
}

impl Parent<'_> {
    pub fn fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            Some(fd) => fd.as_fd(),
            None => self.layer,
        }
    }
}

/// Opens the parent of `path` (relative, validated) beneath `layer`.
pub fn parent<'a>(layer: BorrowedFd<'a>, path: &'a str) -> Result<Parent<'a>, Errno> {
    match path.rsplit_once('/') {
        None => Ok(Parent {
            fd: None,
            layer,
            name: path,
        }),
        Some((dir, name)) => {
            let fd = open_dir(layer, dir, true)?;
            Ok(Parent {
                fd: Some(fd),
                layer,
                name,
            })
        }
    }
}

/// Opens directory `path` beneath `layer`; `path_only` gives an O_PATH fd.
pub fn open_dir(layer: BorrowedFd<'_>, path: &str, path_only: bool) -> Result<OwnedFd, Errno> {
    let mut flags = OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    flags |= if path_only {
        OFlags::PATH
    } else {
        OFlags::RDONLY
    };
    rustix::fs::openat2(layer, path, flags, Mode::empty(), CONFINED)
}

/// What is at `name` in `dir` now, without following symlinks.
pub fn kind_at(dir: BorrowedFd<'_>, name: &str) -> Result<Option<FileType>, Errno> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deepest directory nesting removed; paths are at most 255 bytes anyway.
const MAX_DEPTH: usize = 128;

/// Removes `name` in `dir`, recursively if it is a directory.
pub fn remove(dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            clear_dir(fd.as_fd(), 0)?;
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
        }
        Some(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()),
    }
}

/// Empties directory `dir` (an O_RDONLY directory fd).
pub fn clear_dir(dir: BorrowedFd<'_>, depth: usize) -> Result<(), Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::LOOP);
    }
    loop {
        let mut copy = [0u8; 256];
        let mut found: Option<(usize, bool)> = None;
        {
            let mut buf = [MaybeUninit::<u8>::uninit(); 1024];
            rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0))?;
            // Rewinding after every removal keeps getdents consistent without
            // remembering names.
            let mut entries = RawDir::new(dir, &mut buf);
            while let Some(entry) = entries.next() {
                let entry = entry?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let n = name.len().min(255);
                copy[..n].copy_from_slice(&name[..n]);
                found = Some((n, entry.file_type() == FileType::Directory));
                break;
            }
        }
        let Some((n, is_dir)) = found else {
            return Ok(());
        };
        // Our own replay only creates UTF-8 names.
        let name = core::str::from_utf8(&copy[..n]).map_err(|_| Errno::INVAL)?;
        if is_dir {
            let sub = rustix::fs::openat(
                dir,
                name,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            clear_dir(sub.as_fd(), depth + 1)?;
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        }
    }
}
