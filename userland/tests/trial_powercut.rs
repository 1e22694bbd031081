//! Trial boots under power cuts: a cut at every flash operation of spending a trial boot (the
//! boot path's one write), of `confirm`, of recording failed health checks, and of the write
//! that makes a trial rollback permanent. After each cut the boot shows the old or the new state, a trial is never gained
//! (spent marks never come back), a confirmation never lost once made, and the next write
//! succeeds.

use snapinit::chain::{read_chain, Block};
use snapinit::header::{Compression, Trial, HEADER_LEN};
use snapinit::sim::{SimError, SimFlash};
use snapshot::writer::{Payload, WriteError, Writer};

mod medium;
use medium::{boot, Medium, Ubi};

const ERASE: u32 = 1024;
const BLOCKS: u32 = 32;
const BACKBUF: u32 = 4;

/// What the boot path replays: snapshot payloads oldest first, then the volatile's.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    snapshots: Vec<Vec<u8>>,
    volatile: Option<Vec<u8>>,
}

fn bytes<F: Medium>(flash: &mut F, b: &Block) -> Vec<u8> {
    let mut data = vec![0u8; b.header.fields.payload_len as usize];
    snapinit::flash::ReadNorFlash::read(flash, b.offset + HEADER_LEN as u32, &mut data)
        .expect("sim read");
    data
}

fn state<F: Medium>(flash: &mut F) -> State {
    let mut buf = [0u8; 512];
    let view = read_chain(flash, &mut buf);
    State {
        snapshots: view.snapshots.iter().map(|b| bytes(flash, b)).collect(),
        volatile: view.volatile().map(|b| bytes(flash, b)),
    }
}

/// Trial state of every block the boot path would boot, bottom up.
fn trials<F: Medium>(flash: &mut F) -> Vec<Trial> {
    let mut buf = [0u8; 512];
    let view = read_chain(flash, &mut buf);
    view.snapshots
        .iter()
        .chain(view.volatile())
        .map(|b| b.header.trial())
        .collect()
}

/// The failed-check marks of the `i`th snapshot the boot path would boot.
fn failed<F: Medium>(flash: &mut F, i: usize) -> u8 {
    let mut buf = [0u8; 512];
    read_chain(flash, &mut buf).snapshots[i].header.marks.failed
}

fn data(tag: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| tag.wrapping_mul(37).wrapping_add((i % 241) as u8))
        .collect()
}

fn writer<F: Medium>(flash: &mut F, trial: u16) -> Writer<'_, F> {
    let mut w = Writer::new(flash);
    w.backbuf_blocks = Some(BACKBUF);
    w.trial_budget = trial;
    w
}

fn append<F: Medium>(flash: &mut F, tag: u8, trial: u16) {
    let d = data(tag, 700);
    writer(flash, trial)
        .append_snapshot(&Payload {
            data: &d,
            compression: Compression::None,
            unpacked_len: d.len() as u64,
        })
        .expect("append");
}

fn save<F: Medium>(flash: &mut F, tag: u8, trial: u16) -> Result<(), WriteError<SimError>> {
    let d = data(tag, 500);
    writer(flash, trial)
        .save_volatile(&Payload {
            data: &d,
            compression: Compression::None,
            unpacked_len: d.len() as u64,
        })
        .map(|_| ())
}

/// Runs `op` on a copy of `flash` cut at every operation, with every tear, and checks each.
fn cut_everywhere<F: Medium>(
    name: &str,
    flash: &F,
    op: &dyn Fn(&mut F) -> bool,
    check: &dyn Fn(&mut F, &str),
) -> u64 {
    let mut whole = flash.clone();
    let start = whole.ops();
    assert!(op(&mut whole), "{name}: fails without a cut");
    let count = whole.ops() - start;
    assert!(count > 0, "{name}: no flash operation");
    let mut checked = 0;
    for cut in 0..count {
        for tear in F::tears() {
            let mut f = flash.clone();
            f.cut_power_at(cut, tear);
            assert!(!op(&mut f), "{name}: cut at {cut} did not fail");
            f.power_on();
            check(&mut f, &format!("{name}: cut at {cut}/{count} ({tear:?})"));
            // The next write succeeds.
            save(&mut f, 77, 0)
                .unwrap_or_else(|e| panic!("{name}: next save after cut {cut}: {e}"));
            assert_eq!(
                state(&mut f).volatile,
                Some(data(77, 500)),
                "{name}: next save"
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn cuts_in_trial_accounting_confirmation_and_permanent_rollback() {
    cuts_in_trials::<SimFlash>("NOR");
}

/// On UBI every mark (trial, confirm, roll-back, live) is one atomic LEB change.
#[test]
fn cuts_in_trial_accounting_confirmation_and_permanent_rollback_on_ubi() {
    cuts_in_trials::<Ubi>("UBI");
}

fn cuts_in_trials<F: Medium>(medium: &str) {
    let mut checked = 0;

    // A snapshot on trial (3 boots) over a confirmed one, with a volatile above it.
    let mut on_trial = F::blank(ERASE, BLOCKS);
    append(&mut on_trial, 1, 0);
    append(&mut on_trial, 2, 3);
    save(&mut on_trial, 3, 0).expect("save");
    boot(&mut on_trial).expect("first boot");
    let before = state(&mut on_trial);
    let trial_before = trials(&mut on_trial);
    assert_eq!(trial_before[1], Trial::OnTrial { used: 1, budget: 3 });

    // Spending: the state never changes; the mark is spent or not, never given back.
    checked += cut_everywhere("spend", &on_trial, &|f| boot(f).is_ok(), &|f, at| {
        assert_eq!(state(f), before, "{at}: a spend changed what boots");
        let t = trials(f)[1];
        assert!(
            t == trial_before[1] || t == (Trial::OnTrial { used: 2, budget: 3 }),
            "{at}: trial {t:?}"
        );
    });

    // Confirming: what boots is unchanged; the block is confirmed or still on trial with the
    // marks it had.
    checked += cut_everywhere(
        "confirm",
        &on_trial,
        &|f| writer(f, 0).confirm().is_ok(),
        &|f, at| {
            assert_eq!(state(f), before, "{at}: confirm changed what boots");
            let t = trials(f)[1];
            assert!(
                t == trial_before[1] || t == Trial::Confirmed,
                "{at}: trial {t:?}"
            );
        },
    );

    // Recording failed checks (two kinds): what boots and the trial state never change; the
    // marks set are some of those asked for, and a later confirm or boot still works.
    let trial_hash = {
        let mut buf = [0u8; 512];
        read_chain(&mut on_trial.clone(), &mut buf).snapshots[1]
            .header
            .hash
    };
    let ask = 0b101;
    checked += cut_everywhere(
        "failed-check marks",
        &on_trial,
        &|f| {
            writer(f, 0)
                .mark_failed(&trial_hash, ask)
                .is_ok_and(|n| n == 2)
        },
        &|f, at| {
            assert_eq!(state(f), before, "{at}: marking changed what boots");
            assert_eq!(
                trials(f)[1],
                trial_before[1],
                "{at}: marking moved the trial"
            );
            let got = failed(f, 1);
            assert_eq!(got & !ask, 0, "{at}: marks {got:#b} beyond {ask:#b}");
        },
    );
    let mut marked = on_trial.clone();
    assert_eq!(
        writer(&mut marked, 0).mark_failed(&trial_hash, ask).ok(),
        Some(2)
    );
    assert_eq!(failed(&mut marked, 1), ask);
    // Asking again programs nothing; the next boot spends its mark as before.
    let ops = marked.ops();
    assert_eq!(
        writer(&mut marked, 0).mark_failed(&trial_hash, ask).ok(),
        Some(0)
    );
    // Another block (the confirmed one below) is never marked.
    let below = {
        let mut buf = [0u8; 512];
        read_chain(&mut marked.clone(), &mut buf).snapshots[0]
            .header
            .hash
    };
    assert_eq!(
        writer(&mut marked, 0).mark_failed(&below, ask).ok(),
        Some(0)
    );
    assert_eq!(failed(&mut marked, 0), 0);
    boot(&mut marked).expect("boot after marking");
    assert!(marked.ops() > ops);
    assert_eq!(
        trials(&mut marked)[1],
        Trial::OnTrial { used: 2, budget: 3 }
    );
    assert_eq!(failed(&mut marked, 1), ask);

    // A confirmed block survives any number of later boots; spending finds nothing.
    let mut confirmed = on_trial.clone();
    writer(&mut confirmed, 0).confirm().expect("confirm");
    for _ in 0..5 {
        let ops = confirmed.ops();
        boot(&mut confirmed).expect("boot");
        assert_eq!(
            confirmed.ops(),
            ops,
            "a boot of a confirmed chain wrote flash"
        );
    }
    assert_eq!(state(&mut confirmed), before);

    // Exhausted: the boot shows snapshot 1 alone (the volatile belonged to snapshot 2); the
    // next write makes it permanent, old or new at every cut, and snapshot 2 never returns.
    let mut exhausted = on_trial.clone();
    boot(&mut exhausted).expect("second boot");
    boot(&mut exhausted).expect("third boot");
    // Every allowed boot spent: still on trial (its last boot may still confirm it)...
    assert_eq!(state(&mut exhausted), before);
    // ...until the next boot rolls it back.
    boot(&mut exhausted).expect("the boot that rolls it back");
    let rolled = state(&mut exhausted);
    assert_eq!(
        rolled,
        State {
            snapshots: vec![data(1, 700)],
            volatile: None
        }
    );
    let after = State {
        snapshots: vec![data(1, 700)],
        volatile: Some(data(9, 500)),
    };
    checked += cut_everywhere(
        "save after a trial rollback",
        &exhausted,
        &|f| save(f, 9, 0).is_ok(),
        &|f, at| {
            let seen = state(f);
            assert!(seen == rolled || seen == after, "{at}: shows {seen:?}");
            // Marks are never un-spent: nothing booted is on trial again.
            assert!(
                trials(f).iter().all(|t| *t == Trial::Confirmed),
                "{at}: {:?}",
                trials(f)
            );
        },
    );

    // The same with a volatile saved before the snapshot on trial: the append left its copy
    // in the back buffer, linked to snapshot 1. The rollback shows snapshot 1 alone, and
    // making it permanent must not bring that copy back at any cut.
    let mut upgraded = F::blank(ERASE, BLOCKS);
    append(&mut upgraded, 1, 0);
    save(&mut upgraded, 2, 0).expect("save");
    append(&mut upgraded, 3, 1);
    boot(&mut upgraded).expect("the one trial boot");
    boot(&mut upgraded).expect("the boot that rolls it back");
    assert_eq!(state(&mut upgraded), rolled);
    checked += cut_everywhere(
        "save after a trial rollback over an evacuated volatile",
        &upgraded,
        &|f| save(f, 9, 0).is_ok(),
        &|f, at| {
            let seen = state(f);
            assert!(seen == rolled || seen == after, "{at}: shows {seen:?}");
        },
    );

    // A volatile on trial: its boots spent, the older copy comes back; saving over it then is
    // old-or-new too.
    let mut vol = F::blank(ERASE, BLOCKS);
    append(&mut vol, 1, 0);
    save(&mut vol, 2, 0).expect("save");
    save(&mut vol, 3, 2).expect("save on trial");
    assert_eq!(state(&mut vol).volatile, Some(data(3, 500)));
    let spend_twice = |f: &mut F| boot(f).is_ok() && boot(f).is_ok();
    checked += cut_everywhere("volatile trial boots", &vol, &spend_twice, &|f, at| {
        // Spending never rolls back by itself: the copy on trial stays current.
        let v = state(f).volatile;
        assert_eq!(v, Some(data(3, 500)), "{at}: {:?}", trials(f));
    });
    let mut vol_done = vol.clone();
    assert!(spend_twice(&mut vol_done));
    assert_eq!(state(&mut vol_done).volatile, Some(data(3, 500)));
    // The boot after its last allowed one rolls it back: the older copy is current.
    boot(&mut vol_done).expect("roll-back boot");
    assert_eq!(state(&mut vol_done).volatile, Some(data(2, 500)));

    // A save over a volatile on trial whose other copy is confirmed replaces the trial copy:
    // a cut shows the trial (old), the new one, or the confirmed copy the trial would come
    // back to; and once every trial boot is spent, the confirmed state boots.
    let mut retried = F::blank(ERASE, BLOCKS);
    append(&mut retried, 1, 0);
    save(&mut retried, 2, 0).expect("the confirmed save");
    save(&mut retried, 3, 1).expect("the first try");
    let tried = state(&mut retried);
    let good = State {
        snapshots: vec![data(1, 700)],
        volatile: Some(data(2, 500)),
    };
    let retry = State {
        snapshots: vec![data(1, 700)],
        volatile: Some(data(4, 500)),
    };
    checked += cut_everywhere(
        "save over a volatile on trial",
        &retried,
        &|f| save(f, 4, 1).is_ok(),
        &|f, at| {
            let seen = state(f);
            assert!(
                seen == tried || seen == retry || seen == good,
                "{at}: shows {seen:?}"
            );
            let mut later = f.clone();
            for _ in 0..4 {
                boot(&mut later).expect("boot");
            }
            assert_eq!(state(&mut later), good, "{at}: the confirmed state is lost");
        },
    );
    let mut whole = retried.clone();
    save(&mut whole, 4, 1).expect("the retry");
    for _ in 0..4 {
        boot(&mut whole).expect("boot");
    }
    assert_eq!(
        state(&mut whole),
        good,
        "the retry's trial ran out elsewhere"
    );

    // Evacuating a volatile on trial (a commit over its slot) keeps the boots it had left.
    let mut evac = F::blank(ERASE, BLOCKS);
    append(&mut evac, 1, 0);
    save(&mut evac, 2, 3).expect("save on trial");
    boot(&mut evac).expect("boot");
    let d = data(4, 700);
    writer(&mut evac, 0)
        .append_snapshot(&Payload {
            data: &d,
            compression: Compression::None,
            unpacked_len: d.len() as u64,
        })
        .expect("append over the volatile's slot");
    println!("{medium}: trial cut points checked: {checked}");
    assert!(checked > 40, "only {checked}");
}

#[test]
fn an_evacuated_volatile_keeps_its_trial_boots_left() {
    let mut f = SimFlash::new(ERASE, BLOCKS);
    append(&mut f, 1, 0);
    save(&mut f, 2, 3).expect("save on trial");
    boot(&mut f).expect("boot");
    // A second save puts the new copy in the back buffer, then a save with the slot... the
    // writer evacuates the slot's volatile only for a snapshot append; force that order.
    let mut buf = [0u8; 512];
    let view = read_chain(&mut f, &mut buf);
    let v = *view.volatile().expect("volatile");
    assert_eq!(v.offset, view.next_offset, "the volatile sits in the slot");
    assert_eq!(v.header.trial(), Trial::OnTrial { used: 1, budget: 3 });
    // `commit` evacuates it to the back buffer first, then writes the snapshot.
    writer(&mut f, 0).commit().expect("commit");
    let view = read_chain(&mut f, &mut buf);
    assert_eq!(view.snapshots.len(), 2);
    // The evacuated copy is superseded by the commit, but it was written with the boots left:
    // read it where it lies.
    let copy = snapinit::chain::read_header(&mut f, view.layout.backbuf_offset())
        .expect("read")
        .expect("the evacuated copy");
    assert_eq!(copy.fields.trial_budget, 2, "3 allowed, 1 spent: 2 left");
    assert_eq!(copy.marks.trials_used, 0);
}

#[test]
fn a_volatile_on_its_last_trial_boot_is_not_evacuated() {
    let mut f = SimFlash::new(ERASE, BLOCKS);
    append(&mut f, 1, 0);
    save(&mut f, 2, 1).expect("save on trial");
    boot(&mut f).expect("its only boot");
    let before = f.contents().to_vec();
    let d = data(4, 700);
    let r = writer(&mut f, 0).append_snapshot(&Payload {
        data: &d,
        compression: Compression::None,
        unpacked_len: d.len() as u64,
    });
    assert!(
        matches!(r, Err(WriteError::TrialSpent { .. })),
        "a copy would lose that its last boot is spent: {r:?}"
    );
    assert_eq!(
        f.contents(),
        &before[..],
        "the refused write changed the flash"
    );
    // Confirmed, the same write goes ahead.
    writer(&mut f, 0).confirm().expect("confirm");
    writer(&mut f, 0)
        .append_snapshot(&Payload {
            data: &d,
            compression: Compression::None,
            unpacked_len: d.len() as u64,
        })
        .expect("append after confirm");
}

/// A snapshot written over a volatile on trial that lies in the chain slot (a `commit` of it,
/// or a `commit`/`upgrade` with content), while the other copy, in the back buffer, is the
/// confirmed state the trial comes back to. A cut before the new snapshot's header must leave
/// that confirmed copy: the trial then runs out onto it, as it would have without the write.
/// Before, the write first evacuated the trial copy over it: a cut after the evacuation left
/// two copies of the trial (the boots left given twice) and, once they ran out, no saved
/// changes at all.
fn a_snapshot_over_a_volatile_on_trial_keeps_the_confirmed_copy<F: Medium>() {
    let mut f = F::blank(ERASE, BLOCKS);
    append(&mut f, 1, 0);
    save(&mut f, 2, 0).expect("save");
    save(&mut f, 3, 0).expect("the confirmed save");
    save(&mut f, 4, 2).expect("the save on trial");
    {
        let mut buf = [0u8; 512];
        let view = read_chain(&mut f, &mut buf);
        let v = view.volatile().expect("volatile");
        assert_eq!(
            v.offset, view.next_offset,
            "the trial copy lies in the slot"
        );
        assert_eq!(view.volatiles[1].header.trial(), Trial::Confirmed);
    }
    boot(&mut f).expect("the first trial boot");
    let good = State {
        snapshots: vec![data(1, 700)],
        volatile: Some(data(3, 500)),
    };
    let committed = State {
        snapshots: vec![data(1, 700), data(4, 500)],
        volatile: None,
    };
    let appended = State {
        snapshots: vec![data(1, 700), data(5, 700)],
        volatile: None,
    };
    let ends = |f: &mut F, at: &str, new: &State| {
        // Boots until every trial has run out (2 boots allowed, one spent, one to roll back).
        let mut later = f.clone();
        for _ in 0..4 {
            boot(&mut later).expect("boot");
        }
        let end = state(&mut later);
        let tags = |s: &State| {
            let first = |d: &Vec<u8>| d[0];
            (
                s.snapshots.iter().map(first).collect::<Vec<_>>(),
                s.volatile.as_ref().map(first),
            )
        };
        assert!(
            end == good || end == *new,
            "{at}: once the trial ran out the unit shows {:?} (first bytes), not {:?} or {:?}",
            tags(&end),
            tags(&good),
            tags(new)
        );
    };
    let mut checked = cut_everywhere(
        "commit over a volatile on trial",
        &f,
        &|f| writer(f, 0).commit().is_ok(),
        &|f, at| ends(f, at, &committed),
    );
    checked += cut_everywhere(
        "append over a volatile on trial",
        &f,
        &|f| {
            let d = data(5, 700);
            writer(f, 0)
                .append_snapshot(&Payload {
                    data: &d,
                    compression: Compression::None,
                    unpacked_len: d.len() as u64,
                })
                .is_ok()
        },
        &|f, at| ends(f, at, &appended),
    );
    assert!(checked > 20, "only {checked}");
}

#[test]
fn a_snapshot_over_a_volatile_on_trial_keeps_the_confirmed_copy_nor() {
    a_snapshot_over_a_volatile_on_trial_keeps_the_confirmed_copy::<SimFlash>();
}

#[test]
fn a_snapshot_over_a_volatile_on_trial_keeps_the_confirmed_copy_ubi() {
    a_snapshot_over_a_volatile_on_trial_keeps_the_confirmed_copy::<Ubi>();
}

/// The mirror of the case above: the volatile on trial lies in the back buffer and the
/// confirmed copy it comes back to lies in the chain slot, which the new snapshot takes (a
/// `save` then a `save --trial` leave them so). A cut after the slot's erase and before the new
/// snapshot's header must still leave the confirmed state to come back to once the trial runs
/// out, as the commit's own documentation promises.
fn a_snapshot_over_a_confirmed_copy_in_the_slot_keeps_it<F: Medium>() {
    let mut f = F::blank(ERASE, BLOCKS);
    append(&mut f, 1, 0);
    save(&mut f, 3, 0).expect("the confirmed save");
    save(&mut f, 4, 2).expect("the save on trial");
    {
        let mut buf = [0u8; 512];
        let view = read_chain(&mut f, &mut buf);
        let v = view.volatile().expect("volatile");
        assert_ne!(
            v.offset, view.next_offset,
            "the trial copy lies in the back buffer"
        );
        assert_eq!(view.volatiles[1].offset, view.next_offset);
        assert_eq!(view.volatiles[1].header.trial(), Trial::Confirmed);
    }
    boot(&mut f).expect("the first trial boot");
    let good = State {
        snapshots: vec![data(1, 700)],
        volatile: Some(data(3, 500)),
    };
    let committed = State {
        snapshots: vec![data(1, 700), data(4, 500)],
        volatile: None,
    };
    let appended = State {
        snapshots: vec![data(1, 700), data(5, 700)],
        volatile: None,
    };
    let ends = |f: &mut F, at: &str, new: &State| {
        let mut later = f.clone();
        for _ in 0..4 {
            boot(&mut later).expect("boot");
        }
        let end = state(&mut later);
        assert!(
            end == good || end == *new,
            "{at}: once the trial ran out the unit shows {} snapshot(s) and volatile {:?}, neither the confirmed state nor the new one",
            end.snapshots.len(),
            end.volatile.as_ref().map(|d| d[0]),
        );
    };
    let mut checked = cut_everywhere(
        "commit of a volatile on trial over a confirmed copy in the slot",
        &f,
        &|f| writer(f, 0).commit().is_ok(),
        &|f, at| ends(f, at, &committed),
    );
    // Without a cut the commit stores the trial's content.
    let mut whole = f.clone();
    writer(&mut whole, 0).commit().expect("commit");
    assert_eq!(state(&mut whole), committed);
    checked += cut_everywhere(
        "append over a volatile on trial with a confirmed copy in the slot",
        &f,
        &|f| {
            let d = data(5, 700);
            writer(f, 0)
                .append_snapshot(&Payload {
                    data: &d,
                    compression: Compression::None,
                    unpacked_len: d.len() as u64,
                })
                .is_ok()
        },
        &|f, at| ends(f, at, &appended),
    );
    assert!(checked > 20, "only {checked}");
}

#[test]
fn a_snapshot_over_a_confirmed_copy_in_the_slot_keeps_it_nor() {
    a_snapshot_over_a_confirmed_copy_in_the_slot_keeps_it::<SimFlash>();
}

#[test]
fn a_snapshot_over_a_confirmed_copy_in_the_slot_keeps_it_ubi() {
    a_snapshot_over_a_confirmed_copy_in_the_slot_keeps_it::<Ubi>();
}
