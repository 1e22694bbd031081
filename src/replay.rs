//! The replay rules: how a payload's entries change a layer. One function decides, for PID 1
//! (which applies them to a tmpfs layer through [`crate::dirlayer::DirLayer`]), for `snapshot
//! extract` (the same `DirLayer` on any directory) and for `snapshot verify` (an in-memory model
//! of the layer that only tracks what is where), so the three give one verdict for every
//! payload: what is accepted and refused, and why, is decided here and nowhere else.
//!
//! The rules (docs/FORMAT.md, "Replay"):
//! * An entry's parent directories are created when missing (as GNU tar does; the layer
//!   chooses their metadata), but a parent that is a symlink or not a directory refuses the
//!   payload: nothing is ever written through a symlink.
//! * An entry replaces whatever is at its path, a directory with all its contents, except that
//!   a directory entry over a directory merges with it (an opaque one empties it first, except
//!   the layer root, which overlayfs never takes as opaque) and takes exactly the entry's
//!   metadata. A directory that replaces a whiteout or another non-directory is made opaque:
//!   it hides what lies below as that entry did.
//! * A hard link names a non-directory that exists in the layer when the link is replayed.
//! * The whole stream is read: after the end-of-archive record only zeros may follow (at most
//!   [`MAX_TRAILING`](crate::tar::MAX_TRAILING) of them), and a gzip trailer is checked,
//!   before a payload counts as replayed.

use core::fmt;

use embedded_io::Read;

use crate::tar::{Entry, EntryKind, TarError, TarPath, TarReader};
use crate::text::Quoted;

/// What is at a path of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Dir,
    File,
    Symlink,
    /// An overlayfs whiteout (character device 0:0).
    Whiteout,
    /// Anything else (a device, a FIFO, a socket left in a layer by other means).
    Other,
}

/// Why a path cannot be followed: one of its directories is not a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    Symlink,
    NotDir,
}

/// A layer's answer: a path component that blocks (the first `prefix` bytes of the path), or
/// a system error of the real filesystem (the in-memory model has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerError<E> {
    Blocked { prefix: usize, why: Blocked },
    Sys { op: &'static str, err: E },
}

/// A directory tree that entries are replayed into. Paths are canonical (see
/// [`crate::tar::normalize`]); names are single components of the entered directory.
pub trait Layer {
    type Error: Copy + fmt::Debug + fmt::Display;

    /// Makes directory `dir` (`""`: the layer root) the one later calls act in, creating
    /// missing directories on the way.
    fn enter(&mut self, dir: &str) -> Result<(), LayerError<Self::Error>>;
    /// What is at `name` in the entered directory.
    fn kind(&mut self, name: &str) -> Result<Option<Node>, LayerError<Self::Error>>;
    /// What is at `path` (from the root), without creating anything; `None` when it or one of
    /// its directories is missing.
    fn lookup(&mut self, path: &str) -> Result<Option<Node>, LayerError<Self::Error>>;
    /// Removes `name`, with everything below it.
    fn remove(&mut self, name: &str) -> Result<(), LayerError<Self::Error>>;
    fn mkdir(&mut self, name: &str) -> Result<(), LayerError<Self::Error>>;
    /// Gives directory `name` (`""`: the entered directory itself) exactly `e`'s metadata,
    /// emptying it first when `empty`, and marks it opaque when `opaque` whatever `e` says.
    fn dir_meta(
        &mut self,
        name: &str,
        e: &Entry,
        empty: bool,
        opaque: bool,
    ) -> Result<(), LayerError<Self::Error>>;
    /// Starts a new regular file `name` for entry `e`, where nothing is; `write` appends its
    /// data, `close_file` ends it.
    fn create(&mut self, name: &str, e: &Entry) -> Result<(), LayerError<Self::Error>>;
    /// [`Layer::create`] if nothing is at `name` (true); otherwise nothing happens (false).
    /// A layer that can ask both in one operation saves the lookup of every new file.
    fn create_new(&mut self, name: &str, e: &Entry) -> Result<bool, LayerError<Self::Error>> {
        if self.kind(name)?.is_some() {
            return Ok(false);
        }
        self.create(name, e)?;
        Ok(true)
    }
    fn write(&mut self, data: &[u8]) -> Result<(), LayerError<Self::Error>>;
    fn close_file(&mut self, e: &Entry) -> Result<(), LayerError<Self::Error>>;
    fn symlink(
        &mut self,
        name: &str,
        e: &Entry,
        target: &str,
    ) -> Result<(), LayerError<Self::Error>>;
    fn whiteout(&mut self, name: &str, e: &Entry) -> Result<(), LayerError<Self::Error>>;
    /// A hard link `name` to `target` (a path from the root that `lookup` found).
    fn link(&mut self, name: &str, target: &str) -> Result<(), LayerError<Self::Error>>;
    /// Ends the replay (the entered directory gets its times back).
    fn finish(&mut self) -> Result<(), LayerError<Self::Error>>;
}

/// A payload the rules refuse, whatever the layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A directory on the entry's path (the named prefix) is a symlink or not a directory.
    Blocked { dir: TarPath, why: Blocked },
    /// A hard link to a path that does not exist in the layer.
    LinkTargetMissing(TarPath),
    /// A hard link to a directory.
    LinkToDirectory(TarPath),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Blocked { dir, why } => write!(
                f,
                "{} is {}",
                Quoted(dir),
                match why {
                    Blocked::Symlink => "a symlink, not a directory",
                    Blocked::NotDir => "not a directory",
                }
            ),
            Refusal::LinkTargetMissing(t) => {
                write!(f, "hard link target {} does not exist", Quoted(t))
            }
            Refusal::LinkToDirectory(t) => {
                write!(f, "hard link target {} is a directory", Quoted(t))
            }
        }
    }
}

/// Why a replay failed. `R`: the payload reader's error; `L`: the layer's system error.
// Paths are held inline (no heap to box them into); one is built per failed replay.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Cause<R, L> {
    Tar(TarError<R>),
    Refused(Refusal),
    Sys { op: &'static str, err: L },
}

/// Archive errors about the entry whose header was just read (its path is known), rather than
/// about the stream after the last good entry.
fn at_entry<E>(e: &TarError<E>) -> bool {
    matches!(e, TarError::DataLimit { .. } | TarError::UnexpectedData(_))
}

/// A replay failure and the entry it happened at (for archive errors: the last good entry,
/// `None` before the first, except those [`at_entry`] names: that entry; an empty path is the
/// root).
#[derive(Debug)]
pub struct ReplayError<R, L> {
    pub path: Option<TarPath>,
    pub cause: Cause<R, L>,
}

impl<R: fmt::Display, L: fmt::Display> fmt::Display for ReplayError<R, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.as_ref().map(|p| p.as_str());
        match (&self.cause, path) {
            (Cause::Tar(e), Some(p)) if at_entry(e) => write!(f, "entry {}: {e}", Quoted(p)),
            (Cause::Tar(e), None) => write!(f, "at the first entry: {e}"),
            (Cause::Tar(e), Some(p)) => write!(f, "after entry {}: {e}", Quoted(p)),
            (Cause::Refused(r), p) => write!(f, "entry {}: {r}", Quoted(p.unwrap_or(""))),
            (Cause::Sys { op, err }, p) => {
                write!(f, "entry {}: {op}: {err}", Quoted(p.unwrap_or("")))
            }
        }
    }
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub entries: u32,
    /// Bytes of regular-file data.
    pub bytes: u64,
}

#[allow(clippy::large_enum_variant)] // as `Cause`
enum Fail<R, L> {
    Tar(TarError<R>),
    Layer(LayerError<L>),
    Refused(Refusal),
}

impl<R, L> From<LayerError<L>> for Fail<R, L> {
    fn from(e: LayerError<L>) -> Self {
        Fail::Layer(e)
    }
}

/// Replays every entry of `tar` into `layer`, then checks the rest of the stream. `buf`
/// carries file data (a few KiB).
#[allow(clippy::result_large_err)] // no heap to box the entry path into; built once per failure
pub fn replay<R: Read, L: Layer>(
    tar: &mut TarReader<R>,
    layer: &mut L,
    buf: &mut [u8],
) -> Result<Stats, ReplayError<R::Error, L::Error>> {
    let mut stats = Stats::default();
    // Filled in place entry after entry; its path names the last one read.
    let mut entry = Entry::new();
    loop {
        match tar.read_entry(&mut entry) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let at_entry = at_entry(&e);
                return Err(ReplayError {
                    path: (at_entry || stats.entries > 0).then(|| entry.path.clone()),
                    cause: Cause::Tar(e),
                });
            }
        }
        stats.entries += 1;
        if let Err(fail) = apply(layer, &entry, tar, buf, &mut stats) {
            return Err(failure(Some(entry.path.clone()), fail));
        }
    }
    let last = (stats.entries > 0).then(|| entry.path.clone());
    if let Err(e) = tar.finish() {
        return Err(ReplayError {
            path: last,
            cause: Cause::Tar(e),
        });
    }
    layer.finish().map_err(|e| failure(last, Fail::Layer(e)))?;
    Ok(stats)
}

fn failure<R, L>(path: Option<TarPath>, fail: Fail<R, L>) -> ReplayError<R, L> {
    let cause = match fail {
        Fail::Tar(e) => Cause::Tar(e),
        Fail::Refused(r) => Cause::Refused(r),
        Fail::Layer(LayerError::Sys { op, err }) => Cause::Sys { op, err },
        Fail::Layer(LayerError::Blocked { prefix, why }) => {
            let mut dir = TarPath::new();
            if let Some(p) = path.as_ref().and_then(|p| p.get(..prefix)) {
                let _ = dir.push_str(p);
            }
            Cause::Refused(Refusal::Blocked { dir, why })
        }
    };
    ReplayError { path, cause }
}

#[allow(clippy::result_large_err)] // as `Cause`
fn apply<R: Read, L: Layer>(
    layer: &mut L,
    e: &Entry,
    tar: &mut TarReader<R>,
    buf: &mut [u8],
    stats: &mut Stats,
) -> Result<(), Fail<R::Error, L::Error>> {
    if e.is_root() {
        layer.enter("")?;
        // overlayfs never takes a layer's root as opaque: the layers below show through
        // whatever its xattr says, so it empties nothing here either (a later snapshot in
        // the shared snapshot layer leaves the earlier ones, as separate layers would).
        return Ok(layer.dir_meta("", e, false, false)?);
    }
    let path = e.path.as_str();
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    layer.enter(dir)?;
    // Most files of a payload are new to the layer: try that first.
    if matches!(e.kind, EntryKind::File) && layer.create_new(name, e)? {
        return write_file(layer, e, tar, buf, stats);
    }
    let existing = layer.kind(name)?;
    let keep_dir = matches!(e.kind, EntryKind::Dir) && existing == Some(Node::Dir);
    if existing.is_some() && !keep_dir {
        layer.remove(name)?;
    }
    match &e.kind {
        EntryKind::Dir => {
            if !keep_dir {
                layer.mkdir(name)?;
            }
            // A directory in the place of a whiteout or of any other non-directory hides what
            // lies below, as that entry did. In layers of their own it needs no opaque mark:
            // overlayfs makes a directory over a lower whiteout plain (that whiteout hides the
            // rest), and looks no further down than a lower non-directory; a later snapshot
            // stores it so. In the one snapshot layer it replaces that entry and must be
            // opaque itself.
            let hides_below = existing.is_some() && !keep_dir;
            layer.dir_meta(name, e, keep_dir && e.is_opaque(), hides_below)?;
        }
        EntryKind::File => {
            layer.create(name, e)?;
            write_file(layer, e, tar, buf, stats)?;
        }
        EntryKind::Symlink { target } => layer.symlink(name, e, target.as_str())?,
        EntryKind::Whiteout => layer.whiteout(name, e)?,
        EntryKind::HardLink { target } => {
            let found = match layer.lookup(target.as_str()) {
                Ok(found) => found,
                // The blocked prefix is of the target's path, not the entry's.
                Err(LayerError::Blocked { prefix, why }) => {
                    let mut dir = TarPath::new();
                    let _ = dir.push_str(target.get(..prefix).unwrap_or(""));
                    return Err(Fail::Refused(Refusal::Blocked { dir, why }));
                }
                Err(e) => return Err(e.into()),
            };
            match found {
                None => return Err(Fail::Refused(Refusal::LinkTargetMissing(target.clone()))),
                Some(Node::Dir) => {
                    return Err(Fail::Refused(Refusal::LinkToDirectory(target.clone())))
                }
                Some(_) => layer.link(name, target.as_str())?,
            }
        }
    }
    Ok(())
}

/// The data of the regular file just created for `e`, and then its metadata.
#[allow(clippy::result_large_err)] // as `Cause`
fn write_file<R: Read, L: Layer>(
    layer: &mut L,
    e: &Entry,
    tar: &mut TarReader<R>,
    buf: &mut [u8],
    stats: &mut Stats,
) -> Result<(), Fail<R::Error, L::Error>> {
    loop {
        let data = tar.data_chunk(buf).map_err(Fail::Tar)?;
        if data.is_empty() {
            break;
        }
        layer.write(data)?;
        stats.bytes += data.len() as u64;
    }
    Ok(layer.close_file(e)?)
}
