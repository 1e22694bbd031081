//! The boot sequence, in order:
//!
//! 1. Give closed fds 0-2 placeholders before anything is opened (kmsg.rs:
//!    started without a console, the flash must not become "stderr"); refuse
//!    to run unless PID 1 (it rearranges the mount table).
//! 2. Settings: `SNAPINIT_CMDLINE` from the environment replaces
//!    /proc/cmdline when set. The kernel turns unknown `key=value` boot
//!    parameters into init's environment, so this grants nothing beyond what
//!    the command line already can; tests use it (with `snapinit.root=`) to
//!    boot a prepared root inside a PID+mount namespace.
//! 3. Open /dev/kmsg if there already; mount /proc, /sys, /dev if absent;
//!    put /dev/console (or /dev/null) on the held fds; open /dev/kmsg (log
//!    lines before that go to stderr, if it is the console).
//! 4. Scaffold + layer tmpfs mounts (mounts.rs).
//! 5. Unless failsafe: read and verify the chain (read-only, never writes
//!    flash), replay snapshots into the snapshot layer and the best volatile
//!    into the upper layer, degrading as described at `load_chain`.
//! 6. Overlay, switch root, exec the target with the kernel's argv/envp.
//!    Any failure before the switch execs the target on the read-only root.
//! 7. If nothing can be executed after the switch, the same programs from the
//!    read-only root at /rom; if nothing runs there either, PID 1 stays up
//!    (exiting would panic the kernel).

pub mod cmdline;
pub mod kmsg;
mod mem;
pub mod mounts;
pub mod ram;
pub mod rt;
mod trial;

use core::ffi::CStr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use rustix::fd::{AsFd, OwnedFd};
use snapinit::chain::{read_chain_with, verify, Block, End, Status, Volatiles};
use snapinit::device::{DeviceFlash, Medium};
use snapinit::dirlayer::{DirLayer, Lower};
use snapinit::flash::Geometry;
use snapinit::header::Compression;
use snapinit::header::{Kind, Trial};
use snapinit::payload::{Hashing, PayloadReader, TarSource};
use snapinit::replay::replay;
use snapinit::tar::TarReader;
use snapinit::text::Quoted;

use crate::{error, info, warn};
use cmdline::Settings;
use mounts::{Layers, Ran};

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(include_str!("../../boot/x86_64.s"), options(att_syntax));

// 32-bit MIPS o32, both endiannesses (mipsel and mips).
#[cfg(target_arch = "mips")]
core::arch::global_asm!(include_str!("../../boot/mips.s"));

// 32-bit ARM (ARMv7, EABI).
#[cfg(target_arch = "arm")]
core::arch::global_asm!(include_str!("../../boot/arm.s"));

// 64-bit ARM (AArch64).
#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(include_str!("../../boot/aarch64.s"));

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "mips",
    target_arch = "arm",
    target_arch = "aarch64"
)))]
compile_error!("no boot/<arch>.s for this architecture yet");

/// For the panic handler: the initial stack and the target path (both live
/// for the whole process: the stack is the kernel's, the path is in
/// `snapinit_main`'s frame, which never returns).
static STACK: AtomicPtr<usize> = AtomicPtr::new(core::ptr::null_mut());
static TARGET: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());

const DEFAULT_TARGET: &CStr = c"/sbin/init";

type CPath = [u8; 130];

fn c_path(s: &str) -> CPath {
    let mut b = [0u8; 130];
    let n = s.len().min(129);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

fn as_cstr(b: &CPath) -> &CStr {
    CStr::from_bytes_until_nul(b).unwrap_or(DEFAULT_TARGET)
}

#[no_mangle]
pub extern "C" fn snapinit_main(sp: *const usize) -> ! {
    // First, before anything opens a file: the flash must never get a standard number.
    kmsg::hold_std_fds();
    STACK.store(sp.cast_mut(), Ordering::Relaxed);
    // SAFETY: boot/<arch>.s passes the kernel's initial stack pointer.
    let args = unsafe { rt::Args::from_stack(sp) };
    // Archive modes must land exactly as recorded; the target gets the kernel's default back.
    rustix::process::umask(rustix::fs::Mode::empty());

    if rustix::process::getpid().as_raw_nonzero().get() != 1 {
        kmsg::use_console(true);
        error!("not PID 1: refusing to rearrange this system's mounts");
        rt::exit(1);
    }

    // Bytes, like /proc/cmdline: repaired the same way, not dropped for one stray byte.
    let mut env_buf = [0u8; 4096];
    let mut env_replaced = 0;
    let env_cmdline = args.env("SNAPINIT_CMDLINE").map(|value| {
        let n = value.len().min(env_buf.len());
        env_buf[..n].copy_from_slice(&value[..n]);
        let (text, replaced) = cmdline::repair_utf8(&mut env_buf[..n]);
        env_replaced = replaced;
        text
    });
    let mut proc_buf = [0u8; 4096];
    let mut settings = Settings::default();
    if let Some(c) = env_cmdline {
        settings = parse_settings(c);
        if let Some(root) = &settings.root {
            // Tests: make the prepared directory the read-only root.
            if let Err(e) = mounts::sys::chroot(root).and_then(|()| rustix::process::chdir(c"/")) {
                error!("chroot {root}: {e}");
            }
        }
    }
    // The kernel may have mounted devtmpfs already (DEVTMPFS_MOUNT): then
    // the mount lines reach the kernel log too, not only the console.
    kmsg::open();
    mounts::api_filesystems();
    kmsg::console_on_std_fds();
    kmsg::open();
    if env_cmdline.is_none() {
        let text = read_file("/proc/cmdline", &mut proc_buf);
        settings = parse_settings(text);
    } else {
        info!("settings from SNAPINIT_CMDLINE");
        if env_replaced > 0 {
            warn!(
                "SNAPINIT_CMDLINE: {env_replaced} byte sequence(s) that are not UTF-8 read as '?'"
            );
        }
    }
    let target = c_path(&settings.init);
    TARGET.store(target.as_ptr().cast_mut(), Ordering::Relaxed);
    info!("target {}", settings.init);

    match Layers::create() {
        Ok(layers) => {
            let loaded = if settings.failsafe {
                info!("failsafe: skipping the chain, plain tmpfs overlay");
                Loaded::Chain(Ran::Nothing)
            } else {
                load_chain(&settings, &layers)
            };
            let programs = [as_cstr(&target), FALLBACKS[0], FALLBACKS[1]];
            let switched = match loaded {
                Loaded::Chain(ran) => layers.switch_root(&programs, ran).map_err(|e| {
                    error!("switching root failed ({e}); trying a plain tmpfs overlay")
                }),
                Loaded::Lost => {
                    error!("the layers do not hold the chain; trying a plain tmpfs overlay");
                    Err(())
                }
            };
            match switched {
                Ok(()) => {
                    ROM_BELOW.store(true, Ordering::Relaxed);
                    info!("root switched to the overlay")
                }
                // The next rung down: the read-only root with empty layers over it.
                Err(()) => {
                    let plain = layers
                        .reset_snapshot()
                        .and_then(|()| layers.reset_volatile())
                        .and_then(|()| layers.switch_root(&programs, Ran::Nothing));
                    match plain {
                        Ok(()) => {
                            ROM_BELOW.store(true, Ordering::Relaxed);
                            info!("root switched to a plain tmpfs overlay: the chain is not booted")
                        }
                        Err(e) => {
                            error!(
                                "switching root failed ({e}); running {} on the read-only root",
                                settings.init
                            );
                            layers.abandon();
                        }
                    }
                }
            }
        }
        Err(e) => error!(
            "layer setup failed ({e}); running {} on the read-only root",
            settings.init
        ),
    }
    exec_target(&args, as_cstr(&target))
}

fn exec_target(args: &rt::Args, target: &CStr) -> ! {
    // Memory is what a small router lacks; record what the boot path took.
    let mut status = [0u8; 2048];
    if let Some(hwm) = read_file("/proc/self/status", &mut status)
        .split('\n')
        .find_map(|l| l.strip_prefix("VmHWM:"))
    {
        // "VmHWM:\t     272 kB": ASCII blanks (str::trim would pull in Unicode's table).
        info!("peak RSS {}", hwm.trim_matches([' ', '\t']));
    }
    info!("exec {}", target.to_str().unwrap_or("?"));
    exec_or_fall_back(args, target)
}

/// Last resorts after the target: procd's usual path, then a shell on the console. Exiting
/// PID 1 panics the kernel, so every program that might give the admin a way in is tried first.
const FALLBACKS: [&CStr; 2] = [DEFAULT_TARGET, c"/bin/sh"];

/// The kernel starts init with this umask; snapinit clears it for the replay only.
const TARGET_UMASK: u32 = 0o022;

/// Set once the overlay is `/` with the read-only root at /rom, the last place to run from.
static ROM_BELOW: AtomicBool = AtomicBool::new(false);

fn exec_or_fall_back(args: &rt::Args, target: &CStr) -> ! {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(TARGET_UMASK as _));
    exec_each(args, target);
    // The switch checks that a program is there, not that it runs: a snapshot may have taken
    // its interpreter or a library. The read-only root still has them.
    if ROM_BELOW.load(Ordering::Relaxed) {
        error!("nothing runs on the overlay: trying the read-only root (/rom), without the chain");
        match mounts::sys::chroot("/rom").and_then(|()| rustix::process::chdir(c"/")) {
            Ok(()) => {
                // What a shell there needs to be of use: /proc, /dev (the console).
                mounts::api_filesystems();
                exec_each(args, target);
            }
            Err(e) => error!("chroot /rom: {e}"),
        }
    }
    // Exiting would panic the kernel. Staying up keeps the kernel log readable, and a watchdog
    // armed for a trial boot still resets the unit: its next boot spends the next trial.
    error!(
        "nothing left to run: PID 1 waits here instead of exiting, which would panic the kernel"
    );
    park()
}

/// Execs the target, then each fallback; returns when none could be run.
fn exec_each(args: &rt::Args, target: &CStr) {
    let e = args.exec(target);
    error!("exec {} failed: {e}", target.to_str().unwrap_or("?"));
    for path in FALLBACKS.iter().filter(|p| **p != target) {
        let e = args.exec(path);
        error!("exec {} failed: {e}", path.to_str().unwrap_or("?"));
    }
}

/// PID 1's idle loop when nothing could be run: it never returns, and reaps whatever is
/// reparented to it (any process whose parent dies).
fn park() -> ! {
    let minute = rustix::thread::Timespec {
        tv_sec: 60,
        tv_nsec: 0,
    };
    loop {
        // Blocks while there are children; with none (ECHILD) it would spin.
        if rustix::process::wait(rustix::process::WaitOptions::empty()).is_err() {
            let _ = rustix::thread::nanosleep(&minute);
        }
    }
}

fn parse_settings(text: &str) -> Settings {
    // Pick the log destination first so the warnings land there too.
    kmsg::use_console(cmdline::parse(text, |_| {}).log_console);
    cmdline::parse(text, |w| warn!("cmdline: {w}"))
}

/// Reads a small file (e.g. /proc/cmdline) as text, each sequence that is not UTF-8 read as
/// '?' (warned about); empty on any failure.
fn read_file<'a>(path: &str, buf: &'a mut [u8]) -> &'a str {
    let len = read_bytes(path, buf).len();
    let (text, replaced) = cmdline::repair_utf8(&mut buf[..len]);
    if replaced > 0 {
        warn!("{path}: {replaced} byte sequence(s) that are not UTF-8 read as '?'");
    }
    text
}

/// Reads a small file into `buf`; empty on any failure.
fn read_bytes<'a>(path: &str, buf: &'a mut [u8]) -> &'a [u8] {
    let Ok(fd) = snapinit::cpath::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) else {
        warn!("cannot open {path}");
        return &[];
    };
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    &buf[..len]
}

/// Finds the chain and replays it. Degradation: a snapshot that fails replay
/// ends the chain there (the layer is rebuilt from the good prefix, and no
/// volatile is applied: it belongs to the full chain); a volatile that fails
/// falls back to the next candidate, then to none; no partition or an
/// unusable chain leaves both layers empty.
///
/// What the replay left in the layers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Loaded {
    /// The chain as read, a good prefix of it, or nothing; which, for the boot record.
    Chain(Ran),
    /// The layers could not be made to hold it (`Marks::lost`): the next rung down.
    Lost,
}

impl Loaded {
    /// No chain to run: none found, an empty one, another filesystem.
    const NO_CHAIN: Loaded = Loaded::Chain(Ran::Chain);
    /// A chain there that could not be read: the layers are empty, and the boot record
    /// says the chain did not boot.
    const UNREAD: Loaded = Loaded::Chain(Ran::Nothing);
}

fn load_chain(settings: &Settings, layers: &Layers) -> Loaded {
    if let Some(dev) = &settings.device {
        match DeviceFlash::open(dev.as_str(), settings.erase_size, false) {
            Ok(flash) => {
                info!("chain device {dev} (erase size {})", flash.erase_size());
                return boot_from(flash, dev.as_str(), layers, settings);
            }
            Err(e) => warn!("cannot open {dev}: {e}; plain tmpfs overlay"),
        }
        return Loaded::UNREAD;
    }
    let mut buf = [0u8; 4096];
    // Bytes: a partition name that is not UTF-8 must not hide the others (nor become '?').
    let mtd = read_bytes("/proc/mtd", &mut buf);
    // NOR units: an MTD partition; NAND units: a UBI volume.
    let Some(path) = snapinit::locate::partition(mtd, &settings.part) else {
        warn!(
            "no MTD partition and no UBI volume {}; plain tmpfs overlay",
            Quoted(&settings.part)
        );
        return Loaded::NO_CHAIN;
    };
    match DeviceFlash::open(&path, settings.erase_size, false) {
        Ok(flash) => {
            match flash.medium() {
                Medium::Ubi { .. } => info!(
                    "chain on {path} ({}, UBI volume, LEB {})",
                    settings.part,
                    flash.erase_size()
                ),
                _ => info!("chain on {path} ({})", settings.part),
            }
            boot_from(flash, path.as_str(), layers, settings)
        }
        Err(e) => {
            warn!("cannot open {path}: {e}; plain tmpfs overlay");
            Loaded::UNREAD
        }
    }
}

/// Replays the chain on `flash`, then spends what the boot owes its trial marks (on a write
/// descriptor of its own: the read one is closed first).
fn boot_from(mut flash: DeviceFlash, path: &str, layers: &Layers, settings: &Settings) -> Loaded {
    let booted = replay_chain(&mut flash, layers, settings.reserve_kib);
    let (lost, ran) = (booted.lost, booted.ran);
    let corrected = flash.ecc_corrected();
    if corrected > 0 {
        warn!("the flash's ECC corrected {corrected} bit flip(s) while reading the chain: the part is wearing");
    }
    drop(flash);
    // A partition that could not be read has no trial marks to spend.
    let trial_not_run = trial::on_boot(booted, path, settings);
    if lost {
        Loaded::Lost
    } else if trial_not_run {
        Loaded::Chain(Ran::TrialNotRun)
    } else {
        Loaded::Chain(ran)
    }
}

/// Bytes per flash read when hashing and per file write when replaying.
const IO_CHUNK: usize = 64 * 1024;

/// Replays the chain; says which trial marks the boot must spend (`trial::on_boot`).
/// `reserve_kib`: `snapinit.reserve` (`Layers::cap_volatile`).
fn replay_chain(
    flash: &mut DeviceFlash,
    layers: &Layers,
    reserve_kib: Option<u32>,
) -> trial::Marks {
    let mut marks = trial::Marks::default();
    // Headers only: payloads are read by `replay_into`.
    let mut buf = [0u8; 4096];
    // Payloads are hashed while they are replayed (`replay_into`): one read of the flash.
    let view = read_chain_with(flash, &mut buf, Volatiles::Deferred);
    info!(
        "chain: {}, {} snapshot(s), {} volatile candidate(s)",
        view.status.name(),
        view.snapshots.len(),
        view.unverified_volatiles.len(),
    );
    if let End::Rejected(r) = view.end {
        warn!(
            "block at {:#x} rejected ({}): {}; the chain ends before it",
            r.offset,
            r.kind.map_or("unknown type", |k| if k == Kind::Snapshot {
                "snapshot"
            } else {
                "volatile"
            }),
            r.reason
        );
    }
    for r in &view.rejected_volatiles {
        warn!("volatile at {:#x} rejected: {}", r.offset, r.reason);
    }
    match view.status {
        Status::Chain => {}
        Status::Unformatted(fs) => {
            warn!("the partition holds {fs}, not a snapinit chain; plain tmpfs overlay");
            return marks;
        }
        Status::Unreadable => {
            warn!("the partition cannot be read; plain tmpfs overlay");
            marks.ran = Ran::Nothing;
            return marks;
        }
        Status::Empty => {
            info!("empty chain: nothing to replay; plain tmpfs overlay");
            // A linked block refused for its geometry (a chain written for another erase size
            // than this boot's, which the tool reads with the erase size its headers record) is
            // a chain there that this boot does not run, as one that cannot be read.
            let geometry = |r: &snapinit::chain::Rejected| {
                r.kind.is_some() && r.reason == snapinit::chain::Reject::Geometry
            };
            if matches!(view.end, End::Rejected(r) if geometry(&r))
                || view.rejected_volatiles.iter().any(geometry)
            {
                marks.ran = Ran::Nothing;
            }
            return marks;
        }
    }
    // The read-only root lies below every layer; the snapshot layer below the volatile.
    let rom = open_rom();
    let rom_lower = rom.as_ref().map(|fd| Lower {
        fd: fd.as_fd(),
        blocks: false,
    });
    let rom_lower = rom_lower.as_slice();
    // A snapshot whose allowed boots are all spent, unconfirmed, is rolled back by this boot:
    // the chain ends below it, and the volatile (linked above it) is not applied.
    let mut snaps = &view.snapshots[..];
    let mut volatiles = &view.unverified_volatiles[..];
    if let Some(pos) = snaps.iter().position(|b| b.header.trial_spent()) {
        warn!(
            "snapshot {} is on trial, every allowed boot spent without a confirmation: rolled back to the {pos} snapshot(s) below it",
            snaps[pos].header.fields.seq
        );
        let _ = marks.rolled_back.push(snaps[pos]);
        snaps = &snaps[..pos];
        volatiles = &[];
    }
    let on_trial = |b: &&Block| matches!(b.header.trial(), Trial::OnTrial { .. });
    // A block on trial this boot tried and could not lay out (`Replayed::Refused`): when no
    // block on trial runs, the boot spends its mark, so that it rolls back after its boots
    // like any trial nothing confirms, instead of staying on trial for good.
    let mut refused: Option<Block> = None;
    let mut good = snaps.len();
    for (i, block) in snaps.iter().enumerate() {
        let replayed = replay_into(flash, block, &layers.snapshot(), rom_lower, "snapshot");
        if replayed != Replayed::Done {
            if replayed == Replayed::Refused && on_trial(&block) {
                refused = Some(*block);
            }
            // A snapshot intact on flash and not laid out is in the chain the tool reads: the
            // boot ran less of it. One whose payload fails its hash ends the tool's chain
            // there too (and takes the volatile above it), so the boot ran all of that.
            if replayed == Replayed::Refused {
                marks.ran = Ran::Part;
            }
            good = i;
            break;
        }
    }
    if good < snaps.len() {
        warn!("snapshot chain ends at #{good}: rebuilding the layer from the {good} good one(s)");
        if let Err(e) = layers.reset_snapshot() {
            error!("resetting the snapshot layer: {e}");
            return marks.lost(refused);
        }
        for block in &snaps[..good] {
            if replay_into(flash, block, &layers.snapshot(), rom_lower, "snapshot")
                != Replayed::Done
            {
                warn!("replay of a good snapshot failed again: the layers cannot hold the chain");
                return marks.lost(refused);
            }
        }
        // The volatile is linked to the last snapshot: over a shorter chain
        // it would show neither the old state nor the new (docs/FORMAT.md
        // skips it for a snapshot that fails verification, for the same
        // reason).
        if !volatiles.is_empty() {
            warn!("the volatile belongs to the full chain: not applying it");
        }
        // The running system's changes get what the good prefix left free, as over the whole
        // chain: a snapshot refused for want of RAM left little.
        layers.cap_volatile(reserve_kib);
        marks.on_trial = snaps[..good].iter().find(on_trial).copied();
        marks.tried(refused);
        return marks;
    }
    // What the volatile layer may take, the saved changes and the running system's, is what
    // the snapshots left free (ram.rs).
    layers.cap_volatile(reserve_kib);
    let snapshot_layer = open_dir(&layers.snapshot());
    let mut lowers: heapless::Vec<Lower<'_>, 2> = heapless::Vec::new();
    if let Some(fd) = &snapshot_layer {
        let _ = lowers.push(Lower {
            fd: fd.as_fd(),
            blocks: true,
        });
    }
    let _ = lowers.extend_from_slice(rom_lower);
    // Newest first; each copy is hashed as it is replayed, the next one tried if it fails.
    for (i, block) in volatiles.iter().enumerate() {
        if block.header.trial_spent() {
            warn!(
                "the {} copy of the saved changes is on trial, every allowed boot spent without a confirmation: rolled back",
                copy_name(i)
            );
            let _ = marks.rolled_back.push(*block);
            continue;
        }
        // Each copy on a fresh layer (a failed one's is replaced): the record's page first.
        layers.hold_record();
        let replayed = replay_into(flash, block, &layers.upper(), &lowers, "volatile");
        if replayed == Replayed::Done {
            info!("the saved changes are in place ({} copy)", copy_name(i));
            marks.on_trial = snaps.iter().chain(Some(block)).find(on_trial).copied();
            marks.tried(refused);
            return marks;
        }
        // Intact on flash and not laid out: the tool reads it as the chain's volatile.
        if replayed == Replayed::Refused {
            marks.ran = Ran::VolatileLeft;
        }
        if replayed == Replayed::Refused && refused.is_none() && on_trial(&block) {
            refused = Some(*block);
        }
        warn!(
            "the {} copy of the saved changes failed; trying the next",
            copy_name(i)
        );
        if let Err(e) = layers.reset_volatile() {
            error!("resetting the volatile layer: {e}");
            return marks.lost(refused);
        }
    }
    info!("no volatile state");
    marks.on_trial = snaps.iter().find(on_trial).copied();
    marks.tried(refused);
    marks
}

/// The read-only root as overlayfs sees it below the layers: a clone of its mount without
/// the mounts on it (the scaffold on /tmp, proc, sysfs and devtmpfs), whose roots would
/// otherwise lend their metadata to a directory a payload leaves out. `/` itself when the
/// kernel cannot clone it (no open_tree before Linux 5.2).
fn open_rom() -> Option<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    match rustix::mount::open_tree(rustix::fs::CWD, c"/", flags) {
        Ok(fd) => Some(fd),
        Err(_) => open_dir("/"),
    }
}

fn open_dir(dir: &str) -> Option<OwnedFd> {
    match snapinit::cpath::open(
        dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => Some(fd),
        Err(e) => {
            error!("open {dir}: {e}");
            None
        }
    }
}

/// How a block's replay ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replayed {
    Done,
    /// Its payload is what was written, but this boot could not lay it out (no room in RAM,
    /// past its data bound, no layer directory): the block was tried and did not run.
    Refused,
    /// Its payload is not what was written: data to salvage, not a trial that failed.
    Corrupt,
}

/// Replays one block into the layer at `dir`; every failure is logged. `lowers` are the
/// layers below it, whose directories lend their metadata to parents the payload omits.
fn replay_into(
    flash: &mut DeviceFlash,
    block: &Block,
    dir: &str,
    lowers: &[Lower<'_>],
    what: &str,
) -> Replayed {
    let Some(layer) = open_dir(dir) else {
        return Replayed::Refused;
    };
    let seq = block.header.fields.seq;
    let mut buf = [0u8; IO_CHUNK];
    // Hashed in the same pass that replays it: the flash is read once. The layer is private
    // until the overlay is mounted, and a block whose hash does not match is discarded with
    // everything above it, so nothing unverified is ever part of the booted root.
    let payload = Hashing::new(PayloadReader::new(flash, block));
    let gzip = block.header.fields.compression == Compression::Gzip;
    let mut tar = TarReader::new(TarSource::new(payload, gzip), block.header.data_limit());
    // PID 1 cleared its umask first thing (`snapinit_main`); the target gets TARGET_UMASK.
    let mut target = DirLayer::new(layer.as_fd(), lowers, 0);
    let replayed = replay(&mut tar, &mut target, &mut buf);
    let hashed = tar.get_ref().payload();
    let complete = hashed.get_ref().remaining() == 0;
    let digest = hashed.digest();
    // A replay that stopped early read part of the payload: hash all of it, so that corruption
    // is reported as such rather than as whatever the parser tripped over.
    let hash_ok = if complete {
        digest == block.header.fields.payload_sha256
    } else {
        verify(flash, block, &mut buf).is_ok()
    };
    match replayed {
        _ if !hash_ok => {
            error!(
                "{} at {:#x}: payload SHA-256 mismatch: discarded (the flash no longer holds what was written)",
                Named(what, seq),
                block.offset
            );
            Replayed::Corrupt
        }
        Ok(s) => {
            info!(
                "restored {} from {:#x}: {} entries, {} bytes of file data",
                Named(what, seq),
                block.offset,
                s.entries,
                s.bytes
            );
            Replayed::Done
        }
        Err(e) => {
            error!(
                "{} at {:#x}: replay failed: {e}",
                Named(what, seq),
                block.offset
            );
            Replayed::Refused
        }
    }
}

fn copy_name(i: usize) -> &'static str {
    if i == 0 {
        "newest"
    } else {
        "older"
    }
}

/// A block in the log's words: "snapshot 2", "the saved changes (volatile above snapshot 2)".
struct Named<'a>(&'a str, u32);

impl core::fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 == "volatile" {
            write!(f, "the saved changes (volatile above snapshot {})", self.1)
        } else {
            write!(f, "{} {}", self.0, self.1)
        }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    error!("internal error: {info}");
    let sp = STACK.load(Ordering::Relaxed);
    let target = TARGET.load(Ordering::Relaxed);
    if !sp.is_null() {
        // SAFETY: sp is the initial stack pointer stored at entry; target
        // points into snapinit_main's frame, which is never popped.
        let args = unsafe { rt::Args::from_stack(sp) };
        let path = if target.is_null() {
            DEFAULT_TARGET
        } else {
            unsafe { CStr::from_ptr(target.cast()) }
        };
        exec_or_fall_back(&args, path)
    }
    rt::exit(1)
}
