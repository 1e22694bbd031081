//! Trial boots (docs/FORMAT.md, "Trial boots"): the one flash write the boot path makes.
//!
//! A block on trial is booted a bounded number of times until `snapshot confirm` marks it good.
//! Each boot of it spends one trial mark, before the target runs: a single program of one byte
//! from 0xFF to 0x00, which cannot tear and only clears bits. When the marks are spent, the
//! chain walk leaves the block out (with everything above it) and the unit boots the state
//! below it. A power cut just before the program loses nothing, just after it loses one trial:
//! never a trial gained.
//!
//! A unit that hangs before anything could confirm must still come back: when a block is on
//! trial and a watchdog exists, it is armed here and left running (closed without the magic
//! character): whatever pets it later (procd, `snapshot health`) takes it over; if nothing
//! does, the unit reboots and spends the next trial.

use snapinit::chain::Block;
use snapinit::device::DeviceFlash;
use snapinit::header::Kind;
use snapinit::trial::spend;

use super::cmdline::Settings;
use super::mounts::Ran;
use crate::{error, info, warn};

/// The trial marks a boot spends: one of the lowest booted block on trial (else of the block
/// on trial it tried and could not replay), and the roll-back mark of every block the boot
/// left out because its allowed boots were spent.
#[derive(Default)]
pub struct Marks {
    pub on_trial: Option<Block>,
    pub rolled_back: heapless::Vec<Block, 3>,
    /// `on_trial` is a block the boot tried but could not lay out: it spends a trial all
    /// the same, and the boot record tells `snapshot health` that it did not run.
    pub not_run: bool,
    /// The layers could not be made to hold the chain or a good prefix of it (a layer reset
    /// failed, or the good prefix failed its second replay): the boot takes the next rung
    /// down, and its record says the chain did not boot.
    pub lost: bool,
    /// What the layers hold of the chain the tool reads, for the boot record: all of it, less
    /// (a snapshot or the volatile intact on flash that could not be laid out), or nothing
    /// (the partition could not be read). `on_boot` may still make it `TrialNotRun`.
    pub ran: Ran,
}

impl Marks {
    /// The layers do not hold the chain (`lost`); a block on trial that `refused` to replay
    /// still spends its mark.
    pub fn lost(mut self, refused: Option<Block>) -> Self {
        self.on_trial = None;
        self.tried(refused);
        self.lost = true;
        self
    }

    /// With no booted block on trial to spend, the one on trial that `refused` to replay.
    pub fn tried(&mut self, refused: Option<Block>) {
        if self.on_trial.is_none() && refused.is_some() {
            self.on_trial = refused;
            self.not_run = true;
        }
    }
}

fn name(block: &Block) -> (&'static str, u32) {
    let f = &block.header.fields;
    match f.kind {
        Kind::Snapshot => ("snapshot", f.seq),
        Kind::Volatile => ("the saved changes above snapshot", f.seq),
    }
}

/// Spends the boot's trial marks, then arms the watchdog for a boot on trial. Returns whether
/// the boot record must say that a block the flash shows on trial did not run (`not_run`, or a
/// roll-back mark that could not be written).
pub fn on_boot(marks: Marks, device: &str, settings: &Settings) -> bool {
    if marks.on_trial.is_none() && marks.rolled_back.is_empty() {
        return marks.not_run;
    }
    let mut flash = match DeviceFlash::open(device, settings.erase_size, true) {
        Ok(f) => f,
        Err(e) => {
            error!("cannot open {device} to spend trial marks: {e}");
            // The boot on trial goes on unmetered: a hang must still reset the board.
            if marks.on_trial.is_some() && settings.watchdog > 0 {
                arm_watchdog(settings.watchdog);
            }
            return marks.not_run || !marks.rolled_back.is_empty();
        }
    };
    // The roll-back mark tells everyone after this boot (the tool included) that the block is
    // out; until it lands, the next boot decides the same again. Meanwhile the flash shows it
    // on its last allowed boot, which to `snapshot health` is the boot running it: the record
    // must say it did not run, or passing checks of the state below would confirm it.
    let mut not_run = marks.not_run;
    for block in &marks.rolled_back {
        let (kind, seq) = name(block);
        if let Err(e) = spend(&mut flash, block) {
            error!("{kind} {seq}: its roll-back mark could not be written: {e}");
            not_run = true;
        }
    }
    let Some(block) = marks.on_trial else {
        return not_run;
    };
    let (kind, seq) = name(&block);
    match spend(&mut flash, &block) {
        Ok((used, budget)) if marks.not_run => warn!(
            "{kind} {seq} is on trial and could not be replayed: boot {} of {} spent on it; {} more and it is rolled back",
            u32::from(used),
            u32::from(budget),
            u32::from(budget - u16::from(used))
        ),
        // As u32: the one integer width PID 1 formats anyway (u8 and u16 Display cost code).
        Ok((used, budget)) => info!(
            "{kind} {seq} is on trial: boot {} of {}; `snapshot confirm` keeps it, else {} more boot(s) and it is rolled back",
            u32::from(used),
            u32::from(budget),
            u32::from(budget - u16::from(used))
        ),
        Err(e) => error!("{kind} {seq} is on trial but its trial mark could not be spent: {e}"),
    }
    if settings.watchdog > 0 {
        arm_watchdog(settings.watchdog);
    }
    not_run
}

/// `WDIOC_SETTIMEOUT` and `WDIOC_KEEPALIVE` from <linux/watchdog.h>.
const WDIOC_SETTIMEOUT: rustix::ioctl::Opcode = rustix::ioctl::opcode::read_write::<i32>(b'W', 6);
const WDIOC_KEEPALIVE: rustix::ioctl::Opcode = rustix::ioctl::opcode::read::<i32>(b'W', 5);

fn arm_watchdog(secs: u32) {
    let fd = match rustix::fs::open(
        c"/dev/watchdog",
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => {
            warn!("no watchdog to guard the trial boot (/dev/watchdog: {e})");
            return;
        }
    };
    let timeout = i32::try_from(secs).unwrap_or(i32::MAX);
    // SAFETY: both ioctls take a pointer to one int, which the Updater/Getter provide.
    let set = unsafe {
        rustix::ioctl::ioctl(
            &fd,
            rustix::ioctl::Updater::<WDIOC_SETTIMEOUT, i32>::new(&mut { timeout }),
        )
    };
    let _ =
        unsafe { rustix::ioctl::ioctl(&fd, rustix::ioctl::Getter::<WDIOC_KEEPALIVE, i32>::new()) };
    match set {
        Ok(()) => {
            info!("watchdog armed for {secs} s: a hang before the trial is confirmed reboots")
        }
        Err(e) => warn!("watchdog armed with its default timeout (setting {secs} s: {e})"),
    }
    // Closed without the magic 'V': the watchdog keeps running.
    drop(fd);
}
