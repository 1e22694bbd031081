//! Flash that fails: read errors (EIO), ECC-corrected and uncorrectable reads, erases that fail
//! or do not take, programs that do not stick. The boot path's chain read must keep the good
//! prefix; every write must report the bad block and leave the visible state exactly as it
//! found it. And wear: where 10,000 saves put their erases.

use snapinit::chain::{read_chain, read_chain_with, End, Reject, Volatiles};
use snapinit::flash::ReadNorFlash;
use snapinit::header::{Compression, HEADER_LEN};
use snapinit::sim::{Fault, SimError, SimFlash};
use snapshot::writer::{Outcome, Payload, WriteError, Writer};

const ERASE: u32 = 1024;
const BLOCKS: u32 = 32;
const BACKBUF: u32 = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    snapshots: Vec<Vec<u8>>,
    volatile: Option<Vec<u8>>,
}

fn bytes(flash: &mut SimFlash, b: &snapinit::Block) -> Vec<u8> {
    let mut d = vec![0u8; b.header.fields.payload_len as usize];
    flash
        .read(b.offset + HEADER_LEN as u32, &mut d)
        .expect("read");
    d
}

/// The state as the boot path reads it, with no fault active.
fn state(flash: &SimFlash) -> State {
    let mut f = flash.clone();
    f.clear_faults();
    let mut buf = [0u8; 512];
    let view = read_chain(&mut f, &mut buf);
    let snapshots = view.snapshots.iter().map(|b| bytes(&mut f, b)).collect();
    let volatile = view.volatile().map(|b| bytes(&mut f, b));
    State {
        snapshots,
        volatile,
    }
}

fn data(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_mul(37).wrapping_add((i % 241) as u8))
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Save(u8, usize),
    Append(u8, usize),
    Commit,
    Rollback(usize),
    Repair,
    Format,
}

fn p(d: &[u8]) -> Payload<'_> {
    Payload {
        data: d,
        compression: Compression::None,
        unpacked_len: d.len() as u64,
    }
}

fn apply(flash: &mut SimFlash, op: Op) -> Result<Outcome, WriteError<SimError>> {
    let mut w = Writer::new(flash);
    w.backbuf_blocks = Some(BACKBUF);
    match op {
        Op::Save(t, n) => w.save_volatile(&p(&data(t, n))),
        Op::Append(t, n) => w.append_snapshot(&p(&data(t, n))),
        Op::Commit => w.commit(),
        Op::Rollback(k) => w.rollback(k),
        Op::Repair => w.repair(),
        Op::Format => w.format(),
    }
}

fn build(ops: &[Op]) -> SimFlash {
    let mut f = SimFlash::new(ERASE, BLOCKS);
    for &op in ops {
        apply(&mut f, op).unwrap_or_else(|e| panic!("building {op:?}: {e}"));
    }
    f
}

fn shapes() -> Vec<(&'static str, SimFlash)> {
    use Op::*;
    vec![
        ("empty", build(&[])),
        (
            "3 snapshots + volatile in its slot",
            build(&[
                Append(1, 300),
                Append(2, 1500),
                Append(3, 100),
                Save(4, 900),
            ]),
        ),
        (
            "2 snapshots + volatile in the back buffer",
            build(&[Append(1, 700), Append(2, 2100), Save(3, 500), Save(4, 1200)]),
        ),
    ]
}

fn ops_for(f: &SimFlash) -> Vec<Op> {
    use Op::*;
    let st = state(f);
    let mut ops = vec![Save(40, 1700), Append(41, 2300), Repair, Format];
    if st.volatile.is_some() {
        ops.push(Commit);
    }
    for k in 0..=st.snapshots.len() {
        ops.push(Rollback(k));
    }
    ops
}

#[test]
fn the_boot_path_keeps_the_good_prefix_on_read_faults() {
    let f = shapes().remove(1).1;
    let mut buf = [0u8; 512];
    let good = read_chain(&mut f.clone(), &mut buf);
    assert_eq!(good.snapshots.len(), 3);
    let s2 = good.snapshots[1];
    let in_payload = s2.offset + HEADER_LEN as u32 + 700;
    let cases = [
        (
            Fault::ReadEio {
                from: in_payload,
                to: in_payload + 1,
            },
            1,
            Reject::Read,
        ),
        (
            Fault::ReadEio {
                from: s2.offset,
                to: s2.offset + 1,
            },
            1,
            Reject::Read,
        ),
        (
            Fault::EccUncorrectable {
                from: in_payload,
                to: in_payload + 4,
            },
            1,
            Reject::PayloadHash,
        ),
    ];
    for (fault, keep, reason) in cases {
        let mut g = f.clone();
        g.inject(fault);
        for mode in [Volatiles::VerifyAll, Volatiles::VerifyCurrent] {
            let view = read_chain_with(&mut g, &mut buf, mode);
            assert_eq!(view.snapshots.len(), keep, "{fault:?}");
            assert_eq!(view.snapshots[0], good.snapshots[0], "{fault:?}");
            match view.end {
                End::Rejected(r) => assert_eq!(r.reason, reason, "{fault:?}"),
                End::Clean => panic!("{fault:?}: the walk ended clean"),
            }
            assert!(
                view.volatile().is_none(),
                "{fault:?}: volatile above a lost snapshot"
            );
        }
    }
    // An ECC-corrected read is right: the whole chain boots, and the counter shows it.
    let mut g = f.clone();
    g.inject(Fault::EccCorrected {
        from: in_payload,
        to: in_payload + 4,
    });
    let view = read_chain(&mut g, &mut buf);
    assert_eq!(view.snapshots.len(), 3);
    assert!(view.volatile().is_some());
    assert!(g.ecc_stats().0 > 0 && g.ecc_stats().1 == 0);
}

/// Every write, with each kind of fault on each erase block in turn: the write either does not
/// touch the block (and succeeds with the new state) or reports that block and leaves the
/// visible state exactly as it was.
#[test]
fn every_write_reports_a_bad_block_and_keeps_what_it_found() {
    let mut failures = 0u64;
    let mut checked = 0u64;
    for (name, f) in shapes() {
        let old = state(&f);
        for op in ops_for(&f) {
            let mut whole = f.clone();
            apply(&mut whole, op).unwrap_or_else(|e| panic!("{name}: {op:?}: {e}"));
            let new = state(&whole);
            for block in 0..BLOCKS {
                let at = block * ERASE;
                let faults = [
                    Fault::EraseError { offset: at },
                    Fault::EraseSilent { offset: at },
                    Fault::ProgramDoesNotStick {
                        from: at,
                        to: at + ERASE,
                    },
                    Fault::ReadEio {
                        from: at,
                        to: at + ERASE,
                    },
                    Fault::EccUncorrectable {
                        from: at + 300,
                        to: at + 301,
                    },
                ];
                for fault in faults {
                    let mut g = f.clone();
                    g.inject(fault);
                    let r = apply(&mut g, op);
                    let seen = state(&g);
                    checked += 1;
                    match r {
                        Ok(_) => assert!(
                            seen == new,
                            "{name}: {op:?} with {fault:?} succeeded but shows another state"
                        ),
                        Err(e) => {
                            failures += 1;
                            // Format's commit point (dropping the chain) comes before its
                            // erases: a bad block after it leaves the new, empty state.
                            let allowed = seen == old || (matches!(op, Op::Format) && seen == new);
                            assert!(
                                allowed,
                                "{name}: {op:?} with {fault:?} failed ({e}) and changed what boots"
                            );
                            let offset = match e {
                                WriteError::EraseFailed { offset }
                                | WriteError::ProgramFailed { offset }
                                | WriteError::CopyRead { offset, .. }
                                | WriteError::Flash(SimError::EraseFailed { offset })
                                | WriteError::Flash(SimError::ReadFailed { offset }) => {
                                    Some(offset)
                                }
                                WriteError::Damaged(ref s) => s.first().map(|s| s.offset()),
                                WriteError::Unreadable => Some(0),
                                _ => None,
                            };
                            let offset = offset.unwrap_or_else(|| {
                                panic!("{name}: {op:?} with {fault:?}: {e} names no block")
                            });
                            let named = offset / ERASE;
                            assert!(
                                named == block
                                    || matches!(
                                        (fault, &e),
                                        (Fault::EccUncorrectable { .. }, _)
                                            | (_, WriteError::CopyRead { .. })
                                            | (_, WriteError::Damaged(_))
                                    ),
                                "{name}: {op:?} with {fault:?}: {e} names block {named}"
                            );
                        }
                    }
                }
            }
        }
    }
    println!("fault cases checked: {checked}, writes refused: {failures}");
    assert!(failures > 100, "only {failures} faults hit a write");
}

/// 10,000 saves of a small volatile: where the erases go, and what that means for a NOR part
/// rated 100,000 cycles saving hourly for ten years.
#[test]
fn wear_of_ten_thousand_small_saves() {
    const SAVES: u64 = 10_000;
    let mut f = build(&[Op::Append(1, 2000)]);
    let before: Vec<u64> = f.stats().iter().map(|s| s.erases).collect();
    for i in 0..SAVES {
        apply(&mut f, Op::Save((i % 200) as u8, 200 + (i % 500) as usize)).expect("save");
    }
    let erases: Vec<u64> = f
        .stats()
        .iter()
        .zip(&before)
        .map(|(s, b)| s.erases - b)
        .collect();
    let total: u64 = erases.iter().sum();
    let worst = *erases.iter().max().expect("blocks");
    let mean = total as f64 / erases.len() as f64;
    let used = erases.iter().filter(|&&e| e > 0).count();
    let hourly_ten_years = 24.0 * 365.25 * 10.0;
    let per_save_worst = worst as f64 / SAVES as f64;
    let projected = per_save_worst * hourly_ten_years;
    println!(
        "wear after {SAVES} saves: worst block {worst} erases, mean {mean:.1} over {} blocks ({used} blocks erased at all), worst/mean {:.1}",
        erases.len(),
        worst as f64 / mean
    );
    println!(
        "ten years of hourly saves ({hourly_ten_years:.0}): worst block {projected:.0} erases of a 100000-cycle budget ({:.0}%)",
        projected / 1000.0
    );
    // Ping-pong: each save erases one copy's block, alternating; nothing else wears.
    assert_eq!(total, SAVES, "a small save costs exactly one erase");
    assert!(
        worst <= SAVES / 2 + 1,
        "one block took more than half: {erases:?}"
    );
    assert_eq!(used, 2, "{erases:?}");
}

/// A UBI volume whose PEB rotted past its ECC (`EBADMSG` on every read of that LEB, until the
/// LEB is erased and so moves to another PEB): `format --force`, the way out every refusal
/// names for a partition that no longer reads, erases it like any other erase block and
/// starts over, wherever the rot is. It stopped at the unreadable LEB, after the chain was
/// already dropped, and every later run stopped there again.
#[test]
fn format_force_erases_an_unreadable_leb_on_ubi() {
    use snapinit::ubi_sim::{OnUbi, UbiSim};
    let mut chain = OnUbi(UbiSim::new(ERASE, ERASE / 8, BLOCKS, 4));
    for (t, n, snapshot) in [(1, 700, true), (2, 2100, true), (3, 500, false)] {
        let mut w = Writer::new(&mut chain);
        w.backbuf_blocks = Some(BACKBUF);
        let d = data(t, n);
        if snapshot {
            w.append_snapshot(&p(&d))
        } else {
            w.save_volatile(&p(&d))
        }
        .expect("build");
    }
    for lnum in [0, 1, 3, BLOCKS - BACKBUF, BLOCKS - 1] {
        let mut f = chain.clone();
        f.0.rot_leb(lnum);
        // An ordinary write refuses, and says what to run.
        let before = f.0.contents();
        let refused = Writer::new(&mut f).save_volatile(&p(&data(8, 300)));
        let said = refused
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(
            said.contains("format --force"),
            "LEB {lnum}: the save's refusal names no way out: {said:?}"
        );
        assert!(f.0.contents() == before, "LEB {lnum}: a refused save wrote");
        let mut w = Writer::new(&mut f);
        w.force = true;
        w.format()
            .unwrap_or_else(|e| panic!("format --force with LEB {lnum} unreadable: {e}"));
        assert!(
            f.0.contents().iter().all(|&b| b == 0xFF),
            "LEB {lnum}: not erased"
        );
        let d = data(9, 600);
        Writer::new(&mut f)
            .save_volatile(&p(&d))
            .unwrap_or_else(|e| panic!("save after the format (LEB {lnum}): {e}"));
    }
}
