//! How much RAM the volatile layer may take.
//!
//! Each layer is a tmpfs of the kernel's default size, half of RAM, and without swap a
//! tmpfs page is never reclaimed: a snapshot layer near its half and a volatile filling its
//! own leave the kernel nothing, and with PID 1 the only process the out-of-memory killer
//! has nothing to kill. The kernel panics, at every boot, and a block on trial never spends
//! its mark (a boot spends it after the replay), so a bundle that makes the snapshot layer
//! large would loop the unit for good. Once the snapshots are laid out, the volatile layer
//! therefore gets at most the RAM free then, less a reserve for the kernel and the first
//! services. A volatile that does not fit is refused (no space left on device): the boot
//! runs without it, its record says `volatile-not-booted`, and `snapshot health` vouches for
//! no block on trial, which then rolls back.

const MIB: u64 = 1 << 20;

/// The smallest volatile layer: a tmpfs of size 0 has no limit at all.
pub const MIN_CAP: u64 = MIB;

/// The reserve when `snapinit.reserve` gives none: a sixteenth of RAM, at least 2 MiB.
pub fn default_reserve(total: u64) -> u64 {
    (total / 16).max(2 * MIB)
}

/// The volatile layer's size in bytes when it must be smaller than the kernel's default (half
/// of `total`): `avail`, the RAM free once the snapshots are laid out, less `reserve`; never
/// below [`MIN_CAP`]. `None`: the default stands.
pub fn volatile_cap(total: u64, avail: u64, reserve: u64) -> Option<u64> {
    let cap = avail.saturating_sub(reserve).max(MIN_CAP);
    (cap < total / 2).then_some(cap)
}
