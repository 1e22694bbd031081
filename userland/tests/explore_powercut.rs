//! Seeded random sequences of writes and boots, with power cut at every flash operation of
//! every step. powercut.rs and trial_powercut.rs cut the writes of hand-picked chain shapes;
//! this explores the shapes the writes themselves lead to (volatile copies in either place,
//! trials over trials, full partitions). The hand-picked shapes had missed that a snapshot over
//! a volatile on trial in the back buffer lost the confirmed copy in the slot
//! (trial_powercut::a_snapshot_over_a_confirmed_copy_in_the_slot_keeps_it_*); with the writer
//! before that fix, every case here fails in its first sequence.
//!
//! Each sequence starts on a blank partition and runs random steps: `save`, `append` and
//! `commit` (confirmed, or on trial for one or two boots), `rollback`, `confirm`, `repair`,
//! `format` (with and without a layout marker) and boots (the trial marks PID 1 spends). Each
//! step runs once whole, then again from the same flash cut at each of its operations with each
//! way the medium can tear it. After every cut, once power is back:
//! * the step failed rather than report success;
//! * the chain shows the old state, the new state, or, while the old current volatile copy is
//!   on trial over a confirmed one, that confirmed copy (what the trial comes back to);
//! * after every trial boot left is spent, the unit ends on what the old or the new state ends
//!   on (a cut `confirm` may leave lower blocks confirmed and upper ones not: there it ends in
//!   between);
//! * `repair` succeeds and changes nothing visible;
//! * a save succeeds and shows over the same snapshots, unless the same save is refused for
//!   space on the uncut flash that shows that state.
//!
//! A refused step must leave the flash byte-identical.
//!
//! Media: NOR with every tear medium/mod.rs lists, a UBI volume, and NOR behind a write-back
//! cache (every subset, or a sample, of the unsynced pages reaching the medium). Each on a roomy
//! partition and on a cramped one whose writes run out of space.
//!
//! A failure names the case, seed, step, operation and cut, lists the steps before it, and
//! prints its replay: `EXPLORE_SEED=N cargo test -p snapshot --test explore_powercut CASE`.
//! The steps and cuts replay exactly; the bytes of a random tear can differ, since each header
//! carries the writer's nonce and time. `EXPLORE_SEEDS=N` (sequences per case) and
//! `EXPLORE_STEPS=N` (steps per sequence) scale up a longer run; `--nocapture` prints what each
//! case checked.

mod medium;

use std::fmt;

use medium::{boot, pattern, Medium, Ubi};
use snapinit::chain::{read_chain, Block};
use snapinit::header::{Trial, HEADER_LEN};
use snapinit::sim::{SimError, SimFlash, Tear};
use snapinit::trial::SpendError;
use snapshot::writer::{Payload, WriteError, Writer};

const ERASE: u32 = 1024;
/// Payload sizes: within one erase block, and across two and three.
const SIZES: [usize; 4] = [300, 900, 1500, 2600];
/// Trial budgets of new blocks, confirmed half the time.
const TRIALS: [u16; 4] = [0, 0, 1, 2];
/// The save after each cut: its tag is one no step uses (steps take 1..=250, wrapping on long
/// runs).
const NEXT_TAG: u8 = 255;
const NEXT_LEN: usize = 300;
const FOLLOW_UP: Op = Op::Save(NEXT_TAG, NEXT_LEN, 0);
/// Write-back cache pages: four per erase block, as in powercut.rs.
const PAGE: usize = 256;
/// A write cut in the cache either had not started or had completed there.
const WRITE_BACK_TEARS: [(&str, Tear); 2] = [
    ("not started", Tear::Nothing),
    ("done in the cache", Tear::Prefix(usize::MAX)),
];

/// A partition: erase blocks, back-buffer blocks.
type Geometry = (u32, u32);

/// Room for several snapshots over the volatile's two copies.
const ROOMY: Geometry = (24, 4);
/// The largest volatile just fits the back buffer and the chain has five erase blocks: saves,
/// appends and commits meet a full partition, and each cut of theirs a nearly full one.
const CRAMPED: Geometry = (8, 3);

/// One explored configuration.
struct Case<F> {
    /// The test function's name, for the replay command.
    name: &'static str,
    geometry: Geometry,
    blank: fn(u32, u32) -> F,
    cuts: Cuts<F>,
    /// Sequences by default; `EXPLORE_SEEDS` overrides.
    seeds: u64,
    /// Steps per sequence by default; `EXPLORE_STEPS` overrides.
    steps: usize,
}

/// Every flash a cut at one operation of `op` can leave once power is back, each named by how
/// the cut landed.
type Cuts<F> = fn(&F, &Case<F>, Op, u64) -> Check<Vec<(String, F)>>;

impl<F: Medium> Case<F> {
    /// Every operation durable when it returns: NOR, or a UBI volume.
    fn direct(name: &'static str, geometry: Geometry, seeds: u64) -> Self {
        Case {
            name,
            geometry,
            blank: F::blank,
            cuts: torn,
            seeds,
            steps: 40,
        }
    }
}

/// NOR behind a write-back cache. Each cut has many landings: shorter and fewer sequences.
fn write_back(name: &'static str, geometry: Geometry, seeds: u64) -> Case<SimFlash> {
    Case {
        name,
        geometry,
        blank: |erase, blocks| SimFlash::new(erase, blocks).with_write_back(PAGE),
        cuts: landed,
        seeds,
        steps: 30,
    }
}

#[test]
fn nor() {
    explore(&Case::<SimFlash>::direct("nor", ROOMY, 5));
}

#[test]
fn nor_cramped() {
    explore(&Case::<SimFlash>::direct("nor_cramped", CRAMPED, 5));
}

#[test]
fn ubi() {
    explore(&Case::<Ubi>::direct("ubi", ROOMY, 3));
}

#[test]
fn ubi_cramped() {
    explore(&Case::<Ubi>::direct("ubi_cramped", CRAMPED, 3));
}

#[test]
fn nor_write_back() {
    explore(&write_back("nor_write_back", ROOMY, 3));
}

#[test]
fn nor_write_back_cramped() {
    explore(&write_back("nor_write_back_cramped", CRAMPED, 3));
}

/// A step of a sequence.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `save`: tag, length, trial budget.
    Save(u8, usize, u16),
    /// `append`: tag, length, trial budget.
    Append(u8, usize, u16),
    /// `commit` with this trial budget.
    Commit(u16),
    /// `rollback` keeping this many snapshots.
    Rollback(usize),
    Confirm,
    Repair,
    /// `format`, recording the back buffer in a layout marker or not.
    Format(bool),
    /// What PID 1 writes at a boot.
    Boot,
}

/// Why a step did not complete.
#[derive(Debug)]
enum Failure {
    Write(WriteError<SimError>),
    Boot(SpendError<SimError>),
}

impl Failure {
    fn power_cut(&self) -> bool {
        matches!(
            self,
            Failure::Write(WriteError::Flash(SimError::PowerCut))
                | Failure::Boot(SpendError::Flash(SimError::PowerCut))
        )
    }

    fn no_space(&self) -> bool {
        matches!(self, Failure::Write(WriteError::NoSpace { .. }))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Write(e) => write!(f, "{e}"),
            Failure::Boot(e) => write!(f, "boot: {e:?}"),
        }
    }
}

fn writer<'f, F: Medium>(flash: &'f mut F, case: &Case<F>, trial: u16) -> Writer<'f, F> {
    let mut w = Writer::new(flash);
    w.backbuf_blocks = Some(case.geometry.1);
    w.trial_budget = trial;
    w
}

fn run<F: Medium>(flash: &mut F, case: &Case<F>, op: Op) -> Result<(), Failure> {
    let written = match op {
        Op::Save(tag, len, trial) => {
            writer(flash, case, trial).save_volatile(&Payload::plain(&pattern(tag, len)))
        }
        Op::Append(tag, len, trial) => {
            writer(flash, case, trial).append_snapshot(&Payload::plain(&pattern(tag, len)))
        }
        Op::Commit(trial) => writer(flash, case, trial).commit(),
        Op::Rollback(keep) => writer(flash, case, 0).rollback(keep),
        Op::Confirm => writer(flash, case, 0).confirm(),
        Op::Repair => writer(flash, case, 0).repair(),
        Op::Format(marker) => {
            let mut w = writer(flash, case, 0);
            if !marker {
                w.backbuf_blocks = None;
            }
            w.format()
        }
        Op::Boot => return boot(flash).map(drop).map_err(Failure::Boot),
    };
    written.map(drop).map_err(Failure::Write)
}

/// What the boot path replays: snapshot payloads oldest first, then the volatile's.
#[derive(Clone, PartialEq, Eq)]
struct State {
    snapshots: Vec<Vec<u8>>,
    volatile: Option<Vec<u8>>,
}

/// Payloads by the tag and length they were written with, so a failure stays readable.
impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = |p: &Vec<u8>| match (0..=u8::MAX).find(|&t| pattern(t, p.len()) == *p) {
            Some(tag) => format!("#{tag}/{}", p.len()),
            None => format!("unknown/{}", p.len()),
        };
        let snapshots: Vec<String> = self.snapshots.iter().map(label).collect();
        let volatile = self.volatile.as_ref().map(label);
        write!(f, "snapshots {snapshots:?} volatile {volatile:?}")
    }
}

/// A failed check: what went wrong, without where (the sequence adds that).
type Check<T = ()> = Result<T, String>;

fn payload<F: Medium>(flash: &mut F, b: &Block) -> Check<Vec<u8>> {
    let mut data = vec![0u8; b.header.fields.payload_len as usize];
    flash
        .read(b.offset + HEADER_LEN as u32, &mut data)
        .map_err(|e| format!("reading the payload at {:#x}: {e:?}", b.offset))?;
    Ok(data)
}

/// What boots now and, while the current volatile copy is on trial over a confirmed one, what
/// a failed trial comes back to: a save replaces the trial copy, and once its span is erased a
/// cut boots the confirmed one (docs/FORMAT.md, "Saving over a trial").
fn state_and_comeback<F: Medium>(flash: &mut F) -> Check<(State, Option<State>)> {
    let mut buf = [0u8; 512];
    let view = read_chain(flash, &mut buf);
    let snapshots = view
        .snapshots
        .iter()
        .map(|b| payload(flash, b))
        .collect::<Check<Vec<_>>>()?;
    let with = |volatile: Option<Vec<u8>>| State {
        snapshots: snapshots.clone(),
        volatile,
    };
    let on_trial = |b: &Block| matches!(b.header.trial(), Trial::OnTrial { .. });
    let current = view.volatile().map(|b| payload(flash, b)).transpose()?;
    let comes_back = match (view.volatiles.first(), view.volatiles.get(1)) {
        (Some(trial), Some(confirmed)) if on_trial(trial) && !on_trial(confirmed) => {
            Some(with(Some(payload(flash, confirmed)?)))
        }
        _ => None,
    };
    Ok((with(current), comes_back))
}

fn state<F: Medium>(flash: &mut F) -> Check<State> {
    Ok(state_and_comeback(flash)?.0)
}

/// What the unit ends on once every trial boot left is spent.
fn eventual<F: Medium>(flash: &F) -> Check<State> {
    let mut f = flash.clone();
    // Each boot spends a mark and marks are finite; a thousand means the boots never settle.
    for _ in 0..1000 {
        if !boot(&mut f).map_err(|e| format!("a boot failed: {e:?}"))? {
            return state(&mut f);
        }
    }
    Err("trial boots never ran out".into())
}

/// A flash before or after a step whole: what the cut states are measured against.
struct Reference {
    state: State,
    comes_back: Option<State>,
    ends: State,
    /// Whether the follow-up save is refused for space here.
    full: bool,
}

impl Reference {
    fn of<F: Medium>(flash: &F, case: &Case<F>) -> Check<Self> {
        let (state, comes_back) = state_and_comeback(&mut flash.clone())?;
        let next = run(&mut flash.clone(), case, FOLLOW_UP);
        Ok(Reference {
            state,
            comes_back,
            ends: eventual(flash)?,
            full: next.as_ref().is_err_and(Failure::no_space),
        })
    }
}

/// NOR (and UBI): every tear of the cut operation the medium can tell apart.
fn torn<F: Medium>(before: &F, case: &Case<F>, op: Op, cut: u64) -> Check<Vec<(String, F)>> {
    F::tears()
        .into_iter()
        .map(|tear| {
            let mut f = before.clone();
            f.cut_power_at(cut, tear);
            expect_cut(run(&mut f, case, op)).map_err(|e| format!("{tear:?}: {e}"))?;
            f.power_on();
            Ok((format!("{tear:?}"), f))
        })
        .collect()
}

/// Behind a write-back cache: the cut operation had not started or had completed in the
/// cache, and then each subset of up to four dirty pages reached the medium (beyond four:
/// none, all, and six seeded samples).
fn landed(
    before: &SimFlash,
    case: &Case<SimFlash>,
    op: Op,
    cut: u64,
) -> Check<Vec<(String, SimFlash)>> {
    let mut out = Vec::new();
    for (how, tear) in WRITE_BACK_TEARS {
        let mut f = before.clone();
        f.cut_power_at(cut, tear);
        expect_cut(run(&mut f, case, op)).map_err(|e| format!("{how}: {e}"))?;
        let n = f.dirty_pages();
        let landings: Vec<Vec<bool>> = if n <= 4 {
            (0..1u32 << n)
                .map(|m| (0..n).map(|i| m >> i & 1 == 1).collect())
                .collect()
        } else {
            let mut rng = SplitMix(cut << 8 | n as u64);
            let mut some = vec![vec![false; n], vec![true; n]];
            some.extend((0..6).map(|_| (0..n).map(|_| rng.below(2) == 0).collect()));
            some
        };
        for landing in landings {
            let mut g = f.clone();
            g.set_landing(&landing);
            g.power_on();
            out.push((format!("{how}, landed {landing:?}"), g));
        }
    }
    Ok(out)
}

fn expect_cut(r: Result<(), Failure>) -> Check {
    match r {
        Err(e) if e.power_cut() => Ok(()),
        Err(e) => Err(format!("failed with {e} instead of the power cut")),
        Ok(()) => Err("reported success with the power cut".into()),
    }
}

/// SplitMix64: a seeded generator small enough to keep in the test.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
}

fn env(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.parse() {
        Ok(n) => Some(n),
        Err(e) => panic!("{name}={v:?} is not a count: {e}"),
    }
}

/// Out of 17: saves most, the common write on a unit; then commits and boots, which meet the
/// trials saves leave; formats least, since each starts the chain over.
fn pick_op<F: Medium>(rng: &mut SplitMix, flash: &F, tag: u8) -> Op {
    match rng.below(17) {
        0..=5 => Op::Save(tag, rng.pick(&SIZES), rng.pick(&TRIALS)),
        6..=7 => Op::Append(tag, rng.pick(&SIZES), rng.pick(&TRIALS)),
        8..=10 => Op::Commit(rng.pick(&TRIALS)),
        11 => {
            let mut buf = [0u8; 512];
            let have = read_chain(&mut flash.clone(), &mut buf).snapshots.len();
            Op::Rollback(rng.below(have as u64 + 1) as usize)
        }
        12 => Op::Confirm,
        13 => Op::Repair,
        14..=15 => Op::Boot,
        _ => Op::Format(rng.below(2) == 0),
    }
}

#[derive(Default)]
struct Counts {
    steps_cut: u64,
    cuts: u64,
    refused: u64,
}

fn explore<F: Medium>(case: &Case<F>) {
    let seeds = match env("EXPLORE_SEED") {
        Some(seed) => seed..seed + 1,
        None => 0..env("EXPLORE_SEEDS").unwrap_or(case.seeds),
    };
    let steps = env("EXPLORE_STEPS").map_or(case.steps, |n| n as usize);
    let sequences = seeds.end - seeds.start;
    let mut counts = Counts::default();
    for seed in seeds {
        sequence(case, seed, steps, &mut counts);
    }
    println!(
        "{}: {sequences} sequences of {steps} steps: {} steps cut, {} cut states checked, {} \
         steps refused",
        case.name, counts.steps_cut, counts.cuts, counts.refused
    );
    assert!(counts.cuts > 0, "{}: no step wrote anything", case.name);
}

fn sequence<F: Medium>(case: &Case<F>, seed: u64, steps: usize, counts: &mut Counts) {
    let mut rng = SplitMix(seed);
    let mut flash = (case.blank)(ERASE, case.geometry.0);
    let mut done: Vec<String> = Vec::new();
    for step in 0..steps {
        let tag = (step % 250) as u8 + 1;
        let op = pick_op(&mut rng, &flash, tag);
        let fail = |cut: &str, what: String| -> ! {
            panic!(
                "{} seed {seed} step {step} {op:?}{cut}: {what}\n steps before it: {done:?}\n \
                 replay: EXPLORE_SEED={seed} cargo test -p snapshot --test explore_powercut {}",
                case.name, case.name
            )
        };
        let mut whole = flash.clone();
        let start = whole.ops();
        if let Err(e) = run(&mut whole, case, op) {
            if whole.contents() != flash.contents() {
                fail("", format!("refused ({e}) but changed the flash"));
            }
            counts.refused += 1;
            done.push(format!("{op:?} refused: {e}"));
            continue;
        }
        let count = whole.ops() - start;
        if count > 0 {
            let old = Reference::of(&flash, case).unwrap_or_else(|e| fail(" (before)", e));
            let new = Reference::of(&whole, case).unwrap_or_else(|e| fail(" (after)", e));
            for cut in 0..count {
                let states = (case.cuts)(&flash, case, op, cut)
                    .unwrap_or_else(|e| fail(&format!(", cut at op {cut}/{count}"), e));
                for (how, cut_flash) in states {
                    check(case, op, cut_flash, &old, &new)
                        .unwrap_or_else(|e| fail(&format!(", cut at op {cut}/{count} {how}"), e));
                    counts.cuts += 1;
                }
            }
            counts.steps_cut += 1;
        }
        // What a step left in a write-back cache reaches the medium before the next step, so
        // that the next step's cuts land only its own pages.
        if let Err(e) = whole.sync() {
            fail("", format!("sync after the step: {e:?}"));
        }
        flash = whole;
        done.push(format!("{op:?}"));
    }
}

/// The promises of the module comment, on one flash left by a cut.
fn check<F: Medium>(
    case: &Case<F>,
    op: Op,
    mut flash: F,
    old: &Reference,
    new: &Reference,
) -> Check {
    let seen = state(&mut flash)?;
    let shown = if seen == new.state {
        new
    } else if seen == old.state || Some(&seen) == old.comes_back.as_ref() {
        old
    } else {
        return Err(format!(
            "shows a mix\n seen {seen:?}\n old  {:?}\n new  {:?}\n old comes back to {:?}",
            old.state, new.state, old.comes_back
        ));
    };

    let ends = eventual(&flash)?;
    let ends_ok = match op {
        // Confirming goes lowest block first: a cut can leave the lower blocks confirmed and
        // the upper ones to roll back.
        Op::Confirm => {
            ends.snapshots.starts_with(&old.ends.snapshots)
                && new.ends.snapshots.starts_with(&ends.snapshots)
        }
        _ => ends == old.ends || ends == new.ends,
    };
    if !ends_ok {
        return Err(format!(
            "once its trials run out the unit ends on neither what the old nor what the new \
             state ends on\n ends     {ends:?}\n old ends {:?}\n new ends {:?}\n seen     {seen:?}",
            old.ends, new.ends
        ));
    }

    let mut repaired = flash.clone();
    run(&mut repaired, case, Op::Repair)
        .map_err(|e| format!("repair refused: {e}\n seen {seen:?}"))?;
    let after = state(&mut repaired)?;
    if after != seen {
        return Err(format!(
            "repair changed the state\n before {seen:?}\n after  {after:?}"
        ));
    }

    match run(&mut flash, case, FOLLOW_UP) {
        Ok(()) => {
            let saved = state(&mut flash)?;
            let expect = State {
                snapshots: seen.snapshots,
                volatile: Some(pattern(NEXT_TAG, NEXT_LEN)),
            };
            if saved != expect {
                return Err(format!(
                    "the next save shows\n {saved:?}\n not\n {expect:?}"
                ));
            }
            Ok(())
        }
        Err(e) if e.no_space() && shown.full => Ok(()),
        Err(e) => Err(format!("the next save was refused: {e}\n seen {seen:?}")),
    }
}
