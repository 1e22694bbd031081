//! The mount sequence.
//!
//! The read-only root cannot grow mount points, so everything is built under
//! a small tmpfs "scaffold" mounted on a directory the root already has (/tmp
//! or /mnt, both present in OpenWrt images):
//!
//!   S=/tmp (scaffold tmpfs)
//!   S/snapshot        tmpfs: snapshot layer (replayed snapshots)
//!   S/overlay         tmpfs: volatile layer, with upper/ and work/
//!   S/root            overlay lowerdir=S/snapshot:/ upperdir=S/overlay/upper redirect_dir=off
//!
//! Then mount points the read-only root lacks (rom, snapshot, overlay) are made
//! in the snapshot layer (so they are never in the volatile upper, which
//! `snapshot save` stores), S/snapshot and
//! S/overlay and the API filesystems are moved into it, and pivot_root makes
//! it / with the old root at /rom. The scaffold, now /rom/tmp, is detached.
//!
//! Before the overlay is mounted, S/overlay/snapinit (`/overlay/snapinit` in the running
//! system, outside the upper directory `snapshot save` stores) says what this PID 1 reads, so
//! that a newer `snapshot` tool never writes what an older PID 1 would take for corruption.

use core::ffi::CStr;
use core::fmt::Write;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::{info, warn};

pub type Path = heapless::String<64>;

const SCAFFOLD_CANDIDATES: [&str; 2] = ["/tmp", "/mnt"];

/// What this PID 1 reads beyond the first format, one word per line (docs/BOOT.md, "Boot
/// record"): `failed-check-marks`, the header bytes 0xD3, 0xD4 and 0xD5 (docs/FORMAT.md).
const BOOT_RECORD: &[u8] = b"failed-check-marks\n";
/// The boot record's line for a boot whose root does not hold the chain.
const CHAIN_NOT_BOOTED: &[u8] = b"chain-not-booted\n";
/// The boot record's line for a boot that spent the trial of a block it could not replay.
const TRIAL_NOT_BOOTED: &[u8] = b"trial-not-booted\n";
/// The boot record's line for a boot that laid out less of the chain than the flash holds.
const CHAIN_PARTLY_BOOTED: &[u8] = b"chain-partly-booted\n";
/// The boot record's line for a boot that laid out every snapshot but not the volatile.
const VOLATILE_NOT_BOOTED: &[u8] = b"volatile-not-booted\n";

/// What the layers hold of the chain on flash, as the boot record says it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Ran {
    /// The chain as the tool reads it, or nothing where there is no chain to run.
    #[default]
    Chain,
    /// Less: a snapshot that is on flash intact could not be laid out (no room in RAM, past
    /// its data bound). Not a payload that fails its hash: the tool's chain ends before it too.
    Part,
    /// Every snapshot, but not the volatile that is on flash intact (an older copy may run).
    VolatileLeft,
    /// The chain below a block on trial whose mark this boot spent and could not replay.
    TrialNotRun,
    /// None of it: failsafe, a chain that could not be read, the plain-overlay rung.
    Nothing,
}

/// Where the layers and the API filesystems are mounted in the merged root.
const MOUNT_POINTS: [&str; 6] = ["/rom", "/snapshot", "/overlay", "/proc", "/sys", "/dev"];

const PROC_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;
const TMPFS_MAGIC: i64 = 0x0102_1994;

#[derive(Debug, Clone, Copy)]
pub struct MountError {
    pub op: &'static str,
    pub errno: Errno,
}

impl core::fmt::Display for MountError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.op, self.errno)
    }
}

/// The mount calls with `&str` paths, converted in one place (snapinit::cpath says why).
pub mod sys {
    use core::ffi::CStr;

    use rustix::fs::{Mode, StatFs};
    use rustix::io::Errno;
    use rustix::mount::{MountFlags, UnmountFlags};
    use snapinit::cpath::{c_str, MAX};

    pub fn mount(
        source: &str,
        target: &str,
        fstype: &str,
        flags: MountFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        let (mut a, mut b) = ([0; MAX + 1], [0; MAX + 1]);
        let (source, target) = (c_str(source, &mut a)?, c_str(target, &mut b)?);
        rustix::mount::mount(
            source,
            target,
            c_str(fstype, &mut [0; MAX + 1])?,
            flags,
            data,
        )
    }

    pub fn remount(target: &str, flags: MountFlags, data: &CStr) -> Result<(), Errno> {
        rustix::mount::mount_remount(c_str(target, &mut [0; MAX + 1])?, flags, data)
    }

    pub fn unmount(target: &str, flags: UnmountFlags) -> Result<(), Errno> {
        rustix::mount::unmount(c_str(target, &mut [0; MAX + 1])?, flags)
    }

    pub fn mount_move(from: &str, to: &str) -> Result<(), Errno> {
        let mut a = [0; MAX + 1];
        let from = c_str(from, &mut a)?;
        rustix::mount::mount_move(from, c_str(to, &mut [0; MAX + 1])?)
    }

    pub fn mkdir(path: &str, mode: Mode) -> Result<(), Errno> {
        rustix::fs::mkdir(c_str(path, &mut [0; MAX + 1])?, mode)
    }

    pub fn statfs(path: &str) -> Result<StatFs, Errno> {
        rustix::fs::statfs(c_str(path, &mut [0; MAX + 1])?)
    }

    pub fn chdir(path: &str) -> Result<(), Errno> {
        rustix::process::chdir(c_str(path, &mut [0; MAX + 1])?)
    }

    pub fn chroot(path: &str) -> Result<(), Errno> {
        rustix::process::chroot(c_str(path, &mut [0; MAX + 1])?)
    }
}

fn err(op: &'static str) -> impl Fn(Errno) -> MountError {
    move |errno| MountError { op, errno }
}

fn join(base: &str, rest: &str) -> Path {
    let mut p = Path::new();
    let _ = write!(p, "{base}{rest}");
    p
}

// statfs's f_type width differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn fs_magic(path: &str) -> Option<i64> {
    sys::statfs(path).ok().map(|s| s.f_type as i64)
}

/// Mounts /proc, /sys and /dev unless something of the right type is there.
pub fn api_filesystems() {
    let table: [(&str, &str, i64, MountFlags); 3] = [
        (
            "proc",
            "/proc",
            PROC_MAGIC,
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        ),
        (
            "sysfs",
            "/sys",
            SYSFS_MAGIC,
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        ),
        (
            "devtmpfs",
            "/dev",
            TMPFS_MAGIC,
            MountFlags::NOSUID | MountFlags::NOEXEC,
        ),
    ];
    for (fstype, target, magic, flags) in table {
        if fs_magic(target) == Some(magic) {
            info!("{target} already mounted");
            continue;
        }
        match sys::mount(fstype, target, fstype, flags, None) {
            Ok(()) => info!("mounted {fstype} on {target}"),
            Err(e) => warn!("mounting {fstype} on {target} failed: {e}"),
        }
    }
}

/// The flags of the scaffold and the layers, which a remount must repeat.
const LAYER_FLAGS: MountFlags = MountFlags::NOSUID.union(MountFlags::NODEV);

fn tmpfs(target: &str, what: &'static str) -> Result<(), MountError> {
    sys::mount(what, target, "tmpfs", LAYER_FLAGS, Some(c"mode=0755")).map_err(err("mount tmpfs"))
}

/// sysinfo(2)'s counts are C longs: 32 bits on MIPS and 32-bit ARM, 64 elsewhere.
#[allow(clippy::useless_conversion)]
fn ulong(n: core::ffi::c_ulong) -> u64 {
    u64::from(n)
}

/// `size=N` for a tmpfs mount, NUL-terminated.
fn size_option(bytes: u64) -> heapless::String<32> {
    let mut opt = heapless::String::new();
    let _ = write!(opt, "size={bytes}\0");
    opt
}

fn mkdir(path: &str) -> Result<(), MountError> {
    match sys::mkdir(path, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(err("mkdir")(e)),
    }
}

fn is_dir(path: &str) -> bool {
    names_dir(snapinit::cpath::stat(path))
}

/// A directory itself, not a symlink to one: a mount moved onto a symlink in the new root
/// follows it, and before the pivot an absolute link resolves in the old root.
fn is_real_dir(path: &str) -> bool {
    names_dir(snapinit::cpath::lstat(path))
}

fn names_dir(stat: Result<rustix::fs::Stat, Errno>) -> bool {
    stat.is_ok_and(|s| {
        rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Directory
    })
}

/// Whether `path` names a program in the tree at `root` (symlinks resolved inside it, as
/// after the switch): a regular file with an execute bit. `true` when the kernel cannot say
/// (no openat2 before Linux 5.6): the switch then goes ahead as before.
fn runnable_in(root: &rustix::fd::OwnedFd, path: &core::ffi::CStr) -> bool {
    use rustix::fs::{FileType, ResolveFlags};
    let inside = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);
    match rustix::fs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        inside,
    ) {
        Ok(fd) => rustix::fs::fstat(&fd).is_ok_and(|s| {
            FileType::from_raw_mode(s.st_mode) == FileType::RegularFile && s.st_mode & 0o111 != 0
        }),
        Err(Errno::NOSYS) => true,
        Err(_) => false,
    }
}

/// The scaffold and its two layer tmpfs mounts.
pub struct Layers {
    pub base: &'static str,
    /// The volatile layer's size once capped (`cap_volatile`), kept for a fresh one.
    volatile_cap: core::cell::Cell<Option<u64>>,
}

impl Layers {
    pub fn snapshot(&self) -> Path {
        join(self.base, "/snapshot")
    }
    pub fn overlay(&self) -> Path {
        join(self.base, "/overlay")
    }
    pub fn upper(&self) -> Path {
        join(self.base, "/overlay/upper")
    }
    fn work(&self) -> Path {
        join(self.base, "/overlay/work")
    }
    fn root(&self) -> Path {
        join(self.base, "/root")
    }

    pub fn create() -> Result<Self, MountError> {
        let base = SCAFFOLD_CANDIDATES
            .into_iter()
            .find(|p| is_dir(p))
            .ok_or(MountError {
                op: "find a scaffold mount point (/tmp or /mnt)",
                errno: Errno::NOENT,
            })?;
        tmpfs(base, "snapinit")?;
        info!("scaffold tmpfs on {base}");
        let l = Self {
            base,
            volatile_cap: core::cell::Cell::new(None),
        };
        match l.populate() {
            Ok(()) => Ok(l),
            Err(e) => {
                l.abandon();
                Err(e)
            }
        }
    }

    fn populate(&self) -> Result<(), MountError> {
        for p in [self.snapshot(), self.overlay(), self.root()] {
            mkdir(&p)?;
        }
        tmpfs(&self.snapshot(), "snapshot")?;
        self.fresh_volatile_dirs()
    }

    fn fresh_volatile_dirs(&self) -> Result<(), MountError> {
        tmpfs(&self.overlay(), "overlay")?;
        if let Some(cap) = self.volatile_cap.get() {
            self.resize_volatile(cap)?;
        }
        mkdir(&self.upper())?;
        mkdir(&self.work())
    }

    fn resize_volatile(&self, bytes: u64) -> Result<(), MountError> {
        let opt = size_option(bytes);
        let data = CStr::from_bytes_with_nul(opt.as_bytes()).map_err(|_| MountError {
            op: "size option",
            errno: Errno::INVAL,
        })?;
        sys::remount(&self.overlay(), LAYER_FLAGS, data).map_err(err("resize the volatile layer"))
    }

    /// Caps the volatile layer now that the snapshots are laid out (`ram.rs` says why):
    /// `reserve_kib` (`snapinit.reserve`) of RAM stay free beside it. Logged; a failure only
    /// warns (the layer keeps the kernel's default).
    pub fn cap_volatile(&self, reserve_kib: Option<u32>) {
        let info = rustix::system::sysinfo();
        let unit = u64::from(info.mem_unit.max(1));
        let total = ulong(info.totalram).saturating_mul(unit);
        // Buffers too: the pages of a block device (block2mtd) the chain was read through.
        let avail = ulong(info.freeram)
            .saturating_add(ulong(info.bufferram))
            .saturating_mul(unit);
        let reserve = reserve_kib.map_or(super::ram::default_reserve(total), |k| {
            u64::from(k).saturating_mul(1024)
        });
        let Some(cap) = super::ram::volatile_cap(total, avail, reserve) else {
            return;
        };
        match self.resize_volatile(cap) {
            Ok(()) => {
                self.volatile_cap.set(Some(cap));
                // In KiB as u32: the one integer width PID 1 formats anyway.
                let kib = |b: u64| u32::try_from(b >> 10).unwrap_or(u32::MAX);
                info!(
                    "RAM: {} KiB free of {} KiB once the snapshots are laid out: the volatile layer is capped at {} KiB, so that {} KiB stay free",
                    kib(avail),
                    kib(total),
                    kib(cap),
                    kib(reserve)
                );
            }
            Err(e) => warn!("capping the volatile layer failed ({e}); it keeps half of RAM"),
        }
    }

    /// Empties the snapshot layer by replacing its tmpfs.
    pub fn reset_snapshot(&self) -> Result<(), MountError> {
        sys::unmount(self.snapshot().as_str(), UnmountFlags::DETACH)
            .map_err(err("unmount snapshot"))?;
        // The volatile cap is what the snapshots left free: with them gone it no longer holds,
        // and a fresh volatile layer (the plain-overlay rung) gets the kernel's default again.
        self.volatile_cap.set(None);
        tmpfs(&self.snapshot(), "snapshot")
    }

    pub fn reset_volatile(&self) -> Result<(), MountError> {
        sys::unmount(self.overlay().as_str(), UnmountFlags::DETACH)
            .map_err(err("unmount overlay"))?;
        self.fresh_volatile_dirs()
    }

    /// Best effort when giving up: the target then runs on the read-only root.
    pub fn abandon(&self) {
        let _ = sys::unmount(self.base, UnmountFlags::DETACH);
    }

    /// Mount points the merged root needs and the read-only root may lack go into the
    /// snapshot layer, never into the volatile one: there `snapshot save` would store them.
    fn mount_points(&self) {
        for dir in MOUNT_POINTS {
            let in_layer = join(&self.snapshot(), dir);
            if is_dir(dir) || is_dir(&in_layer) {
                continue;
            }
            match mkdir(&in_layer) {
                Ok(()) => info!("mount point {dir} created in the snapshot layer"),
                Err(e) => warn!("mount point {dir} in the snapshot layer: {e}"),
            }
        }
    }

    /// Takes the boot record's page in the volatile layer before the saved changes are laid
    /// out there: a volatile that filled the layer to its last page left the record unwritten
    /// (ENOSPC), and without one the tool takes the boot for one without snapinit and refuses
    /// nothing. What it says until `boot_record` rewrites it in place (its page freed by the
    /// truncation, taken again by the write) is the safe side: none of the chain ran.
    pub fn hold_record(&self) {
        self.boot_record(Ran::Nothing);
    }

    /// Writes the boot record (see the module comment); a failure is only logged: the tool
    /// then writes nothing this PID 1 might not read. `ran`: what the layers hold of the chain;
    /// when not all of it, the record says so: `snapshot health` then vouches for no block on
    /// trial the boot did not run, and `save`, `commit` and `upgrade` store no upper dir
    /// whose changes are against another chain than the one on flash.
    fn boot_record(&self, ran: Ran) {
        let path = join(&self.overlay(), "/snapinit");
        let written = snapinit::cpath::open(
            &path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o444),
        )
        .and_then(|fd| {
            rustix::io::write(&fd, BOOT_RECORD)?;
            match ran {
                Ran::Chain => {}
                Ran::Part => {
                    rustix::io::write(&fd, CHAIN_PARTLY_BOOTED)?;
                }
                Ran::VolatileLeft => {
                    rustix::io::write(&fd, VOLATILE_NOT_BOOTED)?;
                }
                Ran::TrialNotRun => {
                    rustix::io::write(&fd, TRIAL_NOT_BOOTED)?;
                }
                Ran::Nothing => {
                    rustix::io::write(&fd, CHAIN_NOT_BOOTED)?;
                }
            }
            Ok(())
        });
        if let Err(e) = written {
            warn!("cannot write {path}: {e}");
        }
    }

    /// Mounts the overlay and makes it / (see the module comment). `programs`: what PID 1
    /// will exec, in order; the switch is refused (nothing moved) when the overlay holds none
    /// of them: a snapshot that lost its init would otherwise panic the kernel at every boot.
    pub fn switch_root(&self, programs: &[&core::ffi::CStr], ran: Ran) -> Result<(), MountError> {
        self.mount_points();
        self.boot_record(ran);
        let root = self.root();
        // redirect_dir=off: a directory renamed at run time is copied up whole, as on a kernel
        // built without CONFIG_OVERLAY_FS_REDIRECT_DIR. A redirect points into the lower
        // layers as they were, and the chain merges every snapshot into one layer: a rename
        // committed would boot the directory empty (its redirect finding the whiteout of its
        // old name). It also turns off metacopy, whose copy-up `snapshot save` cannot pack.
        // Kernels before 4.10 know neither: mounted without it.
        let mut mounted = Err(Errno::INVAL);
        for extra in [",redirect_dir=off", ""] {
            let mut opts: heapless::String<220> = heapless::String::new();
            let _ = write!(
                opts,
                "lowerdir={}:/,upperdir={},workdir={}{extra}\0",
                self.snapshot(),
                self.upper(),
                self.work()
            );
            let opts =
                core::ffi::CStr::from_bytes_until_nul(opts.as_bytes()).map_err(|_| MountError {
                    op: "overlay options",
                    errno: Errno::NAMETOOLONG,
                })?;
            mounted = sys::mount(
                "overlay",
                root.as_str(),
                "overlay",
                MountFlags::empty(),
                Some(opts),
            );
            if mounted != Err(Errno::INVAL) {
                if mounted.is_ok() {
                    info!("overlay mounted: {}", opts.to_str().unwrap_or("?"));
                }
                break;
            }
        }
        mounted.map_err(err("mount overlay"))?;
        if let Err(e) = self.check_root(&root, programs) {
            let _ = sys::unmount(root.as_str(), UnmountFlags::DETACH);
            return Err(e);
        }
        // From here on a failure must put the moved mounts back.
        let moves: [(Path, Path); 5] = [
            (self.snapshot(), join(&root, "/snapshot")),
            (self.overlay(), join(&root, "/overlay")),
            (join("", "/proc"), join(&root, "/proc")),
            (join("", "/sys"), join(&root, "/sys")),
            (join("", "/dev"), join(&root, "/dev")),
        ];
        let mut done = 0;
        let mut failure = None;
        for (from, to) in &moves {
            if let Err(e) = sys::mount_move(from, to) {
                failure = Some(err("move mount")(e));
                break;
            }
            done += 1;
        }
        if failure.is_none() {
            match self.pivot(&root) {
                Ok(()) => return Ok(()),
                Err(e) => failure = Some(e),
            }
        }
        for (from, to) in moves[..done].iter().rev() {
            let _ = sys::mount_move(to, from);
        }
        let _ = sys::unmount(root.as_str(), UnmountFlags::DETACH);
        Err(failure.unwrap_or(MountError {
            op: "switch root",
            errno: Errno::INVAL,
        }))
    }

    /// The merged root can take the moves and run a program: every mount point a directory
    /// of its own (created in the volatile layer when missing), and one of `programs` there.
    fn check_root(&self, root: &str, programs: &[&core::ffi::CStr]) -> Result<(), MountError> {
        for dir in MOUNT_POINTS {
            let p = join(root, dir);
            if matches!(snapinit::cpath::lstat(&p), Err(Errno::NOENT)) {
                // Only when the snapshot layer could not hold it (see `mount_points`).
                info!("creating mount point {dir} in the volatile layer");
                mkdir(&p)?;
            }
            if !is_real_dir(&p) {
                return Err(MountError {
                    op: "use a mount point that is a symlink or a file in the overlay",
                    errno: Errno::NOTDIR,
                });
            }
        }
        let fd = snapinit::cpath::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err("open the new root"))?;
        if programs.iter().any(|p| runnable_in(&fd, p)) {
            Ok(())
        } else {
            Err(MountError {
                op: "find a program to run in the overlay",
                errno: Errno::NOENT,
            })
        }
    }

    fn pivot(&self, root: &str) -> Result<(), MountError> {
        sys::chdir(root).map_err(err("chdir new root"))?;
        match rustix::process::pivot_root(c".", c"rom") {
            Ok(()) => {
                rustix::process::chroot(c".").map_err(err("chroot"))?;
                rustix::process::chdir(c"/").map_err(err("chdir /"))?;
                let scaffold = join("/rom", self.base);
                // The layer mounts left the scaffold; it is empty now.
                if let Err(e) = sys::unmount(scaffold.as_str(), UnmountFlags::DETACH) {
                    warn!("detaching scaffold {scaffold}: {e}");
                }
                info!("pivot_root done: old root at /rom");
                Ok(())
            }
            Err(e) => {
                // e.g. the old root is the initramfs rootfs, which cannot be
                // pivoted: bind it to /rom and move the overlay over /.
                warn!("pivot_root failed ({e}); moving the overlay onto / instead");
                rustix::mount::mount_bind(c"/", c"rom").map_err(err("bind old root to /rom"))?;
                rustix::mount::mount_move(c".", c"/").map_err(err("move overlay to /"))?;
                rustix::process::chroot(c".").map_err(err("chroot"))?;
                rustix::process::chdir(c"/").map_err(err("chdir /"))?;
                let scaffold = join("/rom", self.base);
                let _ = sys::unmount(scaffold.as_str(), UnmountFlags::DETACH);
                Ok(())
            }
        }
    }
}
