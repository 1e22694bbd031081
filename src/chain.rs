//! Walking the chain: which blocks on flash are live, verified, and in what order.
//!
//! The chain region runs from offset 0 to the back buffer. Snapshot blocks follow each other
//! without gaps, each linked to the header hash of the one below it; the walk stops at the first
//! slot that is not a live, linked, verified snapshot. The volatile is the highest-generation
//! valid volatile linked to the last snapshot, found either in the slot after it or at the start
//! of the back buffer.

use crate::flash::{Geometry, ReadNorFlash};
use crate::header::{self, Digest32, Header, HeaderError, Kind, Trial, HEADER_LEN};
use crate::payload::payload_sha256;
use core::fmt;

/// Most snapshots a chain may hold; a longer chain boots its first `MAX_SNAPSHOTS`.
pub const MAX_SNAPSHOTS: usize = 128;

/// A block found on flash: where it is and its decoded header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub offset: u32,
    pub header: Header,
}

impl Block {
    /// Offset just past the block's last erase block. Saturates: the length comes from flash,
    /// and an absurd one must fail the bounds checks, not overflow.
    pub fn end(&self) -> u64 {
        self.header
            .span_blocks()
            .saturating_mul(u64::from(self.header.fields.erase_size))
            .saturating_add(u64::from(self.offset))
    }
}

/// Partition geometry as the chain uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub capacity: u32,
    pub erase_size: u32,
    pub backbuf_blocks: u32,
}

impl Layout {
    pub fn total_blocks(&self) -> u32 {
        self.capacity / self.erase_size.max(1)
    }
    /// Start of the back buffer, which is also the end of the chain region.
    pub fn backbuf_offset(&self) -> u32 {
        self.total_blocks().saturating_sub(self.backbuf_blocks) * self.erase_size
    }
    pub fn backbuf_bytes(&self) -> u64 {
        u64::from(self.backbuf_blocks) * u64::from(self.erase_size)
    }
    /// Back-buffer sizes a reader tries when no chain header tells it: the back buffer never
    /// takes more than half the partition.
    pub fn max_backbuf_blocks(total_blocks: u32) -> u32 {
        total_blocks / 2
    }
    /// The default back buffer for a fresh partition: an eighth of it, at least one erase block.
    pub fn default_backbuf_blocks(total_blocks: u32) -> u32 {
        (total_blocks / 8).clamp(1, Self::max_backbuf_blocks(total_blocks).max(1))
    }
}

/// Why a block was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Header(HeaderError),
    /// A valid header that links to a different block below: left over from an older chain.
    Unlinked,
    /// Dropped by a rollback.
    Dropped,
    /// Written for another erase size or back buffer, or it would overlap the back buffer.
    Geometry,
    /// The payload's SHA-256 does not match the header.
    PayloadHash,
    /// The flash driver failed to read the block.
    Read,
    /// More snapshots than this reader holds.
    TooMany,
    /// On trial, every allowed boot spent without a confirmation: rolled back by the boot.
    TrialExhausted,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Header(e) => write!(f, "header: {e}"),
            Reject::Unlinked => f.write_str("not linked to the block below (stale)"),
            Reject::Dropped => f.write_str("dropped by a rollback"),
            Reject::Geometry => f.write_str(
                "geometry does not match the partition (erase size, back buffer, or the block runs past its region)",
            ),
            Reject::PayloadHash => f.write_str("payload SHA-256 mismatch"),
            Reject::Read => f.write_str("flash read error"),
            Reject::TooMany => f.write_str("too many snapshots"),
            Reject::TrialExhausted => {
                f.write_str("on trial, every allowed boot spent without a confirmation")
            }
        }
    }
}

/// A block the reader looked at and did not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub offset: u32,
    pub kind: Option<Kind>,
    pub reason: Reject,
}

/// How the snapshot walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// An erased slot, a volatile, or the end of the chain region: nothing is missing.
    Clean,
    /// The slot after the last accepted snapshot holds something that was not accepted.
    Rejected(Rejected),
}

/// What the partition holds as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nothing valid anywhere, and another filesystem starts the partition.
    Unformatted(Foreign),
    /// The first erase block could not be read.
    Unreadable,
    /// No valid block: erased, or only leftovers of torn or dropped writes.
    Empty,
    /// At least one valid block.
    Chain,
}

impl Status {
    /// The variant's name as `{:?}` spells it (PID 1's `chain: ...` line), without `Debug`.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Unformatted(Foreign::Jffs2) => "Unformatted(Jffs2)",
            Status::Unformatted(Foreign::DeadCode) => "Unformatted(DeadCode)",
            Status::Unformatted(Foreign::Ubi) => "Unformatted(Ubi)",
            Status::Unformatted(Foreign::Squashfs) => "Unformatted(Squashfs)",
            Status::Unformatted(Foreign::OpenWrtSnapshot) => "Unformatted(OpenWrtSnapshot)",
            Status::Unformatted(Foreign::Ubifs) => "Unformatted(Ubifs)",
            Status::Unreadable => "Unreadable",
            Status::Empty => "Empty",
            Status::Chain => "Chain",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainView {
    pub layout: Layout,
    pub status: Status,
    /// Verified snapshots, oldest first.
    pub snapshots: heapless::Vec<Block, MAX_SNAPSHOTS>,
    pub end: End,
    /// Verified volatile copies linked to the last snapshot, current first.
    pub volatiles: heapless::Vec<Block, 2>,
    /// Volatile copies linked to the last snapshot that failed verification.
    pub rejected_volatiles: heapless::Vec<Rejected, 2>,
    /// With `Volatiles::VerifyCurrent`: older copies whose headers are valid and linked but whose
    /// payload was not hashed. `verify` them before use.
    pub unverified_volatiles: heapless::Vec<Block, 2>,
    /// Where the next chain block starts.
    pub next_offset: u32,
    /// Highest generation of any valid header seen; the next write uses a larger one.
    pub max_generation: u64,
}

impl ChainView {
    pub fn volatile(&self) -> Option<&Block> {
        self.volatiles.first()
    }
    /// Header hash a new block on top of the snapshots links to.
    pub fn top_hash(&self) -> Digest32 {
        self.snapshots
            .last()
            .map(|b| b.header.hash)
            .unwrap_or([0; 32])
    }
}

/// Reads one header. `Err` only for driver failures.
pub fn read_header<F: ReadNorFlash>(
    flash: &mut F,
    offset: u32,
) -> Result<Result<Header, HeaderError>, Reject> {
    let mut raw = [0u8; HEADER_LEN];
    flash.read(offset, &mut raw).map_err(|_| Reject::Read)?;
    Ok(header::decode(&raw))
}

struct Walker<'a, F> {
    flash: &'a mut F,
    buf: &'a mut [u8],
    layout: Layout,
    max_generation: u64,
}

impl<F: ReadNorFlash> Walker<'_, F> {
    /// Checks everything but the payload of a block at `offset` that should link onto `prev`.
    fn check_header(
        &mut self,
        offset: u32,
        prev: &Digest32,
    ) -> Result<Block, (Option<Kind>, Reject)> {
        let mut raw = [0u8; HEADER_LEN];
        self.flash
            .read(offset, &mut raw)
            .map_err(|_| (None, Reject::Read))?;
        let header = match header::decode(&raw) {
            Ok(h) => h,
            Err(e) => {
                // A sealed header invalid in a mark (rot, or a mark a newer writer sets) still
                // says which block it is: linked and live, it ends the walk like a payload
                // that fails, and no volatile older than it comes back.
                let kind = match header::sealed_identity(&raw) {
                    Some((kind, p, false)) if p == *prev => Some(kind),
                    _ => None,
                };
                return Err((kind, Reject::Header(e)));
            }
        };
        let f = &header.fields;
        let kind = Some(f.kind);
        self.max_generation = self.max_generation.max(f.generation);
        if f.prev != *prev {
            return Err((kind, Reject::Unlinked));
        }
        if !header.marks.live {
            return Err((kind, Reject::Dropped));
        }
        if matches!(header.trial(), Trial::Exhausted { .. }) {
            return Err((kind, Reject::TrialExhausted));
        }
        let block = Block { offset, header };
        let in_backbuf = offset == self.layout.backbuf_offset();
        let limit = if in_backbuf {
            u64::from(self.layout.capacity)
        } else {
            u64::from(self.layout.backbuf_offset())
        };
        if f.erase_size != self.layout.erase_size
            || u32::from(f.backbuf_blocks) != self.layout.backbuf_blocks
            || block.end() > limit
        {
            return Err((kind, Reject::Geometry));
        }
        Ok(block)
    }
}

/// Streams a block's payload through `buf` and compares its SHA-256 with the header's.
pub fn verify<F: ReadNorFlash>(flash: &mut F, block: &Block, buf: &mut [u8]) -> Result<(), Reject> {
    let mut small = [0u8; 64];
    let buf = if buf.is_empty() { &mut small[..] } else { buf };
    match payload_sha256(flash, block, buf) {
        Ok(sum) if sum == block.header.fields.payload_sha256 => Ok(()),
        Ok(_) => Err(Reject::PayloadHash),
        Err(_) => Err(Reject::Read),
    }
}

/// How much of the payloads a read hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volatiles {
    /// Every snapshot and every volatile copy: what the tool reports and writes from.
    VerifyAll,
    /// Every snapshot; volatile copies only until one verifies, newest first. Older copies wait
    /// in `unverified_volatiles`.
    VerifyCurrent,
    /// No payload: the walk checks headers, links and geometry only, and every volatile copy
    /// waits in `unverified_volatiles`, newest first. For a reader that hashes each payload in
    /// the same pass that consumes it and discards what it built when the hash does not match
    /// (the boot path: one read of the flash instead of two).
    Deferred,
}

/// The back-buffer size, from the first chain header, or else from a volatile found alone in
/// the back buffer (the chain slot can be mid-rewrite while its only copy sits there).
fn find_layout<F: ReadNorFlash + Geometry>(flash: &mut F) -> (Layout, bool) {
    let erase_size = flash.erase_size();
    let capacity = u32::try_from(flash.capacity()).unwrap_or(u32::MAX);
    let mut layout = Layout {
        capacity,
        erase_size,
        backbuf_blocks: 0,
    };
    let total = layout.total_blocks();
    if let Ok(Ok(h)) = read_header(flash, 0) {
        layout.backbuf_blocks = u32::from(h.fields.backbuf_blocks);
        return (layout, true);
    }
    for b in 1..=Layout::max_backbuf_blocks(total) {
        let offset = (total - b) * erase_size;
        if let Ok(Ok(h)) = read_header(flash, offset) {
            if u32::from(h.fields.backbuf_blocks) == b && h.fields.kind == Kind::Volatile {
                layout.backbuf_blocks = b;
                return (layout, true);
            }
        }
    }
    (layout, false)
}

/// Walks and verifies the whole chain. `buf` (a few KiB) carries payload bytes to the hasher.
pub fn read_chain<F: ReadNorFlash + Geometry>(flash: &mut F, buf: &mut [u8]) -> ChainView {
    read_chain_with(flash, buf, Volatiles::VerifyAll)
}

/// Walks the chain, verifying every snapshot and the volatile's copies as `volatiles` says.
pub fn read_chain_with<F: ReadNorFlash + Geometry>(
    flash: &mut F,
    buf: &mut [u8],
    volatiles: Volatiles,
) -> ChainView {
    let (layout, found) = find_layout(flash);
    let mut view = ChainView {
        layout,
        status: Status::Empty,
        snapshots: heapless::Vec::new(),
        end: End::Clean,
        volatiles: heapless::Vec::new(),
        rejected_volatiles: heapless::Vec::new(),
        unverified_volatiles: heapless::Vec::new(),
        next_offset: 0,
        max_generation: 0,
    };
    if !found || layout.erase_size == 0 || layout.backbuf_blocks == 0 {
        view.status = first_slot_status(flash);
        return view;
    }
    let mut walker = Walker {
        flash,
        buf,
        layout,
        max_generation: 0,
    };
    let chain_end = layout.backbuf_offset();
    let mut prev = [0u8; 32];
    let mut offset = 0u32;
    // Volatiles are only looked for where the walk ended as a write in progress or a rollback
    // would leave it: not above a live, linked snapshot that failed its checks, whose volatile
    // belongs to a state that no longer exists.
    let mut look_for_volatile = true;
    let mut slot_volatile: Option<Block> = None;
    while offset < chain_end {
        let checked = walker.check_header(offset, &prev).and_then(|block| {
            if block.header.fields.kind == Kind::Snapshot && volatiles != Volatiles::Deferred {
                verify(walker.flash, &block, walker.buf).map_err(|r| (Some(Kind::Snapshot), r))?;
            }
            Ok(block)
        });
        match checked {
            Ok(block) if block.header.fields.kind == Kind::Snapshot => {
                if view.snapshots.push(block).is_err() {
                    view.end = End::Rejected(Rejected {
                        offset,
                        kind: Some(Kind::Snapshot),
                        reason: Reject::TooMany,
                    });
                    look_for_volatile = false;
                    break;
                }
                prev = block.header.hash;
                offset = u32::try_from(block.end()).unwrap_or(u32::MAX);
            }
            Ok(block) => {
                slot_volatile = Some(block);
                break;
            }
            Err((_, Reject::Header(HeaderError::Erased))) => break,
            Err((kind, reason)) => {
                if kind == Some(Kind::Volatile) {
                    if !matches!(reason, Reject::Unlinked | Reject::Dropped) {
                        let _ = view.rejected_volatiles.push(Rejected {
                            offset,
                            kind,
                            reason,
                        });
                    }
                } else {
                    view.end = End::Rejected(Rejected {
                        offset,
                        kind,
                        reason,
                    });
                    let linked_snapshot = kind == Some(Kind::Snapshot)
                        && !matches!(reason, Reject::Unlinked | Reject::Dropped);
                    look_for_volatile = !linked_snapshot;
                }
                break;
            }
        }
    }
    view.next_offset = offset;
    if look_for_volatile {
        let mut candidates: heapless::Vec<Block, 2> = heapless::Vec::new();
        if let Some(v) = slot_volatile {
            let _ = candidates.push(v);
        }
        match walker.check_header(chain_end, &prev) {
            Ok(v) if v.header.fields.kind == Kind::Volatile => {
                let _ = candidates.push(v);
            }
            Err((Some(Kind::Volatile), reason))
                if !matches!(reason, Reject::Unlinked | Reject::Dropped) =>
            {
                let _ = view.rejected_volatiles.push(Rejected {
                    offset: chain_end,
                    kind: Some(Kind::Volatile),
                    reason,
                });
            }
            _ => {}
        }
        // Newest first: the current copy is the highest generation that verifies.
        candidates.sort_unstable_by_key(|v| core::cmp::Reverse(v.header.fields.generation));
        for v in candidates {
            let hashed = match volatiles {
                Volatiles::VerifyAll => true,
                Volatiles::VerifyCurrent => view.volatiles.is_empty(),
                Volatiles::Deferred => false,
            };
            if !hashed {
                let _ = view.unverified_volatiles.push(v);
                continue;
            }
            match verify(walker.flash, &v, walker.buf) {
                Ok(()) => {
                    let _ = view.volatiles.push(v);
                }
                Err(reason) => {
                    let _ = view.rejected_volatiles.push(Rejected {
                        offset: v.offset,
                        kind: Some(Kind::Volatile),
                        reason,
                    });
                }
            }
        }
    }
    view.max_generation = walker.max_generation;
    view.status = if view.snapshots.is_empty()
        && view.volatiles.is_empty()
        && view.unverified_volatiles.is_empty()
    {
        first_slot_status(walker.flash)
    } else {
        Status::Chain
    };
    view
}

/// With no valid block anywhere, the partition is empty unless it holds a recognised foreign
/// filesystem. Garbage is an empty chain: a torn erase or header program leaves exactly that,
/// and the next write erases before it programs.
fn first_slot_status<F: ReadNorFlash>(flash: &mut F) -> Status {
    let mut raw = [0u8; HEADER_LEN];
    match flash.read(0, &mut raw) {
        Ok(()) => match Foreign::detect(&raw) {
            Some(fs) => Status::Unformatted(fs),
            None => Status::Empty,
        },
        Err(_) => Status::Unreadable,
    }
}

/// Filesystems that a partition called rootfs_data may hold instead of a chain, recognised by
/// the first bytes of the partition exactly as OpenWrt writes and reads them (docs/FORMAT.md,
/// "Foreign filesystems").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Foreign {
    /// A JFFS2 overlay: node magic 0x1985 in the byte order of the CPU that wrote it (85 19 on
    /// little-endian units, 19 85 on big-endian ones): `snapshot convert` material.
    Jffs2,
    /// OpenWrt's "format me" marker: the bytes DE AD C0 DE, which the `mtd` utility and the
    /// image tools write as a byte string and fstools reads as a big-endian word, so they are
    /// the same on little- and big-endian units.
    DeadCode,
    /// UBI: an erase counter header, "UBI#".
    Ubi,
    /// A squashfs image: "hsqs" (little-endian, what mksquashfs writes) or "sqsh".
    Squashfs,
    /// The chain of OpenWrt's original snapshot tool (fstools' FS_SNAPSHOT): "OWRT".
    OpenWrtSnapshot,
    /// A UBIFS: node magic 0x06101831, always little-endian. OpenWrt's NAND sysupgrade makes
    /// one of rootfs_data to hand kept settings (sysupgrade.tgz) to the next boot.
    Ubifs,
}

impl Foreign {
    pub fn detect(raw: &[u8]) -> Option<Foreign> {
        match raw.get(..4)? {
            [0x85, 0x19, ..] | [0x19, 0x85, ..] => Some(Foreign::Jffs2),
            [0xde, 0xad, 0xc0, 0xde] => Some(Foreign::DeadCode),
            b"UBI#" => Some(Foreign::Ubi),
            b"hsqs" | b"sqsh" => Some(Foreign::Squashfs),
            b"OWRT" => Some(Foreign::OpenWrtSnapshot),
            [0x31, 0x18, 0x10, 0x06] => Some(Foreign::Ubifs),
            _ => None,
        }
    }
}

impl fmt::Display for Foreign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Foreign::Jffs2 => "a JFFS2 filesystem",
            Foreign::DeadCode => "the fstools 0xdeadc0de format marker",
            Foreign::Ubi => "UBI",
            Foreign::Squashfs => "a squashfs image",
            Foreign::OpenWrtSnapshot => "a chain of OpenWrt's original snapshot tool (OWRT)",
            Foreign::Ubifs => {
                "a UBIFS filesystem (OpenWrt's NAND sysupgrade keeps settings in one: sysupgrade.tgz)"
            }
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn status_names_are_the_debug_names() {
        for s in [
            Status::Unformatted(Foreign::Jffs2),
            Status::Unformatted(Foreign::DeadCode),
            Status::Unformatted(Foreign::Ubi),
            Status::Unformatted(Foreign::Squashfs),
            Status::Unformatted(Foreign::OpenWrtSnapshot),
            Status::Unformatted(Foreign::Ubifs),
            Status::Unreadable,
            Status::Empty,
            Status::Chain,
        ] {
            assert_eq!(s.name(), std::format!("{s:?}"));
        }
    }
}
