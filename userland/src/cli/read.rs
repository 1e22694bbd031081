//! The commands that only read: info, verify, extract, diff.

use super::device::Device;
use super::error::CliError;
use super::info::{self, kind_name};
use super::{ui, Ctx};
use snapinit::chain::{
    read_chain_with, verify as verify_payload, Block, ChainView, End, Reject, Status, Volatiles,
};
use snapinit::flash::{Geometry, ReadNorFlash};
use snapinit::header::{self, Compression, Header, HeaderError, Kind, Marks, HEADER_LEN};
use snapinit::payload::{payload_sha256, Hashing, PayloadReader};
use snapinit::replay::{replay, Stats};
use snapinit::tar::{Entry, EntryKind, TarReader};
use snapshot::model::ModelLayer;
use snapshot::unpack::{read_verified, tar_reader, unpack, PayloadRead, Source, StdReader};
use snapshot::writer::{survey, Writer};
use std::collections::BTreeMap;
use std::path::Path;

fn read_view(dev: &mut Device) -> ChainView {
    Writer::new(dev).read()
}

pub fn info(ctx: &Ctx, json: bool) -> Result<(), CliError> {
    let (_lock, mut dev) = ctx.open(false)?;
    let view = read_view(&mut dev);
    let info = info::gather(&dev, &view);
    if json {
        let text = serde_json::to_string_pretty(&info).map_err(|e| CliError::Payload {
            what: "the report".into(),
            detail: e.to_string(),
        })?;
        println!("{text}");
    } else {
        print!("{}", info::render(&info));
    }
    Ok(())
}

/// The boot path's reader over `b`'s payload, held in memory as `data`: its compression and its
/// bound on file data.
fn payload_reader<'a>(data: &'a [u8], b: &Block) -> Box<TarReader<Source<'a>>> {
    let gzip = b.header.fields.compression == Compression::Gzip;
    tar_reader(data, gzip, b.header.data_limit())
}

/// Replays a payload held in memory into `layer` with the boot path's readers and rules.
/// Returns what the replay did and the bytes of the (decompressed) tar stream, or the boot
/// path's own words for why it would refuse the block.
fn dry_run(data: &[u8], b: &Block, layer: &mut ModelLayer) -> Result<(Stats, u64), String> {
    let mut tar = payload_reader(data, b);
    let mut buf = vec![0u8; 64 * 1024];
    let stats = replay(&mut tar, layer, &mut buf).map_err(|e| e.to_string())?;
    Ok((stats, tar.into_inner().n))
}

/// Calls `f` on every entry of a payload held in memory, read to its end as the boot path
/// reads it (file data, the end of the archive, the gzip trailer).
fn walk_payload(data: &[u8], b: &Block, mut f: impl FnMut(&Entry)) -> Result<(), String> {
    let mut tar = payload_reader(data, b);
    let mut buf = vec![0u8; 64 * 1024];
    while let Some(e) = tar.next_entry().map_err(|e| e.to_string())? {
        f(&e);
        while tar.read_data(&mut buf).map_err(|e| e.to_string())? > 0 {}
    }
    tar.finish().map_err(|e| e.to_string())
}

fn name(b: &Block, index: Option<usize>) -> String {
    match (b.header.fields.kind, index) {
        (Kind::Snapshot, Some(i)) => format!("snapshot {i}"),
        _ => format!("volatile at {:#x}", b.offset),
    }
}

/// Reads one block straight from flash once, as PID 1 does: its payload is hashed in the pass
/// that replays it over `layer`. A hash that does not match wins over whatever the replay said
/// (a replay that stopped early has the rest of the payload hashed to tell).
fn check_block(
    dev: &mut Device,
    b: &Block,
    layer: &mut ModelLayer,
) -> Result<(Stats, u64), String> {
    let gzip = b.header.fields.compression == Compression::Gzip;
    let mut buf = vec![0u8; 64 * 1024];
    let (replayed, complete, digest, bytes) = {
        let mut hashed = Hashing::new(PayloadReader::new(dev, b));
        let (replayed, bytes) = {
            let mut tar = tar_reader(StdReader(&mut hashed), gzip, b.header.data_limit());
            let replayed = replay(&mut *tar, layer, &mut buf);
            (replayed, tar.get_ref().n)
        };
        (
            replayed,
            hashed.get_ref().remaining() == 0,
            hashed.digest(),
            bytes,
        )
    };
    let hash_ok = if complete {
        digest == b.header.fields.payload_sha256
    } else {
        verify_payload(dev, b, &mut buf).is_ok()
    };
    if !hash_ok {
        return Err(Reject::PayloadHash.to_string());
    }
    replayed
        .map(|stats| (stats, bytes))
        .map_err(|e| e.to_string())
}

pub fn verify(ctx: &Ctx) -> Result<(), CliError> {
    let (_lock, mut dev) = ctx.open(false)?;
    // Headers, links and geometry only: each payload is hashed below in the pass that decodes
    // it (one read of the flash, as at boot).
    let mut view = read_chain_with(&mut dev, &mut vec![0u8; 4096], Volatiles::Deferred);
    let mut problems = 0usize;
    match view.status {
        Status::Unformatted(fs) => {
            println!("FAIL: the partition holds {fs}, not a snapinit chain");
            return Err(CliError::Verify(1));
        }
        Status::Unreadable => {
            println!("FAIL: the first erase block cannot be read");
            return Err(CliError::Verify(1));
        }
        Status::Empty | Status::Chain => {}
    }
    let total: u64 = view
        .snapshots
        .iter()
        .chain(view.unverified_volatiles.iter())
        .map(|b| b.header.fields.payload_len)
        .sum();
    let bar = ui::bar(total, "verifying");
    let mut lines = Vec::new();
    // Snapshots replay one over the other into one layer, as at boot; the first one PID 1
    // would refuse ends the chain there, and the volatile is then not applied either.
    let mut layer = ModelLayer::new();
    let mut refused_at = None;
    for (i, b) in view.snapshots.iter().enumerate() {
        let what = name(b, Some(i + 1));
        if let Some(at) = refused_at {
            problems += 1;
            lines.push(format!(
                "FAIL  {what}: not booted: snapshot {at} below it is refused"
            ));
        } else {
            match check_block(&mut dev, b, &mut layer) {
                Ok((stats, bytes)) => lines.push(ok_line(&what, b, stats, bytes)),
                Err(e) => {
                    problems += 1;
                    refused_at = Some(i + 1);
                    lines.push(format!(
                        "FAIL  {what}: {e} (the boot path stops here: it boots snapshots 1..{i} and no volatile)"
                    ));
                }
            }
        }
        bar.inc(b.header.fields.payload_len);
    }
    // Each volatile copy (newest first) replays into an empty layer of its own above the
    // snapshots, as at boot. Those that pass become the view's volatiles (what the survey
    // below counts as part of the chain); the others are named already.
    let mut not_good = Vec::new();
    for b in core::mem::take(&mut view.unverified_volatiles) {
        let b = &b;
        let what = name(b, None);
        match check_block(&mut dev, b, &mut ModelLayer::above(&layer)) {
            Ok(_) if refused_at.is_some() => {
                problems += 1;
                not_good.push(b.offset);
                lines.push(format!(
                    "FAIL  {what}: not applied: a snapshot below it is refused"
                ));
            }
            Ok((stats, bytes)) => {
                let _ = view.volatiles.push(*b);
                lines.push(ok_line(&what, b, stats, bytes));
            }
            Err(e) => {
                problems += 1;
                not_good.push(b.offset);
                lines.push(format!("FAIL  {what}: {e}"));
            }
        }
        bar.inc(b.header.fields.payload_len);
    }
    // The bar goes before any result line reaches the terminal.
    bar.finish_and_clear();
    for l in lines {
        println!("{l}");
    }
    let mut named: Vec<u32> = view.rejected_volatiles.iter().map(|r| r.offset).collect();
    named.extend(not_good);
    if let End::Rejected(r) = view.end {
        named.push(r.offset);
        let lost = r.kind == Some(Kind::Snapshot)
            && !matches!(
                r.reason,
                Reject::Unlinked | Reject::Dropped | Reject::TrialExhausted
            );
        if r.reason == Reject::TrialExhausted {
            println!(
                "note  snapshot at {:#x}: {} (rolled back by the boot path; the next write drops it)",
                r.offset, r.reason
            );
        } else if lost || r.reason == Reject::TooMany {
            problems += 1;
            println!(
                "FAIL  snapshot at {:#x}: {} (the boot path stops before it: it and anything above it are lost)",
                r.offset, r.reason
            );
        } else {
            // Repair keeps offset 0 on a chain without snapshots (it may record the layout):
            // the next write replaces it there.
            let fate = if r.offset == 0 && view.snapshots.is_empty() {
                "kept where the next write goes, which replaces it"
            } else {
                "`snapshot repair` erases it"
            };
            println!(
                "note  {} at {:#x}: {} (left over by an interrupted or dropped write; {fate})",
                r.kind.map(kind_name).unwrap_or("block"),
                r.offset,
                r.reason
            );
        }
    }
    for r in &view.rejected_volatiles {
        if r.reason == Reject::TrialExhausted {
            println!(
                "note  volatile at {:#x}: {} (the boot uses the other copy)",
                r.offset, r.reason
            );
            continue;
        }
        problems += 1;
        println!("FAIL  volatile at {:#x}: {}", r.offset, r.reason);
    }
    // What else is on the partition that might be data: what every write would refuse over.
    let (layout, _) = info::effective_layout(&view);
    if let Ok(found) = survey(&mut dev, &view, &layout) {
        for s in found
            .suspects
            .iter()
            .filter(|s| !named.contains(&s.offset()))
        {
            problems += 1;
            println!("FAIL  {s} (writes refuse until it is dealt with: see `snapshot repair`)");
        }
    }
    let corrected = dev.ecc_corrected();
    if corrected > 0 {
        println!(
            "note  the flash's ECC corrected {corrected} bit flip(s) while reading: the data is right, but the part is wearing"
        );
    }
    if problems > 0 {
        return Err(CliError::Verify(problems));
    }
    println!(
        "all good: {} snapshot(s), {} volatile copy(ies)",
        view.snapshots.len(),
        view.volatiles.len()
    );
    Ok(())
}

fn ok_line(what: &str, b: &Block, stats: Stats, bytes: u64) -> String {
    let f = &b.header.fields;
    let mut line = format!(
        "ok    {what}: {} entries, {} bytes stored, {bytes} bytes of tar",
        stats.entries, f.payload_len
    );
    if bytes != f.unpacked_len {
        line.push_str(&format!(
            "\nnote  {what}: header says {} bytes unpacked, the payload holds {bytes}",
            f.unpacked_len
        ));
    }
    line
}

/// A block's payload as hashed: the bytes that are judged, unpacked or compared are the very
/// bytes checked against its SHA-256 (`read_chain` verified an earlier read of them).
fn read_payload(dev: &mut Device, b: &Block) -> Result<Vec<u8>, CliError> {
    read_verified(dev, b).map_err(|e| match e {
        PayloadRead::Read(err) => CliError::Device {
            path: dev.path.clone(),
            err,
        },
        PayloadRead::Changed { offset } => CliError::BadBlock {
            path: dev.path.clone(),
            detail: format!(
                "the payload at {offset:#x} read back different from what its SHA-256 names (it verified on an earlier read): the flash is failing"
            ),
        },
    })
}

/// A block's payload as it reads now, whatever its hash says: what salvage unpacks.
fn read_unverified(dev: &mut Device, b: &Block) -> Result<Vec<u8>, CliError> {
    let mut data = vec![0u8; b.header.fields.payload_len as usize];
    dev.read(b.offset + HEADER_LEN as u32, &mut data)
        .map_err(|err| CliError::Device {
            path: dev.path.clone(),
            err,
        })?;
    Ok(data)
}

/// The blocks an ID names, in replay order, with their display names.
fn select(view: &ChainView, id: &str) -> Result<Vec<(Block, String)>, CliError> {
    let snaps = || {
        view.snapshots
            .iter()
            .enumerate()
            .map(|(i, b)| (*b, format!("snapshot {}", i + 1)))
    };
    match id {
        "all" => Ok(snaps()
            .chain(view.volatile().map(|b| (*b, "the volatile".to_string())))
            .collect()),
        "volatile" => view
            .volatile()
            .map(|b| vec![(*b, "the volatile".to_string())])
            .ok_or(CliError::NoVolatile),
        n => {
            let i: usize = n.parse().map_err(|_| CliError::BadId(n.to_string()))?;
            let have = view.snapshots.len();
            if i == 0 || i > have {
                return Err(CliError::NoSuchSnapshot { id: i, have });
            }
            Ok(snaps().skip(i - 1).take(1).collect())
        }
    }
}

fn readable_chain(view: &ChainView) -> Result<(), CliError> {
    match view.status {
        Status::Unformatted(fs) => Err(CliError::Unformatted(fs)),
        Status::Unreadable => Err(CliError::Unreadable),
        _ => Ok(()),
    }
}

fn create_dir(dir: &Path) -> Result<(), CliError> {
    std::fs::create_dir_all(dir).map_err(|source| CliError::Io {
        what: "creating",
        path: dir.to_path_buf(),
        source,
    })
}

/// Salvages one block: whatever its payload decodes to, past the boot's bound on file data too
/// (a block an older tool wrote from a sparse file still holds the files after it); a block
/// past the bound is named as one the boot refuses.
fn unpack_block(dev: &mut Device, b: &Block, what: &str, dir: &Path) -> Result<(), CliError> {
    let data = read_unverified(dev, b)?;
    let bytes = unpack_payload(&data, b, what, dir, u64::MAX)?;
    let limit = b.header.data_limit();
    if bytes > limit {
        println!(
            "{what}: its {bytes} bytes of file data are past the {limit} its block may unpack to: the boot refuses it"
        );
    }
    Ok(())
}

/// Unpacks `b`'s payload, already read as `data`, into `dir`, with at most `data_limit` bytes of
/// file data (the block's [`data_limit`](snapinit::header::Header::data_limit) to refuse what
/// the boot refuses); gives the bytes of file data written.
fn unpack_payload(
    data: &[u8],
    b: &Block,
    what: &str,
    dir: &Path,
    data_limit: u64,
) -> Result<u64, CliError> {
    let gzip = b.header.fields.compression == Compression::Gzip;
    let report = unpack(data, gzip, data_limit, dir).map_err(|source| CliError::Unpack {
        what: what.to_string(),
        dir: dir.to_path_buf(),
        source,
    })?;
    println!(
        "{what}: {} entries, {} bytes into {}",
        report.entries,
        report.bytes,
        dir.display()
    );
    Ok(report.bytes)
}

pub fn extract(ctx: &Ctx, id: &str, dir: &Path, salvage: bool) -> Result<(), CliError> {
    if salvage && id != "all" {
        return Err(CliError::SalvageId(id.to_string()));
    }
    let (_lock, mut dev) = ctx.open(false)?;
    if salvage {
        return salvage_all(&mut dev, dir);
    }
    let view = read_view(&mut dev);
    readable_chain(&view)?;
    let blocks = select(&view, id)?;
    if id != "all" {
        // One block (`select` gives it alone): judged as the boot judges it, before anything
        // is created.
        let Some((b, what)) = blocks.first() else {
            return Ok(());
        };
        let data = judge_alone(&mut dev, &view, b, what)?;
        create_dir(dir)?;
        return unpack_payload(&data, b, what, dir, b.header.data_limit()).map(drop);
    }
    create_dir(dir)?;
    // At boot the volatile replays into an empty layer of its own above the snapshots: a hard
    // link to a snapshot's file, say, is refused there, so it is refused here too, before the
    // volatile is layered onto the snapshots in `dir`.
    let mut snapshots = ModelLayer::new();
    for (b, what) in blocks {
        let data = read_payload(&mut dev, &b)?;
        let judged = if b.header.fields.kind == Kind::Volatile {
            dry_run(&data, &b, &mut ModelLayer::above(&snapshots))
        } else {
            dry_run(&data, &b, &mut snapshots)
        };
        judged.map_err(|detail| CliError::ExtractRefused {
            what: what.clone(),
            detail,
        })?;
        if b.header.fields.kind == Kind::Volatile {
            open_lower_non_dirs(&data, &b, dir)?;
        }
        unpack_payload(&data, &b, &what, dir, b.header.data_limit())?;
    }
    Ok(())
}

/// At boot the volatile has a layer of its own: a directory it makes without an entry (the
/// parent of one) may lie over a whiteout of the snapshots (FORMAT.md, "Replay", rule 1; a
/// file or symlink there refuses the volatile, which the dry run has already said), and
/// overlayfs then shows the directory alone. Squashed into `dir`, each such whiteout becomes
/// an opaque directory (0755 root:root, as a directory a payload omits) before the volatile
/// is unpacked; otherwise the unpack refused what the boot applies. Paths are looked at
/// component by component and only below real directories, so nothing outside `dir` is
/// ever reached.
fn open_lower_non_dirs(data: &[u8], b: &Block, dir: &Path) -> Result<(), CliError> {
    use std::collections::HashSet;
    let mut declared: HashSet<String> = HashSet::new();
    let mut opened: Vec<String> = Vec::new();
    let mut fail: Option<std::io::Error> = None;
    walk_payload(data, b, |e| {
        let path = e.path.as_str();
        let mut prefix_end = 0;
        while let Some(i) = path[prefix_end..].find('/') {
            let q = &path[..prefix_end + i];
            prefix_end += i + 1;
            match std::fs::symlink_metadata(dir.join(q)) {
                Ok(m) if m.is_dir() => continue,
                // An entry of the volatile itself decides what is there by then.
                Ok(m) if declared.contains(q) || !is_whiteout(&m) => break,
                Ok(_) if fail.is_none() => {
                    if let Err(err) = make_opaque_dir(&dir.join(q)) {
                        fail = Some(err);
                    } else {
                        opened.push(q.to_string());
                    }
                    break;
                }
                _ => break,
            }
        }
        declared.insert(path.to_string());
    })
    .map_err(|detail| CliError::ExtractRefused {
        what: "the volatile".into(),
        detail,
    })?;
    if let Some(source) = fail {
        return Err(CliError::Io {
            what: "making a directory over a snapshot's whiteout in",
            path: dir.to_path_buf(),
            source,
        });
    }
    for q in opened {
        println!("the volatile's directory {q:?} lies over a snapshot's whiteout: made opaque");
    }
    Ok(())
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    m.file_type().is_char_device() && m.rdev() == 0
}

fn make_opaque_dir(at: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::remove_file(at)?;
    std::fs::create_dir(at)?;
    std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o755))?;
    std::os::unix::fs::chown(at, Some(0), Some(0))?;
    xattr::set(at, "trusted.overlay.opaque", b"y")
}

/// `extract N` and `extract volatile` refuse what the boot path does not apply, as `extract
/// all` does: the boot replays snapshots 1..N into one layer, a snapshot that fails ending the
/// chain there, and the volatile into a layer of its own above them. (The block is then
/// unpacked alone: what it refers to in an earlier snapshot, a hard link's file, is not there.)
fn judge_alone(
    dev: &mut Device,
    view: &ChainView,
    target: &Block,
    what: &str,
) -> Result<Vec<u8>, CliError> {
    let volatile = target.header.fields.kind == Kind::Volatile;
    // The snapshots the boot replays before (and with) the target.
    let upto = view
        .snapshots
        .iter()
        .position(|s| s.offset == target.offset)
        .map_or(view.snapshots.len(), |i| i + 1);
    let mut snapshots = ModelLayer::new();
    for (i, b) in view.snapshots.iter().take(upto).enumerate() {
        let data = read_payload(dev, b)?;
        let last = !volatile && i + 1 == upto;
        dry_run(&data, b, &mut snapshots).map_err(|detail| CliError::ExtractRefused {
            what: if last {
                what.to_string()
            } else {
                format!(
                    "snapshot {} (the boot path stops there and does not apply {what})",
                    i + 1
                )
            },
            detail,
        })?;
        if last {
            return Ok(data);
        }
    }
    let data = read_payload(dev, target)?;
    dry_run(&data, target, &mut ModelLayer::above(&snapshots)).map_err(|detail| {
        CliError::ExtractRefused {
            what: what.to_string(),
            detail,
        }
    })?;
    Ok(data)
}

/// A header as salvage reads it: decoded, or failing its hash (torn or rotted) with the fields
/// as written, which only a payload matching their SHA-256 vouches for.
enum Found {
    Sealed(Header),
    Damaged(Header),
}

fn salvage_header(dev: &mut Device, offset: u32) -> Option<Found> {
    let mut raw = [0u8; HEADER_LEN];
    dev.read(offset, &mut raw).ok()?;
    match header::decode(&raw) {
        Ok(h) => Some(Found::Sealed(h)),
        Err(HeaderError::Erased | HeaderError::BadMagic) => None,
        Err(_) => header::unchecked_fields(&raw).map(|mut fields| {
            // The payload's hash proves its length, not the erase size the span is counted
            // in: the device's, so that a rotten one neither skips the next blocks nor takes
            // the walk off the erase-block grid.
            fields.erase_size = dev.erase_size();
            Found::Damaged(Header {
                fields,
                marks: Marks {
                    live: true,
                    confirmed: false,
                    trials_used: 0,
                    sealed: false,
                    failed: 0,
                },
                hash: [0; 32],
            })
        }),
    }
}

/// Every block whose header still decodes, wherever it is and whatever the chain walk made of
/// it (past a bad block, dropped, stale, failing its payload hash), each into a directory of
/// its own under `dir`, as far as its payload decodes; and every block whose header fails its
/// own hash but whose payload matches the SHA-256 that header recorded (`-header-damaged`).
fn salvage_all(dev: &mut Device, dir: &Path) -> Result<(), CliError> {
    let erase = dev.erase_size();
    let capacity = u32::try_from(dev.capacity()).unwrap_or(u32::MAX);
    create_dir(dir)?;
    let mut found = 0;
    let mut complete = 0;
    let mut offset = 0u32;
    while offset < capacity {
        let next = offset.saturating_add(erase);
        let (h, damaged) = match salvage_header(dev, offset) {
            Some(Found::Sealed(h)) => (h, false),
            Some(Found::Damaged(h)) => (h, true),
            None => {
                offset = next;
                continue;
            }
        };
        let f = &h.fields;
        let block = Block { offset, header: h };
        let mut buf = vec![0u8; 64 * 1024];
        let fits = block.end() <= u64::from(capacity);
        let hash_ok =
            fits && payload_sha256(dev, &block, &mut buf).is_ok_and(|sum| sum == f.payload_sha256);
        if damaged && !hash_ok {
            println!(
                "not salvaged: the block header at {offset:#x} fails its hash (torn or rotted) and no payload matches what it recorded"
            );
            offset = next;
            continue;
        }
        found += 1;
        let sub = dir.join(format!(
            "{offset:08x}-{}-seq{}-gen{}{}",
            kind_name(f.kind),
            f.seq,
            f.generation,
            if damaged { "-header-damaged" } else { "" }
        ));
        let state = format!(
            "{}{}{}",
            if damaged {
                "header hash MISMATCH, "
            } else {
                ""
            },
            if h.marks.live { "" } else { "dropped, " },
            if hash_ok {
                "payload hash ok"
            } else {
                "payload hash MISMATCH"
            }
        );
        create_dir(&sub)?;
        if !fits {
            // A hostile or rotten length: nothing to read into RAM, the next blocks still are.
            println!(
                "partial {}: its header says {} payload bytes, past the end of the partition",
                sub.display(),
                f.payload_len
            );
        } else {
            match unpack_block(
                dev,
                &block,
                &format!("block at {offset:#x} ({state})"),
                &sub,
            ) {
                Ok(()) => complete += 1,
                Err(e) => println!("partial {}: {e}", sub.display()),
            }
        }
        // A block that decodes spans whole erase blocks; a bogus length moves on by one, and
        // so does a block of another erase size, whose end is off this partition's grid.
        let end = block.end();
        offset = if f.erase_size == erase && end > u64::from(offset) && end <= u64::from(capacity) {
            end as u32
        } else {
            next
        };
    }
    println!(
        "salvaged {found} block(s) into {} ({complete} complete, {} partial)",
        dir.display(),
        found - complete
    );
    Ok(())
}

/// The tree a sequence of layers builds: path -> (is a directory, metadata signature).
#[derive(Default)]
struct Layered(BTreeMap<String, (bool, String)>);

impl Layered {
    fn drop_below(&mut self, path: &str) {
        let prefix = format!("{path}/");
        let doomed: Vec<String> = self
            .0
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.0.remove(&k);
        }
    }

    /// Applies one entry as the replay does.
    fn apply(&mut self, e: &Entry) {
        let path = e.path.as_str();
        let sig = signature(e);
        match e.kind {
            EntryKind::Dir => {
                if e.is_opaque() || self.0.get(path).is_some_and(|(dir, _)| !dir) {
                    self.drop_below(path);
                }
                self.0.insert(path.to_string(), (true, sig));
            }
            // A whiteout or a non-directory replaces a whole subtree.
            _ => {
                self.drop_below(path);
                self.0.insert(path.to_string(), (false, sig));
            }
        }
    }
}

/// Everything about an entry except file content: equal signatures mean "unchanged" (a file
/// rewritten with the same size and mtime would also compare equal).
fn signature(e: &Entry) -> String {
    let mut s = format!(
        "{} {}.{:09}",
        describe_entry(e),
        e.mtime_secs,
        e.mtime_nanos
    );
    for x in &e.xattrs {
        s.push_str(&format!(" {}={:?}", x.name.as_str(), x.value.as_slice()));
    }
    s
}

fn describe_entry(e: &Entry) -> String {
    let kind = match &e.kind {
        EntryKind::File => format!("file {} bytes", e.size),
        EntryKind::Dir => "dir".to_string(),
        EntryKind::Symlink { target } => format!("symlink -> {}", target.as_str()),
        EntryKind::HardLink { target } => format!("hard link to {}", target.as_str()),
        EntryKind::Whiteout => "whiteout".to_string(),
    };
    format!("{kind}, mode {:04o}, {}:{}", e.mode, e.uid, e.gid)
}

pub fn diff(ctx: &Ctx, id: Option<&str>, rom: &Path) -> Result<(), CliError> {
    let (_lock, mut dev) = ctx.open(false)?;
    let view = read_view(&mut dev);
    readable_chain(&view)?;
    let id = match id {
        Some(id) => id.to_string(),
        None if view.volatile().is_some() => "volatile".into(),
        None if !view.snapshots.is_empty() => view.snapshots.len().to_string(),
        None => {
            println!("the partition holds no snapshot and no volatile");
            return Ok(());
        }
    };
    if id != "volatile" && id.parse::<usize>().is_err() {
        return Err(CliError::BadDiffId(id));
    }
    let target = select(&view, &id)?;
    let below = match id.as_str() {
        "volatile" => view.snapshots.len(),
        n => n.parse::<usize>().map(|n| n - 1).unwrap_or(0),
    };
    let mut lower = Layered::default();
    for (i, b) in view.snapshots.iter().take(below).enumerate() {
        let data = read_payload(&mut dev, b)?;
        walk_payload(&data, b, |e| lower.apply(e)).map_err(|detail| CliError::Payload {
            what: format!("snapshot {}", i + 1),
            detail,
        })?;
    }
    for (b, what) in target {
        println!("{what} (over {below} snapshot(s)):");
        let data = read_payload(&mut dev, &b)?;
        let mut lines = Vec::new();
        walk_payload(&data, &b, |e| {
            let path = e.path.as_str();
            // A path whited out below does not exist there.
            let below = lower
                .0
                .get(path)
                .map(|(_, sig)| sig.as_str())
                .filter(|sig| !sig.starts_with("whiteout"));
            // Not in a snapshot below, but in the read-only root: a modification of it.
            let in_rom = || std::fs::symlink_metadata(rom.join(path)).is_ok();
            let tag = match (&e.kind, below) {
                (EntryKind::Whiteout, _) => "D",
                (_, Some(sig)) if sig == signature(e) => "=",
                (_, Some(_)) => "M",
                (_, None) if in_rom() => "M",
                (_, None) => "A",
            };
            lines.push(format!("{tag} {path} ({})", describe_entry(e)));
            // overlayfs never takes a layer's root as opaque (replay ignores it too).
            if e.is_opaque() && !e.is_root() {
                lines.push(format!(
                    "O {path}/ (opaque: hides everything below it in lower layers)"
                ));
            }
            lower.apply(e);
        })
        .map_err(|detail| CliError::Payload {
            what: what.clone(),
            detail,
        })?;
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use snapinit::tar::{TarPath, Xattr};

    fn entry(path: &str, kind: EntryKind, opaque: bool) -> Entry {
        let mut p = TarPath::new();
        let _ = p.push_str(path);
        let mut e = Entry {
            path: p,
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime_secs: 1,
            mtime_nanos: 0,
            size: 0,
            xattrs: Default::default(),
        };
        if opaque {
            let mut x = Xattr {
                name: Default::default(),
                value: Default::default(),
            };
            let _ = x.name.push_str("trusted.overlay.opaque");
            let _ = x.value.push(b'y');
            let _ = e.xattrs.push(x);
        }
        e
    }

    fn paths(l: &Layered) -> Vec<&str> {
        l.0.keys().map(String::as_str).collect()
    }

    #[test]
    fn layering_follows_the_replay() {
        let mut l = Layered::default();
        for e in [
            entry("a", EntryKind::Dir, false),
            entry("a/b", EntryKind::File, false),
            entry("a/c", EntryKind::Dir, false),
            entry("a/c/d", EntryKind::File, false),
            entry("ab", EntryKind::File, false),
        ] {
            l.apply(&e);
        }
        // A whiteout removes the subtree, not its name-prefixed sibling.
        l.apply(&entry("a/c", EntryKind::Whiteout, false));
        assert_eq!(paths(&l), vec!["a", "a/b", "a/c", "ab"]);
        // An opaque directory drops its old children.
        l.apply(&entry("a", EntryKind::Dir, true));
        assert_eq!(paths(&l), vec!["a", "ab"]);
        // A file replacing a directory replaces its subtree.
        l.apply(&entry("a/x", EntryKind::File, false));
        l.apply(&entry("a", EntryKind::File, false));
        assert_eq!(paths(&l), vec!["a", "ab"]);
    }
}
