//! An in-memory NOR flash that can lose power: the ground truth for the power-cut tests.
//!
//! NOR semantics: erase sets a whole erase block to 0xFF; programming can only clear bits, and
//! programming a byte twice between erases is a writer bug, reported as an error. Every erase
//! (per erase block) and every program call is one *operation*; the simulator can be told to cut
//! power at operation K, tearing that operation physically (a program lands a prefix or some of
//! its cleared bits; an erase sets a prefix or some of the bits), after which every operation
//! fails until `power_on`.
//!
//! With `with_write_back`, it is flash behind a write-back cache instead (block2mtd over a file,
//! an image file, a block device): operations change what reads see at once, but reach the
//! medium only at `sync`; at a cut, any subset of the pages written since the last sync has
//! reached it (the kernel writes dirty pages back in no particular order), chosen with
//! `set_landing`.

extern crate alloc;

use crate::flash::ReadNorFlash;
use crate::flash::{Durable, ErrorType, Geometry, NorFlash, NorFlashError, NorFlashErrorKind};
use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimError {
    /// Power is off: the operation did not happen (or was torn, if it was the cut one).
    PowerCut,
    /// A byte was programmed twice without an erase between: a bug in the writer.
    Reprogram {
        offset: u32,
    },
    NotAligned {
        offset: u32,
    },
    OutOfBounds {
        offset: u32,
    },
    /// An injected read failure (EIO from the MTD driver).
    ReadFailed {
        offset: u32,
    },
    /// An injected erase failure (the driver reports EIO; the block is bad).
    EraseFailed {
        offset: u32,
    },
    /// A NAND page programmed twice, or out of order within its PEB (ubi_sim.rs): a bug.
    NandOrder {
        offset: u32,
    },
}

/// A flash fault injected into the simulator (`SimFlash::inject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Reads touching `[from, to)` fail with EIO.
    ReadEio { from: u32, to: u32 },
    /// Reads touching `[from, to)` return the right bytes after an ECC correction (MTD's
    /// `corrected` counter rises; the read itself reports success, as mtdchar does).
    EccCorrected { from: u32, to: u32 },
    /// Reads of `[from, to)` return wrong bytes (bit 0 of each flipped) and MTD's `failed`
    /// counter rises; the read itself reports success, as mtdchar does for -EBADMSG.
    EccUncorrectable { from: u32, to: u32 },
    /// Erasing the erase block at `offset` fails with an error and changes nothing.
    EraseError { offset: u32 },
    /// Erasing the erase block at `offset` reports success and changes nothing.
    EraseSilent { offset: u32 },
    /// Programs into `[from, to)` report success and change nothing.
    ProgramDoesNotStick { from: u32, to: u32 },
}

fn overlaps(a: u32, b: u32, from: u32, to: u32) -> bool {
    a < to && from < b
}

impl NorFlashError for SimError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            SimError::NotAligned { .. } => NorFlashErrorKind::NotAligned,
            SimError::OutOfBounds { .. } => NorFlashErrorKind::OutOfBounds,
            _ => NorFlashErrorKind::Other,
        }
    }
}

/// How the operation at the cut point is torn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// The cut operation does not happen at all.
    Nothing,
    /// The first `n` bytes of the cut operation land (erase or program), the rest not.
    Prefix(usize),
    /// Every bit the operation would change changes or not at random (seeded).
    Random(u64),
    /// The operation had only begun: one of the bits it would change in its first 256 bytes
    /// (for an erase, the header of the block it erases) did: bit number `seed` modulo their
    /// count. An erase cut in its first instant raises a bit or a few and leaves the rest of
    /// a header as it was, which no other tear leaves.
    FirstInstant(u64),
}

/// Wear and traffic per erase block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStats {
    pub reads: u64,
    pub programs: u64,
    pub erases: u64,
}

/// The medium behind a write-back cache (`SimFlash::with_write_back`).
#[derive(Debug, Clone)]
struct WriteBack {
    page: usize,
    medium: Vec<u8>,
    medium_programmed: Vec<bool>,
    /// Pages written since the last sync (page indices).
    dirty: BTreeSet<usize>,
    /// Which dirty pages, in index order, reach the medium at the cut.
    landing: Vec<bool>,
}

impl WriteBack {
    /// The byte range of page `p` in a flash of `len` bytes.
    fn range(&self, p: usize, len: usize) -> core::ops::Range<usize> {
        p * self.page..((p + 1) * self.page).min(len)
    }

    /// Page `p` of the cache (`mem`, `programmed`) reaches the medium.
    fn land(&mut self, p: usize, mem: &[u8], programmed: &[bool]) {
        let r = self.range(p, mem.len());
        self.medium[r.clone()].copy_from_slice(&mem[r.clone()]);
        self.medium_programmed[r.clone()].copy_from_slice(&programmed[r]);
    }
}

#[derive(Debug, Clone)]
pub struct SimFlash {
    mem: Vec<u8>,
    programmed: Vec<bool>,
    erase_size: u32,
    ops: u64,
    cut_at: Option<(u64, Tear)>,
    powered: bool,
    stats: Vec<BlockStats>,
    faults: Vec<Fault>,
    ecc_corrected: u64,
    ecc_failed: u64,
    write_back: Option<WriteBack>,
}

/// xorshift64*: deterministic bits for torn operations.
fn next_random(state: &mut u64) -> u64 {
    let mut x = (*state).max(1);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

impl SimFlash {
    /// A fully erased flash of `blocks` erase blocks.
    pub fn new(erase_size: u32, blocks: u32) -> Self {
        let len = erase_size as usize * blocks as usize;
        SimFlash {
            mem: vec![0xFF; len],
            programmed: vec![false; len],
            erase_size,
            ops: 0,
            cut_at: None,
            powered: true,
            stats: vec![BlockStats::default(); blocks as usize],
            faults: Vec::new(),
            ecc_corrected: 0,
            ecc_failed: 0,
            write_back: None,
        }
    }

    /// This flash, from now on behind a write-back cache of `page`-byte pages: what it holds
    /// now is on the medium.
    pub fn with_write_back(mut self, page: usize) -> Self {
        self.write_back = Some(WriteBack {
            page: page.max(1),
            medium: self.mem.clone(),
            medium_programmed: self.programmed.clone(),
            dirty: BTreeSet::new(),
            landing: Vec::new(),
        });
        self
    }

    /// Pages written since the last sync: at a cut, each may or may not reach the medium.
    pub fn dirty_pages(&self) -> usize {
        self.write_back.as_ref().map_or(0, |w| w.dirty.len())
    }

    /// Which of the `dirty_pages`, in offset order, reach the medium when power comes back
    /// after a cut (missing entries: not).
    pub fn set_landing(&mut self, landing: &[bool]) {
        if let Some(w) = &mut self.write_back {
            w.landing = landing.to_vec();
        }
    }

    fn touch(&mut self, start: usize, end: usize) {
        if let Some(w) = &mut self.write_back {
            if end > start {
                w.dirty.extend(start / w.page..=(end - 1) / w.page);
            }
        }
    }

    /// Adds a fault; it stays until `clear_faults`.
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// MTD's ECC statistics: (corrected, failed) reads so far.
    pub fn ecc_stats(&self) -> (u64, u64) {
        (self.ecc_corrected, self.ecc_failed)
    }

    /// Cut power when operation number `op` (0-based, counted from now) starts.
    pub fn cut_power_at(&mut self, op: u64, tear: Tear) {
        self.cut_at = Some((self.ops + op, tear));
    }

    /// Power comes back: the cut is disarmed, the contents stay as the cut left them.
    /// With a write-back cache, the pages `set_landing` chose reached the medium before the
    /// cut and the rest of the cache is lost.
    pub fn power_on(&mut self) {
        if let Some(w) = &mut self.write_back {
            if !self.powered {
                let dirty = core::mem::take(&mut w.dirty);
                for (k, p) in dirty.into_iter().enumerate() {
                    if w.landing.get(k).copied().unwrap_or(false) {
                        w.land(p, &self.mem, &self.programmed);
                    } else {
                        let r = w.range(p, self.mem.len());
                        self.mem[r.clone()].copy_from_slice(&w.medium[r.clone()]);
                        self.programmed[r.clone()].copy_from_slice(&w.medium_programmed[r]);
                    }
                }
                w.landing.clear();
            }
        }
        self.cut_at = None;
        self.powered = true;
    }

    pub fn powered(&self) -> bool {
        self.powered
    }

    /// Flash operations (erase blocks erased, programs) issued so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    pub fn contents(&self) -> &[u8] {
        &self.mem
    }

    pub fn stats(&self) -> &[BlockStats] {
        &self.stats
    }

    /// Flips one bit, as bit rot would.
    pub fn flip_bit(&mut self, offset: usize, bit: u8) {
        self.mem[offset] ^= 1 << (bit & 7);
    }

    /// Starts operation `ops`: `Ok(None)` runs it whole, `Ok(Some(tear))` runs it torn and then
    /// power is off.
    fn begin(&mut self) -> Result<Option<Tear>, SimError> {
        if !self.powered {
            return Err(SimError::PowerCut);
        }
        let this = self.ops;
        self.ops += 1;
        match self.cut_at {
            Some((at, tear)) if at == this => {
                self.powered = false;
                Ok(Some(tear))
            }
            _ => Ok(None),
        }
    }

    fn block_of(&self, offset: usize) -> usize {
        offset / self.erase_size as usize
    }

    fn erase_one(&mut self, start: usize) -> Result<(), SimError> {
        let tear = self.begin()?;
        self.touch(start, start + self.erase_size as usize);
        let block = self.block_of(start);
        self.stats[block].erases += 1;
        for f in &self.faults {
            match *f {
                Fault::EraseError { offset }
                    if offset as usize / self.erase_size as usize == block =>
                {
                    return Err(SimError::EraseFailed {
                        offset: start as u32,
                    })
                }
                Fault::EraseSilent { offset }
                    if offset as usize / self.erase_size as usize == block =>
                {
                    return Ok(())
                }
                _ => {}
            }
        }
        let len = self.erase_size as usize;
        let range = start..start + len;
        match tear {
            None => {
                self.mem[range.clone()].fill(0xFF);
                self.programmed[range].fill(false);
                Ok(())
            }
            Some(Tear::Nothing) => Err(SimError::PowerCut),
            Some(Tear::Prefix(n)) => {
                let end = start + n.min(len);
                self.mem[start..end].fill(0xFF);
                self.programmed[start..end].fill(false);
                Err(SimError::PowerCut)
            }
            Some(Tear::Random(seed)) => {
                // A half-done erase can only have raised bits.
                let mut state = seed;
                for i in range {
                    self.mem[i] |= next_random(&mut state) as u8;
                }
                Err(SimError::PowerCut)
            }
            Some(Tear::FirstInstant(seed)) => {
                let head = start..start + len.min(FIRST_INSTANT_BYTES);
                let zeros: Vec<u8> = self.mem[head].iter().map(|&b| !b).collect();
                if let Some((i, bit)) = nth_set_bit(&zeros, seed) {
                    self.mem[start + i] |= bit;
                }
                Err(SimError::PowerCut)
            }
        }
    }
}

/// Where `Tear::FirstInstant` changes a bit: the first bytes of the operation.
const FIRST_INSTANT_BYTES: usize = 256;

/// The byte index and mask of set bit number `seed` (modulo their count) of `bits`.
fn nth_set_bit(bits: &[u8], seed: u64) -> Option<(usize, u8)> {
    let count: u64 = bits.iter().map(|b| u64::from(b.count_ones())).sum();
    let mut n = seed.checked_rem(count)?;
    for (i, &b) in bits.iter().enumerate() {
        let ones = u64::from(b.count_ones());
        if n < ones {
            let bit = (0..8)
                .map(|k| 1u8 << k)
                .filter(|m| b & m != 0)
                .nth(n as usize)?;
            return Some((i, bit));
        }
        n -= ones;
    }
    None
}

impl ErrorType for SimFlash {
    type Error = SimError;
}

impl Geometry for SimFlash {
    fn erase_size(&self) -> u32 {
        self.erase_size
    }
}

impl ReadNorFlash for SimFlash {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        let start = offset as usize;
        let end = start
            .checked_add(bytes.len())
            .filter(|&e| e <= self.mem.len())
            .ok_or(SimError::OutOfBounds { offset })?;
        let (a, b) = (start as u32, end as u32);
        for f in &self.faults {
            if let Fault::ReadEio { from, to } = *f {
                if overlaps(a, b, from, to) {
                    return Err(SimError::ReadFailed {
                        offset: from.max(a),
                    });
                }
            }
        }
        bytes.copy_from_slice(&self.mem[start..end]);
        for f in &self.faults {
            match *f {
                Fault::EccCorrected { from, to } if overlaps(a, b, from, to) => {
                    self.ecc_corrected += 1;
                }
                Fault::EccUncorrectable { from, to } if overlaps(a, b, from, to) => {
                    self.ecc_failed += 1;
                    for i in from.max(a)..to.min(b) {
                        bytes[(i - a) as usize] ^= 1;
                    }
                }
                _ => {}
            }
        }
        if !bytes.is_empty() {
            for b in self.block_of(start)..=self.block_of(end - 1) {
                self.stats[b].reads += 1;
            }
        }
        Ok(())
    }

    fn capacity(&self) -> usize {
        self.mem.len()
    }
}

impl NorFlash for SimFlash {
    const WRITE_SIZE: usize = 1;
    /// The real erase size is `Geometry::erase_size`, checked at run time.
    const ERASE_SIZE: usize = 1;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        if from % self.erase_size != 0 || to % self.erase_size != 0 || to < from {
            return Err(SimError::NotAligned { offset: from });
        }
        if to as usize > self.mem.len() {
            return Err(SimError::OutOfBounds { offset: from });
        }
        let mut at = from as usize;
        while at < to as usize {
            self.erase_one(at)?;
            at += self.erase_size as usize;
        }
        Ok(())
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        let start = offset as usize;
        let end = start
            .checked_add(bytes.len())
            .filter(|&e| e <= self.mem.len())
            .ok_or(SimError::OutOfBounds { offset })?;
        if let Some(i) = (start..end).find(|&i| self.programmed[i]) {
            return Err(SimError::Reprogram { offset: i as u32 });
        }
        let tear = self.begin()?;
        self.touch(start, end);
        if !bytes.is_empty() {
            for b in self.block_of(start)..=self.block_of(end - 1) {
                self.stats[b].programs += 1;
            }
        }
        let stuck = |i: usize| {
            self.faults.iter().any(|f| {
                matches!(*f, Fault::ProgramDoesNotStick { from, to }
                    if (from as usize..to as usize).contains(&i))
            })
        };
        let landed = match tear {
            None => bytes.len(),
            Some(Tear::Nothing) => return Err(SimError::PowerCut),
            Some(Tear::Prefix(n)) => n.min(bytes.len()),
            // NOR programs one byte as a unit (docs/FORMAT.md): a cut one-byte program (a
            // mark) happened or did not.
            Some(Tear::Random(seed) | Tear::FirstInstant(seed)) if bytes.len() == 1 => {
                if seed & 1 == 1 {
                    self.mem[start] &= bytes[0];
                    self.programmed[start] = true;
                }
                return Err(SimError::PowerCut);
            }
            Some(Tear::Random(seed)) => {
                let mut state = seed;
                for (i, &b) in bytes.iter().enumerate() {
                    // Some of the bits that should clear did.
                    let partial = b | next_random(&mut state) as u8;
                    self.mem[start + i] &= partial;
                    self.programmed[start + i] = true;
                }
                return Err(SimError::PowerCut);
            }
            Some(Tear::FirstInstant(seed)) => {
                let clear: Vec<u8> = bytes
                    .iter()
                    .take(FIRST_INSTANT_BYTES)
                    .zip(&self.mem[start..end])
                    .map(|(&b, &m)| m & !b)
                    .collect();
                if let Some((i, bit)) = nth_set_bit(&clear, seed) {
                    self.mem[start + i] &= !bit;
                    self.programmed[start + i] = true;
                }
                return Err(SimError::PowerCut);
            }
        };
        let stuck: Vec<bool> = (start..start + landed).map(stuck).collect();
        for (i, &b) in bytes[..landed].iter().enumerate() {
            if stuck[i] {
                continue;
            }
            self.mem[start + i] &= b;
            self.programmed[start + i] = true;
        }
        if landed < bytes.len() {
            Err(SimError::PowerCut)
        } else {
            Ok(())
        }
    }
}

impl Durable for SimFlash {
    /// Without a write-back cache every operation is durable when it returns; with one, the
    /// pages written since the last sync reach the medium now.
    fn sync(&mut self) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerCut);
        }
        if let Some(w) = &mut self.write_back {
            for p in core::mem::take(&mut w.dirty) {
                w.land(p, &self.mem, &self.programmed);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nor_rules() {
        let mut f = SimFlash::new(256, 4);
        f.write(0, &[0x0F]).unwrap();
        assert_eq!(f.contents()[0], 0x0F);
        assert_eq!(f.write(0, &[0x00]), Err(SimError::Reprogram { offset: 0 }));
        f.erase(0, 256).unwrap();
        assert_eq!(f.contents()[0], 0xFF);
        assert_eq!(f.erase(1, 256), Err(SimError::NotAligned { offset: 1 }));
    }

    #[test]
    fn cut_tears_and_stays_off() {
        let mut f = SimFlash::new(256, 4);
        f.cut_power_at(1, Tear::Prefix(2));
        f.write(0, &[1, 2, 3]).unwrap();
        assert_eq!(f.write(10, &[0, 0, 0, 0]), Err(SimError::PowerCut));
        assert_eq!(&f.contents()[10..14], &[0, 0, 0xFF, 0xFF]);
        assert_eq!(f.write(20, &[0]), Err(SimError::PowerCut));
        f.power_on();
        f.write(20, &[0]).unwrap();
    }

    #[test]
    fn write_back_loses_what_did_not_land_and_keeps_what_was_synced() {
        let mut f = SimFlash::new(256, 4).with_write_back(128);
        f.write(0, &[1]).unwrap();
        f.sync().unwrap();
        f.write(10, &[2]).unwrap(); // page 0
        f.write(300, &[3]).unwrap(); // page 2
        f.write(600, &[4]).unwrap(); // page 4
        assert_eq!(f.contents()[300], 3, "reads see the cache");
        f.cut_power_at(0, Tear::Nothing);
        assert_eq!(f.write(700, &[5]), Err(SimError::PowerCut));
        assert_eq!(f.dirty_pages(), 4, "pages 0, 2, 4 and the cut one's");
        f.set_landing(&[false, true, false, true]);
        f.power_on();
        let c = f.contents();
        assert_eq!(
            (c[0], c[10], c[300], c[600], c[700]),
            (1, 0xFF, 3, 0xFF, 0xFF)
        );
        // What did not land may be programmed again; what landed may not.
        f.write(10, &[6]).unwrap();
        assert_eq!(f.write(300, &[0]), Err(SimError::Reprogram { offset: 300 }));
        assert_eq!(f.dirty_pages(), 1);
    }

    #[test]
    fn torn_erase_only_raises_bits() {
        let mut f = SimFlash::new(256, 2);
        f.write(0, &[0u8; 256]).unwrap();
        f.cut_power_at(0, Tear::Random(7));
        assert_eq!(f.erase(0, 256), Err(SimError::PowerCut));
        let c = f.contents();
        assert!(c[..256].iter().any(|&b| b != 0) && c[..256].iter().any(|&b| b != 0xFF));
    }
}
