//! Unit tests for the volatile layer's cap (a pure module of PID 1, compiled here on the
//! host). The cap itself at boot: tests/init_boot.rs.

#[path = "../src/init/ram.rs"]
#[allow(dead_code)]
mod ram;

use ram::{default_reserve, volatile_cap, MIN_CAP};

const MIB: u64 = 1 << 20;

#[test]
fn a_small_snapshot_layer_leaves_the_kernels_default() {
    // 128 MiB, 100 free once the snapshots are laid out: half of RAM stays the limit.
    assert_eq!(
        volatile_cap(128 * MIB, 100 * MIB, default_reserve(128 * MIB)),
        None
    );
}

#[test]
fn a_large_snapshot_layer_caps_the_volatile_at_what_is_free_less_the_reserve() {
    // 64 MiB, a snapshot layer of 30: 20 free, a reserve of 4 (a sixteenth).
    assert_eq!(default_reserve(64 * MIB), 4 * MIB);
    assert_eq!(
        volatile_cap(64 * MIB, 20 * MIB, default_reserve(64 * MIB)),
        Some(16 * MIB)
    );
}

#[test]
fn the_reserve_is_at_least_2_mib_and_the_cap_never_zero() {
    assert_eq!(default_reserve(16 * MIB), 2 * MIB);
    // Nothing left: the smallest layer, not size=0 (which tmpfs reads as no limit).
    assert_eq!(volatile_cap(64 * MIB, MIB, 4 * MIB), Some(MIN_CAP));
    assert_eq!(volatile_cap(64 * MIB, 0, u64::MAX), Some(MIN_CAP));
    // A reserve past all of RAM (`snapinit.reserve` of a test) caps it all the same.
    assert_eq!(
        volatile_cap(u64::MAX, u64::MAX / 4, u64::MAX),
        Some(MIN_CAP)
    );
}
