//! A real directory as a replay [`Layer`]: PID 1's tmpfs layers, and `snapshot extract`'s
//! destination.
//!
//! Confinement: every directory is reached through openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
//! | RESOLVE_NO_MAGICLINKS) from the layer root, and final components are acted on with *at
//! calls that do not follow symlinks, so nothing can be written outside the layer or through a
//! symlink, whoever planted it.
//!
//! Times: a directory keeps the mtime it had before an entry was created in or removed from it
//! (the one its own entry declared, or the one an earlier payload left), so directory times come
//! out exactly as declared in one pass over the payload, in any entry order: the entered
//! directory's times are saved when it is entered and put back when it is left.
//!
//! Holes: runs of zero bytes in file data are not written, so a sparse file stored densely in
//! the payload replays sparse instead of filling RAM.

use core::mem::MaybeUninit;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{
    AtFlags, FileType, Gid, Mode, OFlags, RawDir, ResolveFlags, Stat, Timespec, Timestamps, Uid,
    XattrFlags,
};
use rustix::io::Errno;

use crate::replay::{Blocked, Layer, LayerError, Node};
use crate::tar::{Entry, TarPath, OPAQUE_XATTR};

const CONFINED: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// [`OPAQUE_XATTR`] as the xattr calls take it.
const OPAQUE_NAME: &str = "trusted.overlay.opaque";

/// Granularity of holes in replayed files: tmpfs allocates whole pages.
const HOLE_PAGE: u64 = 4096;

/// Deepest directory nesting removed; paths are at most 255 bytes anyway.
const MAX_DEPTH: usize = 128;

/// The `*at` and xattr calls the layer makes, taking `&str` as rustix's do, with one C string
/// conversion for all of them (crate::cpath says why).
mod at {
    use rustix::fd::{BorrowedFd, OwnedFd};
    use rustix::fs::{
        AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Timestamps, Uid, XattrFlags,
    };
    use rustix::io::Errno;

    use crate::cpath::{c_str as c, MAX};

    pub fn statat(dir: BorrowedFd<'_>, name: &str, f: AtFlags) -> Result<Stat, Errno> {
        rustix::fs::statat(dir, c(name, &mut [0; MAX + 1])?, f)
    }

    pub fn openat(dir: BorrowedFd<'_>, name: &str, o: OFlags, m: Mode) -> Result<OwnedFd, Errno> {
        rustix::fs::openat(dir, c(name, &mut [0; MAX + 1])?, o, m)
    }

    pub fn openat2(
        dir: BorrowedFd<'_>,
        path: &str,
        o: OFlags,
        m: Mode,
        r: ResolveFlags,
    ) -> Result<OwnedFd, Errno> {
        rustix::fs::openat2(dir, c(path, &mut [0; MAX + 1])?, o, m, r)
    }

    pub fn mkdirat(dir: BorrowedFd<'_>, name: &str, m: Mode) -> Result<(), Errno> {
        rustix::fs::mkdirat(dir, c(name, &mut [0; MAX + 1])?, m)
    }

    pub fn unlinkat(dir: BorrowedFd<'_>, name: &str, f: AtFlags) -> Result<(), Errno> {
        rustix::fs::unlinkat(dir, c(name, &mut [0; MAX + 1])?, f)
    }

    pub fn symlinkat(target: &str, dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
        rustix::fs::symlinkat(
            c(target, &mut [0; MAX + 1])?,
            dir,
            c(name, &mut [0; MAX + 1])?,
        )
    }

    pub fn linkat(
        old_dir: BorrowedFd<'_>,
        old: &str,
        new_dir: BorrowedFd<'_>,
        new: &str,
        f: AtFlags,
    ) -> Result<(), Errno> {
        let mut buf = [0; MAX + 1];
        let old = c(old, &mut buf)?;
        rustix::fs::linkat(old_dir, old, new_dir, c(new, &mut [0; MAX + 1])?, f)
    }

    pub fn chownat(
        dir: BorrowedFd<'_>,
        name: &str,
        uid: Option<Uid>,
        gid: Option<Gid>,
        f: AtFlags,
    ) -> Result<(), Errno> {
        rustix::fs::chownat(dir, c(name, &mut [0; MAX + 1])?, uid, gid, f)
    }

    pub fn utimensat(
        dir: BorrowedFd<'_>,
        name: &str,
        t: &Timestamps,
        f: AtFlags,
    ) -> Result<(), Errno> {
        rustix::fs::utimensat(dir, c(name, &mut [0; MAX + 1])?, t, f)
    }

    pub fn mknodat(
        dir: BorrowedFd<'_>,
        name: &str,
        t: FileType,
        m: Mode,
        dev: u64,
    ) -> Result<(), Errno> {
        rustix::fs::mknodat(dir, c(name, &mut [0; MAX + 1])?, t, m, dev)
    }

    pub fn lsetxattr(path: &str, name: &str, value: &[u8], f: XattrFlags) -> Result<(), Errno> {
        let mut buf = [0; MAX + 1];
        let path = c(path, &mut buf)?;
        rustix::fs::lsetxattr(path, c(name, &mut [0; MAX + 1])?, value, f)
    }

    pub fn fsetxattr(
        fd: BorrowedFd<'_>,
        name: &str,
        value: &[u8],
        f: XattrFlags,
    ) -> Result<(), Errno> {
        rustix::fs::fsetxattr(fd, c(name, &mut [0; MAX + 1])?, value, f)
    }

    pub fn fremovexattr(fd: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
        rustix::fs::fremovexattr(fd, c(name, &mut [0; MAX + 1])?)
    }
}

type Res<T> = Result<T, LayerError<Errno>>;

fn sys<T>(op: &'static str, r: Result<T, Errno>) -> Res<T> {
    r.map_err(|err| LayerError::Sys { op, err })
}

fn node(st: &Stat) -> Node {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => Node::Dir,
        FileType::RegularFile => Node::File,
        FileType::Symlink => Node::Symlink,
        FileType::CharacterDevice if st.st_rdev == 0 => Node::Whiteout,
        _ => Node::Other,
    }
}

fn entry_times(e: &Entry) -> Timestamps {
    let t = Timespec {
        tv_sec: e.mtime_secs,
        // i64 on most targets, i32 (C `long`) on 32-bit musl, OpenWrt's libc; the tar reader
        // keeps nanoseconds below 10^9, which both hold.
        tv_nsec: e.mtime_nanos as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

#[allow(clippy::unnecessary_cast)] // the stat field widths differ between architectures
fn stat_times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as i64,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as i64,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

fn owner(e: &Entry) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
}

/// A layer below the one replayed into, consulted where a payload omits a parent directory.
#[derive(Clone, Copy)]
pub struct Lower<'a> {
    pub fd: BorrowedFd<'a>,
    /// A non-directory here refuses the implicit directory, as one in the layer itself would
    /// (the chain's own layers); otherwise it only lends metadata (the read-only root, which
    /// `verify` cannot see: overlayfs then shows the new directory, as an upper one wins).
    pub blocks: bool,
}

/// A real directory tree as a layer.
pub struct DirLayer<'a> {
    root: BorrowedFd<'a>,
    /// Layers below, nearest first.
    lowers: &'a [Lower<'a>],
    /// The entered directory (`None`: the root) and its path.
    cur: Option<OwnedFd>,
    cur_path: TarPath,
    /// Its times when entered; `None` until something entered it.
    cur_times: Option<Timestamps>,
    /// The group a node created in the entered directory gets (its own on a setgid
    /// directory); `None` until something entered it.
    cur_group: Option<u32>,
    /// Who creates nodes, and the mode bits creation drops: a new file that already has its
    /// entry's owner and mode is spared the chown and chmod.
    creator: Creator,
    file: Option<OwnedFd>,
    file_pos: u64,
    /// End of the last run written: short of `file_pos`, the file ends in a hole.
    file_written: u64,
    /// The new file already has its entry's owner and mode.
    file_exact: bool,
}

/// The credentials and umask that new nodes are created with.
#[derive(Clone, Copy)]
struct Creator {
    uid: u32,
    gid: u32,
    umask: u32,
}

impl Creator {
    fn current(umask: u32) -> Self {
        Self {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            umask,
        }
    }
}

/// The umask to give [`DirLayer::new`] when the process's own is not known: every permission
/// bit may be cut, so every file gets its chmod.
pub const UMASK_UNKNOWN: u32 = 0o777;

impl<'a> DirLayer<'a> {
    /// `umask`: the process's umask, which new nodes' modes pass through (PID 1 cleared it:
    /// 0). The caller says it because reading it means setting it, which for an instant
    /// would change the mode of whatever another thread creates.
    pub fn new(root: BorrowedFd<'a>, lowers: &'a [Lower<'a>], umask: u32) -> Self {
        Self {
            root,
            lowers,
            cur: None,
            cur_path: TarPath::new(),
            cur_times: None,
            cur_group: None,
            creator: Creator::current(umask),
            file: None,
            file_pos: 0,
            file_written: 0,
            file_exact: false,
        }
    }

    fn cur_fd(&self) -> BorrowedFd<'_> {
        match &self.cur {
            Some(fd) => fd.as_fd(),
            None => self.root,
        }
    }

    fn leave(&mut self) -> Res<()> {
        if let Some(t) = self.cur_times.take() {
            sys("restore dir time", rustix::fs::futimens(self.cur_fd(), &t))?;
        }
        self.cur = None;
        self.cur_path.clear();
        Ok(())
    }

    /// Opens `dir` beneath the root component by component: on a missing one it creates it,
    /// on a symlink or non-directory it reports where.
    fn walk_create(&self, dir: &str) -> Res<OwnedFd> {
        let mut parent: Option<OwnedFd> = None;
        let mut end = 0;
        for comp in dir.split('/') {
            end += comp.len();
            let pfd = match &parent {
                Some(fd) => fd.as_fd(),
                None => self.root,
            };
            let fd = match at::statat(pfd, comp, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => open_component(pfd, comp, node(&st), end)?,
                // `end` is at a '/' or the end: always a char boundary.
                Err(Errno::NOENT) => {
                    self.implicit_dir(pfd, comp, dir.get(..end).unwrap_or(dir), end)?
                }
                Err(err) => return Err(LayerError::Sys { op: "stat", err }),
            };
            parent = Some(fd);
            end += 1;
        }
        // `dir` is never empty here, so the loop ran at least once.
        parent.ok_or(LayerError::Sys {
            op: "open dir",
            err: Errno::INVAL,
        })
    }

    /// Creates a directory no entry declared: with the metadata of the same directory in a
    /// lower layer (as overlayfs's copy-up would show it), else 0755 root:root at the epoch.
    fn implicit_dir(
        &self,
        parent: BorrowedFd<'_>,
        name: &str,
        path: &str,
        prefix: usize,
    ) -> Res<OwnedFd> {
        let mut below = None;
        for lower in self.lowers {
            // Nothing at the path (or a path through a non-directory) is nothing to find.
            let Ok(fd) = at::openat2(
                lower.fd,
                path,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                CONFINED,
            ) else {
                continue;
            };
            let st = sys("stat", rustix::fs::fstat(&fd))?;
            match node(&st) {
                Node::Dir => {
                    below = Some(st);
                    break;
                }
                Node::Whiteout => break,
                Node::Symlink if lower.blocks => {
                    return Err(LayerError::Blocked {
                        prefix,
                        why: Blocked::Symlink,
                    })
                }
                _ if lower.blocks => {
                    return Err(LayerError::Blocked {
                        prefix,
                        why: Blocked::NotDir,
                    })
                }
                _ => {}
            }
        }
        let parent_times = stat_times(&sys("stat", rustix::fs::fstat(parent))?);
        sys(
            "mkdir",
            at::mkdirat(parent, name, Mode::from_raw_mode(0o700)),
        )?;
        let fd = sys(
            "open dir",
            at::openat(parent, name, DIR_FLAGS, Mode::empty()),
        )?;
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let (mode, uid, gid, times) = match &below {
            Some(st) => (st.st_mode & 0o7777, st.st_uid, st.st_gid, stat_times(st)),
            None => (
                0o755,
                0,
                0,
                Timestamps {
                    last_access: zero,
                    last_modification: zero,
                },
            ),
        };
        sys(
            "chown",
            rustix::fs::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))),
        )?;
        sys(
            "chmod",
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode as _)),
        )?;
        sys("utimens", rustix::fs::futimens(&fd, &times))?;
        sys(
            "restore dir time",
            rustix::fs::futimens(parent, &parent_times),
        )?;
        Ok(fd)
    }

    /// Finds where `path` (whose open failed) is blocked, without creating anything.
    fn classify(&self, path: &str) -> Res<Option<Node>> {
        let mut parent: Option<OwnedFd> = None;
        let mut end = 0;
        let mut comps = path.split('/').peekable();
        while let Some(comp) = comps.next() {
            end += comp.len();
            let pfd = match &parent {
                Some(fd) => fd.as_fd(),
                None => self.root,
            };
            let st = match at::statat(pfd, comp, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => return Ok(None),
                Err(err) => return Err(LayerError::Sys { op: "stat", err }),
            };
            if comps.peek().is_none() {
                return Ok(Some(node(&st)));
            }
            parent = Some(open_component(pfd, comp, node(&st), end)?);
            end += 1;
        }
        Ok(None)
    }

    /// Owner, mode, xattrs and times of an open node: owner first (chown clears setuid and
    /// setgid), xattrs after it (chown clears `security.capability`), times last.
    fn meta(fd: BorrowedFd<'_>, e: &Entry) -> Res<()> {
        let (uid, gid) = owner(e);
        sys("chown", rustix::fs::fchown(fd, uid, gid))?;
        sys(
            "chmod",
            rustix::fs::fchmod(fd, Mode::from_raw_mode(e.mode.into())),
        )?;
        for x in &e.xattrs {
            sys(
                "fsetxattr",
                at::fsetxattr(fd, x.name.as_str(), &x.value, XattrFlags::empty()),
            )?;
        }
        sys("utimens", rustix::fs::futimens(fd, &entry_times(e)))
    }

    /// Removes the xattrs of a re-declared directory that its new entry does not carry, so its
    /// metadata is exactly the new entry's; the opaque mark stays (a directory an older payload
    /// made opaque still hides what is below this layer).
    fn drop_stale_xattrs(fd: BorrowedFd<'_>, e: &Entry) -> Res<()> {
        let mut names = [0u8; 2048];
        let n = sys("flistxattr", rustix::fs::flistxattr(fd, &mut names))?;
        for name in names[..n].split(|&b| b == 0).filter(|s| !s.is_empty()) {
            let keep = name == OPAQUE_XATTR || e.xattrs.iter().any(|x| x.name.as_bytes() == name);
            if !keep {
                let name = core::str::from_utf8(name).map_err(|_| LayerError::Sys {
                    op: "xattr name",
                    err: Errno::INVAL,
                })?;
                sys("fremovexattr", at::fremovexattr(fd, name))?;
            }
        }
        Ok(())
    }

    /// Owner, xattrs and times of something that must not be opened (symlink, whiteout).
    fn nofollow_meta(dir: BorrowedFd<'_>, name: &str, e: &Entry) -> Res<()> {
        let (uid, gid) = owner(e);
        sys(
            "chown",
            at::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW),
        )?;
        if !e.xattrs.is_empty() {
            // No *at xattr call before Linux 6.13: name the node through the parent's
            // /proc/self/fd link; lsetxattr does not follow the last component, and the
            // parent fd is already confined.
            let mut path: heapless::String<300> = heapless::String::new();
            let _ = core::fmt::Write::write_fmt(
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
                    at::lsetxattr(
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
            at::utimensat(dir, name, &entry_times(e), AtFlags::SYMLINK_NOFOLLOW),
        )
    }
}

impl Layer for DirLayer<'_> {
    type Error = Errno;

    fn enter(&mut self, dir: &str) -> Res<()> {
        if self.cur_times.is_some() && self.cur_path.as_str() == dir {
            return Ok(());
        }
        self.leave()?;
        if !dir.is_empty() {
            let fd = match at::openat2(self.root, dir, DIR_FLAGS, Mode::empty(), CONFINED) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => {
                    self.walk_create(dir)?
                }
                Err(err) => {
                    return Err(LayerError::Sys {
                        op: "open dir",
                        err,
                    })
                }
            };
            self.cur = Some(fd);
            let _ = self.cur_path.push_str(dir);
        }
        let st = sys("stat", rustix::fs::fstat(self.cur_fd()))?;
        self.cur_times = Some(stat_times(&st));
        self.cur_group = Some(new_group(st.st_mode, st.st_gid, self.creator));
        Ok(())
    }

    fn kind(&mut self, name: &str) -> Res<Option<Node>> {
        match at::statat(self.cur_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(node(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(err) => Err(LayerError::Sys { op: "stat", err }),
        }
    }

    fn lookup(&mut self, path: &str) -> Res<Option<Node>> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let parent = if dir.is_empty() {
            None
        } else {
            match at::openat2(
                self.root,
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                CONFINED,
            ) {
                Ok(fd) => Some(fd),
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => {
                    return self.classify(path)
                }
                Err(err) => {
                    return Err(LayerError::Sys {
                        op: "open dir",
                        err,
                    })
                }
            }
        };
        let pfd = parent.as_ref().map_or(self.root, |fd| fd.as_fd());
        match at::statat(pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(node(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(err) => Err(LayerError::Sys { op: "stat", err }),
        }
    }

    fn remove(&mut self, name: &str) -> Res<()> {
        sys("remove old", remove(self.cur_fd(), name))
    }

    fn mkdir(&mut self, name: &str) -> Res<()> {
        sys(
            "mkdir",
            at::mkdirat(self.cur_fd(), name, Mode::from_raw_mode(0o700)),
        )
    }

    fn dir_meta(&mut self, name: &str, e: &Entry, empty: bool, opaque: bool) -> Res<()> {
        let opened;
        let fd = if name.is_empty() {
            self.cur_fd()
        } else {
            opened = sys(
                "open dir",
                at::openat(self.cur_fd(), name, DIR_FLAGS, Mode::empty()),
            )?;
            opened.as_fd()
        };
        if empty {
            sys("empty opaque dir", clear_dir(fd, 0))?;
        }
        Self::drop_stale_xattrs(fd, e)?;
        Self::meta(fd, e)?;
        if opaque {
            // Changes the ctime only: the mtime stays as `meta` set it.
            sys(
                "fsetxattr",
                at::fsetxattr(fd, OPAQUE_NAME, b"y", XattrFlags::empty()),
            )?;
        }
        if name.is_empty() {
            // The entered directory itself: these are the times to put back on leaving.
            self.cur_times = Some(entry_times(e));
            self.cur_group = Some(new_group(e.mode.into(), e.gid, self.creator));
        }
        Ok(())
    }

    fn create(&mut self, name: &str, e: &Entry) -> Res<()> {
        if self.create_new(name, e)? {
            Ok(())
        } else {
            Err(LayerError::Sys {
                op: "create",
                err: Errno::EXIST,
            })
        }
    }

    fn create_new(&mut self, name: &str, e: &Entry) -> Res<bool> {
        // Created with its permission bits already (the fd is writable whatever they say):
        // most files then need no chmod, nor a chown when their owner is the creator. Special
        // bits wait for the chmod after the chown, which would clear them.
        let mode = u32::from(e.mode) & 0o777;
        let fd = match at::openat(
            self.cur_fd(),
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => fd,
            Err(Errno::EXIST) => return Ok(false),
            Err(err) => return Err(LayerError::Sys { op: "create", err }),
        };
        self.file = Some(fd);
        self.file_pos = 0;
        self.file_written = 0;
        self.file_exact = u32::from(e.mode) == mode
            && mode & self.creator.umask == 0
            && e.uid == self.creator.uid
            && Some(e.gid) == self.cur_group;
        Ok(true)
    }

    fn write(&mut self, data: &[u8]) -> Res<()> {
        let Some(fd) = &self.file else {
            return Err(LayerError::Sys {
                op: "write",
                err: Errno::BADF,
            });
        };
        // Page-aligned runs of zeros stay holes (close_file sets the length); the rest is
        // written in as few calls as the holes allow.
        let mut at = 0;
        while at < data.len() {
            let pos = self.file_pos + at as u64;
            let page = ((HOLE_PAGE - pos % HOLE_PAGE) as usize).min(data.len() - at);
            if data[at..at + page].iter().all(|&b| b == 0) {
                at += page;
                continue;
            }
            // Extend the run over every following page that is not all zeros.
            let mut end = at + page;
            while end < data.len() {
                let next = (end + HOLE_PAGE as usize).min(data.len());
                if data[end..next].iter().all(|&b| b == 0) {
                    break;
                }
                end = next;
            }
            write_all_at(fd, &data[at..end], pos)?;
            self.file_written = self.file_pos + end as u64;
            at = end;
        }
        self.file_pos += data.len() as u64;
        Ok(())
    }

    fn close_file(&mut self, e: &Entry) -> Res<()> {
        let Some(fd) = self.file.take() else {
            return Err(LayerError::Sys {
                op: "close",
                err: Errno::BADF,
            });
        };
        if self.file_written < self.file_pos {
            sys("truncate", rustix::fs::ftruncate(&fd, self.file_pos))?;
        }
        if self.file_exact && e.xattrs.is_empty() {
            return sys("utimens", rustix::fs::futimens(&fd, &entry_times(e)));
        }
        Self::meta(fd.as_fd(), e)
    }

    fn symlink(&mut self, name: &str, e: &Entry, target: &str) -> Res<()> {
        sys("symlink", at::symlinkat(target, self.cur_fd(), name))?;
        Self::nofollow_meta(self.cur_fd(), name, e)
    }

    fn whiteout(&mut self, name: &str, e: &Entry) -> Res<()> {
        sys(
            "mknod whiteout",
            at::mknodat(
                self.cur_fd(),
                name,
                FileType::CharacterDevice,
                Mode::from_raw_mode(e.mode.into()),
                0,
            ),
        )?;
        Self::nofollow_meta(self.cur_fd(), name, e)
    }

    fn link(&mut self, name: &str, target: &str) -> Res<()> {
        let (dir, tname) = target.rsplit_once('/').unwrap_or(("", target));
        let parent = if dir.is_empty() {
            None
        } else {
            Some(sys(
                "open link target dir",
                at::openat2(
                    self.root,
                    dir,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    CONFINED,
                ),
            )?)
        };
        let pfd = parent.as_ref().map_or(self.root, |fd| fd.as_fd());
        sys(
            "link",
            at::linkat(pfd, tname, self.cur_fd(), name, AtFlags::empty()),
        )
    }

    fn finish(&mut self) -> Res<()> {
        self.leave()
    }
}

/// Opens directory component `comp` of a walked path (what is there: `n`); a symlink or any
/// other non-directory blocks the path at `prefix`.
fn open_component(pfd: BorrowedFd<'_>, comp: &str, n: Node, prefix: usize) -> Res<OwnedFd> {
    match n {
        Node::Dir => sys("open dir", at::openat(pfd, comp, DIR_FLAGS, Mode::empty())),
        Node::Symlink => Err(LayerError::Blocked {
            prefix,
            why: Blocked::Symlink,
        }),
        _ => Err(LayerError::Blocked {
            prefix,
            why: Blocked::NotDir,
        }),
    }
}

fn write_all_at(fd: &OwnedFd, mut data: &[u8], mut pos: u64) -> Res<()> {
    while !data.is_empty() {
        let n = sys("write", rustix::io::pwrite(fd, data, pos))?;
        if n == 0 {
            return Err(LayerError::Sys {
                op: "write",
                err: Errno::NOSPC,
            });
        }
        data = &data[n..];
        pos += n as u64;
    }
    Ok(())
}

/// The group of a node created in a directory of this mode and group.
fn new_group(dir_mode: u32, dir_gid: u32, creator: Creator) -> u32 {
    if dir_mode & 0o2000 != 0 {
        dir_gid
    } else {
        creator.gid
    }
}

/// What is at `name` in `dir` now, without following symlinks.
fn kind_at(dir: BorrowedFd<'_>, name: &str) -> Result<Option<FileType>, Errno> {
    match at::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `name` in `dir`, recursively if it is a directory.
pub fn remove(dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let fd = at::openat(dir, name, DIR_FLAGS, Mode::empty())?;
            clear_dir(fd.as_fd(), 0)?;
            at::unlinkat(dir, name, AtFlags::REMOVEDIR)
        }
        Some(_) => at::unlinkat(dir, name, AtFlags::empty()),
    }
}

/// Empties directory `dir` (an O_RDONLY directory fd).
pub fn clear_dir(dir: BorrowedFd<'_>, depth: usize) -> Result<(), Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::LOOP);
    }
    loop {
        // NUL-terminated: names in a directory extract writes into need not be UTF-8.
        let mut copy = [0u8; 257];
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
        let name = core::ffi::CStr::from_bytes_until_nul(&copy[..=n]).map_err(|_| Errno::INVAL)?;
        if is_dir {
            let sub = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())?;
            clear_dir(sub.as_fd(), depth + 1)?;
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        }
    }
}
