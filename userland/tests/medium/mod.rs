//! The simulated media the power-cut tests run on: NOR (`SimFlash`) and a UBI volume on NAND
//! (`OnUbi<UbiSim>`), behind one trait so each test is written once.
#![allow(dead_code)]

use snapinit::chain::{read_chain_with, Volatiles};
use snapinit::flash::{Durable, Geometry, NorFlash, ReadNorFlash};
use snapinit::header::Trial;
use snapinit::sim::{SimError, SimFlash, Tear};
use snapinit::trial::{spend, SpendError};
use snapinit::ubi_sim::{OnUbi, UbiSim};

/// NAND pages per LEB in the UBI runs.
const PAGES_PER_LEB: u32 = 8;

/// A simulated medium the writes are cut on: NOR (every program and erase tears physically) or
/// a UBI volume on NAND (ubi_sim.rs: atomic LEB changes and erases).
pub trait Medium: NorFlash<Error = SimError> + ReadNorFlash + Geometry + Durable + Clone {
    fn blank(erase: u32, blocks: u32) -> Self;
    fn cut_power_at(&mut self, op: u64, tear: Tear);
    fn power_on(&mut self);
    fn ops(&self) -> u64;
    fn contents(&self) -> Vec<u8>;
    fn flip_bit(&mut self, offset: usize, bit: u8);
    /// The tears of the cut operation that can differ on this medium.
    fn tears() -> Vec<Tear>;
}

impl Medium for SimFlash {
    fn blank(erase: u32, blocks: u32) -> Self {
        SimFlash::new(erase, blocks)
    }
    fn cut_power_at(&mut self, op: u64, tear: Tear) {
        SimFlash::cut_power_at(self, op, tear)
    }
    fn power_on(&mut self) {
        SimFlash::power_on(self)
    }
    fn ops(&self) -> u64 {
        SimFlash::ops(self)
    }
    fn contents(&self) -> Vec<u8> {
        SimFlash::contents(self).to_vec()
    }
    fn flip_bit(&mut self, offset: usize, bit: u8) {
        SimFlash::flip_bit(self, offset, bit)
    }
    /// Nothing lands, prefixes around the header's sealed part (191 is one byte short of it)
    /// and inside payload programs, and two random partial operations.
    fn tears() -> Vec<Tear> {
        vec![
            Tear::Nothing,
            Tear::Prefix(1),
            Tear::Prefix(100),
            Tear::Prefix(191),
            Tear::Prefix(700),
            Tear::Random(0x9E37_79B9_7F4A_7C15),
            Tear::Random(0x0123_4567_89AB_CDEF),
            Tear::FirstInstant(0x2545_F491_4F6C_DD1D),
        ]
    }
}

impl Medium for OnUbi<UbiSim> {
    fn blank(erase: u32, blocks: u32) -> Self {
        OnUbi(UbiSim::new(erase, erase / PAGES_PER_LEB, blocks, 4))
    }
    fn cut_power_at(&mut self, op: u64, tear: Tear) {
        OnUbi::cut_power_at(self, op, tear)
    }
    fn power_on(&mut self) {
        OnUbi::power_on(self)
    }
    fn ops(&self) -> u64 {
        OnUbi::ops(self)
    }
    fn contents(&self) -> Vec<u8> {
        self.0.contents()
    }
    fn flip_bit(&mut self, offset: usize, bit: u8) {
        self.0.flip_bit(offset, bit)
    }
    /// A cut page program of an unfinished LEB change is lost with the change (UBI checks the
    /// new PEB's data CRC at attach), and a LEB erase happened or did not: one variant.
    fn tears() -> Vec<Tear> {
        vec![Tear::Nothing]
    }
}

pub type Ubi = OnUbi<UbiSim>;

/// Distinct, recognisable bytes for payload `tag`.
pub fn pattern(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_mul(31).wrapping_add((i % 251) as u8))
        .collect()
}

/// The boot path's writes, decided as PID 1 decides them (src/init/mod.rs): a snapshot
/// whose allowed boots are spent gets its roll-back mark, and so do spent volatile copies;
/// then the lowest booted block still on trial spends a mark. Whether it wrote anything.
pub fn boot<F: Medium>(flash: &mut F) -> Result<bool, SpendError<SimError>> {
    let mut buf = [0u8; 512];
    let view = read_chain_with(flash, &mut buf, Volatiles::Deferred);
    if let Some(b) = view.snapshots.iter().find(|b| b.header.trial_spent()) {
        return spend(flash, b).map(|_| true);
    }
    let mut wrote = false;
    let mut booted = None;
    for v in &view.unverified_volatiles {
        if v.header.trial_spent() {
            spend(flash, v)?;
            wrote = true;
        } else {
            booted = Some(*v);
            break;
        }
    }
    let lowest = view
        .snapshots
        .iter()
        .chain(booted.as_ref())
        .find(|b| matches!(b.header.trial(), Trial::OnTrial { .. }))
        .copied();
    match lowest {
        Some(b) => spend(flash, &b).map(|_| true),
        None => Ok(wrote),
    }
}
