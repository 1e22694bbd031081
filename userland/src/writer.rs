//! Every write to the chain, each atomic under power loss.
//!
//! One rule makes them atomic: a new block becomes visible in exactly one single program — its
//! sealed header, written last and after a sync — and an old block disappears in exactly one
//! single-byte program, its `live` mark. Whenever an operation must destroy the only copy of
//! something still visible (the volatile living in the slot a new snapshot needs), it first
//! writes a second copy to the back buffer. docs/FORMAT.md walks through each operation.

pub mod jffs2;
pub mod survey;

use snapinit::chain::{
    read_chain, read_header, Block, ChainView, End, Layout, Reject, Status, MAX_SNAPSHOTS,
};
use snapinit::flash::{Durable, Geometry, NorFlash, ReadNorFlash};
use snapinit::header::{
    decode, span_blocks, Compression, Digest32, Fields, Kind, Trial, CONFIRM_MARK, FAILED_MARKS,
    FAILED_MARKS_LEN, HEADER_LEN, LIVE_MARK, MARK_CLEAR, MARK_SET, SEALED_MARK,
};
use std::time::{SystemTime, UNIX_EPOCH};
pub use survey::{survey, survey_to, Depth, Survey, Suspect};

/// Buffer for streaming reads while verifying.
/// Reads of checks and surveys: one erase block per call on most NOR (4 KiB cost 16 calls).
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WriteError<E: core::fmt::Debug> {
    #[error("the volatile at {offset:#x} is on trial and its last allowed boot is spent: `snapshot confirm` keeps it, or a reboot rolls it back; then commit")]
    TrialSpent { offset: u32 },
    #[error("flash operation failed: {0:?}")]
    Flash(E),
    #[error("the partition holds {0}, not a snapinit chain (`snapshot convert` or `snapshot format --force`)")]
    Unformatted(snapinit::chain::Foreign),
    #[error("the partition's first erase block cannot be read: `snapshot extract --salvage` copies out what still reads; `snapshot format --force` erases it and starts over")]
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
    /// The partition holds something that might be data and that the chain does not show:
    /// every write refuses rather than erase it.
    #[error("{}", survey::describe(.0))]
    Damaged(Vec<Suspect>),
    /// The chain records a back buffer this partition cannot have.
    #[error("the chain records a back buffer of {backbuf_blocks} erase blocks, more than half of this {total_blocks}-block partition: the image was truncated or the partition shrank (`snapshot format --force` starts over)")]
    LayoutMismatch {
        backbuf_blocks: u32,
        total_blocks: u32,
    },
    /// The chain already holds as many snapshots as the boot path reads.
    #[error("chain full: it holds {have} snapshots, the most the boot path reads ({max}); `snapshot rollback` to drop some, or `snapshot format --force` and commit the merged state (extract all, then commit it) to start a new chain")]
    ChainFull { have: usize, max: usize },
    /// An erase left bits programmed: the block is worn out or the driver failed.
    #[error("erase at {offset:#x} did not take: the erase block is bad (nothing visible changed)")]
    EraseFailed { offset: u32 },
    /// What was programmed does not read back.
    #[error(
        "program at {offset:#x} did not stick: the erase block is bad (nothing visible changed)"
    )]
    ProgramFailed { offset: u32 },
    /// Between `convert`'s check and its write, JFFS2 put a node where the overlay was to
    /// be staged (the JFFS2 is mounted read-write and in use).
    #[error("JFFS2 wrote into the erase blocks from {offset:#x} that convert was about to use: stop what writes to the JFFS2 (or unmount it) and run convert again; nothing was written")]
    StagingTaken { offset: u32 },
    /// `convert` on a partition that already holds a chain.
    #[error("the partition already holds a snapinit chain: nothing to convert (a convert cut short leaves the overlay as the volatile: `snapshot commit` makes it snapshot 1)")]
    AlreadyChain,
    /// A block's payload read back differently from its hash while it was being copied.
    #[error(
        "the {kind} at {offset:#x} no longer matches its hash while being copied; nothing written"
    )]
    CopyRead { offset: u32, kind: Kind },
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

impl<'a> Payload<'a> {
    /// An uncompressed tar: what it stores is what it unpacks to.
    pub fn plain(data: &'a [u8]) -> Self {
        Payload {
            data,
            compression: Compression::None,
            unpacked_len: data.len() as u64,
        }
    }
}

/// What a write did, for the caller's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Written { offset: u32, kind: Kind, seq: u32 },
    Committed { seq: u32 },
    RolledBack { kept: usize, dropped: usize },
    Repaired { erased_blocks: u32 },
    Formatted { erased_blocks: u32 },
    Confirmed { blocks: usize },
    Unchanged,
}

pub struct Writer<'f, F> {
    flash: &'f mut F,
    /// `format` may erase what might be data (blocks the chain does not show, unknown or
    /// foreign content): the `--force` of `snapshot format`.
    pub force: bool,
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
            force: false,
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
        } else if layout.backbuf_blocks > Layout::max_backbuf_blocks(total) {
            // The chain's own value, too large for this partition: it was made for a larger one.
            return Err(WriteError::LayoutMismatch {
                backbuf_blocks: layout.backbuf_blocks,
                total_blocks: total,
            });
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

    /// What is on flash apart from the chain, and whether a write may go ahead. Reads only:
    /// a command that refuses after it leaves flash as it was.
    pub fn survey(&mut self) -> Res<(ChainView, Layout, Survey), F> {
        self.survey_at(Depth::Headers, false)
    }

    /// `survey` reading every byte the chain does not show, as `repair` and `repair_all`
    /// do: what they list before asking is then what they erase.
    pub fn survey_full(&mut self) -> Res<(ChainView, Layout, Survey), F> {
        self.survey_at(Depth::Full, false)
    }

    /// `survey_at`; with `settle`, the write that follows starts by making the boot's trial
    /// rollbacks permanent (`settle_trials`), which the survey already counts as done.
    fn survey_at(&mut self, depth: Depth, settle: bool) -> Res<(ChainView, Layout, Survey), F> {
        let mut view = self.read();
        if let Status::Unformatted(fs) = view.status {
            return Err(WriteError::Unformatted(fs));
        }
        if view.status == Status::Unreadable {
            return Err(WriteError::Unreadable);
        }
        let layout = self.layout(&view)?;
        let survey = survey_to(self.flash, &view, &layout, depth)?;
        // Only a write that will go ahead settles; what it drops the survey counted as
        // garbage already.
        if settle && survey.suspects.is_empty() && self.settle_trials(&view)? {
            view = self.read();
        }
        Ok((view, layout, survey))
    }

    /// The chain, checked clean: every write that erases starts here. Refuses when anything on
    /// flash might be data the chain does not show; otherwise erases the provable garbage
    /// (newest first, so that what proves a block stale outlives it) and reads the chain
    /// again. The write's own `check` of the chain comes first: every refusal comes before the
    /// first change (settling a trial rollback, erasing garbage), so a command that refuses
    /// leaves flash as it was.
    fn formatted_if(
        &mut self,
        check: impl FnOnce(&ChainView, &Layout) -> Res<(), F>,
    ) -> Res<(ChainView, Layout), F> {
        let (mut view, layout, survey) = self.survey_at(Depth::Headers, false)?;
        if !survey.suspects.is_empty() {
            return Err(WriteError::Damaged(survey.suspects));
        }
        check(&view, &layout)?;
        if self.settle_trials(&view)? {
            view = self.read();
        }
        if self.erase_blocks(&layout, &survey.garbage)? > 0 {
            view = self.read();
        }
        view.max_generation = view.max_generation.max(survey.max_generation);
        Ok((view, layout))
    }

    /// Erases the listed erase blocks in order, checking each; returns how many. The order
    /// is what keeps every cut provable (FORMAT.md, "Why erase order matters"), so each erase
    /// is synced before the next: on a write-back medium (block2mtd over a page cache) the
    /// final flush would otherwise write the blocks back lowest first.
    fn erase_blocks(&mut self, layout: &Layout, blocks: &[u32]) -> Res<u32, F> {
        let e = layout.erase_size;
        for &i in blocks {
            self.erase_checked(i * e, (i + 1) * e)?;
            self.flash.sync()?;
        }
        Ok(blocks.len() as u32)
    }

    /// Erases `[from, to)` and reads it back: an erase that leaves a programmed bit is a bad
    /// block, reported before anything is programmed over it.
    fn erase_checked(&mut self, from: u32, to: u32) -> Res<(), F> {
        self.drop_before_erase(from)?;
        self.flash.erase(from, to)?;
        let mut buf = vec![0u8; READ_CHUNK];
        let mut at = from;
        while at < to {
            let n = (to - at).min(READ_CHUNK as u32);
            let chunk = &mut buf[..n as usize];
            self.flash.read(at, chunk)?;
            if !erased(chunk) {
                let i = chunk.iter().position(|&b| b != 0xFF).unwrap_or(0);
                return Err(WriteError::EraseFailed {
                    offset: at + i as u32,
                });
            }
            at += n;
        }
        Ok(())
    }

    /// Drops a live header at `at` (one byte) before its erase. An erase cut in its first
    /// instant raises a few bits of the sealed part and nothing else: a live header changed
    /// that way reads as damage to data (`header::damage`) and every later write would refuse;
    /// a dropped one reads as garbage. Not on UBI, whose erase cannot tear (and where the
    /// program would cost an atomic LEB change).
    fn drop_before_erase(&mut self, at: u32) -> Res<(), F> {
        if !self.flash.erase_tears() {
            return Ok(());
        }
        let mut h = [0u8; HEADER_LEN];
        // Unreadable: the erase that follows reports the part.
        if self.flash.read(at, &mut h).is_ok() && decode(&h).is_ok() && h[LIVE_MARK] == MARK_CLEAR {
            self.kill(at)?;
        }
        Ok(())
    }

    /// Programs `data` at `offset` and reads it back.
    fn program_checked(&mut self, offset: u32, data: &[u8]) -> Res<(), F> {
        self.flash.write(offset, data)?;
        let mut back = vec![0u8; data.len()];
        self.flash.read(offset, &mut back)?;
        if back != data {
            let i = back.iter().zip(data).position(|(a, b)| a != b).unwrap_or(0);
            return Err(WriteError::ProgramFailed {
                offset: offset + i as u32,
            });
        }
        Ok(())
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
            trial_budget: self.trial_budget,
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

    /// A snapshot past `MAX_SNAPSHOTS` would never boot: refuse it.
    fn check_chain_room(view: &ChainView) -> Res<(), F> {
        let have = view.snapshots.len();
        if have >= MAX_SNAPSHOTS {
            return Err(WriteError::ChainFull {
                have,
                max: MAX_SNAPSHOTS,
            });
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

    /// Erase, program the payload, sync, program the sealed header, sync, then the sealed mark.
    /// The header program is the commit point; everything before it is invisible to a reader.
    /// Every erase and program is read back first: a bad block is reported before the commit
    /// point, so a failing part never leaves less visible than it found.
    fn write_block(&mut self, offset: u32, fields: &Fields, data: &[u8]) -> Res<(), F> {
        let span = span_blocks(fields.payload_len, fields.erase_size) as u32;
        self.erase_checked(offset, offset + span * fields.erase_size)?;
        // One program per erase block the payload touches: on UBI each program is one atomic
        // LEB change (ubi.rs), so a program must not split an erase block.
        let e = fields.erase_size;
        let mut at = offset + HEADER_LEN as u32;
        let mut rest = data;
        while !rest.is_empty() {
            let n = rest.len().min((e - at % e) as usize);
            self.program_checked(at, &rest[..n])?;
            rest = &rest[n..];
            at += n as u32;
        }
        self.flash.sync()?;
        self.program_checked(offset, &fields.seal())?;
        self.flash.sync()?;
        self.seal_mark(offset)?;
        Ok(())
    }

    /// Sets the sealed mark of a header whose sealed part is whole: from now on a change to
    /// that header reads as damage to data, not as an interrupted write.
    fn seal_mark(&mut self, offset: u32) -> Res<(), F> {
        self.flash.write(offset + SEALED_MARK as u32, &[MARK_SET])?;
        self.flash.sync()?;
        Ok(())
    }

    /// Drops a block in one single-byte program.
    fn kill(&mut self, offset: u32) -> Res<(), F> {
        self.program_checked(offset + LIVE_MARK as u32, &[MARK_SET])?;
        self.flash.sync()?;
        Ok(())
    }

    /// A verified block's payload, checked against its hash once more as read: a copy is only
    /// ever made of bytes that are what the header says.
    fn read_payload(&mut self, block: &Block) -> Res<Vec<u8>, F> {
        let len = usize::try_from(block.header.fields.payload_len).unwrap_or(usize::MAX);
        let mut data = vec![0u8; len];
        self.flash
            .read(block.offset + HEADER_LEN as u32, &mut data)?;
        if sha256(&data) != block.header.fields.payload_sha256 {
            return Err(WriteError::CopyRead {
                offset: block.offset,
                kind: block.header.fields.kind,
            });
        }
        Ok(data)
    }

    /// A snapshot written now takes the volatile's place (commit turns it into one, an append
    /// supersedes it). While the volatile runs its last allowed trial boot, which confirms it
    /// or is rolled back, the write refuses until `confirm` or the roll-back: a copy made to
    /// evacuate its slot cannot carry a spent trial, and what a commit does must not depend
    /// on which slot the volatile lies in.
    pub fn check_trial_left(view: &ChainView) -> Res<(), F> {
        match view.volatile() {
            Some(v) if v.header.trial_spent() => Err(WriteError::TrialSpent { offset: v.offset }),
            _ => Ok(()),
        }
    }

    /// If the volatile copy that must outlive the write lives in the chain slot a new snapshot
    /// needs ([`evacuee`]), give it a second copy in the back buffer first: erasing the slot
    /// would otherwise destroy its only copy.
    /// `current_data`: the current copy's payload when the caller has read it already (a
    /// commit), so that it is not held twice.
    fn evacuate_volatile(
        &mut self,
        view: &mut ChainView,
        layout: &Layout,
        current_data: Option<&[u8]>,
    ) -> Res<(), F> {
        let Some(v) = evacuee(view) else {
            return Ok(());
        };
        let read;
        let data = match current_data {
            Some(d) if view.volatile() == Some(&v) => d,
            _ => {
                read = self.read_payload(&v)?;
                &read[..]
            }
        };
        let mut fields = v.header.fields;
        fields.generation = view.max_generation + 1;
        fields.nonce = nonce();
        // The copy carries on the trial where the original stands (fresh marks would give
        // back the boots already spent), and a confirmed original makes a confirmed copy.
        fields.trial_budget = match v.header.trial() {
            // Its last allowed boot is spent (and running, or about to be rolled back): a copy
            // cannot carry that, so the write waits for `confirm` or the roll-back.
            Trial::OnTrial { used, budget } if u16::from(used) >= budget => {
                return Err(WriteError::TrialSpent { offset: v.offset })
            }
            Trial::OnTrial { used, budget } => budget - u16::from(used),
            Trial::Confirmed | Trial::Exhausted { .. } => 0,
        };
        self.write_block(layout.backbuf_offset(), &fields, data)?;
        *view = self.read();
        Ok(())
    }

    /// Marks every block on trial good, lowest first (a cut leaves the lower ones confirmed and
    /// the upper still on trial: never an upper block confirmed over an unconfirmed one). One
    /// single-byte program each.
    pub fn confirm(&mut self) -> Res<Outcome, F> {
        self.confirm_where(|_| true)
    }

    /// `confirm` of the blocks on trial a boot has already tried (a trial boot spent): what
    /// `snapshot health` vouches for. A block written since the boot keeps its trial.
    pub fn confirm_booted(&mut self) -> Res<Outcome, F> {
        self.confirm_where(|used| used > 0)
    }

    /// Confirming programs one byte inside headers the chain read has just verified and erases
    /// nothing: unlike the writes, it needs no clean partition. Refused over unrelated damage
    /// (a suspect block elsewhere), a good boot on trial would roll back for it.
    fn confirm_where(&mut self, take: impl Fn(u8) -> bool) -> Res<Outcome, F> {
        let view = self.read();
        let on_trial: Vec<u32> = view
            .snapshots
            .iter()
            .chain(view.volatile())
            .filter(|b| matches!(b.header.trial(), Trial::OnTrial { used, .. } if take(used)))
            .map(|b| b.offset)
            .collect();
        for offset in &on_trial {
            self.program_checked(offset + CONFIRM_MARK as u32, &[MARK_SET])?;
            self.flash.sync()?;
        }
        Ok(Outcome::Confirmed {
            blocks: on_trial.len(),
        })
    }

    /// Records on the block with header hash `hash`, while it is on trial, which kinds of
    /// health check failed (`failed`: bit i for the mark at `FAILED_MARKS + i`), so that its
    /// rollback can still say why after the reboot. One single-byte program per mark not yet
    /// set, so a cut leaves a subset set; what boots and the trial state never change. A block
    /// no longer on trial (confirmed meanwhile, rolled back and replaced) gets nothing: `Ok(0)`.
    pub fn mark_failed(&mut self, hash: &[u8; 32], failed: u8) -> Res<usize, F> {
        // As confirming: bytes inside a verified header, nothing erased.
        let view = self.read();
        let Some(block) =
            view.snapshots.iter().chain(view.volatile()).find(|b| {
                b.header.hash == *hash && matches!(b.header.trial(), Trial::OnTrial { .. })
            })
        else {
            return Ok(0);
        };
        let (offset, have) = (block.offset, block.header.marks.failed);
        let mut programmed = 0;
        for i in 0..FAILED_MARKS_LEN {
            if failed & !have & (1 << i) != 0 {
                self.program_checked(offset + (FAILED_MARKS + i) as u32, &[MARK_SET])?;
                self.flash.sync()?;
                programmed += 1;
            }
        }
        Ok(programmed)
    }

    /// Makes a rollback the boot path did by trial exhaustion permanent: the exhausted block
    /// (and so everything linked above it) is dropped by its live mark, as `rollback` would.
    /// The boot already leaves it out, so a cut on either side of the one-byte program shows
    /// the same state.
    fn settle_trials(&mut self, view: &ChainView) -> Res<bool, F> {
        let mut doomed: Vec<u32> = view
            .rejected_volatiles
            .iter()
            .filter(|r| r.reason == Reject::TrialExhausted)
            .map(|r| r.offset)
            .collect();
        let mut dropped = 0;
        if let End::Rejected(r) = view.end {
            if r.reason == Reject::TrialExhausted {
                // The boot takes no volatile above a rolled-back snapshot, but once it is
                // dropped the walk would take one linked to the snapshot below (the copy an
                // append left in the back buffer): those go first, as in `rollback`.
                let backbuf = view.layout.backbuf_offset();
                dropped += self.drop_volatiles_on(&view.top_hash(), &[backbuf])?;
                doomed.push(r.offset);
            }
        }
        for offset in &doomed {
            self.kill(*offset)?;
        }
        Ok(dropped + doomed.len() > 0)
    }

    /// Drops the live volatile copies linked to `base` among those at `offsets`, oldest
    /// first, so that no cut can bring back an older one; gives how many it dropped.
    fn drop_volatiles_on(&mut self, base: &Digest32, offsets: &[u32]) -> Res<usize, F> {
        let mut doomed: Vec<(u64, u32)> = Vec::new();
        for &offset in offsets {
            if let Ok(Ok(h)) = read_header(self.flash, offset) {
                if h.fields.kind == Kind::Volatile && h.fields.prev == *base && h.marks.live {
                    doomed.push((h.fields.generation, offset));
                }
            }
        }
        doomed.sort_unstable();
        for (_, offset) in &doomed {
            self.kill(*offset)?;
        }
        Ok(doomed.len())
    }

    /// Writes `payload` as the volatile block, replacing the current one.
    pub fn save_volatile(&mut self, payload: &Payload<'_>) -> Res<Outcome, F> {
        let len = payload.data.len();
        let (view, layout) = self.formatted_if(|view, layout| {
            Self::check_backbuf(layout, len)?;
            Self::check_chain_space(view, layout, len)
        })?;
        let on_trial = |b: &Block| matches!(b.header.trial(), Trial::OnTrial { .. });
        let target = match (view.volatiles.first(), view.volatiles.get(1)) {
            // A failed trial comes back to the other copy: while the current copy is on trial
            // and the other is confirmed, the trial copy is the one replaced, so the last
            // confirmed state survives this save (a cut meanwhile shows it: the state the
            // trial would have come back to). Two saves on trial in a row destroyed it.
            (Some(current), Some(other)) if on_trial(current) && !on_trial(other) => current.offset,
            // Ping-pong: never overwrite the current copy.
            (Some(v), _) if v.offset == view.next_offset => layout.backbuf_offset(),
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
        let len = payload.data.len();
        let (mut view, layout) = self.formatted_if(|view, layout| {
            Self::check_chain_room(view)?;
            Self::check_chain_space(view, layout, len)?;
            Self::check_trial_left(view)
        })?;
        self.evacuate_volatile(&mut view, &layout, None)?;
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
        let (mut view, layout) = self.formatted_if(|view, layout| {
            let v = view.volatile().ok_or(WriteError::NoVolatile)?;
            Self::check_chain_room(view)?;
            if v.offset != view.next_offset {
                let len = usize::try_from(v.header.fields.payload_len).unwrap_or(usize::MAX);
                Self::check_chain_space(view, layout, len)?;
            }
            Self::check_trial_left(view)
        })?;
        // Read before the evacuation, which may replace this copy with the confirmed one a
        // trial comes back to.
        let v = *view.volatile().ok_or(WriteError::NoVolatile)?;
        let data = self.read_payload(&v)?;
        self.evacuate_volatile(&mut view, &layout, Some(&data))?;
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

    /// Where `convert` can stage a JFFS2 overlay's payload of `len` bytes before anything of
    /// the JFFS2 is erased: the back buffer of a fresh layout (the requested or default size,
    /// or as many erase blocks as the payload needs, at most half the partition), when none of
    /// its erase blocks holds a JFFS2 node. `None`: the payload does not fit half the partition,
    /// or JFFS2 keeps data there. Reads only.
    pub fn jffs2_staging(&mut self, len: usize) -> Res<Option<Layout>, F> {
        let mut layout = Layout {
            capacity: u32::try_from(self.flash.capacity()).unwrap_or(u32::MAX),
            erase_size: self.flash.erase_size(),
            backbuf_blocks: 0,
        };
        let total = layout.total_blocks();
        if total < 2 {
            return Err(WriteError::TooSmall { blocks: total });
        }
        let need = span_blocks(len as u64, layout.erase_size);
        let wanted = u64::from(
            self.backbuf_blocks
                .unwrap_or_else(|| Layout::default_backbuf_blocks(total)),
        );
        let blocks = wanted.max(need);
        let max = Layout::max_backbuf_blocks(total).min(u32::from(u16::MAX));
        if blocks > u64::from(max) {
            return Ok(None);
        }
        layout.backbuf_blocks = blocks as u32;
        let e = layout.erase_size;
        let mut buf = vec![0u8; e as usize];
        for i in (total - layout.backbuf_blocks)..total {
            self.flash.read(i * e, &mut buf)?;
            if jffs2::holds_nodes(&buf) {
                return Ok(None);
            }
        }
        Ok(Some(layout))
    }

    /// `convert` of a JFFS2 partition without a moment when the overlay is only in RAM: the
    /// payload is first written as the volatile in the back buffer of `layout` (from
    /// `jffs2_staging`: erase blocks where JFFS2 keeps nothing), with the JFFS2 untouched;
    /// from its sealed header on, the boot shows it (the first slot holds no chain, so the
    /// reader finds the back buffer by the volatile's own size field: FORMAT.md, "The
    /// chain"). Then `commit` makes it snapshot 1: the JFFS2 is by then unrecognised data on a
    /// chain, garbage it erases. A cut before the header leaves the JFFS2 as it was; after it,
    /// `snapshot commit` finishes.
    pub fn convert_staged(&mut self, layout: &Layout, payload: &Payload<'_>) -> Res<Outcome, F> {
        let view = self.read();
        match view.status {
            Status::Unformatted(_) | Status::Empty => {}
            Status::Unreadable => return Err(WriteError::Unreadable),
            // Perhaps staged by an earlier run that was cut: `commit` is what is left, and
            // only the caller can tell that from a chain to leave alone.
            Status::Chain => return Err(WriteError::AlreadyChain),
        }
        let fresh = self.jffs2_staging(payload.data.len())?;
        if fresh != Some(*layout) {
            return Err(WriteError::StagingTaken {
                offset: layout.backbuf_offset(),
            });
        }
        Self::check_backbuf(layout, payload.data.len())?;
        let sha = sha256(payload.data);
        let fields = self.fields(&view, layout, Kind::Volatile, payload, sha);
        self.write_block(layout.backbuf_offset(), &fields, payload.data)?;
        self.commit()
    }

    /// Keeps snapshots 1..=`keep` and drops every later one and the volatile.
    pub fn rollback(&mut self, keep: usize) -> Res<Outcome, F> {
        let (view, layout) = self.formatted_if(|view, _| {
            let have = view.snapshots.len();
            if keep > have {
                return Err(WriteError::NoSuchSnapshot { id: keep, have });
            }
            Ok(())
        })?;
        self.rollback_in(&view, &layout, keep)
    }

    fn rollback_in(&mut self, view: &ChainView, layout: &Layout, keep: usize) -> Res<Outcome, F> {
        let have = view.snapshots.len();
        if keep > have {
            return Err(WriteError::NoSuchSnapshot { id: keep, have });
        }
        let base = if keep == 0 {
            [0u8; 32]
        } else {
            view.snapshots[keep - 1].header.hash
        };
        // Volatiles linked to the kept top go first; then the first dropped snapshot goes in
        // one program.
        let backbuf = layout.backbuf_offset();
        let slots: &[u32] = if keep < have {
            &[backbuf]
        } else {
            &[view.next_offset, backbuf]
        };
        let volatiles_dropped = self.drop_volatiles_on(&base, slots)?;
        let dropped_volatile = !view.volatiles.is_empty() && keep == have;
        if keep < have {
            self.kill(view.snapshots[keep].offset)?;
        }
        let dropped = have - keep + usize::from(dropped_volatile);
        if dropped == 0 && volatiles_dropped == 0 {
            return Ok(Outcome::Unchanged);
        }
        Ok(Outcome::RolledBack {
            kept: keep,
            dropped,
        })
    }

    /// Erases every erase block that holds provable garbage: the leftovers of interrupted
    /// writes, dropped blocks and superseded copies. Idempotent, and safe at any cut, since it
    /// never touches a visible block. Refuses (erasing nothing) while anything on flash might
    /// be data: `repair_all` is the confirmed form. The first erase block of a chain without
    /// snapshots is kept: it may hold the layout marker.
    pub fn repair(&mut self) -> Res<Outcome, F> {
        let (_, layout, survey) = self.survey_at(Depth::Full, true)?;
        if !survey.suspects.is_empty() {
            return Err(WriteError::Damaged(survey.suspects));
        }
        let erased_blocks = self.erase_blocks(&layout, &survey.garbage)?;
        Ok(Outcome::Repaired { erased_blocks })
    }

    /// `snapshot repair --yes`: erases everything the chain does not show, garbage and
    /// suspects alike (newest first), leaving exactly the visible chain. Refuses a foreign or
    /// unknown partition: that is `format --force`.
    pub fn repair_all(&mut self) -> Res<Outcome, F> {
        let (_, layout, survey) = self.survey_at(Depth::Full, true)?;
        if !survey.identity {
            if let Some(s) = survey.suspects.first() {
                return Err(WriteError::Damaged(vec![*s]));
            }
        }
        let mut blocks: Vec<u32> = survey
            .garbage
            .iter()
            .chain(survey.suspect_blocks.iter())
            .copied()
            .collect();
        blocks.sort_unstable_by(|a, b| b.cmp(a));
        let erased_blocks = self.erase_blocks(&layout, &blocks)?;
        Ok(Outcome::Repaired { erased_blocks })
    }

    /// Makes the partition an empty chain. Without `force` it refuses anything that might be
    /// data besides the chain itself (the chain is what format is asked to drop). A chain is
    /// first rolled back to nothing (atomic), then every erase block is erased, last first, so
    /// that offset 0 keeps its snapinit header until nothing else is left; a foreign or unknown
    /// partition is erased whole the same way. With `backbuf_blocks` set, the back-buffer size
    /// is then recorded in a layout marker at offset 0.
    pub fn format(&mut self) -> Res<Outcome, F> {
        let view = self.read();
        let requested = self.backbuf_blocks;
        // The requested size wins over the one an old chain recorded.
        let layout = {
            let mut v = view.clone();
            let total = v.layout.total_blocks();
            let unusable = v.layout.backbuf_blocks > Layout::max_backbuf_blocks(total);
            if unusable && !self.force {
                return Err(WriteError::LayoutMismatch {
                    backbuf_blocks: v.layout.backbuf_blocks,
                    total_blocks: total,
                });
            }
            if requested.is_some() || unusable {
                v.layout.backbuf_blocks = 0;
            }
            self.layout(&v)?
        };
        let e = layout.erase_size;
        let total = layout.total_blocks();
        let chain = match view.status {
            Status::Unformatted(fs) if !self.force => return Err(WriteError::Unformatted(fs)),
            Status::Unreadable if !self.force => return Err(WriteError::Unreadable),
            Status::Unformatted(_) | Status::Unreadable => false,
            Status::Chain | Status::Empty => {
                let survey = survey(self.flash, &view, &view_layout(&view, &layout))?;
                if !survey.suspects.is_empty() && !self.force {
                    return Err(WriteError::Damaged(survey.suspects));
                }
                survey.identity
            }
        };
        if chain {
            // The rollback is the commit point; after it nothing on flash is visible.
            let vl = view_layout(&view, &layout);
            self.rollback_in(&view, &vl, 0)?;
        }
        let mut erased_blocks = 0;
        for i in (0..total).rev() {
            // One that cannot be read is erased too: format is what every refusal of an
            // unreadable partition points to, and on UBI the erase moves a LEB off the PEB
            // whose ECC failed (the read-back after it says whether it took).
            if all_erased(self.flash, i * e, e).unwrap_or(false) {
                continue;
            }
            // Highest first, each synced before the next (as in `erase_blocks`).
            self.erase_checked(i * e, (i + 1) * e)?;
            self.flash.sync()?;
            erased_blocks += 1;
        }
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
        let payload = Payload::plain(&[]);
        let mut fields = self.fields(&view, layout, Kind::Volatile, &payload, sha256(&[]));
        fields.prev = [0; 32];
        fields.seq = 0;
        self.erase_checked(0, layout.erase_size)?;
        self.flash.sync()?;
        self.program_checked(LIVE_MARK as u32, &[MARK_SET])?;
        self.flash.sync()?;
        self.program_checked(0, &fields.seal())?;
        self.flash.sync()?;
        self.seal_mark(0)?;
        Ok(())
    }
}

/// The layout the chain on flash was read with: its own back buffer when it has one.
fn view_layout(view: &ChainView, fallback: &Layout) -> Layout {
    if view.layout.backbuf_blocks != 0 {
        view.layout
    } else {
        *fallback
    }
}

/// All 0xFF, eight bytes at a time: the checks read every byte a write erased or left.
pub(crate) fn erased(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let whole = words
        .by_ref()
        .all(|w| u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) == u64::MAX);
    whole && words.remainder().iter().all(|&b| b == 0xFF)
}

fn all_erased<F: ReadNorFlash>(flash: &mut F, from: u32, len: u32) -> Result<bool, F::Error> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut at = from;
    let end = from + len;
    while at < end {
        let n = (end - at).min(READ_CHUNK as u32);
        flash.read(at, &mut buf[..n as usize])?;
        if !erased(&buf[..n as usize]) {
            return Ok(false);
        }
        at += n;
    }
    Ok(true)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut out = [0u8; 32];
    out.copy_from_slice(&sha2::Sha256::digest(data));
    out
}

/// The volatile copy a new snapshot at `view.next_offset` must first copy to the back buffer
/// (the progress bar counts it too): the one that must outlive the write, when it lies in that
/// slot. That is the current copy, except while the current one is on trial over a confirmed
/// one: then the confirmed copy, the state a failed trial comes back to (as for a save over a
/// trial). With the trial in the slot and the confirmed copy in the back buffer, nothing is
/// copied: until the new snapshot's header lands a cut shows the trial or, once the slot is
/// erased, that confirmed state; copying the trial over it would leave two copies of the trial
/// (its boots given twice) and nothing to come back to. With the trial in the back buffer and
/// the confirmed copy in the slot, the confirmed copy is copied (over the trial): erasing the
/// slot would otherwise leave the trial alone, and once it ran out the unit would come back on
/// no saved changes at all.
pub fn evacuee(view: &ChainView) -> Option<Block> {
    let current = view.volatile().copied()?;
    let on_trial = |b: &Block| matches!(b.header.trial(), Trial::OnTrial { .. });
    let v = match view.volatiles.get(1) {
        Some(other) if on_trial(&current) && !on_trial(other) => *other,
        _ => current,
    };
    (v.offset == view.next_offset).then_some(v)
}
