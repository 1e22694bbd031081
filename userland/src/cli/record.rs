//! This boot's record (docs/BOOT.md, "The boot record"): PID 1 writes it on the volatile
//! layer's tmpfs, one word per line, and it is gone at the next boot. The tool reads it, and
//! adds `chain-moved MAJOR:MINOR` when it changes the snapshots of that partition: before the
//! write, withdrawn after it when the snapshots are as booted.
//!
//! Why: the upper dir holds the running system's changes against the chain as booted. Once a
//! commit, upgrade, rollback, format or bundle has changed the snapshots below it, packing the
//! upper dir again stores those changes against another chain: a file the upper dir held when
//! it was committed, deleted since, left no whiteout (there was nothing below it at boot) and
//! would come back at the next boot from the snapshot it was committed into.

use super::error::CliError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where PID 1 leaves it (`--boot-record`).
pub const DEFAULT: &str = "/overlay/snapinit";

const CHAIN_MOVED: &str = "chain-moved";

/// Whether the record (one word per line) holds `word`; no record says nothing.
pub fn says(record: &Path, word: &str) -> bool {
    std::fs::read_to_string(record).is_ok_and(|r| r.lines().any(|l| l.trim() == word))
}

/// The record's line for a move of `device`: `chain-moved MAJOR:MINOR`, by device number, so
/// that a write to another partition (a USB stick, a loop device) stops no save of this one.
fn moved_line(device: &Path) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(device).ok()?;
    let kind = m.file_type();
    (kind.is_char_device() || kind.is_block_device()).then(|| {
        let rdev = m.rdev();
        format!(
            "{CHAIN_MOVED} {}:{}",
            rustix::fs::major(rdev),
            rustix::fs::minor(rdev)
        )
    })
}

/// A move of `device`'s snapshots noted ahead of the write that may make it: a tool killed
/// between the write's commit point and a note after it would leave a moved chain unnoted.
/// Withdrawn when the write left the snapshots as booted.
#[must_use = "a note ahead is kept or withdrawn once the write is over"]
pub struct Ahead {
    record: PathBuf,
    /// The line this note added; `None` when there was nothing to note (not under snapinit,
    /// an image file, the line already there) or it could not be written.
    added: Option<String>,
}

/// Notes that a write may change the snapshots of `device` since this boot. Only under
/// snapinit (its record exists) and for a partition, not an image file; best effort (a record
/// that cannot be written costs the later refusal, not this write).
pub fn note_ahead(record: &Path, device: &Path) -> Ahead {
    let none = Ahead {
        record: record.to_path_buf(),
        added: None,
    };
    let Some(line) = moved_line(device) else {
        return none;
    };
    let _held = Held::take(record);
    if !record.is_file() || says(record, &line) {
        return none;
    }
    let noted = std::fs::OpenOptions::new()
        .append(true)
        .open(record)
        .and_then(|mut f| writeln!(f, "{line}"));
    match noted {
        Ok(()) => Ahead {
            added: Some(line),
            ..none
        },
        Err(e) => {
            eprintln!(
                "snapshot: {}: cannot note that the chain changes since boot: {e}; do not save before the reboot",
                record.display()
            );
            none
        }
    }
}

impl Ahead {
    /// Whether this note is the one that says the chain moved (else an earlier write's does,
    /// or nothing can).
    pub fn pending(&self) -> bool {
        self.added.is_some()
    }

    /// Keeps the note when `moved`, else withdraws it: the record again as before, replaced
    /// whole by a rename, so that no kill leaves it without PID 1's own lines.
    pub fn settle(self, moved: bool) {
        let Some(line) = self.added.filter(|_| !moved) else {
            return;
        };
        let _held = Held::take(&self.record);
        let withdrawn = std::fs::read_to_string(&self.record).and_then(|r| {
            let kept: String = r
                .lines()
                .filter(|l| l.trim() != line)
                .map(|l| format!("{l}\n"))
                .collect();
            let mut new = self.record.clone().into_os_string();
            // Of this process: another tool withdrawing its note meanwhile (a write to
            // another partition, under another lock) has its own.
            new.push(format!(".new.{}", std::process::id()));
            let new = PathBuf::from(new);
            std::fs::write(&new, kept)?;
            std::fs::set_permissions(&new, std::fs::metadata(&self.record)?.permissions())?;
            std::fs::rename(&new, &self.record)
        });
        if let Err(e) = withdrawn {
            eprintln!(
                "snapshot: {}: cannot withdraw the note that the chain changes: {e}; saves wait for the reboot",
                self.record.display()
            );
        }
    }
}

/// The record's directory locked (flock, exclusive) while a note is added or withdrawn: a
/// withdrawal rewrites the whole record, and a note another tool appended between its read
/// and its rename (a write to another partition, under that partition's lock) would be lost,
/// and a save of that partition no longer refused. Best effort: unlocked, a lost note costs
/// that refusal, never the write.
struct Held {
    _dir: Option<std::fs::File>,
}

impl Held {
    fn take(record: &Path) -> Held {
        let dir = record
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let held = std::fs::File::open(dir).ok().filter(|f| {
            // Blocking: the other tool holds it for one read and one rename.
            rustix::fs::flock(f, rustix::fs::FlockOperation::LockExclusive).is_ok()
        });
        Held { _dir: held }
    }
}

/// Whether `dir` is the running system's upper dir: the `upper` beside the record (PID 1
/// leaves both on the volatile layer's tmpfs, `/overlay/snapinit` and `/overlay/upper`). A
/// prepared tree given with `--upper` holds no changes against the booted chain.
fn live_upper(record: &Path, dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(live) = record.parent().map(|p| p.join("upper")) else {
        return false;
    };
    match (std::fs::metadata(live), std::fs::metadata(dir)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// What PID 1's record says when this boot did not run all of the chain on flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRun {
    /// `chain-not-booted`: none of it (failsafe, a chain that could not be read, the plain
    /// tmpfs overlay of a boot that failed).
    Chain,
    /// `trial-not-booted`: the chain below a block on trial that could not be laid out.
    TrialBlock,
    /// `chain-partly-booted`: less of it, a snapshot not laid out.
    Part,
    /// `volatile-not-booted`: every snapshot, but not the volatile on flash (an older copy of
    /// it may run).
    Volatile,
}

impl NotRun {
    /// The record's word for it.
    pub fn word(self) -> &'static str {
        match self {
            NotRun::Chain => "chain-not-booted",
            NotRun::TrialBlock => "trial-not-booted",
            NotRun::Part => "chain-partly-booted",
            NotRun::Volatile => "volatile-not-booted",
        }
    }

    /// The first of the words the record holds, in this order; none without a record.
    pub fn read(record: &Path) -> Option<NotRun> {
        [
            NotRun::Chain,
            NotRun::TrialBlock,
            NotRun::Part,
            NotRun::Volatile,
        ]
        .into_iter()
        .find(|n| says(record, n.word()))
    }
}

impl std::fmt::Display for NotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            NotRun::Chain => "none of the chain",
            NotRun::TrialBlock => "the chain below a block on trial it could not lay out",
            NotRun::Part => "less of the chain than the flash holds",
            NotRun::Volatile => "every snapshot, but not the saved changes on flash",
        };
        write!(f, "{} ({what})", self.word())
    }
}

/// What this boot's record says of `device`'s chain, for the fleet's status: whether the boot
/// left any of the chain on flash out (`not_run`), and whether a write changed the snapshots
/// since (`moved`). `None` without a record: not booted by snapinit.
#[cfg(feature = "fleet")]
pub struct Booted {
    pub not_run: Option<NotRun>,
    pub moved: bool,
}

#[cfg(feature = "fleet")]
pub fn booted(record: &Path, device: &Path) -> Option<Booted> {
    if !record.is_file() {
        return None;
    }
    Some(Booted {
        not_run: NotRun::read(record),
        moved: moved_line(device).is_some_and(|line| says(record, &line)),
    })
}

/// Refuses to pack the running system's upper dir `upper` for `device` when its changes are
/// against another chain than the one on flash: the snapshots below it changed since boot,
/// or the boot did not run all of them; or, while the chain holds a volatile
/// (`has_volatile`), when the boot could not lay that out: stored, the upper dir would
/// replace it.
pub fn require_unmoved(
    record: &Path,
    device: &Path,
    upper: &Path,
    has_volatile: bool,
) -> Result<(), CliError> {
    let Some(line) = moved_line(device) else {
        return Ok(());
    };
    if !live_upper(record, upper) {
        return Ok(());
    }
    if says(record, &line) {
        return Err(CliError::ChainMoved {
            record: record.to_path_buf(),
        });
    }
    match NotRun::read(record) {
        Some(NotRun::Volatile) if !has_volatile => Ok(()),
        Some(NotRun::Volatile) => Err(CliError::VolatileNotBooted {
            record: record.to_path_buf(),
        }),
        Some(not_run) => Err(CliError::NotAsBooted {
            record: record.to_path_buf(),
            not_run,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_is_noted_once_for_a_partition_under_snapinit_only() {
        let d = tempfile::tempdir().expect("tempdir");
        let record = d.path().join("snapinit");
        let img = d.path().join("chain.img");
        std::fs::write(&img, b"x").expect("image");
        let part = Path::new("/dev/null");
        let upper = d.path().join("upper");
        let tree = d.path().join("tree");
        std::fs::create_dir(&upper).expect("upper");
        std::fs::create_dir(&tree).expect("tree");
        // No record: not booted by snapinit, nothing to note.
        note_ahead(&record, part).settle(true);
        assert!(!record.exists());
        assert!(require_unmoved(&record, part, &upper, true).is_ok());
        std::fs::write(&record, "failed-check-marks\n").expect("record");
        // An image file is not what this boot runs.
        note_ahead(&record, &img).settle(true);
        assert!(require_unmoved(&record, part, &upper, true).is_ok());
        // Noted before the write: a write killed after its commit point leaves it so.
        let ahead = note_ahead(&record, part);
        assert!(matches!(
            require_unmoved(&record, part, &upper, true),
            Err(CliError::ChainMoved { .. })
        ));
        // A write that moved nothing withdraws it, and leaves PID 1's lines as they were.
        ahead.settle(false);
        assert_eq!(
            std::fs::read_to_string(&record).expect("read"),
            "failed-check-marks\n"
        );
        assert!(require_unmoved(&record, part, &upper, true).is_ok());
        note_ahead(&record, part).settle(true);
        // A later write that moves nothing withdraws no earlier move.
        note_ahead(&record, part).settle(false);
        assert_eq!(
            std::fs::read_to_string(&record).expect("read"),
            "failed-check-marks\nchain-moved 1:3\n"
        );
        assert!(matches!(
            require_unmoved(&record, part, &upper, true),
            Err(CliError::ChainMoved { .. })
        ));
        // An image file, or a prepared tree rather than the running system's upper dir.
        assert!(require_unmoved(&record, &img, &upper, true).is_ok());
        assert!(require_unmoved(&record, part, &tree, true).is_ok());
        // A move of another partition (/dev/zero, 1:5) stops no save of this one.
        assert!(require_unmoved(&record, Path::new("/dev/zero"), &upper, true).is_ok());
        // A boot that did not run all of the chain on flash.
        for (word, not_run) in [
            ("chain-not-booted", NotRun::Chain),
            ("trial-not-booted", NotRun::TrialBlock),
            ("chain-partly-booted", NotRun::Part),
        ] {
            std::fs::write(&record, format!("failed-check-marks\n{word}\n")).expect("record");
            match require_unmoved(&record, part, &upper, true) {
                Err(CliError::NotAsBooted { not_run: n, .. }) => assert_eq!(n, not_run),
                other => panic!("{word}: {other:?}"),
            }
            assert!(require_unmoved(&record, part, &tree, true).is_ok());
            assert!(require_unmoved(&record, &img, &upper, true).is_ok());
        }
        // The volatile the boot could not lay out: refused while the chain holds it, not
        // once it is dropped (a rollback of the volatile alone).
        std::fs::write(&record, "failed-check-marks\nvolatile-not-booted\n").expect("record");
        assert!(matches!(
            require_unmoved(&record, part, &upper, true),
            Err(CliError::VolatileNotBooted { .. })
        ));
        assert!(require_unmoved(&record, part, &upper, false).is_ok());
        assert!(require_unmoved(&record, part, &tree, true).is_ok());
    }

    /// A withdrawal waits for the record's directory lock, which another tool's note holds
    /// while it appends: it once rewrote the record at once, dropping a line appended meanwhile.
    #[test]
    fn a_withdrawal_waits_for_another_tools_note() {
        let d = tempfile::tempdir().expect("tempdir");
        let record = d.path().join("snapinit");
        std::fs::write(&record, "failed-check-marks\n").expect("record");
        let ahead = note_ahead(&record, Path::new("/dev/null"));
        assert!(ahead.pending());
        let other = Held::take(&record);
        let settling = std::thread::spawn(move || ahead.settle(false));
        std::thread::sleep(std::time::Duration::from_millis(300));
        // Still held: the note is not withdrawn yet, and the other tool's line goes in.
        assert!(says(&record, "chain-moved 1:3"));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&record)
            .and_then(|mut f| writeln!(f, "chain-moved 1:5"))
            .expect("append");
        drop(other);
        settling.join().expect("settle");
        assert_eq!(
            std::fs::read_to_string(&record).expect("read"),
            "failed-check-marks\nchain-moved 1:5\n"
        );
    }
}
