//! Every write to the chain, each atomic under power loss.
//!
//! One rule makes them atomic: a new block becomes visible in exactly one single program — its
//! sealed header, written last and after a sync — and an old block disappears in exactly one
//! single-byte program, its `live` mark. Whenever an operation must destroy the only copy of
//! something still visible (the volatile living in the slot a new snapshot needs), it first
//! writes a second copy to the back buffer. docs/FORMAT.md walks through each operation.

use snapinit::chain::{read_chain, read_header, Block, ChainView, Layout, Status};
use snapinit::flash::{Durable, Geometry, NorFlash, ReadNorFlash};
use snapinit::header::{span_blocks, Compression, Fields, Kind, HEADER_LEN, LIVE_MARK, MARK_SET};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes per program operation: a NOR page program is this size or less.
const PROGRAM_CHUNK: usize = 4096;
/// Buffer for streaming reads while verifying.
const READ_CHUNK: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum WriteError<E: core::fmt::Debug> {
    #[error("flash operation failed: {0:?}")]
    Flash(E),
    #[error("the partition holds {0}, not a snapinit chain (`snapshot convert` or `snapshot format --force`)")]
    Unformatted(snapinit::chain::Foreign),
    #[error("the partition's first erase block cannot be read")]
    Unreadable,
    #[error("there is no volatile block to commit")]
    NoVolatile,
    #[error("no snapshot {id}: the chain has {have}")]
    NoSuchSnapshot { id: usize, have: usize },
    #[error("the volatile needs {need} bytes but the back buffer holds {backbuf}")]
    VolatileTooLarge { need: u64, backbuf: u64 },
    #[error("the block needs {need} bytes but only {free} are free before the back buffer")]
    NoSpace { need: u64, free: u64 },
    #[error("the partition is too small: {blocks} erase blocks")]
    TooSmall { blocks: u32 },
    #[error("{0}")]
    BadBackbuf(&'static str),
}

impl<E: core::fmt::Debug> From<E> for WriteError<E> {
    fn from(e: E) -> Self {
        WriteError::Flash(e)
    }
}

/// A payload ready to be stored: the bytes as they go on flash.
#[derive(Debug, Clone, Copy)]
pub struct Payload<'a> {
    pub data: &'a [u8],
    pub compression: Compression,
    /// Size of the tar before compression.
    pub unpacked_len: u64,
}

/// What a write did, for the caller's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written { offset: u32, kind: Kind, seq: u32 },
    Committed { seq: u32 },
    RolledBack { kept: usize, dropped: usize },
    Repaired { erased_blocks: u32 },
    Formatted { erased_blocks: u32 },
    Unchanged,
}

pub struct Writer<'f, F> {
    flash: &'f mut F,
    /// Back-buffer size for the first block of an empty partition (a chain's own wins), and the
    /// size `format` records in its layout marker.
    pub backbuf_blocks: Option<u32>,
    /// Trial boots granted to new snapshots (0: confirmed at write).
    pub trial_budget: u16,
}

type Res<T, F> = Result<T, WriteError<<F as embedded_storage::nor_flash::ErrorType>::Error>>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The nonce only has to differ between writes, not be secret: GRND_INSECURE never blocks, as
/// getrandom would on a router whose entropy pool is not ready minutes after boot.
fn nonce() -> [u8; 8] {
    let mut n = [0u8; 8];
    if rustix::rand::getrandom(&mut n, rustix::rand::GetRandomFlags::INSECURE).is_err()
        && rustix::rand::getrandom(&mut n, rustix::rand::GetRandomFlags::NONBLOCK).is_err()
    {
        // No entropy this early: the time still differs between two writes of one chain.
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        n = t.to_le_bytes();
    }
    n
}

impl<'f, F> Writer<'f, F>
where
    F: NorFlash + ReadNorFlash + Geometry + Durable,
    F::Error: core::fmt::Debug,
{
    pub fn new(flash: &'f mut F) -> Self {
        Writer {
            flash,
            backbuf_blocks: None,
            trial_budget: 0,
        }
    }

    pub fn flash(&mut self) -> &mut F {
        self.flash
    }

    /// The chain as the boot path will see it.
    pub fn read(&mut self) -> ChainView {
        let mut buf = vec![0u8; READ_CHUNK];
        read_chain(self.flash, &mut buf)
    }

    /// The layout writes use: the chain's, or a fresh one for an empty partition.
    fn layout(&self, view: &ChainView) -> Res<Layout, F> {
        let mut layout = view.layout;
        let total = layout.total_blocks();
        if total < 2 {
            return Err(WriteError::TooSmall { blocks: total });
        }
        if layout.backbuf_blocks == 0 {
            layout.backbuf_blocks = self
                .backbuf_blocks
                .unwrap_or_else(|| Layout::default_backbuf_blocks(total));
        }
        if layout.backbuf_blocks == 0 || layout.backbuf_blocks > Layout::max_backbuf_blocks(total) {
            return Err(WriteError::BadBackbuf(
                "the back buffer must be between one erase block and half the partition",
            ));
        }
        if layout.backbuf_blocks > u32::from(u16::MAX) {
            return Err(WriteError::BadBackbuf(
                "back buffer too large for the header field",
            ));
        }
        Ok(layout)
    }

    fn formatted(&mut self) -> Res<(ChainView, Layout), F> {
        let view = self.read();
        if let Status::Unformatted(fs) = view.status {
            return Err(WriteError::Unformatted(fs));
        }
        if view.status == Status::Unreadable {
            return Err(WriteError::Unreadable);
        }
        let layout = self.layout(&view)?;
        Ok((view, layout))
    }

    fn fields(
        &self,
        view: &ChainView,
        layout: &Layout,
        kind: Kind,
        payload: &Payload<'_>,
        sha: [u8; 32],
    ) -> Fields {
        let snapshots = view.snapshots.len() as u32;
        Fields {
            kind,
            compression: payload.compression,
            erase_size: layout.erase_size,
            backbuf_blocks: layout.backbuf_blocks as u16,
            trial_budget: if kind == Kind::Snapshot {
                self.trial_budget
            } else {
                0
            },
            seq: if kind == Kind::Snapshot {
                snapshots + 1
            } else {
                snapshots
            },
            generation: view.max_generation + 1,
            payload_len: payload.data.len() as u64,
            unpacked_len: payload.unpacked_len,
            created: now(),
            nonce: nonce(),
            payload_sha256: sha,
            prev: view.top_hash(),
        }
    }

    fn block_bytes(layout: &Layout, len: usize) -> u64 {
        span_blocks(len as u64, layout.erase_size) * u64::from(layout.erase_size)
    }

    /// Chain space from `view.next_offset` to the back buffer.
    fn check_chain_space(view: &ChainView, layout: &Layout, len: usize) -> Res<(), F> {
        let need = Self::block_bytes(layout, len);
        let free = u64::from(layout.backbuf_offset()).saturating_sub(u64::from(view.next_offset));
        if need > free {
            return Err(WriteError::NoSpace { need, free });
        }
        Ok(())
    }

    fn check_backbuf(layout: &Layout, len: usize) -> Res<(), F> {
        let need = Self::block_bytes(layout, len);
        if need > layout.backbuf_bytes() {
            return Err(WriteError::VolatileTooLarge {
                need,
                backbuf: layout.backbuf_bytes(),
            });
        }
        Ok(())
    }

    /// Erase, program the payload, sync, program the sealed header, sync. The header program is
    /// the commit point; everything before it is invisible to a reader.
    fn write_block(&mut self, offset: u32, fields: &Fields, data: &[u8]) -> Res<(), F> {
        let span = span_blocks(fields.payload_len, fields.erase_size) as u32;
        self.flash
            .erase(offset, offset + span * fields.erase_size)?;
        let mut at = offset + HEADER_LEN as u32;
        for chunk in data.chunks(PROGRAM_CHUNK) {
            self.flash.write(at, chunk)?;
            at += chunk.len() as u32;
        }
        self.flash.sync()?;
        self.flash.write(offset, &fields.seal())?;
        self.flash.sync()?;
        Ok(())
    }

    /// Drops a block in one single-byte program.
    fn kill(&mut self, offset: u32) -> Res<(), F> {
        self.flash.write(offset + LIVE_MARK as u32, &[MARK_SET])?;
        self.flash.sync()?;
        Ok(())
    }

    fn read_payload(&mut self, block: &Block) -> Res<Vec<u8>, F> {
        let len = block.header.fields.payload_len as usize;
        let mut data = vec![0u8; len];
        self.flash
            .read(block.offset + HEADER_LEN as u32, &mut data)?;
        Ok(data)
    }

    /// If the current volatile lives in the chain slot a new snapshot needs, give it a second
    /// copy in the back buffer first: erasing the slot would otherwise destroy its only copy.
    fn evacuate_volatile(&mut self, view: &mut ChainView, layout: &Layout) -> Res<(), F> {
        let Some(v) = view.volatile().copied() else {
            return Ok(());
        };
        if v.offset != view.next_offset {
            return Ok(());
        }
        let data = self.read_payload(&v)?;
        let mut fields = v.header.fields;
        fields.generation = view.max_generation + 1;
        fields.nonce = nonce();
        self.write_block(layout.backbuf_offset(), &fields, &data)?;
        *view = self.read();
        Ok(())
    }

    /// Writes `payload` as the volatile block, replacing the current one.
    pub fn save_volatile(&mut self, payload: &Payload<'_>) -> Res<Outcome, F> {
        let (view, layout) = self.formatted()?;
        Self::check_backbuf(&layout, payload.data.len())?;
        Self::check_chain_space(&view, &layout, payload.data.len())?;
        // Ping-pong: never overwrite the current copy.
        let target = match view.volatile() {
            Some(v) if v.offset == view.next_offset => layout.backbuf_offset(),
            _ => view.next_offset,
        };
        let sha = sha256(payload.data);
        let fields = self.fields(&view, &layout, Kind::Volatile, payload, sha);
        self.write_block(target, &fields, payload.data)?;
        Ok(Outcome::Written {
            offset: target,
            kind: Kind::Volatile,
            seq: fields.seq,
        })
    }

    /// Appends `payload` as a new snapshot on top of the chain; the volatile is superseded
    /// (its content is expected to be part of the new snapshot).
    pub fn append_snapshot(&mut self, payload: &Payload<'_>) -> Res<Outcome, F> {
        let (mut view, layout) = self.formatted()?;
        Self::check_chain_space(&view, &layout, payload.data.len())?;
        self.evacuate_volatile(&mut view, &layout)?;
        let sha = sha256(payload.data);
        let fields = self.fields(&view, &layout, Kind::Snapshot, payload, sha);
        self.write_block(view.next_offset, &fields, payload.data)?;
        Ok(Outcome::Written {
            offset: view.next_offset,
            kind: Kind::Snapshot,
            seq: fields.seq,
        })
    }

    /// Turns the current volatile into a snapshot: same content, now in the chain.
    pub fn commit(&mut self) -> Res<Outcome, F> {
        let (mut view, layout) = self.formatted()?;
        let v = *view.volatile().ok_or(WriteError::NoVolatile)?;
        let len = v.header.fields.payload_len as usize;
        if v.offset != view.next_offset {
            Self::check_chain_space(&view, &layout, len)?;
        }
        self.evacuate_volatile(&mut view, &layout)?;
        let v = *view.volatile().ok_or(WriteError::NoVolatile)?;
        let data = self.read_payload(&v)?;
        let payload = Payload {
            data: &data,
            compression: v.header.fields.compression,
            unpacked_len: v.header.fields.unpacked_len,
        };
        let fields = self.fields(
            &view,
            &layout,
            Kind::Snapshot,
            &payload,
            v.header.fields.payload_sha256,
        );
        self.write_block(view.next_offset, &fields, &data)?;
        Ok(Outcome::Committed { seq: fields.seq })
    }

    /// Keeps snapshots 1..=`keep` and drops every later one and the volatile.
    pub fn rollback(&mut self, keep: usize) -> Res<Outcome, F> {
        let (view, layout) = self.formatted()?;
        let have = view.snapshots.len();
        if keep > have {
            return Err(WriteError::NoSuchSnapshot { id: keep, have });
        }
        let base = if keep == 0 {
            [0u8; 32]
        } else {
            view.snapshots[keep - 1].header.hash
        };
        // Volatiles linked to the kept top go first, oldest first, so that no cut can bring
        // back an older volatile; then the first dropped snapshot goes in one program.
        let mut doomed: Vec<(u64, u32)> = Vec::new();
        let slot = if keep < have {
            None
        } else {
            Some(view.next_offset)
        };
        for offset in [slot, Some(layout.backbuf_offset())].into_iter().flatten() {
            if let Ok(Ok(h)) = read_header(self.flash, offset) {
                if h.fields.kind == Kind::Volatile && h.fields.prev == base && h.marks.live {
                    doomed.push((h.fields.generation, offset));
                }
            }
        }
        doomed.sort_unstable();
        let dropped_volatile = !view.volatiles.is_empty() && keep == have;
        for (_, offset) in &doomed {
            self.kill(*offset)?;
        }
        if keep < have {
            self.kill(view.snapshots[keep].offset)?;
        }
        let dropped = have - keep + usize::from(dropped_volatile);
        if dropped == 0 && doomed.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        Ok(Outcome::RolledBack {
            kept: keep,
            dropped,
        })
    }

    /// Erases every erase block that holds nothing visible and is not already erased: the
    /// leftovers of interrupted writes and dropped blocks. Idempotent, and safe at any cut,
    /// since it never touches a visible block. The first erase block of a chain without
    /// snapshots is kept: it may hold the layout marker.
    pub fn repair(&mut self) -> Res<Outcome, F> {
        let (view, layout) = self.formatted()?;
        let erased_blocks = self.erase_unused(&view, &layout, true)?;
        Ok(Outcome::Repaired { erased_blocks })
    }

    /// Erases the erase blocks no visible block uses and that are not erased already; with
    /// `keep_marker`, offset 0 of a chain without snapshots stays (the layout marker).
    fn erase_unused(
        &mut self,
        view: &ChainView,
        layout: &Layout,
        keep_marker: bool,
    ) -> Res<u32, F> {
        let e = layout.erase_size;
        let total = layout.total_blocks();
        let mut used = vec![false; total as usize];
        for b in view.snapshots.iter().chain(view.volatiles.iter()) {
            let first = b.offset / e;
            let span = b.header.span_blocks() as u32;
            for i in first..(first + span).min(total) {
                used[i as usize] = true;
            }
        }
        if keep_marker && view.snapshots.is_empty() {
            used[0] = true;
        }
        let mut erased_blocks = 0;
        let mut buf = vec![0u8; e as usize];
        for i in 0..total {
            if used[i as usize] {
                continue;
            }
            self.flash.read(i * e, &mut buf)?;
            if buf.iter().all(|&b| b == 0xFF) {
                continue;
            }
            self.flash.erase(i * e, (i + 1) * e)?;
            erased_blocks += 1;
        }
        if erased_blocks > 0 {
            self.flash.sync()?;
        }
        Ok(erased_blocks)
    }

    /// Makes the partition an empty chain. A foreign partition is erased whole; a chain is first
    /// rolled back to nothing (atomic), then erased. With
    /// `backbuf_blocks` set, the back-buffer size is recorded in a layout marker at offset 0.
    pub fn format(&mut self) -> Res<Outcome, F> {
        let view = self.read();
        let requested = self.backbuf_blocks;
        // The requested size wins over the one an old chain recorded.
        let layout = {
            let mut v = view.clone();
            if requested.is_some() {
                v.layout.backbuf_blocks = 0;
            }
            self.layout(&v)?
        };
        let e = layout.erase_size;
        let erased_blocks = if matches!(view.status, Status::Unformatted(_) | Status::Unreadable) {
            self.flash.erase(0, layout.total_blocks() * e)?;
            self.flash.sync()?;
            layout.total_blocks()
        } else {
            // The rollback is the commit point; after it nothing on flash is visible, and
            // erasing it all, offset 0 included, can only leave garbage that reads as empty.
            self.rollback(0)?;
            let view = self.read();
            self.erase_unused(&view, &layout, false)?
        };
        if requested.is_some() {
            self.write_layout_marker(&layout)?;
        }
        Ok(Outcome::Formatted { erased_blocks })
    }

    /// An empty chain has no header to carry the back-buffer size, so format leaves one: an
    /// empty volatile at offset 0 whose live mark is programmed *before* its sealed header,
    /// so it is never visible as a live block, only readable for its layout fields.
    fn write_layout_marker(&mut self, layout: &Layout) -> Res<(), F> {
        let view = self.read();
        let payload = Payload {
            data: &[],
            compression: Compression::None,
            unpacked_len: 0,
        };
        let mut fields = self.fields(&view, layout, Kind::Volatile, &payload, sha256(&[]));
        fields.prev = [0; 32];
        fields.seq = 0;
        self.flash.erase(0, layout.erase_size)?;
        self.flash.sync()?;
        self.flash.write(LIVE_MARK as u32, &[MARK_SET])?;
        self.flash.sync()?;
        self.flash.write(0, &fields.seal())?;
        self.flash.sync()?;
        Ok(())
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut out = [0u8; 32];
    out.copy_from_slice(&sha2::Sha256::digest(data));
    out
}
