//! An in-memory UBI volume on NAND that can lose power: the ground truth for the power-cut
//! tests of the UBI backend (ubi.rs), as `sim::SimFlash` is for NOR.
//!
//! It models what UBI does on the flash, not only what it promises:
//! * PEBs of NAND pages (min-I/O units). A page is programmed at most once between erases and
//!   only in order within its PEB (`SimError::NandOrder` otherwise): the NAND rule.
//! * An atomic LEB change programs a fresh PEB page by page (its VID header carries the data
//!   CRC), then the LEB is remapped, then the old PEB is erased. On attach UBI takes the newer
//!   PEB only if its data CRC checks, so a change cut before its last page leaves the old LEB.
//! * A LEB erase (`UBI_IOCEBER`) unmaps the LEB and erases its PEB before returning: one
//!   operation, after which the LEB reads erased.
//!
//! Operations (a page program, an erase) are counted; `cut_power_at(k)` cuts power when
//! operation k starts. What a cut leaves is what UBI's attach would find: any page of an
//! unfinished change is lost with the change, so the tear of the cut operation does not matter.

extern crate alloc;

use crate::flash::{Durable, ErrorType, Geometry, NorFlash, ReadNorFlash};
use crate::sim::{SimError, Tear};
use crate::ubi::{self, Leb};
use alloc::vec;
use alloc::vec::Vec;

/// Traffic of a volume, for pinning the cost of a write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UbiStats {
    /// Atomic LEB changes that landed.
    pub changes: u64,
    /// LEB erases (`UBI_IOCEBER`).
    pub leb_erases: u64,
    /// NAND pages programmed.
    pub pages: u64,
    /// PEBs erased (by LEB erases and by the changes that freed a PEB).
    pub peb_erases: u64,
}

#[derive(Debug, Clone)]
struct Peb {
    data: Vec<u8>,
    /// Pages programmed since the last erase (the NAND write pointer).
    written: u32,
    erases: u64,
    /// Its data reads as an uncorrectable ECC error (`EBADMSG`) until it is erased.
    rotten: bool,
}

/// A pending atomic change: the bytes handed so far.
#[derive(Debug, Clone)]
struct Change {
    lnum: u32,
    len: u32,
    data: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct UbiSim {
    leb_size: u32,
    page: u32,
    pebs: Vec<Peb>,
    /// LEB -> PEB.
    eba: Vec<Option<usize>>,
    change: Option<Change>,
    ops: u64,
    cut_at: Option<u64>,
    powered: bool,
    stats: UbiStats,
}

impl UbiSim {
    /// A volume of `lebs` LEBs of `leb_size` bytes (a multiple of `page`), all unmapped, on
    /// `lebs + spare` PEBs.
    pub fn new(leb_size: u32, page: u32, lebs: u32, spare: u32) -> Self {
        assert!(
            page > 0 && leb_size % page == 0,
            "LEB size must be whole pages"
        );
        let peb = Peb {
            data: vec![0xFF; leb_size as usize],
            written: 0,
            erases: 0,
            rotten: false,
        };
        UbiSim {
            leb_size,
            page,
            pebs: vec![peb; (lebs + spare) as usize],
            eba: vec![None; lebs as usize],
            change: None,
            ops: 0,
            cut_at: None,
            powered: true,
            stats: UbiStats::default(),
        }
    }

    pub fn cut_power_at(&mut self, op: u64) {
        self.cut_at = Some(self.ops + op);
    }

    /// Power comes back: UBI attaches again. An unfinished change is gone.
    pub fn power_on(&mut self) {
        self.cut_at = None;
        self.powered = true;
        self.change = None;
    }

    pub fn ops(&self) -> u64 {
        self.ops
    }

    pub fn stats(&self) -> UbiStats {
        self.stats
    }

    /// Erase counts per PEB (UBI's wear levelling picks the least-erased free PEB).
    pub fn peb_erases(&self) -> Vec<u64> {
        self.pebs.iter().map(|p| p.erases).collect()
    }

    /// The volume as a reader sees it (unmapped LEBs erased).
    pub fn contents(&self) -> Vec<u8> {
        let mut out = vec![0xFF; self.eba.len() * self.leb_size as usize];
        for (lnum, peb) in self.eba.iter().enumerate() {
            if let Some(p) = peb {
                let at = lnum * self.leb_size as usize;
                out[at..at + self.leb_size as usize].copy_from_slice(&self.pebs[*p].data);
            }
        }
        out
    }

    /// Flips one bit of the volume as read (bit rot that UBI's ECC missed).
    pub fn flip_bit(&mut self, offset: usize, bit: u8) {
        let p = self.mapped_peb(offset / self.leb_size as usize);
        self.pebs[p].data[offset % self.leb_size as usize] ^= 1 << (bit & 7);
    }

    /// The PEB behind LEB `lnum`, mapping a free one to an unmapped LEB (a fault injected
    /// there lands on what the LEB's next read finds).
    fn mapped_peb(&mut self, lnum: usize) -> usize {
        match self.eba[lnum] {
            Some(p) => p,
            None => {
                let p = self.free_peb().expect("a free PEB");
                self.eba[lnum] = Some(p);
                p
            }
        }
    }

    /// The PEB behind LEB `lnum` rots past what its ECC corrects: every read of the LEB fails
    /// (UBI hands a dynamic volume's reader `EBADMSG`) until the LEB is erased or changed,
    /// which puts it on another PEB.
    pub fn rot_leb(&mut self, lnum: u32) {
        let p = self.mapped_peb(lnum as usize);
        self.pebs[p].rotten = true;
    }

    fn begin(&mut self) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerCut);
        }
        let this = self.ops;
        self.ops += 1;
        if self.cut_at == Some(this) {
            self.powered = false;
            self.change = None;
            return Err(SimError::PowerCut);
        }
        Ok(())
    }

    /// The least-erased PEB no LEB maps.
    fn free_peb(&self) -> Option<usize> {
        (0..self.pebs.len())
            .filter(|p| !self.eba.contains(&Some(*p)))
            .min_by_key(|&p| self.pebs[p].erases)
    }

    fn erase_peb(&mut self, p: usize) -> Result<(), SimError> {
        self.begin()?;
        let peb = &mut self.pebs[p];
        peb.data.fill(0xFF);
        peb.written = 0;
        peb.rotten = false;
        peb.erases += 1;
        self.stats.peb_erases += 1;
        Ok(())
    }

    /// Programs page `index` of PEB `p`: the NAND rule is that pages go once each, in order.
    pub fn program_page(&mut self, p: usize, index: u32, data: &[u8]) -> Result<(), SimError> {
        let page = self.page as usize;
        if index != self.pebs[p].written || data.len() != page || index * self.page >= self.leb_size
        {
            return Err(SimError::NandOrder {
                offset: index * self.page,
            });
        }
        self.begin()?;
        let at = index as usize * page;
        let peb = &mut self.pebs[p];
        peb.data[at..at + page].copy_from_slice(data);
        peb.written += 1;
        self.stats.pages += 1;
        Ok(())
    }

    /// Lands a complete change: a fresh PEB written page by page (an erased one: pages after
    /// `len` stay erased), then the remap, then the old PEB's erase.
    fn land(&mut self, change: Change) -> Result<(), SimError> {
        let fresh = self.free_peb().ok_or(SimError::OutOfBounds {
            offset: change.lnum * self.leb_size,
        })?;
        if self.pebs[fresh].written != 0 {
            self.erase_peb(fresh)?;
        }
        let page = self.page as usize;
        let mut data = change.data;
        data.resize(data.len().div_ceil(page) * page, 0xFF);
        for (i, chunk) in data.chunks(page).enumerate() {
            self.program_page(fresh, i as u32, chunk)?;
        }
        // The last page made the new PEB's data CRC whole: from here attach takes it.
        let old = self.eba[change.lnum as usize].replace(fresh);
        self.stats.changes += 1;
        if let Some(old) = old {
            self.erase_peb(old)?;
        }
        Ok(())
    }
}

impl ErrorType for UbiSim {
    type Error = SimError;
}

impl Leb for UbiSim {
    fn leb_size(&self) -> u32 {
        self.leb_size
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerCut);
        }
        let e = self.leb_size as usize;
        let start = offset as usize;
        if start + buf.len() > self.eba.len() * e {
            return Err(SimError::OutOfBounds { offset });
        }
        for (i, b) in buf.iter_mut().enumerate() {
            let at = start + i;
            *b = match self.eba[at / e] {
                Some(p) if self.pebs[p].rotten => {
                    return Err(SimError::ReadFailed { offset: at as u32 })
                }
                Some(p) => self.pebs[p].data[at % e],
                None => 0xFF,
            };
        }
        Ok(())
    }

    fn erase_leb(&mut self, lnum: u32) -> Result<(), SimError> {
        if lnum as usize >= self.eba.len() || self.change.is_some() {
            return Err(SimError::OutOfBounds {
                offset: lnum * self.leb_size,
            });
        }
        self.stats.leb_erases += 1;
        match self.eba[lnum as usize] {
            // Unmapping alone is not durable (the old PEB would come back at attach); the
            // PEB's erase is the operation.
            Some(p) => {
                self.erase_peb(p)?;
                self.eba[lnum as usize] = None;
                Ok(())
            }
            None => {
                if !self.powered {
                    return Err(SimError::PowerCut);
                }
                Ok(())
            }
        }
    }

    fn change_begin(&mut self, lnum: u32, len: u32) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerCut);
        }
        if lnum as usize >= self.eba.len() || len > self.leb_size || self.change.is_some() {
            return Err(SimError::OutOfBounds {
                offset: lnum * self.leb_size,
            });
        }
        self.change = Some(Change {
            lnum,
            len,
            data: Vec::with_capacity(len as usize),
        });
        Ok(())
    }

    fn change_data(&mut self, data: &[u8]) -> Result<(), SimError> {
        if !self.powered {
            return Err(SimError::PowerCut);
        }
        let Some(change) = self.change.as_mut() else {
            return Err(SimError::OutOfBounds { offset: 0 });
        };
        if change.data.len() + data.len() > change.len as usize {
            return Err(SimError::OutOfBounds {
                offset: change.lnum * self.leb_size,
            });
        }
        change.data.extend_from_slice(data);
        if change.data.len() == change.len as usize {
            let change = self.change.take().expect("pending change");
            self.land(change)?;
        }
        Ok(())
    }
}

/// The NOR interface over any `Leb`, as the writer and the reader use it: the same mapping
/// the device backend makes (ubi.rs).
#[derive(Debug, Clone)]
pub struct OnUbi<L>(pub L);

impl OnUbi<UbiSim> {
    /// Same signature as `SimFlash::cut_power_at`: a cut LEB change never tears (UBI's CRC),
    /// so the tear is ignored.
    pub fn cut_power_at(&mut self, op: u64, _tear: Tear) {
        self.0.cut_power_at(op);
    }

    pub fn power_on(&mut self) {
        self.0.power_on();
    }

    pub fn ops(&self) -> u64 {
        self.0.ops()
    }
}

impl<L: Leb> ErrorType for OnUbi<L> {
    type Error = L::Error;
}

impl<L: Leb> Geometry for OnUbi<L> {
    fn erase_size(&self) -> u32 {
        self.0.leb_size()
    }

    fn erase_tears(&self) -> bool {
        false
    }
}

impl ReadNorFlash for OnUbi<UbiSim> {
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), SimError> {
        Leb::read(&mut self.0, offset, bytes)
    }

    fn capacity(&self) -> usize {
        self.0.eba.len() * self.0.leb_size as usize
    }
}

impl NorFlash for OnUbi<UbiSim> {
    const WRITE_SIZE: usize = 1;
    const ERASE_SIZE: usize = 1;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), SimError> {
        let e = self.0.leb_size;
        if from % e != 0 || to % e != 0 || to < from {
            return Err(SimError::NotAligned { offset: from });
        }
        if to as usize > self.capacity() {
            return Err(SimError::OutOfBounds { offset: from });
        }
        ubi::erase(&mut self.0, from, to)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), SimError> {
        if offset as usize + bytes.len() > self.capacity() {
            return Err(SimError::OutOfBounds { offset });
        }
        ubi::program(&mut self.0, offset, bytes)
    }
}

impl Durable for OnUbi<UbiSim> {
    fn sync(&mut self) -> Result<(), SimError> {
        if !self.0.powered {
            return Err(SimError::PowerCut);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_go_once_each_in_order() {
        let mut u = UbiSim::new(256, 64, 4, 1);
        let page = [0u8; 64];
        u.program_page(0, 0, &page).unwrap();
        assert_eq!(
            u.program_page(0, 0, &page),
            Err(SimError::NandOrder { offset: 0 })
        );
        assert_eq!(
            u.program_page(0, 2, &page),
            Err(SimError::NandOrder { offset: 128 })
        );
        u.program_page(0, 1, &page).unwrap();
    }

    #[test]
    fn a_program_is_one_atomic_change_per_leb() {
        let mut f = OnUbi(UbiSim::new(256, 64, 4, 1));
        f.write(250, &[0u8; 12]).unwrap();
        assert_eq!(f.0.stats().changes, 2);
        // A mark: one byte, one change; programming it again changes nothing.
        f.write(0, &[0]).unwrap();
        f.write(0, &[0]).unwrap();
        assert_eq!(f.0.stats().changes, 3);
        let mut b = [0u8; 4];
        f.read(0, &mut b).unwrap();
        assert_eq!(b, [0, 0xFF, 0xFF, 0xFF]);
        // NOR semantics: a program only clears bits.
        f.write(1, &[0x0F]).unwrap();
        f.write(1, &[0xF1]).unwrap();
        f.read(1, &mut b[..1]).unwrap();
        assert_eq!(b[0], 0x01);
    }

    #[test]
    fn a_cut_change_leaves_the_old_leb() {
        let mut f = OnUbi(UbiSim::new(256, 64, 4, 1));
        f.write(0, &[0x11; 200]).unwrap();
        let before = f.0.contents();
        // The change of 256 bytes: four pages, then the old PEB's erase.
        for cut in 0..5 {
            let mut g = f.clone();
            g.cut_power_at(cut, Tear::Nothing);
            let r = g.write(100, &[0; 156]);
            g.power_on();
            let after = g.0.contents();
            if cut < 4 {
                assert_eq!(r, Err(SimError::PowerCut));
                assert_eq!(after, before, "cut at {cut}");
            } else {
                assert_eq!(after[100..256], [0; 156], "cut at {cut}");
            }
        }
    }

    #[test]
    fn erase_is_atomic_and_reads_erased() {
        let mut f = OnUbi(UbiSim::new(256, 64, 4, 1));
        f.write(256, &[0x22; 10]).unwrap();
        let mut g = f.clone();
        g.cut_power_at(0, Tear::Nothing);
        assert_eq!(g.erase(256, 512), Err(SimError::PowerCut));
        g.power_on();
        assert_eq!(g.0.contents(), f.0.contents());
        f.erase(256, 512).unwrap();
        assert!(f.0.contents().iter().all(|&b| b == 0xFF));
    }
}
