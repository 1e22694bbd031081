//! Every way a command fails, each mapped to one documented exit code (docs/SNAPSHOT.md).

use snapinit::chain::Foreign;
use snapinit::flash::DeviceError;
#[cfg(feature = "fleet")]
use snapshot::fleet::bundle::BundleError;
#[cfg(feature = "fleet")]
use snapshot::fleet::sign::{KeyError, KeyringError};
use snapshot::pack::PackError;
use snapshot::unpack::UnpackError;
use snapshot::writer::{Suspect, WriteError};
use std::io;
use std::path::PathBuf;

/// Exit codes. Stable: scripts depend on them.
pub mod code {
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// The device could not be found, opened, read or written.
    pub const DEVICE: u8 = 3;
    /// Another `snapshot` holds the lock.
    pub const LOCKED: u8 = 4;
    /// The partition is in a state the command refuses (foreign filesystem, not empty, ...).
    pub const STATE: u8 = 5;
    /// Not enough room on the partition.
    pub const NO_SPACE: u8 = 6;
    /// The named snapshot or volatile does not exist.
    pub const NOT_FOUND: u8 = 7;
    /// Packing or unpacking a directory tree failed.
    pub const TREE: u8 = 8;
    /// `verify` found a problem.
    pub const VERIFY: u8 = 9;
    /// The package manager failed; flash untouched.
    pub const UPGRADE: u8 = 10;
    /// The user declined, or confirmation was needed and no terminal could ask.
    pub const ABORTED: u8 = 11;
    /// The write succeeded but the reboot could not be started.
    pub const REBOOT: u8 = 12;
    /// A write refused: the partition holds something that might be data and that the chain
    /// does not show (a damaged or unreachable block, unknown content). Flash untouched.
    pub const DAMAGED: u8 = 13;
    /// The device path does not exist.
    pub const NO_DEVICE: u8 = 14;
    /// The chain holds as many snapshots as the boot path reads.
    pub const CHAIN_FULL: u8 = 15;
    /// The chain on flash records another erase size than the one given or reported.
    pub const GEOMETRY: u8 = 16;
    /// `health`: a check failed (the unit reboots unless --no-reboot).
    pub const UNHEALTHY: u8 = 17;
    /// A configuration file cannot be read or is invalid.
    pub const CONFIG: u8 = 18;
    /// A bundle or its manifest lacks the required valid signatures (missing, bad, too few,
    /// unknown keys). Flash untouched.
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub const UNTRUSTED: u8 = 19;
    /// A bundle's payload does not match its signed manifest (size, SHA-256, decoding).
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub const MISMATCH: u8 = 20;
    /// The unit's chain head is not the bundle's base.
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub const WRONG_BASE: u8 = 21;
    /// A bundle, manifest or signature file is larger than allowed.
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub const TOO_LARGE: u8 = 22;
    /// A signed manifest that cannot be used (bad JSON, unknown apiVersion/kind, bad field).
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub const BAD_MANIFEST: u8 = 23;
    /// A channel manifest older than one the unit already took (a replay).
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub const STALE: u8 = 24;
    /// `fleet poll`: no mirror answered after every retry (the unit keeps running; poll again).
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub const NO_MIRROR: u8 = 25;
    /// `fleet publish`, `fleet status --mqtt`, `fleet poll --mqtt`: no MQTT broker took the
    /// status (down, refused, broken protocol) after every retry. Flash untouched.
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub const NO_BROKER: u8 = 26;
    /// `fleet poll`: the channel manifest is past its `expires` time. Flash untouched.
    #[cfg_attr(not(feature = "fleet"), allow(dead_code))]
    pub const EXPIRED: u8 = 27;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("{0} health check(s) failed")]
    Unhealthy(usize),
    #[error("{path}: {err}")]
    Device { path: PathBuf, err: DeviceError },
    #[error("{path}: {source}")]
    DeviceIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read /proc/mtd to find partition {name:?}: {source} (use --device PATH)")]
    ProcMtd {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("no MTD partition in /proc/mtd and no UBI volume named {0:?} (use --partition NAME or --device PATH)")]
    NoPartition(String),
    #[error("{path}: cannot lock: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is locked by another snapshot command{}", waited.map(|s| format!(" (gave up after {s} s)")).unwrap_or_else(|| " (--no-wait)".into()))]
    Locked { path: PathBuf, waited: Option<u64> },
    #[error("the partition holds {0}, not a snapinit chain (`snapshot convert` for a JFFS2 overlay, or `snapshot format --force`)")]
    Unformatted(Foreign),
    #[error("the partition's first erase block cannot be read: `snapshot extract --salvage` copies out what still reads; `snapshot format --force` erases it and starts over")]
    Unreadable,
    #[error("{0}")]
    Refused(String),
    #[error("the chain changed since this boot ({record} says chain-moved: a commit, upgrade, rollback, format or bundle was written without a reboot): the upper dir holds changes against the chain as booted, and stored over the new one they would bring back what was deleted since; reboot to run the new chain, then save or commit")]
    ChainMoved { record: PathBuf },
    #[error("this boot did not run the chain on flash ({record} says {not_run}; `dmesg | grep snapinit` says why): the upper dir holds changes against what it ran, and stored over the chain they would mix with what it left out or replace what it could not lay out; `snapshot info` shows the chain, `snapshot rollback` drops what cannot run; reboot before you save or commit")]
    NotAsBooted {
        record: PathBuf,
        not_run: super::record::NotRun,
    },
    #[error("this boot could not lay out the saved changes on flash ({record} says volatile-not-booted; `dmesg | grep snapinit` says why): stored, the upper dir would replace them; `snapshot extract volatile DIR` keeps a copy, `snapshot rollback` with the last snapshot's number drops them, then save")]
    VolatileNotBooted { record: PathBuf },
    #[error("not enough space: the {what} needs {need} bytes but only {free} are free")]
    NoSpace {
        what: &'static str,
        need: u64,
        free: u64,
    },
    #[error("the volatile needs {need} bytes but the back buffer holds {backbuf}: `snapshot commit` stores these changes as a snapshot (which needs no back-buffer room), or `snapshot format --backbuf-blocks N` makes a larger back buffer (erasing the chain)")]
    VolatileTooLarge { need: u64, backbuf: u64 },
    #[error("the partition is too small: {blocks} erase blocks")]
    TooSmall { blocks: u32 },
    #[error("bad back buffer: {0}")]
    BadBackbuf(&'static str),
    #[error("there is no volatile block")]
    NoVolatile,
    #[error("no snapshot {id}: the chain has {have}")]
    NoSuchSnapshot { id: usize, have: usize },
    #[error("{0:?} is not a snapshot number, `volatile` or `all`")]
    BadId(String),
    /// `diff` takes one block: `all` is not an ID there.
    #[error("{0:?} is not a snapshot number or `volatile`")]
    BadDiffId(String),
    /// `extract --salvage` ignores the chain: it takes no block ID but `all`.
    #[error("`extract --salvage` unpacks every block it finds: give `all` as the ID, not {0:?}")]
    SalvageId(String),
    #[error("packing {dir}: {source}")]
    Pack {
        dir: PathBuf,
        #[source]
        source: PackError,
    },
    /// Packed, the tree's file data is more than its block may unpack to
    /// (`snapinit::header::data_limit`): the boot would refuse the block.
    #[error("{dir}: its files hold {data} bytes, more than the {limit} a {stored}-byte payload may unpack to ({ratio}x the flash its block takes): zero-filled or sparse files compress that far, and each boot would inflate every byte. Nothing written: move such files out of the overlay, or store them as they are with --no-compress", ratio = snapinit::header::MAX_DATA_PER_FLASH_BYTE)]
    TooMuchData {
        dir: PathBuf,
        data: u64,
        limit: u64,
        stored: u64,
    },
    #[error("unpacking {what} into {dir}: {source}")]
    Unpack {
        what: String,
        dir: PathBuf,
        #[source]
        source: UnpackError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {what}: {detail}")]
    Payload { what: String, detail: String },
    /// `extract all` judging a payload before it unpacks anything: the refusal `extract` of
    /// that block alone gives, with its exit code.
    #[error("{what}: {detail}")]
    ExtractRefused { what: String, detail: String },
    #[error("verification failed: {0} problem(s)")]
    Verify(usize),
    #[error("the package manager `{cmd}` failed ({status}); flash untouched")]
    PackageManager { cmd: String, status: String },
    #[error("no package manager found in PATH (apk or opkg); pass --pm")]
    NoPackageManager,
    /// `upgrade` was asked to stop (this signal) while the package manager ran.
    #[error("stopped by signal {0} while the package manager ran: no further step started; flash untouched")]
    Stopped(i32),
    #[error("aborted; nothing changed")]
    Aborted,
    #[error("{0} needs confirmation: pass --yes (no terminal to ask on)")]
    NeedsConfirmation(&'static str),
    #[error("the write succeeded, but `reboot` could not be run: {0}")]
    Reboot(String),
    #[error("{}", snapshot::writer::survey::describe(.0))]
    Damaged(Vec<Suspect>),
    #[error("{0}: not found (no such file or device)")]
    NotFound(PathBuf),
    #[error("chain full: it holds {have} snapshots, the most the boot path reads ({max}); `snapshot rollback ID` drops the newest ones, or `snapshot extract all DIR`, `snapshot format --force` and `snapshot commit --upper DIR` squash them into one")]
    ChainFull { have: usize, max: usize },
    #[error("{path}: the chain on it was written for erase size {chain}, not {given} ({how}); the geometry in the headers wins: {fix}")]
    Geometry {
        path: PathBuf,
        chain: u32,
        given: u32,
        how: &'static str,
        fix: &'static str,
    },
    #[error("{path}: {detail}")]
    BadBlock { path: PathBuf, detail: String },
    #[error("{0}")]
    Layout(String),
    #[cfg(feature = "fleet")]
    #[error("refused: {0}; flash untouched")]
    Bundle(#[from] BundleError),
    #[cfg(feature = "fleet")]
    #[error("trusted keys: {0}")]
    Keyring(KeyringError),
    #[cfg(feature = "fleet")]
    #[error("{path}: {err}")]
    Key { path: PathBuf, err: KeyError },
    #[cfg(feature = "fleet-admin")]
    #[error(
        "{0:?} is not a chain head hash (64 hex digits); give --base IMAGE or --base-hash HEX"
    )]
    BadHash(String),
    #[cfg(feature = "fleet")]
    #[error("no mirror answered after {tries} round(s): {last}")]
    NoMirror { tries: u32, last: String },
    #[cfg(feature = "fleet")]
    #[error("{0}")]
    Http(#[from] snapshot::fleet::http::HttpError),
    #[cfg(feature = "fleet")]
    #[error("no MQTT broker answered after {tries} attempt(s): {last}")]
    NoBroker { tries: u32, last: String },
    #[cfg(feature = "fleet")]
    #[error("{0}")]
    Mqtt(#[from] snapshot::fleet::mqtt::MqttError),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        use CliError::*;
        match self {
            Device { .. }
            | DeviceIo { .. }
            | ProcMtd { .. }
            | NoPartition(_)
            | Unreadable
            | BadBlock { .. } => code::DEVICE,
            NotFound(_) => code::NO_DEVICE,
            Damaged(_) => code::DAMAGED,
            ChainFull { .. } => code::CHAIN_FULL,
            Geometry { .. } | Layout(_) => code::GEOMETRY,
            Lock { .. } | Locked { .. } => code::LOCKED,
            Unformatted(_)
            | Refused(_)
            | ChainMoved { .. }
            | NotAsBooted { .. }
            | VolatileNotBooted { .. }
            | BadBackbuf(_) => code::STATE,
            NoSpace { .. } | VolatileTooLarge { .. } | TooSmall { .. } => code::NO_SPACE,
            NoVolatile | NoSuchSnapshot { .. } => code::NOT_FOUND,
            BadId(_) | BadDiffId(_) | SalvageId(_) => code::USAGE,
            Pack { .. }
            | TooMuchData { .. }
            | Unpack { .. }
            | ExtractRefused { .. }
            | Io { .. } => code::TREE,
            Payload { .. } | Verify(_) => code::VERIFY,
            PackageManager { .. } | NoPackageManager | Stopped(_) => code::UPGRADE,
            Aborted | NeedsConfirmation(_) => code::ABORTED,
            Reboot(_) => code::REBOOT,
            Unhealthy(_) => code::UNHEALTHY,
            Config { .. } => code::CONFIG,
            #[cfg(feature = "fleet")]
            Keyring(_) | Key { .. } => code::CONFIG,
            #[cfg(feature = "fleet-admin")]
            BadHash(_) => code::USAGE,
            #[cfg(feature = "fleet")]
            NoMirror { .. } => code::NO_MIRROR,
            #[cfg(feature = "fleet")]
            NoBroker { .. } => code::NO_BROKER,
            #[cfg(feature = "fleet")]
            Mqtt(
                snapshot::fleet::mqtt::MqttError::BadAddress(_)
                | snapshot::fleet::mqtt::MqttError::BadTopic { .. },
            ) => code::USAGE,
            #[cfg(feature = "fleet")]
            Mqtt(_) => code::NO_BROKER,
            #[cfg(feature = "fleet")]
            Http(snapshot::fleet::http::HttpError::TooLarge { .. }) => code::TOO_LARGE,
            #[cfg(feature = "fleet")]
            Http(_) => code::NO_MIRROR,
            #[cfg(feature = "fleet")]
            Bundle(b) => match b {
                BundleError::Untrusted { .. } | BundleError::BadSignatureFile { .. } => {
                    code::UNTRUSTED
                }
                BundleError::Mismatch { .. } => code::MISMATCH,
                BundleError::WrongBase { .. } => code::WRONG_BASE,
                BundleError::TooLarge { .. } => code::TOO_LARGE,
                BundleError::BadManifest { .. } => code::BAD_MANIFEST,
                BundleError::Stale { .. } => code::STALE,
                BundleError::Expired { .. } => code::EXPIRED,
            },
        }
    }

    /// Maps a writer error, naming the device for flash failures.
    pub fn write(path: &std::path::Path, e: WriteError<DeviceError>) -> Self {
        match e {
            WriteError::Flash(err) => CliError::Device {
                path: path.to_path_buf(),
                err,
            },
            WriteError::Unformatted(fs) => CliError::Unformatted(fs),
            WriteError::Unreadable => CliError::Unreadable,
            WriteError::NoVolatile => CliError::NoVolatile,
            WriteError::NoSuchSnapshot { id, have } => CliError::NoSuchSnapshot { id, have },
            WriteError::VolatileTooLarge { need, backbuf } => {
                CliError::VolatileTooLarge { need, backbuf }
            }
            WriteError::NoSpace { need, free } => CliError::NoSpace {
                what: "block",
                need,
                free,
            },
            WriteError::TooSmall { blocks } => CliError::TooSmall { blocks },
            WriteError::BadBackbuf(s) => CliError::BadBackbuf(s),
            WriteError::TrialSpent { offset } => CliError::Refused(format!(
                "the volatile at {offset:#x} is on trial and its last allowed boot is spent: `snapshot confirm` keeps it, or a reboot rolls it back; then commit"
            )),
            WriteError::Damaged(list) => CliError::Damaged(list),
            e @ (WriteError::StagingTaken { .. } | WriteError::AlreadyChain) => {
                CliError::Refused(e.to_string())
            }
            WriteError::ChainFull { have, max } => CliError::ChainFull { have, max },
            e @ WriteError::LayoutMismatch { .. } => CliError::Layout(e.to_string()),
            e @ (WriteError::EraseFailed { .. }
            | WriteError::ProgramFailed { .. }
            | WriteError::CopyRead { .. }) => CliError::BadBlock {
                path: path.to_path_buf(),
                detail: e.to_string(),
            },
        }
    }
}
