//! Power cuts at every flash operation of every write, on chains of several shapes, and single
//! bit flips in every header and a sample of payload bytes.
//!
//! After each cut the reader must show exactly the old or exactly the new state (decoded block
//! contents, not counts), `repair` must succeed without changing what is visible, and the next
//! write must succeed.

mod medium;

use medium::{pattern, Medium, Ubi};
use snapinit::chain::{read_chain, ChainView};
use snapinit::header::{HEADER_LEN, SEALED_LEN};
use snapinit::sim::{SimError, SimFlash, Tear};
use snapshot::writer::{Outcome, Payload, WriteError, Writer};

const ERASE: u32 = 1024;
const BLOCKS: u32 = 32;
const BACKBUF: u32 = 4;

/// What the boot path would replay: snapshot payloads oldest first, then the volatile's.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    snapshots: Vec<Vec<u8>>,
    volatile: Option<Vec<u8>>,
}

fn payload_bytes<F: Medium>(view: &ChainView, flash: &mut F, b: &snapinit::Block) -> Vec<u8> {
    let _ = view;
    let mut data = vec![0u8; b.header.fields.payload_len as usize];
    snapinit::flash::ReadNorFlash::read(flash, b.offset + HEADER_LEN as u32, &mut data)
        .expect("sim read");
    data
}

fn state<F: Medium>(flash: &mut F) -> State {
    let mut buf = [0u8; 512];
    let view = read_chain(flash, &mut buf);
    let snapshots = view
        .snapshots
        .iter()
        .map(|b| payload_bytes(&view, flash, b))
        .collect();
    let volatile = view.volatile().map(|b| payload_bytes(&view, flash, b));
    State {
        snapshots,
        volatile,
    }
}

/// Distinct, recognisable payloads of varied sizes (1 to 4 erase blocks with the header).

#[derive(Debug, Clone, Copy)]
enum Op {
    Save(u8, usize),
    Append(u8, usize),
    Commit,
    Rollback(usize),
    Repair,
    Format,
    /// `repair --yes`: erases everything the chain does not show.
    RepairAll,
    /// `format --force`.
    FormatForce,
}

fn apply<F: Medium>(flash: &mut F, op: Op) -> Result<Outcome, WriteError<SimError>> {
    let mut w = Writer::new(flash);
    w.backbuf_blocks = Some(BACKBUF);
    match op {
        Op::Save(t, n) => w.save_volatile(&Payload::plain(&pattern(t, n))),
        Op::Append(t, n) => w.append_snapshot(&Payload::plain(&pattern(t, n))),
        Op::Commit => w.commit(),
        Op::Rollback(k) => w.rollback(k),
        Op::Repair => w.repair(),
        Op::Format => w.format(),
        Op::RepairAll => w.repair_all(),
        Op::FormatForce => {
            w.force = true;
            w.format()
        }
    }
}

struct Shape<F> {
    name: &'static str,
    flash: F,
    /// Every state the chain went through while being built.
    history: Vec<State>,
}

fn build<F: Medium>(name: &'static str, ops: &[Op]) -> Shape<F> {
    let mut flash = F::blank(ERASE, BLOCKS);
    let mut history = vec![state(&mut flash)];
    for &op in ops {
        apply(&mut flash, op).unwrap_or_else(|e| panic!("{name}: building with {op:?}: {e}"));
        history.push(state(&mut flash));
    }
    Shape {
        name,
        flash,
        history,
    }
}

fn shapes<F: Medium>() -> Vec<Shape<F>> {
    use Op::*;
    vec![
        build("empty", &[]),
        build("layout marker only", &[Format]),
        build("1 snapshot", &[Append(1, 700)]),
        build(
            "5 snapshots",
            &[
                Append(1, 300),
                Append(2, 1500),
                Append(3, 100),
                Append(4, 2500),
                Append(5, 800),
            ],
        ),
        build("volatile only", &[Save(1, 900)]),
        build(
            "1 snapshot + volatile in its slot",
            &[Append(1, 700), Save(2, 1200)],
        ),
        build(
            "1 snapshot + volatile in the back buffer",
            &[Append(1, 700), Save(2, 1200), Save(3, 2000)],
        ),
        build(
            "5 snapshots + volatile, back buffer in use",
            &[
                Append(1, 300),
                Append(2, 1500),
                Append(3, 100),
                Append(4, 2500),
                Append(5, 800),
                Save(6, 600),
                Save(7, 1800),
                Save(8, 400),
                Save(9, 1000),
            ],
        ),
        build(
            "rolled back, stale blocks left",
            &[
                Append(1, 300),
                Save(2, 500),
                Append(3, 1200),
                Append(4, 700),
                Save(5, 900),
                Rollback(1),
            ],
        ),
        build(
            "committed volatile, stale copy in the back buffer",
            &[Append(1, 300), Save(2, 500), Save(3, 600), Commit],
        ),
    ]
}

fn ops_for<F>(shape: &Shape<F>) -> Vec<Op> {
    use Op::*;
    let top = shape.history.last().expect("history");
    let n = top.snapshots.len();
    let mut ops = vec![
        Save(40, 1700),
        Save(41, 200),
        Append(42, 2300),
        Append(43, 10),
        Repair,
        Format,
    ];
    if top.volatile.is_some() {
        ops.push(Commit);
    }
    for k in 0..=n {
        ops.push(Rollback(k));
    }
    ops
}

/// The write after the cut, and the state it must lead to from `from`.
fn follow_up(from: &State) -> (Op, State) {
    let d = pattern(99, 600);
    (
        Op::Save(99, 600),
        State {
            snapshots: from.snapshots.clone(),
            volatile: Some(d),
        },
    )
}

#[test]
fn every_cut_shows_old_or_new_and_recovers() {
    every_cut_shows_old_or_new::<SimFlash>("NOR");
}

#[test]
fn every_cut_shows_old_or_new_and_recovers_on_ubi() {
    every_cut_shows_old_or_new::<Ubi>("UBI");
}

fn every_cut_shows_old_or_new<F: Medium>(medium: &str) {
    let mut checked = 0u64;
    for shape in shapes::<F>() {
        let old = shape.history.last().expect("history").clone();
        for op in ops_for(&shape) {
            let mut whole = shape.flash.clone();
            let start = whole.ops();
            let result = apply(&mut whole, op);
            if let Err(e) = &result {
                panic!("{}: {op:?} failed without a cut: {e}", shape.name);
            }
            let new = state(&mut whole);
            let count = whole.ops() - start;
            for cut in 0..count {
                for tear in F::tears() {
                    let mut f = shape.flash.clone();
                    f.cut_power_at(cut, tear);
                    let r = apply(&mut f, op);
                    assert!(
                        matches!(r, Err(WriteError::Flash(SimError::PowerCut))),
                        "{}: {op:?} cut at {cut} returned {r:?}",
                        shape.name
                    );
                    f.power_on();
                    let seen = state(&mut f);
                    assert!(
                        seen == old || seen == new,
                        "{}: {op:?} cut at op {cut}/{count} ({tear:?}) shows a mix:\n seen {seen:?}\n old {old:?}\n new {new:?}",
                        shape.name
                    );
                    apply(&mut f, Op::Repair).unwrap_or_else(|e| {
                        panic!("{}: repair after {op:?} cut at {cut}: {e}", shape.name)
                    });
                    assert_eq!(
                        state(&mut f),
                        seen,
                        "{}: repair changed the state",
                        shape.name
                    );
                    let (next, expect) = follow_up(&seen);
                    apply(&mut f, next).unwrap_or_else(|e| {
                        panic!(
                            "{}: next write after {op:?} cut at {cut} ({tear:?}): {e}",
                            shape.name
                        )
                    });
                    assert_eq!(state(&mut f), expect, "{}: next write", shape.name);
                    checked += 1;
                }
            }
        }
    }
    println!("{medium}: cut points checked: {checked}");
    assert!(checked > 1000, "only {checked} cut points");
}

/// The pages of a write-back cache (4 per erase block, as 4 KiB pages in a 16 KiB block).
const PAGE: usize = 256;

/// The cut operation completes in the cache and power goes before anything else (its sync
/// included): with `Tear::Nothing` (it never happened) the two ends of every operation.
const DONE: Tear = Tear::Prefix(usize::MAX);

/// Which of `n` dirty pages reach the medium before a cut: every subset up to 6 pages; beyond,
/// none, all, each page alone, all but each page, and 16 seeded random subsets.
fn landings(n: usize) -> Vec<Vec<bool>> {
    if n <= 6 {
        return (0..1u32 << n)
            .map(|m| (0..n).map(|i| m >> i & 1 == 1).collect())
            .collect();
    }
    let mut out = vec![vec![false; n], vec![true; n]];
    for i in 0..n {
        out.push((0..n).map(|j| j == i).collect());
        out.push((0..n).map(|j| j != i).collect());
    }
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ n as u64;
    for _ in 0..16 {
        out.push(
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x & 1 == 1
                })
                .collect(),
        );
    }
    out
}

/// Flash behind a write-back cache (block2mtd on a file, an image file, a block device): a cut
/// at every operation of every write, with every subset (or a spread sample) of the pages
/// written since the last sync reaching the medium. What the writer syncs, and when, is what
/// keeps the old-or-new promise here; before erases were synced one by one (highest first),
/// a cut `format --force` could leave offset 0 erased below an older chain.
#[test]
fn every_cut_under_write_back_shows_old_or_new_and_recovers() {
    let (mut checked, mut most) = (0u64, 0usize);
    for shape in shapes::<SimFlash>() {
        let old = shape.history.last().expect("history").clone();
        let cached = shape.flash.clone().with_write_back(PAGE);
        let mut ops = ops_for(&shape);
        ops.extend([Op::RepairAll, Op::FormatForce]);
        for op in ops {
            let mut whole = cached.clone();
            let start = whole.ops();
            apply(&mut whole, op)
                .unwrap_or_else(|e| panic!("{}: {op:?} failed without a cut: {e}", shape.name));
            let new = state(&mut whole);
            let count = whole.ops() - start;
            for (cut, tear) in (0..count).flat_map(|c| [(c, Tear::Nothing), (c, DONE)]) {
                let mut f = cached.clone();
                f.cut_power_at(cut, tear);
                let r = apply(&mut f, op);
                assert!(
                    matches!(r, Err(WriteError::Flash(SimError::PowerCut))),
                    "{}: {op:?} cut at {cut} ({tear:?}) returned {r:?}",
                    shape.name
                );
                let n = f.dirty_pages();
                most = most.max(n);
                for landing in landings(n) {
                    let mut g = f.clone();
                    g.set_landing(&landing);
                    g.power_on();
                    let seen = state(&mut g);
                    let at = format!(
                        "{}: {op:?} cut at op {cut}/{count} ({tear:?}), landed {landing:?}",
                        shape.name
                    );
                    assert!(
                        seen == old || seen == new,
                        "{at}: shows a mix:\n seen {seen:?}\n old {old:?}\n new {new:?}"
                    );
                    apply(&mut g, Op::Repair).unwrap_or_else(|e| panic!("{at}: repair: {e}"));
                    assert_eq!(state(&mut g), seen, "{at}: repair changed the state");
                    let (next, expect) = follow_up(&seen);
                    apply(&mut g, next).unwrap_or_else(|e| panic!("{at}: next write: {e}"));
                    assert_eq!(state(&mut g), expect, "{at}: next write");
                    checked += 1;
                }
            }
        }
    }
    println!(
        "write-back: cut points x landings checked: {checked}, at most {most} dirty pages at a cut"
    );
    assert!(checked > 1000, "only {checked}");
}

#[test]
fn single_bit_flips_fall_back_to_the_valid_prefix() {
    single_bit_flips::<SimFlash>("NOR");
    single_bit_flips::<Ubi>("UBI");
}

fn single_bit_flips<F: Medium>(medium: &str) {
    let mut checked = 0u64;
    for shape in shapes::<F>() {
        let mut buf = [0u8; 512];
        let mut probe = shape.flash.clone();
        let view = read_chain(&mut probe, &mut buf);
        let top = state(&mut probe);
        let blocks: Vec<(usize, snapinit::Block, bool)> = view
            .snapshots
            .iter()
            .enumerate()
            .map(|(i, b)| (i, *b, true))
            .chain(
                view.volatiles
                    .iter()
                    .map(|b| (view.snapshots.len(), *b, false)),
            )
            .collect();
        for (index, block, is_snapshot) in blocks {
            let start = block.offset as usize;
            let payload_len = block.header.fields.payload_len as usize;
            let mut targets: Vec<usize> = (start..start + HEADER_LEN).collect();
            let step = (payload_len / 7).max(1);
            targets.extend(
                (0..payload_len)
                    .step_by(step)
                    .map(|i| start + HEADER_LEN + i),
            );
            for at in targets {
                for bit in 0..8 {
                    let mut f = shape.flash.clone();
                    f.flip_bit(at, bit);
                    let seen = state(&mut f);
                    assert_eq!(
                        seen.snapshots,
                        top.snapshots[..index],
                        "{}: flip at {at}:{bit} kept a damaged block or lost a good one",
                        shape.name
                    );
                    if is_snapshot {
                        // Whatever volatile shows must be one the chain really had on that
                        // prefix: a rotten snapshot never exposes a mix.
                        assert!(
                            seen.volatile.is_none() || shape.history.contains(&seen),
                            "{}: flip at {at}:{bit} shows a volatile that never existed there",
                            shape.name
                        );
                        // A flip its header's hash does not cover (a mark) or in its payload
                        // leaves it a linked, live snapshot that fails: nothing above it
                        // boots, no volatile older than it either.
                        if at - start >= SEALED_LEN {
                            assert_eq!(
                                seen.volatile, None,
                                "{}: flip at {at}:{bit} (offset {:#x} of a snapshot) brought back a volatile from below it",
                                shape.name,
                                at - start
                            );
                        }
                    } else {
                        assert!(
                            seen.volatile != top.volatile || view.volatiles.len() == 2,
                            "{}: flip at {at}:{bit} in the volatile was not noticed",
                            shape.name
                        );
                        assert!(
                            seen.volatile.is_none() || shape.history.contains(&seen),
                            "{}: flip at {at}:{bit}: fallback volatile never existed",
                            shape.name
                        );
                    }
                    checked += 1;
                }
            }
        }
    }
    println!("{medium}: bit flips checked: {checked}");
    assert!(checked > 1000, "only {checked} bit flips");
}

#[test]
fn too_large_is_refused_before_anything_is_erased() {
    too_large_is_refused::<SimFlash>();
    too_large_is_refused::<Ubi>();
}

fn too_large_is_refused<F: Medium>() {
    let shape = build::<F>("two snapshots", &[Op::Append(1, 3000), Op::Append(2, 3000)]);
    let before = shape.flash.contents();
    let mut f = shape.flash.clone();
    let ops = f.ops();
    let backbuf_bytes = (BACKBUF * ERASE) as usize;
    let r = apply(&mut f, Op::Save(3, backbuf_bytes));
    assert!(
        matches!(r, Err(WriteError::VolatileTooLarge { .. })),
        "{r:?}"
    );
    let r = apply(&mut f, Op::Append(3, (BLOCKS * ERASE) as usize));
    assert!(matches!(r, Err(WriteError::NoSpace { .. })), "{r:?}");
    // Fill the chain region, then one more must be refused.
    let mut filled = 0;
    while apply(&mut f, Op::Append(4, 2000)).is_ok() {
        filled += 1;
    }
    assert!(filled > 0);
    let full = f.contents();
    let ops_full = f.ops();
    let r = apply(&mut f, Op::Append(5, 2000));
    assert!(matches!(r, Err(WriteError::NoSpace { .. })), "{r:?}");
    assert_eq!(f.contents(), full, "a refused write changed flash");
    assert_eq!(f.ops(), ops_full, "a refused write issued flash operations");
    assert_ne!(before.len(), 0);
    assert!(ops > 0);
}

/// With garbage on flash (a dropped snapshot the next write erases first), every refusal of
/// the writer still comes before its first flash operation: space, back buffer, no such
/// snapshot, no volatile to commit. (Rollback's and commit's came after the garbage was
/// erased; a refusal must leave flash as it was.)
#[test]
fn refusals_come_before_the_garbage_is_erased() {
    refusals_before_garbage::<SimFlash>();
    refusals_before_garbage::<Ubi>();
}

fn refusals_before_garbage<F: Medium>() {
    let shape = build::<F>(
        "a dropped snapshot",
        &[Op::Append(1, 3000), Op::Append(2, 3000), Op::Rollback(1)],
    );
    let backbuf_bytes = (BACKBUF * ERASE) as usize;
    for op in [
        Op::Save(3, backbuf_bytes),
        Op::Append(3, (BLOCKS * ERASE) as usize),
        Op::Rollback(5),
        Op::Commit,
    ] {
        let mut f = shape.flash.clone();
        let (before, ops) = (f.contents(), f.ops());
        let r = apply(&mut f, op);
        assert!(r.is_err(), "{op:?}: {r:?}");
        assert_eq!(
            f.ops(),
            ops,
            "{op:?} refused ({r:?}) after flash operations"
        );
        assert_eq!(f.contents(), before, "{op:?}");
    }
    // The same flash does have garbage to erase: a write that goes ahead erases it.
    let mut f = shape.flash.clone();
    let ops = f.ops();
    apply(&mut f, Op::Save(4, 500)).expect("save");
    assert!(f.ops() > ops);
}

/// The first save of an empty partition, cut at every operation, with payload bytes that
/// start an erase block with JFFS2's node magic (in either byte order, one erase block in 2^15
/// of a gzip payload does): before the header lands those bytes are all that shows past
/// offset 0, and they are the writer's own. The next write must go ahead (before, the
/// partition read as a JFFS2 whose first erase block is free, and every write refused).
#[test]
fn a_cut_first_save_whose_payload_looks_foreign_is_still_writable() {
    cut_first_save_looks_foreign::<SimFlash>();
    cut_first_save_looks_foreign::<Ubi>();
}

fn cut_first_save_looks_foreign<F: Medium>() {
    // 3 erase blocks: the payload crosses two erase-block starts.
    let mut data = pattern(50, 2 * ERASE as usize + 100);
    let at = ERASE as usize - HEADER_LEN;
    data[at..at + 4].copy_from_slice(&[0x85, 0x19, 0x03, 0xE0]);
    data[at + ERASE as usize..at + ERASE as usize + 4].copy_from_slice(&[0x19, 0x85, 0xE0, 0x02]);
    let save = |f: &mut F, d: &[u8]| {
        let mut w = Writer::new(f);
        w.backbuf_blocks = Some(BACKBUF);
        w.save_volatile(&Payload::plain(d))
    };
    let mut whole = F::blank(ERASE, BLOCKS);
    save(&mut whole, &data).expect("save without a cut");
    let count = whole.ops();
    for cut in 0..count {
        for tear in F::tears() {
            let mut f = F::blank(ERASE, BLOCKS);
            f.cut_power_at(cut, tear);
            assert!(save(&mut f, &data).is_err());
            f.power_on();
            let seen = state(&mut f);
            assert!(
                seen.volatile.is_none() || seen.volatile.as_deref() == Some(&data[..]),
                "cut at {cut} ({tear:?}): a mix"
            );
            let next = pattern(51, 600);
            save(&mut f, &next)
                .unwrap_or_else(|e| panic!("next save after a cut at {cut} ({tear:?}): {e}"));
            assert_eq!(state(&mut f).volatile, Some(next), "cut at {cut}");
        }
    }
}

/// An erase cut in its first instant raises a bit or a few of the header it erases and leaves
/// the rest as it was: every save erases the older volatile copy, so each bit of that header
/// in turn. The next write must go ahead (before, the header read as a sealed one changed since,
/// damage to data, and every write refused until `repair --yes`) and the cut shows old or new.
#[test]
fn an_erase_cut_in_its_first_instant_leaves_the_next_write_free() {
    use Op::*;
    // Each write erases a block headed by a live or a dropped header: a save erases the older
    // volatile copy, an append its slot's copy, a commit the copy it supersedes.
    let cases = [
        (
            &[Append(1, 700), Save(2, 1200), Save(3, 900)][..],
            Save(4, 500),
        ),
        (
            &[Append(1, 700), Save(2, 1200), Save(3, 900)][..],
            Append(4, 500),
        ),
        (&[Append(1, 700), Save(2, 1200), Save(3, 900)][..], Commit),
        (
            &[Append(1, 700), Append(2, 900), Rollback(1)][..],
            Save(4, 500),
        ),
        (&[Format][..], Save(4, 500)),
    ];
    let mut checked = 0;
    for (built, op) in cases {
        let shape = build::<SimFlash>("first instant", built);
        let old = shape.history.last().expect("history").clone();
        let mut whole = shape.flash.clone();
        apply(&mut whole, op).unwrap_or_else(|e| panic!("{built:?} then {op:?}: {e}"));
        let new = state(&mut whole);
        let count = whole.ops() - shape.flash.ops();
        for cut in 0..count {
            // A bit of the header in turn: one in five of its zero bits, spread over all of it.
            for seed in (0..(8 * SEALED_LEN as u64)).step_by(5) {
                let mut f = shape.flash.clone();
                f.cut_power_at(cut, Tear::FirstInstant(seed));
                assert!(apply(&mut f, op).is_err());
                f.power_on();
                let seen = state(&mut f);
                assert!(
                    seen == old || seen == new,
                    "{built:?} then {op:?} cut at {cut} (bit {seed}): a mix"
                );
                let (next, expect) = follow_up(&seen);
                apply(&mut f, next).unwrap_or_else(|e| {
                    panic!("{built:?} then {op:?} cut at {cut} (bit {seed}): next write: {e:?}")
                });
                assert_eq!(state(&mut f), expect);
                checked += 1;
            }
        }
    }
    println!("first-instant cuts checked: {checked}");
}

#[test]
fn wear_is_reported() {
    let mut f = SimFlash::new(ERASE, BLOCKS);
    for i in 0..50u8 {
        apply(&mut f, Op::Save(i, 1500)).expect("save");
    }
    let erases: Vec<u64> = f.stats().iter().map(|s| s.erases).collect();
    println!("erase counts per block after 50 saves of 1500 bytes: {erases:?}");
    // Ping-pong splits the saves between the chain slot and the back buffer.
    assert_eq!(erases[0], 25);
    assert_eq!(erases[(BLOCKS - BACKBUF) as usize], 25);
}

#[test]
fn format_records_the_back_buffer_size_without_showing_a_block() {
    let mut f = build::<SimFlash>("one snapshot", &[Op::Append(1, 700), Op::Save(2, 300)]).flash;
    let mut w = Writer::new(&mut f);
    w.backbuf_blocks = Some(6);
    w.format().expect("format");
    let mut buf = [0u8; 512];
    let view = read_chain(&mut f, &mut buf);
    assert_eq!(view.status, snapinit::chain::Status::Empty);
    assert_eq!(
        view.layout.backbuf_blocks, 6,
        "the marker carries the new size"
    );
    assert!(view.snapshots.is_empty() && view.volatiles.is_empty());
    // Repair keeps the marker; the first write uses its size.
    apply(&mut f, Op::Repair).expect("repair");
    let mut w = Writer::new(&mut f);
    w.backbuf_blocks = None;
    w.save_volatile(&Payload::plain(&pattern(3, 100)))
        .expect("save");
    let view = read_chain(&mut f, &mut buf);
    assert_eq!(view.layout.backbuf_blocks, 6);
    assert_eq!(
        view.volatile().map(|b| b.header.fields.backbuf_blocks),
        Some(6)
    );
}

#[test]
fn boot_reads_hash_only_the_current_volatile() {
    use snapinit::chain::{read_chain_with, verify, Reject, Volatiles};
    let shape = build::<SimFlash>(
        "two volatile copies",
        &[Op::Append(1, 300), Op::Save(2, 900), Op::Save(3, 1500)],
    );
    let mut f = shape.flash.clone();
    let mut buf = [0u8; 512];
    let full = read_chain(&mut f, &mut buf);
    assert_eq!(full.volatiles.len(), 2);
    let older = full.volatiles[1];
    // Rot in the older copy: a lazy read does not notice, the full read does.
    f.flip_bit(older.offset as usize + HEADER_LEN + 5, 3);
    let lazy = read_chain_with(&mut f, &mut buf, Volatiles::VerifyCurrent);
    assert_eq!(
        lazy.volatile(),
        full.volatile(),
        "the current copy is the same"
    );
    assert_eq!(lazy.unverified_volatiles.len(), 1);
    assert_eq!(
        verify(&mut f, &lazy.unverified_volatiles[0], &mut buf),
        Err(Reject::PayloadHash)
    );
    let full = read_chain(&mut f, &mut buf);
    assert_eq!(full.volatiles.len(), 1);
    assert_eq!(full.rejected_volatiles[0].reason, Reject::PayloadHash);
    // Rot in the current copy instead: the lazy read goes on to verify the older one.
    let mut f = shape.flash.clone();
    let current = read_chain(&mut f, &mut buf).volatiles[0];
    f.flip_bit(current.offset as usize + HEADER_LEN + 5, 3);
    let lazy = read_chain_with(&mut f, &mut buf, Volatiles::VerifyCurrent);
    assert_eq!(lazy.volatile().map(|b| b.offset), Some(older.offset));
    assert!(lazy.unverified_volatiles.is_empty());
}

/// Chains damaged by bit rot: `repair --yes` and `format --force` are the only writes that go
/// ahead, and power can fail at any of their operations: what boots is the old or the new
/// state, and the same command run again finishes, after which a save works.
#[test]
fn cuts_during_confirmed_repair_and_forced_format() {
    cuts_during_repair_all_and_format_force::<SimFlash>("NOR");
}

#[test]
fn cuts_during_confirmed_repair_and_forced_format_on_ubi() {
    cuts_during_repair_all_and_format_force::<Ubi>("UBI");
}

fn cuts_during_repair_all_and_format_force<F: Medium>(medium: &str) {
    use Op::*;
    let mut checked = 0u64;
    let damaged = |name: &'static str, ops: &[Op], rot: &dyn Fn(&ChainView) -> usize| {
        let mut shape = build::<F>(name, ops);
        let mut buf = [0u8; 512];
        let view = read_chain(&mut shape.flash, &mut buf);
        let at = rot(&view);
        shape.flash.flip_bit(at, 2);
        shape
    };
    let shapes = vec![
        damaged(
            "rotten payload of snapshot 2 of 3, volatile above",
            &[
                Append(1, 300),
                Append(2, 1500),
                Append(3, 700),
                Save(4, 900),
            ],
            &|v| v.snapshots[1].offset as usize + HEADER_LEN + 500,
        ),
        damaged(
            "sealed header of snapshot 1 changed",
            &[Append(1, 300), Append(2, 2500), Save(3, 400), Save(4, 800)],
            &|v| v.snapshots[0].offset as usize + 0x30,
        ),
        damaged(
            "rotten newest volatile copy",
            &[Append(1, 300), Save(2, 400), Save(3, 800)],
            &|v| v.volatiles[0].offset as usize + HEADER_LEN + 10,
        ),
    ];
    for mut shape in shapes {
        // Every ordinary write refuses, leaving flash byte-identical.
        let before = shape.flash.contents();
        for op in [
            Save(50, 500),
            Append(51, 500),
            Commit,
            Rollback(0),
            Repair,
            Format,
        ] {
            let r = apply(&mut shape.flash, op);
            assert!(
                matches!(r, Err(WriteError::Damaged(_))),
                "{}: {op:?} on a damaged chain: {r:?}",
                shape.name
            );
            assert!(
                shape.flash.contents() == before,
                "{}: refused {op:?} changed flash",
                shape.name
            );
        }
        let old = state(&mut shape.flash);
        for op in [RepairAll, FormatForce] {
            let mut whole = shape.flash.clone();
            let start = whole.ops();
            apply(&mut whole, op).unwrap_or_else(|e| panic!("{}: {op:?}: {e}", shape.name));
            let new = state(&mut whole);
            if matches!(op, RepairAll) {
                assert_eq!(new, old, "{}: repair --yes changed what boots", shape.name);
            }
            let count = whole.ops() - start;
            for cut in 0..count {
                for tear in F::tears() {
                    let mut f = shape.flash.clone();
                    f.cut_power_at(cut, tear);
                    let r = apply(&mut f, op);
                    assert!(
                        matches!(r, Err(WriteError::Flash(SimError::PowerCut))),
                        "{}: {op:?} cut at {cut}: {r:?}",
                        shape.name
                    );
                    f.power_on();
                    let seen = state(&mut f);
                    assert!(
                        seen == old || seen == new,
                        "{}: {op:?} cut at {cut} ({tear:?}) shows a mix",
                        shape.name
                    );
                    apply(&mut f, op).unwrap_or_else(|e| {
                        panic!(
                            "{}: {op:?} again after a cut at {cut} ({tear:?}): {e}",
                            shape.name
                        )
                    });
                    assert_eq!(state(&mut f), new, "{}: {op:?} rerun", shape.name);
                    let (next, expect) = follow_up(&new);
                    apply(&mut f, next).unwrap_or_else(|e| {
                        panic!(
                            "{}: save after {op:?} cut at {cut} ({tear:?}): {e}",
                            shape.name
                        )
                    });
                    assert_eq!(state(&mut f), expect, "{}: save after {op:?}", shape.name);
                    checked += 1;
                }
            }
        }
    }
    println!("{medium}: cut points in repair --yes and format --force checked: {checked}");
    // NOR cuts each operation seven ways, UBI one.
    assert!(checked > 25 * F::tears().len() as u64, "only {checked}");
}

/// What one write costs on UBI, pinned: every program is one atomic LEB change per LEB it
/// touches (payload, then the sealed header, then the sealed mark), every erase one LEB erase.
#[test]
fn ubi_cost_of_each_write() {
    let mut f = build::<Ubi>("one snapshot", &[Op::Append(1, 700)]).flash;
    let cost = |f: &mut Ubi, op: Op| {
        let before = f.0.stats();
        apply(f, op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
        let after = f.0.stats();
        (
            after.changes - before.changes,
            after.leb_erases - before.leb_erases,
        )
    };
    // A volatile within one LEB into an erased slot: payload, header, sealed mark.
    let first = cost(&mut f, Op::Save(2, 500));
    // The next save goes to the back buffer (ping-pong): the same.
    let second = cost(&mut f, Op::Save(3, 500));
    // The third overwrites the slot's superseded copy: one LEB erase more.
    let third = cost(&mut f, Op::Save(4, 500));
    // A volatile over three LEBs: a change per LEB of payload, then header and sealed mark.
    let large = cost(&mut f, Op::Save(5, 2500));
    // Commit of the volatile in the back buffer: a copy into the slot, as a snapshot.
    let commit = cost(&mut f, Op::Commit);
    // Rollback to 1: the live mark of snapshot 2, one change.
    let rollback = cost(&mut f, Op::Rollback(1));
    println!(
        "UBI (LEB changes, LEB erases): save {first:?}, save {second:?}, save over a stale copy \
         {third:?}, 3-LEB save {large:?}, commit {commit:?}, rollback {rollback:?}"
    );
    assert_eq!(first, (3, 1));
    assert_eq!(second, (3, 1));
    assert_eq!(third, (3, 1));
    assert_eq!(large, (5, 3));
    assert_eq!(commit, (5, 3));
    // The live mark; the erases are the superseded 3-LEB copy the commit left behind.
    assert_eq!(rollback, (1, 3));
}
