//! Applies a payload tar to a layer directory.
//!
//! Later archives replace what earlier ones left: an entry first removes a
//! different kind of thing at its path, a whiteout removes the whole subtree,
//! an opaque directory drops its old children. Directory mtimes are set in a
//! second pass over a re-read payload (`fix_dir_times`), because creating
//! children in pass one changes them.

use core::fmt;

use embedded_io::Read;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use snapinit::tar::{Entry, EntryKind, TarError, TarPath, TarReader};

use super::fs;

#[derive(Debug)]
pub enum Cause<E> {
    Tar(TarError<E>),
    Sys { op: &'static str, errno: Errno },
}

/// A replay failure, naming the entry it happened at; for archive errors the
/// last good entry (`None`: before the first). An empty path is the root "./".
#[derive(Debug)]
pub struct ReplayError<E> {
    pub path: Option<TarPath>,
    pub cause: Cause<E>,
}

impl<E: fmt::Debug> fmt::Display for ReplayError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.as_ref().map(|p| p.as_str());
        match (&self.cause, path) {
            (Cause::Tar(e), None) => write!(f, "at the first entry: {e}"),
            (Cause::Tar(e), Some(p)) => write!(f, "after entry {p:?}: {e}"),
            (Cause::Sys { op, errno }, p) => {
                write!(f, "entry {:?}: {op}: {errno}", p.unwrap_or(""))
            }
        }
    }
}

/// What one replay did, for the log.
#[derive(Default, Clone, Copy)]
pub struct Stats {
    pub entries: u32,
    pub bytes: u64,
}

fn sys<T>(op: &'static str, r: Result<T, Errno>) -> Result<T, (&'static str, Errno)> {
    r.map_err(|e| (op, e))
}

fn times(e: &Entry) -> Timestamps {
    let t = Timespec {
        tv_sec: e.mtime_secs,
        tv_nsec: e.mtime_nanos.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn owner(e: &Entry) -> (Option<Uid>, Option<Gid>) {
    // SAFETY-free: from_raw is a plain constructor for ids read from the archive.
    (Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
}

/// Pass one: create every entry. `buf` carries file data.
// The error carries the entry path inline (no heap to box it into); it is
// built once per failed replay.
#[allow(clippy::result_large_err)]
pub fn apply<R: Read>(
    layer: BorrowedFd<'_>,
    tar: &mut TarReader<R>,
    buf: &mut [u8],
) -> Result<Stats, ReplayError<R::Error>> {
    let mut stats = Stats::default();
    let mut last: Option<TarPath> = None;
    loop {
        let entry = match tar.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(stats),
            Err(e) => {
                return Err(ReplayError {
                    path: last,
                    cause: Cause::Tar(e),
                })
            }
        };
        last = Some(entry.path.clone());
        stats.entries += 1;
        match apply_entry(layer, &entry, tar, buf, &mut stats) {
            Ok(()) => {}
            Err(Step::Sys((op, errno))) => {
                return Err(ReplayError {
                    path: last,
                    cause: Cause::Sys { op, errno },
                })
            }
            Err(Step::Tar(e)) => {
                return Err(ReplayError {
                    path: last,
                    cause: Cause::Tar(e),
                })
            }
        }
    }
}

enum Step<E> {
    Sys((&'static str, Errno)),
    Tar(TarError<E>),
}

impl<E> From<(&'static str, Errno)> for Step<E> {
    fn from(e: (&'static str, Errno)) -> Self {
        Step::Sys(e)
    }
}

fn apply_entry<R: Read>(
    layer: BorrowedFd<'_>,
    e: &Entry,
    tar: &mut TarReader<R>,
    buf: &mut [u8],
    stats: &mut Stats,
) -> Result<(), Step<R::Error>> {
    if e.is_root() {
        let (uid, gid) = owner(e);
        sys("chown root", rustix::fs::fchown(layer, uid, gid))?;
        sys(
            "chmod root",
            rustix::fs::fchmod(layer, Mode::from_raw_mode(e.mode.into())),
        )?;
        set_xattrs_fd(layer, e)?;
        if e.is_opaque() {
            sys("clear opaque root", fs::clear_dir(layer, 0))?;
        }
        return Ok(());
    }
    let parent = sys("open parent", fs::parent(layer, e.path.as_str()))?;
    let dir = parent.fd();
    let name = parent.name;
    let existing = sys("stat", fs::kind_at(dir, name))?;
    let keep_dir = matches!(e.kind, EntryKind::Dir) && existing == Some(FileType::Directory);
    if existing.is_some() && !keep_dir {
        sys("remove old", fs::remove(dir, name))?;
    }
    let mode = Mode::from_raw_mode(e.mode.into());
    let (uid, gid) = owner(e);
    match &e.kind {
        EntryKind::Dir => {
            if !keep_dir {
                sys(
                    "mkdir",
                    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)),
                )?;
            }
            let fd = sys(
                "open dir",
                rustix::fs::openat(
                    dir,
                    name,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ),
            )?;
            if keep_dir && e.is_opaque() {
                sys("clear opaque dir", fs::clear_dir(fd.as_fd(), 0))?;
            }
            sys("chown", rustix::fs::fchown(&fd, uid, gid))?;
            sys("chmod", rustix::fs::fchmod(&fd, mode))?;
            set_xattrs_fd(fd.as_fd(), e)?;
            sys("utimens", rustix::fs::futimens(&fd, &times(e)))?;
        }
        EntryKind::File => {
            let fd = sys(
                "create",
                rustix::fs::openat(
                    dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                ),
            )?;
            loop {
                let n = tar.read_data(buf).map_err(Step::Tar)?;
                if n == 0 {
                    break;
                }
                let mut off = 0;
                while off < n {
                    off += sys("write", rustix::io::write(&fd, &buf[off..n]))?;
                }
                stats.bytes += n as u64;
            }
            // chown before chmod: chown clears setuid/setgid bits.
            sys("chown", rustix::fs::fchown(&fd, uid, gid))?;
            sys("chmod", rustix::fs::fchmod(&fd, mode))?;
            set_xattrs_fd(fd.as_fd(), e)?;
            sys("utimens", rustix::fs::futimens(&fd, &times(e)))?;
        }
        EntryKind::Symlink { target } => {
            sys("symlink", rustix::fs::symlinkat(target.as_str(), dir, name))?;
            nofollow_meta(dir, name, e)?;
        }
        EntryKind::HardLink { target } => {
            let tparent = sys(
                "open link target parent",
                fs::parent(layer, target.as_str()),
            )?;
            sys(
                "link",
                rustix::fs::linkat(tparent.fd(), tparent.name, dir, name, AtFlags::empty()),
            )?;
        }
        EntryKind::Whiteout => {
            sys(
                "mknod whiteout",
                rustix::fs::mknodat(dir, name, FileType::CharacterDevice, mode, 0),
            )?;
            nofollow_meta(dir, name, e)?;
        }
    }
    Ok(())
}

/// Owner, xattrs and times of something that must not be opened (symlink,
/// whiteout device).
fn nofollow_meta<E>(dir: BorrowedFd<'_>, name: &str, e: &Entry) -> Result<(), Step<E>> {
    let (uid, gid) = owner(e);
    sys(
        "chown",
        rustix::fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
    )?;
    if !e.xattrs.is_empty() {
        // No *at xattr call before Linux 6.13: name the node through the
        // parent's /proc/self/fd link; lsetxattr does not follow the last
        // component, and the parent fd is already confined.
        let mut path: heapless::String<300> = heapless::String::new();
        let _ = fmt::Write::write_fmt(
            &mut path,
            format_args!(
                "/proc/self/fd/{}/{}",
                rustix::fd::AsRawFd::as_raw_fd(&dir),
                name
            ),
        );
        for x in &e.xattrs {
            sys(
                "lsetxattr",
                rustix::fs::lsetxattr(
                    path.as_str(),
                    x.name.as_str(),
                    &x.value,
                    XattrFlags::empty(),
                ),
            )?;
        }
    }
    sys(
        "utimensat",
        rustix::fs::utimensat(dir, name, &times(e), AtFlags::SYMLINK_NOFOLLOW),
    )?;
    Ok(())
}

fn set_xattrs_fd<E>(fd: BorrowedFd<'_>, e: &Entry) -> Result<(), Step<E>> {
    for x in &e.xattrs {
        sys(
            "fsetxattr",
            rustix::fs::fsetxattr(fd, x.name.as_str(), &x.value, XattrFlags::empty()),
        )?;
    }
    Ok(())
}

/// Pass two: directory mtimes, children are all in place now.
#[allow(clippy::result_large_err)]
pub fn fix_dir_times<R: Read>(
    layer: BorrowedFd<'_>,
    tar: &mut TarReader<R>,
) -> Result<(), ReplayError<R::Error>> {
    let mut last: Option<TarPath> = None;
    loop {
        let e = match tar.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(()),
            Err(err) => {
                return Err(ReplayError {
                    path: last,
                    cause: Cause::Tar(err),
                })
            }
        };
        last = Some(e.path.clone());
        if !matches!(e.kind, EntryKind::Dir) {
            continue;
        }
        let r = if e.is_root() {
            rustix::fs::futimens(layer, &times(&e))
        } else {
            fs::open_dir(layer, e.path.as_str(), false)
                .and_then(|fd| rustix::fs::futimens(&fd, &times(&e)))
        };
        if let Err(errno) = r {
            return Err(ReplayError {
                path: last,
                cause: Cause::Sys {
                    op: "set dir time",
                    errno,
                },
            });
        }
    }
}
