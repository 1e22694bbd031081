//! `snapshot info`: what is on the partition, for people and (with --json) for machines.

use super::device::Device;
use serde::Serialize;
use snapinit::chain::{Block, ChainView, End, Foreign, Layout, Rejected, Status};
use snapinit::device::DeviceFlash;
use snapinit::flash::{Geometry, ReadNorFlash};
use snapinit::header::{Compression, Kind};
use snapshot::hex::hex;
use snapshot::writer::{survey, Survey, Suspect};

#[derive(Debug, Serialize)]
pub struct BlockInfo {
    /// 1-based snapshot number; null for the volatile.
    pub index: Option<usize>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u32,
    pub generation: u64,
    pub offset: u32,
    pub erase_blocks: u64,
    /// Payload bytes as stored (compressed).
    pub stored_size: u64,
    /// Size of the tar before compression.
    pub unpacked_size: u64,
    pub compression: &'static str,
    pub sha256: String,
    /// Unix time of the write.
    pub created: u64,
    /// Trial boots granted at write (0: confirmed at write).
    pub trial_budget: u16,
    pub trials_used: u8,
    pub confirmed: bool,
    /// The kinds of health check a boot of its trial failed (its failed-check marks).
    pub failed_checks: Vec<&'static str>,
    /// "chain" (its slot in the chain) or "backbuf" (the back buffer copy).
    pub location: &'static str,
}

#[derive(Debug, Serialize)]
pub struct RejectInfo {
    pub offset: u32,
    #[serde(rename = "type")]
    pub kind: Option<&'static str>,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Backbuf {
    pub offset: u32,
    pub blocks: u32,
    pub bytes: u64,
    /// False when the partition holds no chain yet: the size a first write would use.
    pub from_chain: bool,
}

/// Something on the partition that might be data the chain does not show (every write refuses
/// while there is one).
#[derive(Debug, Serialize)]
pub struct SuspectInfo {
    pub offset: u32,
    pub what: String,
}

#[derive(Debug, Serialize)]
pub struct Info {
    pub device: String,
    /// "mtd", "ubi" or "file".
    pub device_kind: &'static str,
    /// The UBI device's minimum I/O unit (a NAND page) when the chain is on a UBI volume.
    pub min_io: Option<u32>,
    pub erase_size: u32,
    pub capacity: u64,
    pub total_blocks: u32,
    /// "chain", "empty", "damaged" (no valid chain, but blocks that might be data), "unformatted"
    /// or "unreadable".
    pub status: &'static str,
    /// The foreign filesystem of an unformatted partition ("jffs2", "deadc0de", "ubi", "squashfs", "owrt", "ubifs").
    pub foreign: Option<&'static str>,
    pub backbuf: Backbuf,
    /// Bytes taken by visible blocks (snapshots and every volatile copy).
    pub used_bytes: u64,
    /// Bytes from the end of the last snapshot to the back buffer: room for new snapshots.
    pub free_bytes: u64,
    pub next_offset: u32,
    pub max_generation: u64,
    /// Bit flips the MTD device's ECC corrected while this command read the chain (a wearing
    /// part; 0 on NOR, files and block devices).
    pub ecc_corrected: u32,
    pub snapshots: Vec<BlockInfo>,
    /// The current volatile, or null.
    pub volatile: Option<BlockInfo>,
    /// An older, still valid copy of the volatile (superseded by `volatile`).
    pub volatile_old_copy: Option<BlockInfo>,
    /// Why the snapshot walk stopped: null when clean.
    pub end: Option<RejectInfo>,
    pub rejected_volatiles: Vec<RejectInfo>,
    /// What might be data besides the chain: writes refuse while this is not empty.
    pub suspects: Vec<SuspectInfo>,
    /// Erase blocks holding provable garbage that the next write (or `repair`) erases.
    pub garbage_blocks: usize,
    /// What to run about the suspects (text only).
    #[serde(skip)]
    pub remedy: &'static str,
    /// The chain records a back buffer this partition cannot have (a truncated image): every
    /// write, `repair` included, refuses with exit 16 (text only).
    #[serde(skip)]
    pub truncated: Option<String>,
}

/// What acts on a truncated image: every write and `repair` refuse there (exit 16).
const TRUNCATED_REMEDY: &str = "`snapshot extract --salvage` copies out what is still readable; `snapshot format --force` starts over.";

pub fn foreign_name(f: Foreign) -> &'static str {
    match f {
        Foreign::Jffs2 => "jffs2",
        Foreign::DeadCode => "deadc0de",
        Foreign::Ubi => "ubi",
        Foreign::Squashfs => "squashfs",
        Foreign::OpenWrtSnapshot => "owrt",
        Foreign::Ubifs => "ubifs",
    }
}

pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Snapshot => "snapshot",
        Kind::Volatile => "volatile",
    }
}

fn block_info(b: &Block, index: Option<usize>, layout: &Layout) -> BlockInfo {
    let f = &b.header.fields;
    BlockInfo {
        index,
        kind: kind_name(f.kind),
        seq: f.seq,
        generation: f.generation,
        offset: b.offset,
        erase_blocks: b.header.span_blocks(),
        stored_size: f.payload_len,
        unpacked_size: f.unpacked_len,
        compression: match f.compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
        },
        sha256: hex(&f.payload_sha256),
        created: f.created,
        trial_budget: f.trial_budget,
        trials_used: b.header.marks.trials_used,
        confirmed: f.trial_budget == 0 || b.header.marks.confirmed,
        failed_checks: super::health::CheckKind::named(b.header.marks.failed),
        location: if b.offset == layout.backbuf_offset() && f.kind == Kind::Volatile {
            "backbuf"
        } else {
            "chain"
        },
    }
}

fn reject_info(r: &Rejected) -> RejectInfo {
    RejectInfo {
        offset: r.offset,
        kind: r.kind.map(kind_name),
        reason: r.reason.to_string(),
    }
}

/// The layout a write would use: the chain's, or the default for an empty partition.
pub fn effective_layout(view: &ChainView) -> (Layout, bool) {
    let mut layout = view.layout;
    if layout.backbuf_blocks == 0 {
        layout.backbuf_blocks = Layout::default_backbuf_blocks(layout.total_blocks());
        (layout, false)
    } else {
        (layout, true)
    }
}

/// The survey of what lies besides the chain, on a read-only descriptor of its own (the
/// caller holds the lock).
fn survey_of(dev: &Device, view: &ChainView, layout: &Layout) -> Option<Survey> {
    if !matches!(view.status, Status::Chain | Status::Empty) {
        return None;
    }
    let path = dev.path.to_str()?;
    let mut flash = DeviceFlash::open(path, dev.erase_size(), false).ok()?;
    survey(&mut flash, view, layout).ok()
}

pub fn gather(dev: &Device, view: &ChainView) -> Info {
    let (layout, from_chain) = effective_layout(view);
    let surveyed = survey_of(dev, view, &layout);
    let total = layout.total_blocks();
    let truncated = (from_chain && layout.backbuf_blocks > Layout::max_backbuf_blocks(total))
        .then(|| {
            format!(
                "the chain records a back buffer of {} erase blocks, more than half of this {total}-block partition: the image was truncated or the partition shrank",
                layout.backbuf_blocks
            )
        });
    let unknown = surveyed.as_ref().and_then(|s| {
        s.suspects.iter().find_map(|x| match x {
            Suspect::UnknownData { .. } => Some("unknown"),
            Suspect::Foreign { fs, .. } => Some(foreign_name(*fs)),
            _ => None,
        })
    });
    let (status, foreign) = match view.status {
        Status::Chain => ("chain", None),
        Status::Empty if unknown.is_some() => ("unformatted", unknown),
        Status::Empty if surveyed.as_ref().is_some_and(|s| !s.suspects.is_empty()) => {
            ("damaged", None)
        }
        Status::Empty => ("empty", None),
        Status::Unformatted(f) => ("unformatted", Some(foreign_name(f))),
        Status::Unreadable => ("unreadable", None),
    };
    let snapshots: Vec<BlockInfo> = view
        .snapshots
        .iter()
        .enumerate()
        .map(|(i, b)| block_info(b, Some(i + 1), &layout))
        .collect();
    let used_bytes = view
        .snapshots
        .iter()
        .chain(view.volatiles.iter())
        .map(|b| b.header.span_blocks() * u64::from(layout.erase_size))
        .sum();
    let free_bytes = u64::from(layout.backbuf_offset()).saturating_sub(u64::from(view.next_offset));
    Info {
        device: dev.path.display().to_string(),
        device_kind: dev.kind(),
        min_io: match dev.medium() {
            snapinit::device::Medium::Ubi { min_io } => Some(min_io),
            _ => None,
        },
        erase_size: dev.erase_size(),
        capacity: dev.capacity() as u64,
        total_blocks: layout.total_blocks(),
        status,
        foreign,
        backbuf: Backbuf {
            offset: layout.backbuf_offset(),
            blocks: layout.backbuf_blocks,
            bytes: layout.backbuf_bytes(),
            from_chain,
        },
        used_bytes,
        free_bytes,
        next_offset: view.next_offset,
        ecc_corrected: dev.ecc_corrected(),
        max_generation: view
            .max_generation
            .max(surveyed.as_ref().map_or(0, |s| s.max_generation)),
        snapshots,
        volatile: view.volatiles.first().map(|b| block_info(b, None, &layout)),
        volatile_old_copy: view.volatiles.get(1).map(|b| block_info(b, None, &layout)),
        end: match &view.end {
            End::Clean => None,
            End::Rejected(r) => Some(reject_info(r)),
        },
        rejected_volatiles: view.rejected_volatiles.iter().map(reject_info).collect(),
        suspects: surveyed
            .as_ref()
            .map(|s| {
                s.suspects
                    .iter()
                    .map(|x| SuspectInfo {
                        offset: x.offset(),
                        what: x.to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        garbage_blocks: surveyed.as_ref().map_or(0, |s| s.garbage.len()),
        remedy: match (&surveyed, &truncated) {
            // `repair` refuses too (exit 16): only what acts there.
            (_, Some(_)) => TRUNCATED_REMEDY,
            (Some(s), None) => snapshot::writer::survey::remedy(&s.suspects),
            (None, None) => "",
        },
        truncated,
    }
}

fn marks(b: &BlockInfo) -> String {
    if b.trial_budget == 0 {
        "confirmed".into()
    } else if b.confirmed {
        format!("confirmed (after {} trial boot(s))", b.trials_used)
    } else if b.failed_checks.is_empty() {
        format!(
            "ON TRIAL: {} of {} boots spent",
            b.trials_used, b.trial_budget
        )
    } else {
        format!(
            "ON TRIAL: {} of {} boots spent, failed: {}",
            b.trials_used,
            b.trial_budget,
            b.failed_checks.join(", ")
        )
    }
}

fn row(b: &BlockInfo, note: &str) -> String {
    format!(
        "{:>3}  {:<8} {:>4} {:>5}  {:#010x} {:>4} {:>10} {:>10}  {:<4}  {}  {}{}",
        b.index.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        b.kind,
        b.seq,
        b.generation,
        b.offset,
        b.erase_blocks,
        b.stored_size,
        b.unpacked_size,
        b.compression,
        &b.sha256[..12],
        marks(b),
        note
    )
}

pub fn render(info: &Info) -> String {
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!(
        "device:      {} ({}, erase size {} bytes)",
        info.device,
        match info.device_kind {
            "mtd" => "MTD",
            "ubi" => "UBI volume, erase size = LEB size",
            _ => "file or block device",
        },
        info.erase_size
    ));
    line(match (info.device_kind, info.min_io) {
        ("ubi", Some(io)) => format!(
            "medium:      UBI (NAND rules: every program an atomic LEB change; min I/O {io} bytes)"
        ),
        ("mtd", _) => "medium:      MTD (NOR rules: single-byte marks programmed in place)".into(),
        _ => "medium:      image (NOR rules; the same bytes as an MTD partition or UBI volume)"
            .into(),
    });
    line(format!(
        "capacity:    {} bytes ({} erase blocks)",
        info.capacity, info.total_blocks
    ));
    if info.ecc_corrected > 0 {
        line(format!(
            "ecc:         {} bit flip(s) corrected while reading: the part is wearing",
            info.ecc_corrected
        ));
    }
    let status = match (info.status, info.foreign) {
        ("unformatted", Some("unknown")) => {
            "unformatted: holds data that is no snapinit chain".to_string()
        }
        ("unformatted", Some(f)) => format!("unformatted: holds a foreign filesystem ({f})"),
        ("empty", _) => "empty (no valid block)".to_string(),
        ("damaged", _) => {
            "damaged: no valid chain, but blocks that might be data (below)".to_string()
        }
        ("chain", _) => format!(
            "chain: {} snapshot(s), {}",
            info.snapshots.len(),
            if info.volatile.is_some() {
                "volatile present"
            } else {
                "no volatile"
            }
        ),
        (s, _) => s.to_string(),
    };
    line(format!("status:      {status}"));
    if let Some(t) = &info.truncated {
        line(format!(
            "geometry:    {t}: every write and `repair` refuse (exit 16). {TRUNCATED_REMEDY}"
        ));
    }
    let on_trial: Vec<String> = info
        .snapshots
        .iter()
        .chain(info.volatile.iter())
        .filter(|b| b.trial_budget > 0 && !b.confirmed)
        .map(|b| match b.index {
            Some(i) => format!(
                "snapshot {i} ({} of {} boots spent)",
                b.trials_used, b.trial_budget
            ),
            None => format!(
                "the volatile ({} of {} boots spent)",
                b.trials_used, b.trial_budget
            ),
        })
        .collect();
    if !on_trial.is_empty() {
        line(format!(
            "trial:       {} on trial: `snapshot confirm` (or `snapshot health`) keeps it, else the unit rolls back by itself",
            on_trial.join(", ")
        ));
    }
    let exhausted = snapinit::chain::Reject::TrialExhausted.to_string();
    let rolled: Vec<String> = info
        .end
        .iter()
        .chain(info.rejected_volatiles.iter())
        .filter(|r| r.reason == exhausted)
        .map(|r| format!("{} at {:#x}", r.kind.unwrap_or("block"), r.offset))
        .collect();
    if !rolled.is_empty() {
        line(format!(
            "rolled back: {} ran out of trial boots unconfirmed; the boot leaves it out and the next write drops it for good",
            rolled.join(", ")
        ));
    }
    line(format!(
        "back buffer: offset {:#x}, {} erase blocks ({} bytes){}",
        info.backbuf.offset,
        info.backbuf.blocks,
        info.backbuf.bytes,
        if info.backbuf.from_chain {
            ""
        } else {
            " [default for a first write]"
        }
    ));
    line(format!(
        "space:       {} bytes used, {} bytes free for snapshots (next block at {:#x})",
        info.used_bytes, info.free_bytes, info.next_offset
    ));
    if !info.snapshots.is_empty() || info.volatile.is_some() {
        line(String::new());
        line(format!(
            "{:>3}  {:<8} {:>4} {:>5}  {:<10} {:>4} {:>10} {:>10}  {:<4}  {:<12}  STATE",
            "#", "TYPE", "SEQ", "GEN", "OFFSET", "EBS", "STORED", "UNPACKED", "COMP", "SHA256"
        ));
        for b in &info.snapshots {
            line(row(b, ""));
        }
        if let Some(v) = &info.volatile {
            let at = if v.location == "backbuf" {
                "back buffer"
            } else {
                "chain slot"
            };
            line(row(v, &format!(", current ({at} copy)")));
        }
        if let Some(v) = &info.volatile_old_copy {
            line(row(v, ", superseded copy"));
        }
    }
    if let Some(e) = &info.end {
        line(format!(
            "rejected:    {} at {:#x}: {} (the boot path stops before it)",
            e.kind.unwrap_or("block"),
            e.offset,
            e.reason
        ));
    }
    for r in &info.rejected_volatiles {
        line(format!(
            "rejected:    volatile at {:#x}: {}",
            r.offset, r.reason
        ));
    }
    for x in &info.suspects {
        line(format!("data?       {}", x.what));
    }
    if !info.suspects.is_empty() {
        line(format!(
            "             writes refuse until this is dealt with. {}",
            info.remedy
        ));
    } else if info.garbage_blocks > 0 {
        line(format!(
            "garbage:     {} erase block(s) of interrupted, dropped or superseded writes (the next write or `snapshot repair` erases them)",
            info.garbage_blocks
        ));
    }
    s
}
