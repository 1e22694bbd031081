//! The boot sequence, in order:
//!
//! 1. Refuse to run unless PID 1 (it rearranges the mount table).
//! 2. Settings: `SNAPINIT_CMDLINE` from the environment replaces
//!    /proc/cmdline when set. The kernel turns unknown `key=value` boot
//!    parameters into init's environment, so this grants nothing beyond what
//!    the command line already can; tests use it (with `snapinit.root=`) to
//!    boot a prepared root inside a PID+mount namespace.
//! 3. Open /dev/kmsg if there already; mount /proc, /sys, /dev if absent;
//!    open /dev/kmsg (log lines before that go to stderr, the console).
//! 4. Scaffold + layer tmpfs mounts (mounts.rs).
//! 5. Unless failsafe: read and verify the chain (read-only, never writes
//!    flash), replay snapshots into the snapshot layer and the best volatile
//!    into the upper layer, degrading as described at `load_chain`.
//! 6. Overlay, switch root, exec the target with the kernel's argv/envp.
//!    Any failure before the switch execs the target on the read-only root.

pub mod cmdline;
pub mod fs;
pub mod kmsg;
mod mem;
pub mod mounts;
pub mod replay;
pub mod rt;

use core::ffi::CStr;
use core::sync::atomic::{AtomicPtr, Ordering};

use rustix::fd::AsFd;
use snapinit::chain::{read_chain_with, verify, Block, End, Status, Volatiles};
use snapinit::device::DeviceFlash;
use snapinit::flash::Geometry;
use snapinit::gzip::{GzipError, GzipReader};
use snapinit::header::Compression;
use snapinit::header::Kind;
use snapinit::payload::{PayloadReader, ReadFailed};
use snapinit::tar::TarReader;

use crate::{error, info, warn};
use cmdline::Settings;
use mounts::Layers;

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
    STACK.store(sp.cast_mut(), Ordering::Relaxed);
    // SAFETY: boot/<arch>.s passes the kernel's initial stack pointer.
    let args = unsafe { rt::Args::from_stack(sp) };
    // Archive modes must land exactly as recorded.
    rustix::process::umask(rustix::fs::Mode::empty());

    if rustix::process::getpid().as_raw_nonzero().get() != 1 {
        kmsg::use_console(true);
        error!("not PID 1: refusing to rearrange this system's mounts");
        rt::exit(1);
    }

    let env_cmdline = args.env("SNAPINIT_CMDLINE");
    let mut proc_buf = [0u8; 4096];
    let mut settings = Settings::default();
    if let Some(c) = env_cmdline {
        settings = parse_settings(c);
        if let Some(root) = &settings.root {
            // Tests: make the prepared directory the read-only root.
            if let Err(e) =
                rustix::process::chroot(root.as_str()).and_then(|()| rustix::process::chdir("/"))
            {
                error!("chroot {root}: {e}");
            }
        }
    }
    // The kernel may have mounted devtmpfs already (DEVTMPFS_MOUNT): then
    // the mount lines reach the kernel log too, not only the console.
    kmsg::open();
    mounts::api_filesystems();
    kmsg::open();
    if env_cmdline.is_none() {
        let text = read_file("/proc/cmdline", &mut proc_buf);
        settings = parse_settings(text);
    } else {
        info!("settings from SNAPINIT_CMDLINE");
    }
    let target = c_path(&settings.init);
    TARGET.store(target.as_ptr().cast_mut(), Ordering::Relaxed);
    info!("target {}", settings.init);

    match Layers::create() {
        Ok(layers) => {
            if settings.failsafe {
                info!("failsafe: skipping the chain, plain tmpfs overlay");
            } else {
                load_chain(&settings, &layers);
            }
            match layers.switch_root() {
                Ok(()) => info!("root switched to the overlay"),
                Err(e) => {
                    error!(
                        "switching root failed ({e}); running {} on the read-only root",
                        settings.init
                    );
                    layers.abandon();
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
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
    {
        info!("peak RSS {}", hwm.trim_start_matches("VmHWM:").trim());
    }
    info!("exec {}", target.to_str().unwrap_or("?"));
    exec_or_fall_back(args, target)
}

/// Last resorts after the target: procd's usual path, then a shell on the console. Exiting
/// PID 1 panics the kernel, so every program that might give the admin a way in is tried first.
const FALLBACKS: [&CStr; 2] = [DEFAULT_TARGET, c"/bin/sh"];

fn exec_or_fall_back(args: &rt::Args, target: &CStr) -> ! {
    let e = args.exec(target);
    error!("exec {} failed: {e}", target.to_str().unwrap_or("?"));
    for path in FALLBACKS.iter().filter(|p| **p != target) {
        let e = args.exec(path);
        error!("exec {} failed: {e}", path.to_str().unwrap_or("?"));
    }
    error!("nothing left to run: PID 1 exits");
    rt::exit(1)
}

fn parse_settings(text: &str) -> Settings {
    // Pick the log destination first so the warnings land there too.
    kmsg::use_console(cmdline::parse(text, |_| {}).log_console);
    cmdline::parse(text, |w| warn!("cmdline: {w}"))
}

/// Reads a small file (e.g. /proc/cmdline) as text; empty on any failure.
fn read_file<'a>(path: &str, buf: &'a mut [u8]) -> &'a str {
    let Ok(fd) = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) else {
        warn!("cannot open {path}");
        return "";
    };
    let mut len = 0;
    while len < buf.len() {
        match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    core::str::from_utf8(&buf[..len]).unwrap_or("")
}

/// Finds the chain and replays it. Degradation: a snapshot that fails replay
/// ends the chain there (the layer is rebuilt from the good prefix, and no
/// volatile is applied: it belongs to the full chain); a volatile that fails
/// falls back to the next candidate, then to none; no partition or an
/// unusable chain leaves both layers empty.
fn load_chain(settings: &Settings, layers: &Layers) {
    if let Some(dev) = &settings.device {
        match DeviceFlash::open(dev.as_str(), settings.erase_size, false) {
            Ok(mut flash) => {
                info!("chain device {dev} (erase size {})", flash.erase_size());
                replay_chain(&mut flash, layers);
            }
            Err(e) => warn!("cannot open {dev}: {e}; plain tmpfs overlay"),
        }
        return;
    }
    let mut buf = [0u8; 4096];
    let mtd = read_file("/proc/mtd", &mut buf);
    let Some(index) = snapinit::mtd::find_partition(mtd.as_bytes(), &settings.part) else {
        warn!(
            "no MTD partition {:?}; plain tmpfs overlay",
            settings.part.as_str()
        );
        return;
    };
    let mut path: heapless::String<24> = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(&mut path, format_args!("/dev/mtd{index}"));
    match DeviceFlash::open_mtd(&path, false) {
        Ok(mut flash) => {
            info!("chain on {path} ({})", settings.part);
            replay_chain(&mut flash, layers);
        }
        Err(e) => warn!("cannot open {path}: {e}; plain tmpfs overlay"),
    }
}

fn replay_chain(flash: &mut DeviceFlash, layers: &Layers) {
    let mut buf = [0u8; 4096];
    // The older volatile copy is hashed only if the current one fails: it is a full second
    // read of the largest payload on most boots.
    let view = read_chain_with(flash, &mut buf, Volatiles::VerifyCurrent);
    info!(
        "chain: {:?}, {} snapshot(s), {} volatile candidate(s)",
        view.status,
        view.snapshots.len(),
        view.volatiles.len() + view.unverified_volatiles.len(),
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
            return;
        }
        Status::Unreadable => {
            warn!("the partition cannot be read; plain tmpfs overlay");
            return;
        }
        Status::Empty => {
            info!("empty chain: nothing to replay; plain tmpfs overlay");
            return;
        }
    }
    let snaps = &view.snapshots[..];
    let mut good = snaps.len();
    for (i, block) in snaps.iter().enumerate() {
        if !replay_into(flash, block, &layers.snapshot(), "snapshot") {
            good = i;
            break;
        }
    }
    if good < snaps.len() {
        warn!("snapshot chain ends at #{good}: rebuilding the layer from the {good} good one(s)");
        if let Err(e) = layers.reset_snapshot() {
            error!("resetting the snapshot layer: {e}");
            return;
        }
        for block in &snaps[..good] {
            if !replay_into(flash, block, &layers.snapshot(), "snapshot") {
                warn!("replay of a good snapshot failed again; leaving the snapshot layer empty");
                let _ = layers.reset_snapshot();
                break;
            }
        }
        // The volatile is linked to the last snapshot: over a shorter chain
        // it would show neither the old state nor the new (docs/FORMAT.md
        // skips it for a snapshot that fails verification, for the same
        // reason).
        if view.volatile().is_some() {
            warn!("the volatile belongs to the full chain: not applying it");
        }
        return;
    }
    // Older copies were not hashed while reading the chain: each is verified before use.
    let verified = view.volatiles.iter().map(|b| (b, true));
    let older = view.unverified_volatiles.iter().map(|b| (b, false));
    for (i, (block, hashed)) in verified.chain(older).enumerate() {
        if !hashed {
            if let Err(r) = verify(flash, block, &mut buf) {
                warn!(
                    "volatile candidate #{i} at {:#x} rejected: {r}",
                    block.offset
                );
                continue;
            }
        }
        if replay_into(flash, block, &layers.upper(), "volatile") {
            info!("volatile candidate #{i} in place");
            return;
        }
        warn!("volatile candidate #{i} failed; resetting the volatile layer");
        if let Err(e) = layers.reset_volatile() {
            error!("resetting the volatile layer: {e}");
            return;
        }
    }
    info!("no volatile state");
}

/// Replays one block into the layer at `dir`; false (logged) on any failure.
fn replay_into(flash: &mut DeviceFlash, block: &Block, dir: &str, what: &str) -> bool {
    let layer = match rustix::fs::open(
        dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            error!("open {dir}: {e}");
            return false;
        }
    };
    let seq = block.header.fields.seq;
    let mut buf = [0u8; 4096];
    let gz = block.header.fields.compression == Compression::Gzip;
    // Pass one creates entries; pass two re-reads the payload for dir mtimes.
    for pass in 0..2 {
        let payload = PayloadReader::new(flash, block);
        let source = if gz {
            Source::Gzip(GzipReader::new(payload))
        } else {
            Source::Plain(payload)
        };
        if let Err(()) = run_pass(layer.as_fd(), TarReader::new(source), &mut buf, pass) {
            error!(
                "{what} block seq {seq} at {:#x}: replay failed",
                block.offset
            );
            return false;
        }
    }
    info!("{what} block seq {seq} at {:#x} replayed", block.offset);
    true
}

/// A block's payload as tar bytes, plain or gunzipped. One type for both, so
/// the tar parser and the replay are compiled once, not once per reader
/// (about 11 KiB of the binary). No heap to box the gzip state into; a plain
/// payload leaves the unused part of the frame untouched.
#[allow(clippy::large_enum_variant)]
enum Source<'a> {
    Plain(PayloadReader<'a, DeviceFlash>),
    Gzip(GzipReader<PayloadReader<'a, DeviceFlash>>),
}

/// Reading a payload failed: the flash, or the gzip layer above it.
enum SourceError {
    Flash(ReadFailed),
    Gzip(GzipError<ReadFailed>),
}

impl core::fmt::Debug for SourceError {
    // Replay errors print their cause with `{:?}`: give the readable text.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Flash(e) => core::fmt::Display::fmt(e, f),
            Self::Gzip(e) => core::fmt::Display::fmt(e, f),
        }
    }
}

impl embedded_io::Error for SourceError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::InvalidData
    }
}

impl embedded_io::ErrorType for Source<'_> {
    type Error = SourceError;
}

impl embedded_io::Read for Source<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        match self {
            Self::Plain(r) => r.read(buf).map_err(SourceError::Flash),
            Self::Gzip(r) => r.read(buf).map_err(SourceError::Gzip),
        }
    }
}

fn run_pass(
    layer: rustix::fd::BorrowedFd<'_>,
    mut tar: TarReader<Source<'_>>,
    buf: &mut [u8],
    pass: u32,
) -> Result<(), ()> {
    if pass == 0 {
        match replay::apply(layer, &mut tar, buf) {
            Ok(s) => {
                info!("  {} entries, {} bytes", s.entries, s.bytes);
                Ok(())
            }
            Err(e) => {
                error!("  {e}");
                Err(())
            }
        }
    } else {
        replay::fix_dir_times(layer, &mut tar).map_err(|e| error!("  {e}"))
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
