//! `convert` of a JFFS2 partition under power cuts at every flash operation: the overlay is
//! staged at the partition's end before anything of the JFFS2 is erased, so after any cut the
//! boot shows either the JFFS2 untouched (byte for byte) or the converted overlay, and the
//! next run finishes the conversion.

mod medium;

use medium::{pattern, Medium};
use snapinit::chain::{read_chain, Foreign, Status};
use snapinit::flash::NorFlash;
use snapinit::header::HEADER_LEN;
use snapinit::sim::{SimError, SimFlash};
use snapshot::writer::{Outcome, Payload, WriteError, Writer};

const ERASE: u32 = 1024;
const BLOCKS: u32 = 32;

/// A JFFS2 node header (12 bytes, little-endian as on a MIPS-el or ARM unit), sealed with the
/// kernel's CRC (`crc32(0, ...)`: no inversions).
fn node(kind: u16, len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&0x1985u16.to_le_bytes());
    h.extend_from_slice(&kind.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new_with_initial(u32::MAX);
    crc.update(&h);
    h.extend_from_slice(&(!crc.finalize()).to_le_bytes());
    h
}

/// A JFFS2 partition as a NOR unit holds it: every erase block starts with a cleanmarker, the
/// first `used` also hold inode nodes (with data), the rest are free.
fn jffs2(used: u32) -> SimFlash {
    let mut f = SimFlash::new(ERASE, BLOCKS);
    for b in 0..BLOCKS {
        let mut block = node(0x2003, 12);
        if b < used {
            let mut inode = node(0xE002, 200);
            inode.extend((0..188u32).map(|i| (i * 7 + b) as u8));
            block.extend_from_slice(&inode);
        }
        NorFlash::write(&mut f, b * ERASE, &block).expect("program");
    }
    f
}

/// What boots: the status, snapshot payloads oldest first, the volatile's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: Status,
    snapshots: Vec<Vec<u8>>,
    volatile: Option<Vec<u8>>,
}

fn seen(f: &mut SimFlash) -> Seen {
    let mut buf = [0u8; 512];
    let view = read_chain(f, &mut buf);
    let bytes = |f: &mut SimFlash, b: &snapinit::Block| {
        let mut d = vec![0u8; b.header.fields.payload_len as usize];
        snapinit::flash::ReadNorFlash::read(f, b.offset + HEADER_LEN as u32, &mut d).expect("read");
        d
    };
    Seen {
        status: view.status,
        snapshots: view.snapshots.iter().map(|b| bytes(f, b)).collect(),
        volatile: view.volatile().map(|b| bytes(f, b)),
    }
}

/// convert as the tool runs it: where to stage, then the staged conversion.
fn convert(f: &mut SimFlash, d: &[u8]) -> Result<Outcome, WriteError<SimError>> {
    let mut w = Writer::new(f);
    let layout = w
        .jffs2_staging(d.len())?
        .expect("the free tail must take the overlay");
    w.convert_staged(&layout, &Payload::plain(d))
}

#[test]
fn every_cut_shows_the_jffs2_untouched_or_the_overlay() {
    let d = pattern(7, 2500);
    let original = jffs2(20);
    let jffs2_region =
        |f: &SimFlash| f.contents()[..(BLOCKS - 4) as usize * ERASE as usize].to_vec();
    let mut whole = original.clone();
    let old = seen(&mut whole);
    assert_eq!(old.status, Status::Unformatted(Foreign::Jffs2));
    let start = whole.ops();
    let out = convert(&mut whole, &d).expect("convert");
    assert_eq!(out, Outcome::Committed { seq: 1 });
    let new = seen(&mut whole);
    assert_eq!(new.snapshots, vec![d.clone()]);
    assert_eq!(new.volatile, None);
    let staged = Seen {
        status: Status::Chain,
        snapshots: vec![],
        volatile: Some(d.clone()),
    };
    let count = whole.ops() - start;
    let (mut as_old, mut as_staged, mut as_new) = (0, 0, 0);
    for cut in 0..count {
        for tear in SimFlash::tears() {
            let mut f = original.clone();
            f.cut_power_at(cut, tear);
            let r = convert(&mut f, &d);
            assert!(
                matches!(r, Err(WriteError::Flash(SimError::PowerCut))),
                "cut at {cut}: {r:?}"
            );
            f.power_on();
            let s = seen(&mut f);
            if s == old {
                // Nothing of the overlay shows: then nothing of the JFFS2 may be gone.
                assert!(
                    jffs2_region(&f) == jffs2_region(&original),
                    "cut at {cut} ({tear:?}): the JFFS2 was touched before the overlay was safe"
                );
                as_old += 1;
            } else if s == staged {
                as_staged += 1;
            } else {
                assert_eq!(s, new, "cut at {cut} ({tear:?}) shows a mix");
                as_new += 1;
            }
            // What is left runs: convert again where nothing shows yet, the commit where the
            // staged overlay does (what convert's refusal then says to run).
            let rerun = if s == old {
                Some(convert(&mut f, &d))
            } else if s == staged {
                Some(Writer::new(&mut f).commit())
            } else {
                None
            };
            if let Some(r) = rerun {
                r.unwrap_or_else(|e| panic!("the rerun after a cut at {cut} ({tear:?}): {e}"));
            }
            assert_eq!(seen(&mut f), new, "rerun after a cut at {cut} ({tear:?})");
            // And an ordinary save after it.
            let next = pattern(99, 600);
            Writer::new(&mut f)
                .save_volatile(&Payload::plain(&next))
                .unwrap_or_else(|e| panic!("save after a cut at {cut} ({tear:?}): {e}"));
            assert_eq!(seen(&mut f).volatile, Some(next));
        }
    }
    println!(
        "convert: {count} flash operations, cut {} ways each: {as_old} showed the JFFS2, {as_staged} the staged overlay, {as_new} snapshot 1",
        SimFlash::tears().len()
    );
    assert!(as_old > 0 && as_staged > 0 && as_new > 0);
}

#[test]
fn no_staging_where_jffs2_keeps_data() {
    // Nodes in every erase block: no free tail, nothing read is written.
    let mut f = jffs2(BLOCKS);
    let before = f.contents().to_vec();
    let got = Writer::new(&mut f).jffs2_staging(2500).expect("read");
    assert_eq!(got, None);
    assert!(f.contents() == before.as_slice());
    // An overlay larger than half the partition cannot be staged either.
    let mut f = jffs2(1);
    let half = (BLOCKS / 2 * ERASE) as usize;
    assert_eq!(Writer::new(&mut f).jffs2_staging(half).expect("read"), None);
}

#[test]
fn a_larger_overlay_takes_a_larger_back_buffer() {
    // 6 KiB needs 7 erase blocks with its header; the default back buffer is 4.
    let mut f = jffs2(10);
    let d = pattern(3, 6 * 1024);
    let layout = Writer::new(&mut f)
        .jffs2_staging(d.len())
        .expect("read")
        .expect("staging");
    assert_eq!(layout.backbuf_blocks, 7);
    Writer::new(&mut f)
        .convert_staged(&layout, &Payload::plain(&d))
        .expect("convert");
    let mut buf = [0u8; 512];
    let view = read_chain(&mut f, &mut buf);
    assert_eq!(view.layout.backbuf_blocks, 7);
    assert_eq!(seen(&mut f).snapshots, vec![d]);
}

#[test]
fn jffs2_writing_into_the_tail_meanwhile_stops_convert() {
    let mut f = jffs2(10);
    let d = pattern(5, 1500);
    let layout = Writer::new(&mut f)
        .jffs2_staging(d.len())
        .expect("read")
        .expect("staging");
    // A read-write JFFS2 puts a node into a free block after the check.
    let at = (BLOCKS - 1) * ERASE + 12;
    NorFlash::write(&mut f, at, &node(0xE001, 40)).expect("program");
    let before = f.contents().to_vec();
    let r = Writer::new(&mut f).convert_staged(&layout, &Payload::plain(&d));
    assert!(matches!(r, Err(WriteError::StagingTaken { .. })), "{r:?}");
    assert!(f.contents() == before.as_slice(), "a refused convert wrote");
}

#[test]
fn a_chain_is_not_converted() {
    let mut f = jffs2(10);
    let d = pattern(6, 900);
    convert(&mut f, &d).expect("convert");
    let layout = snapinit::chain::Layout {
        capacity: BLOCKS * ERASE,
        erase_size: ERASE,
        backbuf_blocks: 4,
    };
    let before = f.contents().to_vec();
    let r = Writer::new(&mut f).convert_staged(&layout, &Payload::plain(&d));
    assert!(matches!(r, Err(WriteError::AlreadyChain)), "{r:?}");
    assert!(f.contents() == before.as_slice(), "a refused convert wrote");
}
