//! What is on the partition besides the visible chain, and whether each erase block of it is
//! provably garbage or might be data.
//!
//! The rule (docs/FORMAT.md, "What a write may erase"): a write erases only erased space and the
//! leftovers of the writer's own interrupted or superseded writes. Everything else is a
//! [`Suspect`], and while there is one, every write refuses and says what it found.
//!
//! Provable garbage:
//! * a header that was never sealed (a cut header program or a cut erase over a header: see
//!   `header::damage`), and unrecognised bytes on a partition that carries a snapinit block or
//!   such a torn header (a cut payload program or erase);
//! * a valid block whose live mark is programmed (dropped by a rollback, or a layout marker), or
//!   whose trial boots ran out unconfirmed (rolled back by the boot path);
//! * a valid live block the chain does not reach that is older than the newest visible block
//!   (superseded: a volatile copy after a commit, a stale block a later write replaced), or
//!   that links to a dropped or superseded block (the rest of a rolled-back chain);
//! * a volatile copy that fails its hash while a newer copy verifies.

use snapinit::chain::{ChainView, End, Foreign, Layout, Reject};
use snapinit::flash::ReadNorFlash;
use snapinit::header::{self, Damage, Digest32, Header, HeaderError, Kind, Trial, HEADER_LEN};
use std::collections::HashSet;
use std::fmt;

/// Something on flash that might be data the chain does not show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspect {
    /// A block the chain links to (a snapshot the walk reached, or a volatile linked to the
    /// top) that fails its checks: bit rot in its payload, a read error, a bad geometry.
    Damaged {
        offset: u32,
        kind: Kind,
        reason: Reject,
    },
    /// A header that was sealed whole once and has changed since (bit rot, tampering).
    DamagedHeader { offset: u32, error: HeaderError },
    /// A valid live block nothing visible supersedes, which the walk does not reach (typically
    /// above a damaged block).
    Unreachable {
        offset: u32,
        kind: Kind,
        seq: u32,
        generation: u64,
    },
    /// A valid block written for another erase size or back buffer.
    OtherGeometry {
        offset: u32,
        erase_size: u32,
        backbuf_blocks: u16,
        /// The erase size the partition was read with: a hint to use `erase_size` helps only
        /// when they differ (else only the back buffer's size does not match).
        read_as: u32,
    },
    /// Snapshots past the most the boot path reads (an older tool wrote them).
    TooMany { offset: u32 },
    /// A valid block that runs past the end of the partition: the image was cut short.
    Truncated {
        offset: u32,
        end: u64,
        capacity: u64,
    },
    /// An erase block that cannot be read.
    Unreadable { offset: u32 },
    /// A recognised foreign filesystem's signature at an erase-block start.
    Foreign { offset: u32, fs: Foreign },
    /// Bytes that are no snapinit block, on a partition with no sign of being a chain.
    UnknownData { offset: u32 },
}

impl Suspect {
    pub fn offset(&self) -> u32 {
        match *self {
            Suspect::Damaged { offset, .. }
            | Suspect::DamagedHeader { offset, .. }
            | Suspect::Unreachable { offset, .. }
            | Suspect::OtherGeometry { offset, .. }
            | Suspect::TooMany { offset }
            | Suspect::Truncated { offset, .. }
            | Suspect::Unreadable { offset }
            | Suspect::Foreign { offset, .. }
            | Suspect::UnknownData { offset } => offset,
        }
    }
}

impl fmt::Display for Suspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Suspect::Damaged {
                offset,
                kind,
                reason,
            } => write!(f, "{kind} at {offset:#x} is part of the chain but fails: {reason}"),
            Suspect::DamagedHeader { offset, error } => write!(
                f,
                "block header at {offset:#x} was written whole and has changed since ({error})"
            ),
            Suspect::Unreachable {
                offset,
                kind,
                seq,
                generation,
            } => match kind {
                Kind::Snapshot => write!(
                    f,
                    "snapshot {seq} (generation {generation}) at {offset:#x} is valid but the chain does not reach it"
                ),
                Kind::Volatile => write!(
                    f,
                    "volatile over snapshot {seq} (generation {generation}) at {offset:#x} is valid but the chain does not reach it"
                ),
            },
            Suspect::OtherGeometry {
                offset,
                erase_size,
                backbuf_blocks,
                ..
            } => write!(
                f,
                "block at {offset:#x} was written for erase size {erase_size} and a back buffer of {backbuf_blocks} erase blocks"
            ),
            Suspect::TooMany { offset } => write!(
                f,
                "snapshot at {offset:#x} is past the {} the boot path reads",
                snapinit::chain::MAX_SNAPSHOTS
            ),
            Suspect::Truncated {
                offset,
                end,
                capacity,
            } => write!(
                f,
                "block at {offset:#x} ends at {end:#x}, past the end of the partition ({capacity:#x} bytes): the image is truncated"
            ),
            Suspect::Unreadable { offset } => {
                write!(f, "erase block at {offset:#x} cannot be read")
            }
            Suspect::Foreign { offset, fs } => write!(f, "{fs} at {offset:#x}"),
            Suspect::UnknownData { offset } => write!(
                f,
                "data at {offset:#x} that is not a snapinit block, on a partition with no snapinit chain"
            ),
        }
    }
}

/// The refusal message for a list of suspects: what is there, and what to run.
pub fn describe(suspects: &[Suspect]) -> String {
    let mut s = String::from(
        "the partition holds data that the chain does not show, and no write erases it:",
    );
    for x in suspects.iter().take(8) {
        s.push_str("\n  - ");
        s.push_str(&x.to_string());
    }
    if suspects.len() > 8 {
        s.push_str(&format!("\n  - ... and {} more", suspects.len() - 8));
    }
    let geometry = suspects.iter().find_map(|x| match x {
        Suspect::OtherGeometry {
            erase_size,
            read_as,
            ..
        } if erase_size != read_as => Some(*erase_size),
        _ => None,
    });
    if let Some(e) = geometry {
        s.push_str(&format!(
            "\nIf this is a chain of erase size {e}, run with --erase-size {e}."
        ));
    }
    s.push('\n');
    s.push_str(remedy(suspects));
    s
}

/// What to run about `suspects`: only commands that act on them. `repair` and `extract
/// --salvage` work on a chain; on a partition with no sign of one (foreign or unknown data)
/// repair refuses and salvage finds nothing, so they are not offered there.
pub fn remedy(suspects: &[Suspect]) -> &'static str {
    let foreign = suspects.iter().find_map(|x| match x {
        Suspect::Foreign { fs, .. } => Some(*fs),
        _ => None,
    });
    let unknown = suspects
        .iter()
        .any(|x| matches!(x, Suspect::UnknownData { .. }));
    if foreign == Some(Foreign::Jffs2) {
        "No snapinit chain is on it: `snapshot convert --from DIR` stores the JFFS2 overlay's files (mounted at DIR) as snapshot 1; `snapshot format --force` erases it."
    } else if foreign.is_some() || unknown {
        "No snapinit chain is on it: copy off what you need, then `snapshot format --force` erases it."
    } else {
        "`snapshot extract --salvage` copies out what is still readable; `snapshot repair` shows what it would erase and erases it after confirmation (--yes); `snapshot format --force` starts over."
    }
}

/// The result of a survey.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Survey {
    pub suspects: Vec<Suspect>,
    /// Erase blocks (indexes) holding provable garbage, in the order to erase them: newest
    /// first, so that a dropped block that proves its descendants stale outlives them.
    pub garbage: Vec<u32>,
    /// Erase blocks (indexes), not erased, that belong to suspects: what `repair --yes` and
    /// `format --force` erase on top of the garbage.
    pub suspect_blocks: Vec<u32>,
    /// Highest generation of any valid header on the partition.
    pub max_generation: u64,
    /// A snapinit trace was found (a visible block, a valid header anywhere, or offset 0
    /// erased or holding a torn header): the partition is a chain (perhaps an empty or damaged
    /// one), not foreign data.
    pub identity: bool,
}

/// What one erase block holds, as far as the survey can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A visible block covers it.
    Visible,
    /// The payload of the valid header at this erase block index.
    Body(usize),
    /// A valid header: index into `valid`.
    Head(usize),
    /// A suspect header (damaged): index into `suspects`.
    Suspect(usize),
    /// A torn header (ours, garbage).
    Torn,
    /// Erased header bytes; the rest is unknown until read.
    Blank,
    /// Not a snapinit header.
    Unknown,
}

/// An erase block that holds no information: all 0xFF (erased) or all 0x00 (a zeroed image,
/// `dd if=/dev/zero`). Erasing it destroys nothing.
fn blank<F: ReadNorFlash>(flash: &mut F, from: u32, len: u32) -> Result<bool, F::Error> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut at = from;
    let end = from + len;
    let mut fill = None;
    while at < end {
        let n = (end - at).min(buf.len() as u32);
        flash.read(at, &mut buf[..n as usize])?;
        let want = *fill.get_or_insert(buf[0]);
        if (want != 0xFF && want != 0x00) || buf[..n as usize].iter().any(|&b| b != want) {
            return Ok(false);
        }
        at += n;
    }
    Ok(true)
}

/// How much of the partition a survey reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Every byte of every erase block the chain does not show: `info`, `repair`.
    Full,
    /// On a partition that is a chain, an erase block whose header bytes are erased counts as
    /// free without reading the rest: whatever a cut payload program left there is garbage of
    /// ours, and a write erases its whole span before it programs. Every header is still read,
    /// and a partition with no sign of a chain is still read whole. An ordinary write's cost
    /// then does not grow with the partition's size.
    Headers,
}

/// Surveys every erase block of the partition against the chain `view` (read with every
/// volatile copy verified) and the layout writes use.
pub fn survey<F: ReadNorFlash>(
    flash: &mut F,
    view: &ChainView,
    layout: &Layout,
) -> Result<Survey, F::Error> {
    survey_to(flash, view, layout, Depth::Full)
}

/// `survey`, reading as deep as `depth` says.
pub fn survey_to<F: ReadNorFlash>(
    flash: &mut F,
    view: &ChainView,
    layout: &Layout,
    depth: Depth,
) -> Result<Survey, F::Error> {
    let e = layout.erase_size.max(1);
    let total = layout.total_blocks() as usize;
    let capacity = u64::from(layout.total_blocks()) * u64::from(e);
    let mut out = Survey::default();
    let mut slots = vec![Slot::Unknown; total];
    out.identity = !view.snapshots.is_empty() || !view.volatiles.is_empty();

    let visible: Vec<_> = view.snapshots.iter().chain(view.volatiles.iter()).collect();
    let mut visible_gen = 0u64;
    for b in &visible {
        visible_gen = visible_gen.max(b.header.fields.generation);
        let first = (b.offset / e) as usize;
        let span = usize::try_from(b.header.span_blocks()).unwrap_or(usize::MAX);
        for slot in slots.iter_mut().skip(first).take(span) {
            *slot = Slot::Visible;
        }
    }

    // Suspects the walk itself found.
    let mut named: HashSet<u32> = HashSet::new();
    if let End::Rejected(r) = view.end {
        let suspect = match (r.kind, r.reason) {
            (_, Reject::TooMany) => Some(Suspect::TooMany { offset: r.offset }),
            (Some(Kind::Snapshot), reason)
                if !matches!(
                    reason,
                    Reject::Unlinked | Reject::Dropped | Reject::TrialExhausted
                ) =>
            {
                Some(Suspect::Damaged {
                    offset: r.offset,
                    kind: Kind::Snapshot,
                    reason,
                })
            }
            (_, Reject::Read) => Some(Suspect::Unreadable { offset: r.offset }),
            _ => None,
        };
        if let Some(s) = suspect {
            named.insert(r.offset);
            out.suspects.push(s);
        }
    }
    let current = view.volatile().map(|v| v.header.fields.generation);
    for r in view
        .rejected_volatiles
        .iter()
        .filter(|r| r.reason != Reject::TrialExhausted)
    {
        // A rotten copy older than a verified one is superseded; any other is data.
        let superseded = match (current, read_valid(flash, r.offset)?) {
            (Some(cur), Some(h)) => h.fields.generation < cur,
            _ => false,
        };
        if !superseded {
            named.insert(r.offset);
            out.suspects.push(Suspect::Damaged {
                offset: r.offset,
                kind: Kind::Volatile,
                reason: r.reason,
            });
        }
    }

    // Every erase-block start that no visible block covers.
    let mut valid: Vec<(u32, Header)> = Vec::new();
    let mut i = 0usize;
    while i < total {
        if slots[i] != Slot::Unknown {
            i += 1;
            continue;
        }
        let offset = (i as u32) * e;
        let mut raw = [0u8; HEADER_LEN];
        if flash.read(offset, &mut raw).is_err() {
            if named.insert(offset) {
                out.suspects.push(Suspect::Unreadable { offset });
            }
            slots[i] = Slot::Suspect(out.suspects.len() - 1);
            i += 1;
            continue;
        }
        match header::decode(&raw) {
            Ok(h) => {
                out.identity = true;
                out.max_generation = out.max_generation.max(h.fields.generation);
                let idx = valid.len();
                valid.push((offset, h));
                slots[i] = Slot::Head(idx);
                let span = usize::try_from(h.span_blocks()).unwrap_or(usize::MAX);
                let end = u64::from(offset).saturating_add(
                    h.span_blocks()
                        .saturating_mul(u64::from(h.fields.erase_size)),
                );
                if h.fields.erase_size == e && end <= capacity {
                    let mut j = i + 1;
                    while j < total && j < i.saturating_add(span) && slots[j] == Slot::Unknown {
                        slots[j] = Slot::Body(idx);
                        j += 1;
                    }
                    i = j;
                    continue;
                }
            }
            Err(HeaderError::Erased) => {
                slots[i] = Slot::Blank;
                if i == 0 {
                    out.identity = true;
                }
            }
            Err(_) => match header::damage(&raw) {
                Damage::Sealed(error) => {
                    out.identity = true;
                    if named.insert(offset) {
                        out.suspects.push(Suspect::DamagedHeader { offset, error });
                    }
                    slots[i] = Slot::Suspect(out.suspects.len() - 1);
                }
                Damage::Torn => {
                    // A trace only at offset 0 (FORMAT.md, "What a write may erase"): the
                    // first write of an empty partition starts there, and a torn header above
                    // it only ever lies over a chain that has another trace. Elsewhere the test
                    // is eight leading 0xFF bytes, common in foreign data (bitmaps, padding):
                    // taken as a trace, one such erase block made all the data garbage.
                    if i == 0 {
                        out.identity = true;
                    }
                    slots[i] = Slot::Torn;
                }
                Damage::Foreign => slots[i] = Slot::Unknown,
            },
        }
        i += 1;
    }

    // Valid headers nothing shows: garbage if dropped or superseded, else suspects. The
    // volatiles linked to the top are hidden when the walk ended on a rolled-back snapshot
    // (the copy its append evacuated): the next write drops them with it (`settle_trials`).
    let hidden_top = match view.end {
        End::Rejected(r) if r.reason == Reject::TrialExhausted => Some(view.top_hash()),
        _ => None,
    };
    let mut dead: HashSet<Digest32> = HashSet::new();
    let mut is_dead = vec![false; valid.len()];
    loop {
        let mut changed = false;
        for (k, (_, h)) in valid.iter().enumerate() {
            if is_dead[k] {
                continue;
            }
            let f = &h.fields;
            // A block whose trial ran out was rolled back by the boot: as good as dropped.
            let rolled_back = matches!(h.trial(), Trial::Exhausted { .. });
            let hidden = f.kind == Kind::Volatile && Some(f.prev) == hidden_top;
            if !h.marks.live
                || rolled_back
                || hidden
                || f.generation < visible_gen
                || dead.contains(&f.prev)
            {
                is_dead[k] = true;
                dead.insert(h.hash);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (k, (offset, h)) in valid.iter().enumerate() {
        let f = &h.fields;
        let end = u64::from(*offset)
            .saturating_add(h.span_blocks().saturating_mul(u64::from(f.erase_size)));
        let suspect = if f.erase_size != e
            || (layout.backbuf_blocks != 0 && u32::from(f.backbuf_blocks) != layout.backbuf_blocks)
        {
            // Another geometry is never garbage of this one: it is someone's chain.
            (h.marks.live).then_some(Suspect::OtherGeometry {
                offset: *offset,
                erase_size: f.erase_size,
                backbuf_blocks: f.backbuf_blocks,
                read_as: e,
            })
        } else if end > capacity && h.marks.live {
            Some(Suspect::Truncated {
                offset: *offset,
                end,
                capacity,
            })
        } else if is_dead[k] {
            None
        } else {
            Some(Suspect::Unreachable {
                offset: *offset,
                kind: f.kind,
                seq: f.seq,
                generation: f.generation,
            })
        };
        if let Some(s) = suspect {
            if named.insert(*offset) {
                out.suspects.push(s);
            }
            let idx = out.suspects.len() - 1;
            for slot in slots.iter_mut() {
                if *slot == Slot::Head(k) || *slot == Slot::Body(k) {
                    *slot = Slot::Suspect(idx);
                }
            }
        }
    }

    // Recognised foreign signatures anywhere make a partition without a valid block foreign.
    if valid.is_empty() && visible.is_empty() {
        for (i, slot) in slots.iter().enumerate() {
            if *slot != Slot::Unknown {
                continue;
            }
            let offset = (i as u32) * e;
            let mut raw = [0u8; 12];
            if flash.read(offset, &mut raw).is_ok() {
                // Past offset 0, JFFS2's two bytes of magic are not enough: a cut first write
                // leaves payload bytes there, and JFFS2 starts each erase block it uses with a
                // node (a cleanmarker at least) whose header CRC holds.
                let fs = Foreign::detect(&raw).filter(|&fs| {
                    i == 0 || fs != Foreign::Jffs2 || super::jffs2::starts_with_node(&raw)
                });
                if let Some(fs) = fs {
                    out.identity = false;
                    out.suspects.push(Suspect::Foreign { offset, fs });
                    break;
                }
            }
        }
    }

    // Everything else that is not erased: garbage on a chain, data elsewhere.
    let keep_marker = view.snapshots.is_empty();
    let mut garbage = Vec::new();
    let mut suspect_blocks = Vec::new();
    let mut unknown_reported = false;
    for (i, slot) in slots.iter().enumerate() {
        let offset = (i as u32) * e;
        let free_by_header = depth == Depth::Headers && out.identity && *slot == Slot::Blank;
        if *slot == Slot::Visible || free_by_header || blank(flash, offset, e).unwrap_or(false) {
            continue;
        }
        match slot {
            Slot::Suspect(_) => suspect_blocks.push(i as u32),
            _ if !out.identity => {
                if !unknown_reported
                    && !out
                        .suspects
                        .iter()
                        .any(|s| matches!(s, Suspect::Foreign { .. }))
                {
                    out.suspects.push(Suspect::UnknownData { offset });
                    unknown_reported = true;
                }
                suspect_blocks.push(i as u32);
            }
            _ if i == 0 && keep_marker => {}
            _ => garbage.push(i as u32),
        }
    }
    garbage.reverse();
    suspect_blocks.reverse();
    out.garbage = garbage;
    out.suspect_blocks = suspect_blocks;
    out.suspects.sort_by_key(|s| s.offset());
    Ok(out)
}

/// The valid header at `offset`, if any.
fn read_valid<F: ReadNorFlash>(flash: &mut F, offset: u32) -> Result<Option<Header>, F::Error> {
    let mut raw = [0u8; HEADER_LEN];
    flash.read(offset, &mut raw)?;
    Ok(header::decode(&raw).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn other(erase_size: u32, read_as: u32) -> Suspect {
        Suspect::OtherGeometry {
            offset: 0x10000,
            erase_size,
            backbuf_blocks: 2,
            read_as,
        }
    }

    #[test]
    fn the_erase_size_hint_names_only_another_erase_size() {
        assert!(describe(&[other(4096, 65536)]).contains("run with --erase-size 4096"));
        // Same erase size, another back buffer: --erase-size cannot help.
        assert!(!describe(&[other(65536, 65536)]).contains("--erase-size"));
    }
}
