//! The fuzz targets' seed corpora (fuzz/seeds/TARGET/), made by the project's own writers: the
//! chain writer on the simulator, the payload packer, gzip as `snapshot save` compresses.
//!
//! `SNAPINIT_WRITE_SEEDS=1 cargo test -p snapshot --test fuzz_seeds` rewrites them; without it
//! the test checks that every target has seeds and that the chain seeds still read as the
//! chains they were written as (a format change must come with new seeds).

use snapinit::chain::read_chain;
use snapinit::header::HEADER_LEN;
use snapinit::sim::SimFlash;
use snapshot::pack::{pack_dir, PackOptions};
use snapshot::writer::{Payload, Writer};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

const ERASE: u32 = 1024;
const BLOCKS: u32 = 16;
/// Chain seeds start with the fuzz input prefix: erase size 2^(9 + 1) = 1024, no read error.
const CHAIN_PREFIX: [u8; 9] = [1, 0, 0, 0, 0, 0, 0, 0, 0];

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds")
}

/// Small chains of every shape the writer makes.
fn chains() -> Vec<(&'static str, SimFlash)> {
    let mut out = Vec::new();
    let mut f = SimFlash::new(ERASE, BLOCKS);
    let mut w = Writer::new(&mut f);
    w.backbuf_blocks = Some(2);
    w.format().expect("format");
    out.push(("marker", f.clone()));
    let mut w = Writer::new(&mut f);
    w.append_snapshot(&Payload::plain(b"first snapshot"))
        .expect("append");
    w.save_volatile(&Payload::plain(&[7u8; 1500]))
        .expect("save");
    out.push(("snapshot-volatile-slot", f.clone()));
    let mut w = Writer::new(&mut f);
    w.save_volatile(&Payload::plain(&[9u8; 300])).expect("save");
    out.push(("two-volatile-copies", f.clone()));
    let mut w = Writer::new(&mut f);
    w.commit().expect("commit");
    w.append_snapshot(&Payload::plain(&[3u8; 2500]))
        .expect("append");
    out.push(("three-snapshots", f.clone()));
    let mut w = Writer::new(&mut f);
    w.rollback(1).expect("rollback");
    out.push(("rolled-back", f.clone()));
    out
}

fn tars() -> Vec<(&'static str, Vec<u8>)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::create_dir_all(d.join("etc/config")).expect("mkdir");
    fs::write(d.join("etc/config/network"), b"config interface 'lan'\n").expect("write");
    fs::write(d.join("etc/banner"), vec![b'x'; 3000]).expect("write");
    std::os::unix::fs::symlink("/tmp/resolv.conf", d.join("etc/resolv.conf")).expect("symlink");
    fs::hard_link(d.join("etc/banner"), d.join("etc/banner.hard")).expect("link");
    let long = "d".repeat(120);
    fs::create_dir_all(d.join(&long)).expect("mkdir");
    fs::write(d.join(&long).join("f".repeat(120)), b"long name").expect("write");
    let mut tar = Vec::new();
    pack_dir(d, &PackOptions::default(), &mut tar).expect("pack");
    let empty = tempfile::tempdir().expect("tempdir");
    let mut none = Vec::new();
    pack_dir(empty.path(), &PackOptions::default(), &mut none).expect("pack");
    vec![("tree", tar), ("empty", none)]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

fn expected() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (name, f) in chains() {
        let mut seed = CHAIN_PREFIX.to_vec();
        seed.extend_from_slice(f.contents());
        files.push((format!("survey/{name}"), seed.clone()));
        files.push((format!("chain/{name}"), seed));
        for (i, block) in f.contents().chunks(ERASE as usize).enumerate() {
            if block[..HEADER_LEN].iter().any(|&b| b != 0xFF) {
                files.push((format!("header/{name}-{i}"), block[..HEADER_LEN].to_vec()));
            }
        }
    }
    for (name, tar) in tars() {
        files.push((format!("gzip/{name}"), gzip(&tar)));
        files.push((format!("replay/{name}"), tar.clone()));
        files.push((format!("tar/{name}"), tar));
    }
    for (i, line) in [
        "console=ttyS0,115200 root=/dev/mtdblock3 rootfstype=squashfs quiet",
        "snapinit.part=data snapinit.device=/dev/sda3 snapinit.erase_size=0x20000 snapinit.init=/bin/sh snapinit.failsafe snapinit.root=/newroot snapinit.console",
        "snapinit.erase_size=banana snapinit.part= snapinit.unknown=1",
    ]
    .iter()
    .enumerate()
    {
        files.push((format!("cmdline/{i}"), line.as_bytes().to_vec()));
    }
    files
}

#[test]
fn fuzz_seed_corpora() {
    let dir = seeds_dir();
    if std::env::var_os("SNAPINIT_WRITE_SEEDS").is_some() {
        let _ = fs::remove_dir_all(&dir);
        for (name, data) in expected() {
            let p = dir.join(name);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(&p, data).expect("write seed");
        }
    }
    for target in [
        "header", "chain", "tar", "gzip", "cmdline", "survey", "replay",
    ] {
        let n = fs::read_dir(dir.join(target))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(
            n > 0,
            "fuzz/seeds/{target} is empty: rerun with SNAPINIT_WRITE_SEEDS=1"
        );
    }
    // The chain seeds are still chains this reader accepts.
    for (name, _) in chains() {
        let seed = fs::read(dir.join("chain").join(name)).expect("read seed");
        let mut f = SimFlash::new(ERASE, BLOCKS);
        // Load the image through the writer's own program path.
        snapinit::flash::NorFlash::write(&mut f, 0, &seed[CHAIN_PREFIX.len()..])
            .expect("load seed");
        let mut buf = [0u8; 256];
        let view = read_chain(&mut f, &mut buf);
        assert!(
            name == "marker" || !view.snapshots.is_empty() || view.volatile().is_some(),
            "seed {name} no longer reads as a chain"
        );
    }
}
