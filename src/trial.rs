//! Spending a trial boot (docs/FORMAT.md, "Trial boots"): the one flash write the boot path
//! makes. Here, not in PID 1's code, so the power-cut tests run the very same function.

use crate::chain::{read_header, Block};
use crate::flash::{Durable, NorFlash, ReadNorFlash};
use crate::header::{Trial, MARK_SET, TRIAL_MARKS};

/// Why a trial boot could not be spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendError<E> {
    Flash(E),
    /// The header is not what the walk read (another writer changed it): nothing was written.
    Changed,
    /// The block is not on trial (confirmed, or its boots are spent): nothing to spend.
    NotOnTrial,
}

impl<E: core::fmt::Display> core::fmt::Display for SpendError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpendError::Flash(e) => write!(f, "flash: {e}"),
            SpendError::Changed => f.write_str("the block's header changed since it was read"),
            SpendError::NotOnTrial => f.write_str("the block is not on trial"),
        }
    }
}

/// Programs the next trial mark of `block` (as the walk read it): one byte from 0xFF to 0x00,
/// then a sync. Re-reads the header first and writes nothing unless it is unchanged. Returns
/// the marks spent now and the budget. On a block whose allowed boots are all spent, this is
/// the roll-back mark (`used` becomes budget + 1: `Trial::Exhausted`).
pub fn spend<F>(flash: &mut F, block: &Block) -> Result<(u8, u16), SpendError<F::Error>>
where
    F: NorFlash + ReadNorFlash + Durable,
{
    let Trial::OnTrial { used, budget } = block.header.trial() else {
        return Err(SpendError::NotOnTrial);
    };
    match read_header(flash, block.offset) {
        Ok(Ok(h)) if h == block.header => {}
        _ => return Err(SpendError::Changed),
    }
    let at = block.offset + TRIAL_MARKS as u32 + u32::from(used);
    flash.write(at, &[MARK_SET]).map_err(SpendError::Flash)?;
    flash.sync().map_err(SpendError::Flash)?;
    Ok((used + 1, budget))
}
