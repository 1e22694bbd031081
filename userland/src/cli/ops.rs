//! The commands that write: save, commit, rollback, upgrade, convert, format, repair.
//!
//! Each one takes the exclusive lock, reads the chain, surveys the partition (refusing anything
//! that might be data), does every check and all the packing first, then runs exactly one writer
//! operation, which surveys again, erases the provable garbage and writes; the writer's own
//! checks come before its first erase. So a command that fails before that operation's commit
//! point leaves flash as it found it.

use super::device::Device;
use super::error::CliError;
use super::info::{effective_layout, foreign_name};
use super::record;
use super::tree::{self, Packed};
use super::{ui, Ctx};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use snapinit::chain::{ChainView, Foreign, Layout, Status};
use snapinit::flash::{DeviceError, ReadNorFlash};
use snapinit::header::{data_limit, span_blocks, Compression, HEADER_LEN, MAX_DATA_PER_FLASH_BYTE};
use snapshot::pack::PackError;
use snapshot::writer::survey::Suspect;
use snapshot::writer::{Outcome, WriteError, Writer};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Refuses a partition that is not a clean chain (or an empty one): a foreign filesystem, or
/// anything that might be data the chain does not show. Runs before any packing.
pub(super) fn require_chain(dev: &mut Device, view: &ChainView) -> Result<(), CliError> {
    match view.status {
        Status::Chain | Status::Empty => {}
        Status::Unformatted(fs) => return Err(CliError::Unformatted(fs)),
        Status::Unreadable => return Err(CliError::Unreadable),
    }
    let path = dev.path.clone();
    let (_, _, survey) = Writer::new(dev)
        .survey()
        .map_err(|e| CliError::write(&path, e))?;
    if !survey.suspects.is_empty() {
        return Err(CliError::Damaged(survey.suspects));
    }
    Ok(())
}

/// A new snapshot past the most the boot path reads is refused before any work.
pub(super) fn require_room(view: &ChainView) -> Result<(), CliError> {
    let have = view.snapshots.len();
    if have >= snapinit::chain::MAX_SNAPSHOTS {
        return Err(CliError::ChainFull {
            have,
            max: snapinit::chain::MAX_SNAPSHOTS,
        });
    }
    Ok(())
}

/// The most file data worth packing for this partition: no block spans more than the chain
/// region, nor unpacks to more than [`data_limit`] of what it spans (a plain tar holds its data
/// in its own bytes). Packing stops there, before reading the file that crosses it.
pub(super) fn max_data(view: &ChainView, gzip: bool) -> u64 {
    let (layout, _) = effective_layout(view);
    let region = u64::from(layout.backbuf_offset());
    if gzip {
        region.saturating_mul(MAX_DATA_PER_FLASH_BYTE)
    } else {
        region
    }
}

/// Packs `dir` for this partition, stopping at [`max_data`]. A plain payload holds its file data
/// in its own bytes: past the cap it cannot fit, a refusal for space (exit 6, as without the
/// cap), not one of the bound on file data (exit 8), which a plain payload always passes.
fn pack_capped(
    view: &ChainView,
    dir: &Path,
    gzip: bool,
    volatile: bool,
) -> Result<Packed, CliError> {
    match tree::pack(dir, gzip, Some(max_data(view, gzip))) {
        Err(
            e @ CliError::Pack {
                source: PackError::TooMuchData { total, .. },
                ..
            },
        ) if !gzip => {
            // The tar is longer than its file data: this is the least it needs.
            precheck(view, usize::try_from(total).unwrap_or(usize::MAX), volatile)?;
            Err(e)
        }
        packed => packed,
    }
}

/// [`precheck`], and the boot's bound on what a block may unpack to: a block past it would be
/// written only for the boot to refuse it.
pub(super) fn precheck_packed(
    view: &ChainView,
    dir: &Path,
    packed: &Packed,
    volatile: bool,
) -> Result<(), CliError> {
    precheck(view, packed.data.len(), volatile)?;
    let (layout, _) = effective_layout(view);
    let stored = packed.data.len() as u64;
    let limit = data_limit(stored, layout.erase_size);
    if packed.report.bytes_in > limit {
        return Err(CliError::TooMuchData {
            dir: dir.to_path_buf(),
            data: packed.report.bytes_in,
            limit,
            stored,
        });
    }
    Ok(())
}

/// The space checks the writer makes, made before anything (repair included) touches flash.
pub(super) fn precheck(view: &ChainView, len: usize, volatile: bool) -> Result<(), CliError> {
    let (layout, _) = effective_layout(view);
    let need = span_blocks(len as u64, layout.erase_size) * u64::from(layout.erase_size);
    if volatile && need > layout.backbuf_bytes() {
        return Err(CliError::VolatileTooLarge {
            need,
            backbuf: layout.backbuf_bytes(),
        });
    }
    let free = u64::from(layout.backbuf_offset()).saturating_sub(u64::from(view.next_offset));
    if need > free {
        return Err(CliError::NoSpace {
            what: if volatile { "volatile" } else { "snapshot" },
            need,
            free,
        });
    }
    Ok(())
}

/// What the writer refuses a snapshot over (a volatile on its last trial boot), refused here
/// first: before anything is packed or a package manager changes the running system.
fn require_trial_left(dev: &Device, view: &ChainView) -> Result<(), CliError> {
    Writer::<Device>::check_trial_left(view).map_err(|e| CliError::write(&dev.path, e))
}

/// Runs one writer operation with a progress bar sized for `bytes` of erase and program.
pub(super) fn write_op<T>(
    dev: &mut Device,
    bytes: u64,
    msg: &'static str,
    op: impl FnOnce(&mut Writer<'_, Device>) -> Result<T, WriteError<DeviceError>>,
) -> Result<T, CliError> {
    let path = dev.path.clone();
    dev.set_progress(ui::bar(bytes, msg));
    let res = op(&mut Writer::new(dev));
    dev.finish_progress();
    res.map_err(|e| CliError::write(&path, e))
}

/// Erases what a rollback dropped, so the space is free at once: housekeeping, said as such.
fn auto_repair(dev: &mut Device) -> Result<(), CliError> {
    let out = write_op(dev, 0, "freeing", |w| w.repair())?;
    if let Outcome::Repaired { erased_blocks } = out {
        if erased_blocks > 0 {
            println!("freed the space of what was dropped ({erased_blocks} erase block(s) erased)");
        }
    }
    Ok(())
}

/// The confirmed block `b` stores exactly `packed`'s bytes.
fn same_payload(dev: &mut Device, b: &snapinit::Block, packed: &Packed) -> bool {
    let f = &b.header.fields;
    if f.compression != packed.compression
        || f.payload_len != packed.data.len() as u64
        || !matches!(b.header.trial(), snapinit::header::Trial::Confirmed)
    {
        return false;
    }
    let mut stored = vec![0u8; packed.data.len()];
    snapinit::flash::ReadNorFlash::read(dev, b.offset + HEADER_LEN as u32, &mut stored).is_ok()
        && stored == packed.data
}

/// "snapshots 2 to 4", "snapshot 3", "no snapshot".
fn snapshots_in_words(from: usize, to: usize) -> String {
    match (from, to) {
        (f, t) if f > t => "no snapshot".to_string(),
        (f, t) if f == t => format!("snapshot {f}"),
        (f, t) => format!("snapshots {f} to {t}"),
    }
}

/// Bytes a block of `len` payload bytes erases and programs (for progress bars).
pub(super) fn block_cost(view: &ChainView, len: usize) -> u64 {
    let (layout, _) = effective_layout(view);
    span_blocks(len as u64, layout.erase_size) * u64::from(layout.erase_size)
        + (len + HEADER_LEN) as u64
}

/// Bytes a new snapshot costs on top of its own block: the writer first copies the volatile
/// copy that must outlive the write, when it lives in the slot the snapshot needs, to the back
/// buffer (`writer::evacuee`, the same rule).
pub(super) fn evacuation_cost(view: &ChainView) -> u64 {
    snapshot::writer::evacuee(view).map_or(0, |v| {
        block_cost(view, v.header.fields.payload_len as usize)
    })
}

pub(super) fn read_view(dev: &mut Device) -> ChainView {
    Writer::new(dev).read()
}

/// `save`, `commit` and `upgrade` store `upper` over the chain of `view` only when, for the
/// running system's upper dir, that is the chain this boot ran (record.rs).
fn require_as_booted(
    ctx: &Ctx,
    dev: &Device,
    view: &ChainView,
    upper: &Path,
) -> Result<(), CliError> {
    record::require_unmoved(
        ctx.boot_record(),
        &dev.path,
        upper,
        view.volatile().is_some(),
    )
}

/// Runs `write`, which may change the snapshots below the running upper dir (record.rs). The
/// move is noted in the boot record before it, and kept when the write went through and
/// `moves`, or when a failed write left snapshots other than `before`'s: a write can fail past
/// its commit point (a sync or the sealed mark after the header, an erase after a format's
/// rollback).
pub(super) fn moving<T>(
    ctx: &Ctx,
    dev: &mut Device,
    before: &ChainView,
    moves: bool,
    write: impl FnOnce(&mut Device) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let ahead = record::note_ahead(ctx.boot_record(), &dev.path);
    let out = write(dev);
    let ids =
        |v: &ChainView| -> Vec<[u8; 32]> { v.snapshots.iter().map(|b| b.header.hash).collect() };
    let moved = match &out {
        Ok(_) => moves,
        Err(_) => ahead.pending() && ids(&read_view(dev)) != ids(before),
    };
    ahead.settle(moved);
    out
}

/// Reboots into the new state, unless the chain is an image file: then this machine is not the
/// one that boots it (a workstation preparing an image must not go down).
pub(super) fn reboot(ctx: &Ctx) -> Result<(), CliError> {
    if let Some(path) = image_file(ctx) {
        println!(
            "not rebooting: {} is an image file, not this system's flash",
            path.display()
        );
        return Ok(());
    }
    println!("rebooting");
    match Command::new("reboot").status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(CliError::Reboot(format!("reboot exited with {s}"))),
        Err(e) => Err(CliError::Reboot(e.to_string())),
    }
}

/// The chain's path when it is an image file, which `reboot` does not reboot for.
pub(super) fn image_file(ctx: &Ctx) -> Option<std::path::PathBuf> {
    ctx.spec
        .resolve()
        .ok()
        .filter(|path| std::fs::metadata(path).is_ok_and(|m| m.is_file()))
}

fn describe(p: &Packed) -> String {
    format!(
        "{} entries, {} bytes stored ({}, {} bytes unpacked)",
        p.report.entries,
        p.data.len(),
        match p.compression {
            Compression::Gzip => "gzip",
            Compression::None => "plain tar",
        },
        p.unpacked_len
    )
}

pub fn save(ctx: &Ctx, upper: &Path, gzip: bool) -> Result<(), CliError> {
    let (_lock, mut dev) = ctx.open(true)?;
    let view = read_view(&mut dev);
    require_chain(&mut dev, &view)?;
    require_as_booted(ctx, &dev, &view, upper)?;
    let packed = pack_capped(&view, upper, gzip, true)?;
    // Writing the same bytes again would only wear the flash.
    match view.volatile() {
        Some(v) if ctx.trial == 0 && same_payload(&mut dev, v, &packed) => {
            println!("nothing changed since the last save: flash untouched");
            return Ok(());
        }
        None if packed.report.entries == 0 => {
            println!(
                "nothing to save: {} is empty and there is no volatile",
                upper.display()
            );
            return Ok(());
        }
        _ => {}
    }
    precheck_packed(&view, upper, &packed, true)?;
    let cost = block_cost(&view, packed.data.len());
    let out = write_op(&mut dev, cost, "saving", |w| {
        w.trial_budget = ctx.trial;
        w.save_volatile(&packed.payload())
    })?;
    let (layout, _) = effective_layout(&view);
    if let Outcome::Written { offset, .. } = out {
        let at = if offset == layout.backbuf_offset() {
            "back buffer"
        } else {
            "chain slot"
        };
        println!(
            "saved volatile at {offset:#x} ({at}): {}",
            describe(&packed)
        );
    }
    Ok(())
}

pub fn commit(ctx: &Ctx, upper: &Path, gzip: bool, do_reboot: bool) -> Result<(), CliError> {
    {
        let (_lock, mut dev) = ctx.open(true)?;
        let view = read_view(&mut dev);
        require_chain(&mut dev, &view)?;
        if tree::has_content(upper)? || view.volatile().is_some() {
            require_room(&view)?;
            require_trial_left(&dev, &view)?;
        }
        if tree::has_content(upper)? {
            require_as_booted(ctx, &dev, &view, upper)?;
            let packed = pack_capped(&view, upper, gzip, false)?;
            precheck_packed(&view, upper, &packed, false)?;
            let cost = block_cost(&view, packed.data.len()) + evacuation_cost(&view);
            let out = moving(ctx, &mut dev, &view, true, |dev| {
                write_op(dev, cost, "committing", |w| {
                    w.trial_budget = ctx.trial;
                    w.append_snapshot(&packed.payload())
                })
            })?;
            if let Outcome::Written { seq, offset, .. } = out {
                println!(
                    "snapshot {seq} written at {offset:#x} from {}: {}",
                    upper.display(),
                    describe(&packed)
                );
            }
        } else if let Some(v) = view.volatile() {
            let len = v.header.fields.payload_len as usize;
            if v.offset != view.next_offset {
                precheck(&view, len, false)?;
            }
            let cost = block_cost(&view, len) + evacuation_cost(&view);
            let out = moving(ctx, &mut dev, &view, true, |dev| {
                write_op(dev, cost, "committing", |w| {
                    w.trial_budget = ctx.trial;
                    w.commit()
                })
            })?;
            if let Outcome::Committed { seq } = out {
                println!("volatile committed as snapshot {seq}");
            }
        } else {
            println!(
                "nothing to commit: {} is empty and there is no volatile",
                upper.display()
            );
            return Ok(());
        }
    }
    if do_reboot {
        reboot(ctx)?;
    } else {
        println!("not rebooting (--no-reboot): reboot to run on the new snapshot");
    }
    Ok(())
}

pub fn rollback(ctx: &Ctx, id: Option<usize>, yes: bool, do_reboot: bool) -> Result<(), CliError> {
    {
        let (_lock, mut dev) = ctx.open(true)?;
        let view = read_view(&mut dev);
        require_chain(&mut dev, &view)?;
        let have = view.snapshots.len();
        let keep = id.unwrap_or(have.saturating_sub(1));
        if keep > have {
            return Err(CliError::NoSuchSnapshot { id: keep, have });
        }
        let has_volatile = view.volatile().is_some();
        if keep == have && !has_volatile {
            println!("nothing to roll back: {have} snapshot(s), no volatile");
            return Ok(());
        }
        let mut what = Vec::new();
        if keep < have {
            what.push(snapshots_in_words(keep + 1, have));
        }
        if has_volatile {
            what.push("the saved changes (volatile)".to_string());
        }
        let what = what.join(" and ");
        ui::confirm(
            yes,
            "rollback",
            &format!("Keep {} and drop {what}?", snapshots_in_words(1, keep)),
        )?;
        // Dropping the volatile alone leaves the snapshots below the upper dir as booted.
        let out = moving(ctx, &mut dev, &view, keep < have, |dev| {
            write_op(dev, 0, "rolling back", |w| w.rollback(keep))
        })?;
        if let Outcome::RolledBack { kept, .. } = out {
            println!(
                "rolled back: kept {}, dropped {what}",
                snapshots_in_words(1, kept)
            );
        }
        // Erase what was dropped now, so the space is free and `verify` sees a clean chain.
        // The rollback stands whatever happens here: a failure only leaves garbage that the
        // next write (or `repair`) erases, and must not skip the reboot nor read as a rollback
        // not done (a retry of `rollback` without ID would drop one more snapshot).
        if let Err(e) = auto_repair(&mut dev) {
            eprintln!(
                "snapshot: warning: rolled back, but freeing the space of what was dropped failed ({e}); `snapshot repair` frees it (every write tries first too)"
            );
        }
    }
    if do_reboot {
        reboot(ctx)?;
    } else {
        println!("not rebooting (--no-reboot): the running system still shows the dropped state");
    }
    Ok(())
}

/// Erases provable garbage at once; anything that might be data only after saying what it is
/// and what would be erased, and a confirmation.
pub fn repair(ctx: &Ctx, yes: bool) -> Result<(), CliError> {
    let (_lock, mut dev) = ctx.open(true)?;
    let view = read_view(&mut dev);
    match view.status {
        Status::Chain | Status::Empty => {}
        Status::Unformatted(fs) => return Err(CliError::Unformatted(fs)),
        Status::Unreadable => return Err(CliError::Unreadable),
    }
    let path = dev.path.clone();
    let (_, layout, survey) = Writer::new(&mut dev)
        .survey_full()
        .map_err(|e| CliError::write(&path, e))?;
    if survey.suspects.is_empty() {
        let out = write_op(&mut dev, 0, "repairing", |w| w.repair())?;
        if let Outcome::Repaired { erased_blocks } = out {
            println!("repair: erased {erased_blocks} erase block(s)");
        }
        return Ok(());
    }
    if !survey.identity {
        return Err(CliError::Damaged(survey.suspects));
    }
    let e = u64::from(layout.erase_size);
    println!("the partition holds data that the chain does not show:");
    for s in &survey.suspects {
        println!("  - {s}");
    }
    let mut blocks: Vec<u32> = survey
        .garbage
        .iter()
        .chain(survey.suspect_blocks.iter())
        .copied()
        .collect();
    blocks.sort_unstable();
    let list: Vec<String> = blocks
        .iter()
        .map(|&i| format!("{:#x}", u64::from(i) * e))
        .collect();
    println!(
        "repair would erase {} erase block(s) of {e} bytes at: {}",
        blocks.len(),
        list.join(" ")
    );
    println!(
        "the boot path shows {} snapshot(s){}, which stay. Run `snapshot extract --salvage` first to keep what is still readable.",
        view.snapshots.len(),
        if view.volatile().is_some() {
            " and a volatile"
        } else {
            ""
        }
    );
    ui::confirm(
        yes,
        "repair",
        &format!("Erase these {} erase block(s)?", blocks.len()),
    )?;
    let out = write_op(&mut dev, 0, "repairing", |w| w.repair_all())?;
    if let Outcome::Repaired { erased_blocks } = out {
        println!("repair: erased {erased_blocks} erase block(s)");
    }
    Ok(())
}

/// The steps of a package manager run.
fn pm_steps(pm: Option<&str>) -> Result<(String, Vec<Vec<String>>), CliError> {
    let in_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    let v = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let pm = match pm {
        Some(p) => p.to_string(),
        None if in_path("apk") => "apk".into(),
        None if in_path("opkg") => "opkg".into(),
        None => return Err(CliError::NoPackageManager),
    };
    let steps = match pm.as_str() {
        "apk" => vec![v(&["apk", "update"]), v(&["apk", "upgrade"])],
        // opkg's upgradable list is computed at run time: see run_pm.
        "opkg" => vec![v(&["opkg", "update"])],
        cmd => vec![v(&["/bin/sh", "-c", cmd])],
    };
    Ok((pm, steps))
}

fn run_step(step: &[String], upper: &Path) -> Result<(), CliError> {
    let cmd = step.join(" ");
    let status = Command::new(&step[0])
        .args(&step[1..])
        .env("SNAPSHOT_UPPER", upper)
        .status()
        .map_err(|e| CliError::PackageManager {
            cmd: cmd.clone(),
            status: e.to_string(),
        })?;
    if !status.success() {
        return Err(CliError::PackageManager {
            cmd,
            status: status.to_string(),
        });
    }
    Ok(())
}

/// Package names from `opkg list-upgradable`: lines are `name - old-version - new-version`.
fn upgradable(list: &str) -> Vec<String> {
    list.lines()
        .filter(|l| l.contains(" - "))
        .filter_map(|l| l.split(" - ").next())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

/// SIGINT, SIGTERM and SIGHUP recorded instead of acted on, from the package manager's start to
/// the command's end. The partition lock goes with this process: ended by such a signal (a
/// `kill`, a timeout, a service stop, which need not reach the package manager), it would let
/// another command pack the upper dir while the package manager goes on changing it, storing a
/// moment in the middle of the upgrade. Recorded, the signal lets the package manager finish
/// its step, starts no other, and stops the command before it writes. A signal to the whole
/// process group (Ctrl-C) reaches the package manager too, which then stops first. The
/// package manager itself starts with the default actions (exec resets handlers). A signal
/// the caller ignores (`nohup`, a script's background job) is left ignored: handled, it would
/// reach the package manager with its default action, and a hangup would kill it mid-install.
struct StopRequests(Arc<AtomicUsize>);

impl StopRequests {
    fn record() -> Self {
        let seen = Arc::new(AtomicUsize::new(0));
        let ignored = ignored_signals();
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            if ignored & (1 << (sig - 1)) != 0 {
                continue;
            }
            // These three can always be handled; were one not, it would keep its default
            // action, which is how the command behaved before.
            let _ = signal_hook::flag::register_usize(sig, Arc::clone(&seen), sig as usize);
        }
        Self(seen)
    }

    /// The last stopping signal that came, if any.
    fn requested(&self) -> Option<i32> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            sig => i32::try_from(sig).ok(),
        }
    }
}

/// The signals this process ignores (bit `sig - 1`), from `SigIgn` in /proc/self/status;
/// none when it cannot be read.
fn ignored_signals() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Runs the steps in order; none starts once the command was asked to stop.
fn run_pm(
    pm: &str,
    steps: &[Vec<String>],
    upper: &Path,
    stop: &StopRequests,
) -> Result<(), CliError> {
    for step in steps {
        if stop.requested().is_some() {
            return Ok(());
        }
        run_step(step, upper)?;
    }
    if pm == "opkg" && stop.requested().is_none() {
        let out = Command::new("opkg")
            .arg("list-upgradable")
            .output()
            .map_err(|e| CliError::PackageManager {
                cmd: "opkg list-upgradable".into(),
                status: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(CliError::PackageManager {
                cmd: "opkg list-upgradable".into(),
                status: out.status.to_string(),
            });
        }
        let names = upgradable(&String::from_utf8_lossy(&out.stdout));
        if !names.is_empty() && stop.requested().is_none() {
            let mut step = vec!["opkg".to_string(), "upgrade".to_string()];
            step.extend(names);
            run_step(&step, upper)?;
        }
    }
    Ok(())
}

pub fn upgrade(
    ctx: &Ctx,
    upper: &Path,
    gzip: bool,
    pm: Option<&str>,
    do_reboot: bool,
) -> Result<(), CliError> {
    let stop;
    {
        // Held across the package manager run: no other command writes meanwhile.
        let (_lock, mut dev) = ctx.open(true)?;
        let view = read_view(&mut dev);
        require_chain(&mut dev, &view)?;
        require_room(&view)?;
        require_trial_left(&dev, &view)?;
        require_as_booted(ctx, &dev, &view, upper)?;
        let (pm, steps) = pm_steps(pm)?;
        let before = tree::fingerprint(upper)?;
        stop = StopRequests::record();
        let ran = run_pm(&pm, &steps, upper, &stop);
        if let Some(sig) = stop.requested() {
            // The package manager may have stopped on the same signal (Ctrl-C): its error too.
            if let Err(e) = &ran {
                eprintln!("snapshot: {e}");
            }
            return Err(CliError::Stopped(sig));
        }
        if let Err(e) = ran {
            eprintln!("snapshot: the upgrade failed; nothing was written to flash");
            return Err(e);
        }
        // From here on the running system is upgraded: a refusal leaves it so, unstored.
        let not_stored = |e: CliError| {
            // An I/O error (3) can come mid-write: complete or invisible, it does not say.
            if e.exit_code() != super::error::code::DEVICE {
                eprintln!(
                    "snapshot: the upgrade is not stored: what the package manager changed is in the running system only (RAM), gone at the next reboot"
                );
            }
            e
        };
        if tree::fingerprint(upper).map_err(not_stored)? == before {
            println!(
                "the upgrade changed nothing in {}; flash untouched",
                upper.display()
            );
            return Ok(());
        }
        let packed = pack_capped(&view, upper, gzip, false).map_err(not_stored)?;
        precheck_packed(&view, upper, &packed, false).map_err(not_stored)?;
        let cost = block_cost(&view, packed.data.len()) + evacuation_cost(&view);
        let out = moving(ctx, &mut dev, &view, true, |dev| {
            write_op(dev, cost, "storing", |w| {
                w.trial_budget = ctx.trial;
                w.append_snapshot(&packed.payload())
            })
        })
        .map_err(not_stored)?;
        if let Outcome::Written { seq, offset, .. } = out {
            println!(
                "upgrade stored as snapshot {seq} at {offset:#x}: {}",
                describe(&packed)
            );
        }
    }
    if do_reboot {
        if let Some(sig) = stop.requested() {
            eprintln!(
                "snapshot: stopped by signal {sig} while the upgrade was stored: not rebooting"
            );
            return Ok(());
        }
        reboot(ctx)?;
    }
    Ok(())
}

/// Writes `data` to `path` and syncs it.
/// Writes `data` to `path` and syncs it. `fresh`: only as a new file (never through a
/// symlink or over a file someone placed at a name in a shared directory).
fn write_synced(path: &Path, data: &[u8], fresh: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!fresh)
        .create_new(fresh)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

pub fn convert(
    ctx: &Ctx,
    from: &Path,
    backup: Option<&Path>,
    gzip: bool,
    yes: bool,
    do_reboot: bool,
) -> Result<(), CliError> {
    {
        let (_lock, mut dev) = ctx.open(true)?;
        let view = read_view(&mut dev);
        require_jffs2(&mut dev, &view)?;
        // Read-only until the reboot: what is packed is what is staged, and JFFS2 writes
        // nothing into the blocks the staging copy takes.
        let frozen = super::mounts::freeze_jffs2(&dev.path)?;
        let prepared = prepare_convert(&mut dev, &view, from, backup, gzip, yes);
        let (packed, staging) = match prepared {
            Ok(p) => p,
            Err(e) => {
                frozen.thaw();
                return Err(e);
            }
        };
        let total = dev.capacity() as u64;
        let res = match staging {
            // The overlay is on flash before the JFFS2 is touched: no cut loses it.
            Some(layout) => {
                let cost = block_cost(&view, packed.data.len()) * 2 + total;
                write_op(&mut dev, cost, "converting", |w| {
                    w.convert_staged(&layout, &packed.payload())
                })
                .map_err(|e| {
                    (
                        e,
                        "convert failed before snapshot 1 was written (`snapshot info` shows whether the overlay's staged copy, the volatile, was)",
                    )
                })
            }
            // From the erase until the snapshot is written the content is only in RAM (and
            // the backup): any failure, in the erase as in the append, leaves the JFFS2 partly
            // or wholly erased, so the packed overlay goes to a rescue file first.
            None => write_op(&mut dev, total, "erasing", |w| {
                w.force = true;
                w.format()
            })
            .map_err(|e| {
                (
                    e,
                    "erasing the partition failed partway (the JFFS2 may be partly erased)",
                )
            })
            .and_then(|_| {
                let cost = block_cost(&view, packed.data.len());
                write_op(&mut dev, cost, "writing", |w| {
                    w.append_snapshot(&packed.payload())
                })
                .map_err(|e| {
                    (
                        e,
                        "the partition was erased but the snapshot could not be written",
                    )
                })
            }),
        };
        if let Err((e, what)) = res {
            rescue(backup, &packed.data, gzip, from, what);
            return Err(e);
        }
        println!(
            "converted: {} is snapshot 1 ({})",
            from.display(),
            describe(&packed)
        );
    }
    if do_reboot {
        reboot(ctx)?;
    }
    Ok(())
}

/// Convert's refusals: only a JFFS2 partition is converted.
fn require_jffs2(dev: &mut Device, view: &ChainView) -> Result<(), CliError> {
    match view.status {
        Status::Unformatted(Foreign::Jffs2) => Ok(()),
        Status::Unformatted(fs) => Err(CliError::Refused(format!(
            "the partition holds {fs}, not JFFS2: convert only turns a JFFS2 overlay into a chain (`snapshot format --force` erases it)",
        ))),
        Status::Chain => Err(CliError::write(&dev.path, WriteError::AlreadyChain)),
        Status::Empty => {
            let path = dev.path.clone();
            let (_, _, survey) = Writer::new(dev)
                .survey()
                .map_err(|e| CliError::write(&path, e))?;
            // JFFS2 may leave its first erase block free (a cut between erasing a block and
            // writing its cleanmarker): its nodes further on make it JFFS2 all the same.
            let jffs2 = survey.suspects.iter().any(|x| {
                matches!(
                    x,
                    Suspect::Foreign {
                        fs: Foreign::Jffs2,
                        ..
                    }
                )
            });
            if jffs2 {
                return Ok(());
            }
            Err(CliError::Refused(if survey.identity {
                "the partition is empty (no JFFS2 overlay on it): nothing to convert; `snapshot commit --upper DIR` stores a directory as the first snapshot".into()
            } else {
                "the partition holds data that is neither a snapinit chain nor JFFS2: convert only turns a JFFS2 overlay into a chain (`snapshot format --force` erases it)".into()
            }))
        }
        Status::Unreadable => Err(CliError::Unreadable),
    }
}

/// Packs the overlay, writes the backup, finds where it can be staged, and asks: everything
/// before convert's first write.
fn prepare_convert(
    dev: &mut Device,
    view: &ChainView,
    from: &Path,
    backup: Option<&Path>,
    gzip: bool,
    yes: bool,
) -> Result<(tree::Packed, Option<Layout>), CliError> {
    let packed = pack_capped(view, from, gzip, false)?;
    precheck_packed(view, from, &packed, false)?;
    if let Some(b) = backup {
        write_synced(b, &packed.data, false).map_err(|source| CliError::Io {
            what: "writing the backup",
            path: b.to_path_buf(),
            source,
        })?;
        println!(
            "backup of {} written to {} ({} payload, {} bytes)",
            from.display(),
            b.display(),
            if gzip { "gzip tar" } else { "tar" },
            packed.data.len()
        );
    }
    let path = dev.path.clone();
    let staging = Writer::new(dev)
        .jffs2_staging(packed.data.len())
        .map_err(|e| CliError::write(&path, e))?;
    let question = match &staging {
        Some(layout) => {
            println!(
                "the overlay is staged first in the partition's last {} erase block(s), where JFFS2 keeps nothing: from then on a power cut keeps it",
                layout.backbuf_blocks
            );
            format!(
                "Erase the JFFS2 partition {} and store {} as snapshot 1?",
                path.display(),
                from.display()
            )
        }
        None => {
            eprintln!(
                "snapshot: warning: JFFS2 keeps data in the partition's last erase blocks (or the overlay needs more than half the partition), so the overlay cannot be staged on flash first: from the erase until snapshot 1 is written, a power cut loses it unless the backup (--backup, on other storage) survives"
            );
            format!(
                "Erase the JFFS2 partition {} and store {} as snapshot 1?",
                path.display(),
                from.display()
            )
        }
    };
    ui::confirm(yes, "convert", &question)?;
    Ok((packed, staging))
}

/// Keeps the packed overlay after convert erased (some of) the JFFS2 and failed: the backup
/// if one was written, else a new rescue file in the temp dir; says where, or what to copy.
fn rescue(backup: Option<&Path>, data: &[u8], gzip: bool, from: &Path, what: &str) {
    if let Some(b) = backup {
        eprintln!("snapshot: {what}; the backup is {}", b.display());
        return;
    }
    let ext = if gzip { "tar.gz" } else { "tar" };
    let path = std::env::temp_dir().join(format!(
        "snapshot-convert-rescue-{}.{ext}",
        std::process::id()
    ));
    match write_synced(&path, data, true) {
        Ok(()) => eprintln!(
            "snapshot: {what}; the packed overlay is saved in {}",
            path.display()
        ),
        Err(io) => eprintln!(
            "snapshot: {what}, and the rescue copy {} failed too ({io}): copy {} elsewhere before rebooting",
            path.display(),
            from.display()
        ),
    }
}

pub fn format(
    ctx: &Ctx,
    force: bool,
    yes: bool,
    backbuf_blocks: Option<u32>,
) -> Result<(), CliError> {
    let (_lock, mut dev) = ctx.open(true)?;
    let view = read_view(&mut dev);
    if let Some(n) = backbuf_blocks {
        let total = view.layout.total_blocks();
        let max = Layout::max_backbuf_blocks(total).min(u32::from(u16::MAX));
        if n == 0 || n > max {
            return Err(CliError::BadBackbuf(if n == 0 {
                "--backbuf-blocks must be at least 1"
            } else {
                "--backbuf-blocks must be at most half the partition's erase blocks"
            }));
        }
    }
    let path = dev.path.clone();
    let suspects = match view.status {
        Status::Chain | Status::Empty => match Writer::new(&mut dev).survey() {
            Ok((_, _, survey)) => survey.suspects,
            // A chain laid out for a larger partition: only --force starts over.
            Err(e @ WriteError::LayoutMismatch { .. }) if !force => {
                return Err(CliError::write(&path, e))
            }
            Err(WriteError::LayoutMismatch { .. }) => Vec::new(),
            Err(e) => return Err(CliError::write(&path, e)),
        },
        _ => Vec::new(),
    };
    let holds = match view.status {
        Status::Empty if !suspects.is_empty() => Some(format!(
            "no valid chain but data: {}",
            suspects
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Status::Empty => None,
        Status::Chain => Some(format!(
            "{} snapshot(s){}{}",
            view.snapshots.len(),
            if view.volatile().is_some() {
                " and a volatile"
            } else {
                ""
            },
            if suspects.is_empty() {
                String::new()
            } else {
                format!(
                    ", and data the chain does not show: {}",
                    suspects
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        )),
        // OpenWrt's own "format me" marker: erasing it is what it asks for.
        Status::Unformatted(Foreign::DeadCode) => None,
        Status::Unformatted(fs) => Some(format!("{fs} ({})", foreign_name(fs))),
        Status::Unreadable => Some("an unreadable first erase block".into()),
    };
    if let Some(h) = &holds {
        if !force {
            return Err(CliError::Refused(format!(
                "{} holds {h}: pass --force to erase it",
                dev.path.display()
            )));
        }
        ui::confirm(
            yes,
            "format --force",
            &format!("Erase {} which holds {h}?", dev.path.display()),
        )?;
    }
    // A JFFS2 mounted read-write goes on writing (services, its garbage collector) into the
    // blocks the format erases: read-only until the reboot, whatever the format's outcome
    // (refused as convert is when that cannot be done).
    let _frozen = super::mounts::freeze_jffs2(&dev.path)?;
    let total = dev.capacity() as u64;
    let deadc0de = view.status == Status::Unformatted(Foreign::DeadCode);
    // As for a rollback: a chain of a volatile alone leaves the snapshots below the upper dir
    // (none) as booted.
    let out = moving(ctx, &mut dev, &view, !view.snapshots.is_empty(), |dev| {
        write_op(dev, total, "formatting", |w| {
            w.backbuf_blocks = backbuf_blocks;
            w.force = force || deadc0de;
            w.format()
        })
    })?;
    if let Outcome::Formatted { erased_blocks } = out {
        println!(
            "formatted {}: erased {erased_blocks} erase block(s)",
            dev.path.display()
        );
    }
    if let Some(n) = backbuf_blocks {
        println!("back buffer: {n} erase block(s), recorded in a layout marker at offset 0");
    }
    Ok(())
}

/// Marks every block on trial good (`snapshot confirm`).
pub fn confirm(ctx: &Ctx) -> Result<(), CliError> {
    confirm_with(ctx, |w| w.confirm()).map(|_| ())
}

/// `confirm` of what a boot has tried only (`snapshot health`).
/// How many blocks it confirmed: none when the blocks the boot tried were confirmed or rolled
/// back meanwhile.
pub fn confirm_booted(ctx: &Ctx) -> Result<usize, CliError> {
    confirm_with(ctx, |w| w.confirm_booted())
}

fn confirm_with(
    ctx: &Ctx,
    op: impl FnOnce(&mut Writer<'_, Device>) -> Result<Outcome, WriteError<DeviceError>>,
) -> Result<usize, CliError> {
    let (_lock, mut dev) = ctx.open(true)?;
    let out = write_op(&mut dev, 0, "confirming", op)?;
    match out {
        Outcome::Confirmed { blocks: 0 } => {
            println!("nothing is on trial");
            Ok(0)
        }
        Outcome::Confirmed { blocks } => {
            println!("confirmed: {blocks} block(s) on trial are kept from now on");
            Ok(blocks)
        }
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opkg_upgradable_list() {
        let out =
            "luci-base - git-24.1 - git-24.2\nlibc - 1.2.4-4 - 1.2.4-5\n\nWarning: cache stale\n";
        assert_eq!(upgradable(out), vec!["luci-base", "libc"]);
        assert!(upgradable("").is_empty());
    }

    #[test]
    fn pm_selection() {
        let (pm, steps) = pm_steps(Some("apk")).expect("apk");
        assert_eq!(pm, "apk");
        assert_eq!(steps, vec![vec!["apk", "update"], vec!["apk", "upgrade"]]);
        let (_, steps) = pm_steps(Some("/usr/local/bin/my-upgrade --all")).expect("cmd");
        assert_eq!(
            steps,
            vec![vec!["/bin/sh", "-c", "/usr/local/bin/my-upgrade --all"]]
        );
    }
}
