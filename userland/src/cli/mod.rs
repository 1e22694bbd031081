//! The `snapshot` command line. docs/SNAPSHOT.md is the reference for every command, option and
//! exit code; keep the two in step.

mod device;
mod error;
#[cfg(feature = "fleet")]
mod fleet;
mod health;
mod info;
mod lock;
mod mounts;
mod ops;
mod read;
mod record;
mod tree;
mod ui;

use clap::{Args, Parser, Subcommand};
use device::{Device, DeviceSpec};
use error::CliError;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Where `snapshot health` reads its checks.
pub const DEFAULT_HEALTH_CONFIG: &str = "/etc/config/snapshot";
/// Where `fleet poll` and `health` keep what `fleet status` reports.
pub const DEFAULT_FLEET_STATE: &str = "/etc/snapshot/fleet";

const ABOUT: &str = "Manage snapinit's snapshot chain on the rootfs_data flash partition";

const LONG_ABOUT: &str = "\
Manage snapinit's snapshot chain on the rootfs_data flash partition.

At boot, snapinit replays every snapshot in order into /snapshot, then unpacks the volatile
block into the overlay's upper directory. `save` stores the running changes as the volatile,
`commit` turns them into a new snapshot, `rollback` drops snapshots from the top.

Every write is atomic under power loss: a command that fails, or a power cut at any point,
leaves the previous state bootable. See docs/SNAPSHOT.md for the full reference and the exit
codes.";

const EXIT_CODES: &str = "\
Exit status:
   0  success (also: nothing to do)
   2  bad command line or snapshot ID
   3  no such partition, a device that cannot be opened or cannot hold the chain (raw NAND,
      gluebi, fewer than two erase blocks), or an I/O error on it
   4  another snapshot command holds the partition's lock
   5  the partition is in a state the command refuses (a foreign filesystem, a chain format
      was not forced to erase, convert on anything but JFFS2, a bad back-buffer size, a
      trial whose last boot is spent)
   6  not enough space on the partition (or in the back buffer for a volatile)
   7  no such snapshot, or no volatile
   8  packing or unpacking a directory tree failed
   9  verify found a problem (or a payload could not be decoded)
  10  the package manager failed, or a stopping signal came while it ran (upgrade): flash untouched
  11  aborted, or confirmation needed and no terminal to ask on (pass --yes)
  12  written, but `reboot` could not be run
  13  refused: the partition holds data the chain does not show (damaged or unreachable
      blocks, unknown content); flash untouched. See the message: repair, extract --salvage,
      format --force
  14  the device does not exist
  15  chain full: the chain holds the most snapshots the boot path reads (128)
  16  the chain on flash was written for another erase size than --erase-size or the device's,
      or records a back buffer the partition cannot have (a truncated image)
  17  health: a check failed (without --no-reboot the unit is rebooting)
  18  a configuration file cannot be read or is invalid (also: trusted keys, keys to sign with)
  19  bundle: not signed by enough trusted keys (missing, bad, unknown): flash untouched
  20  bundle: the payload does not match its signed manifest: flash untouched
  21  bundle: the chain's id is not the bundle's base: flash untouched
  22  bundle: larger than the limit (--max-size), or its file data past its payload's bound:
      flash untouched
  23  bundle: the signed manifest cannot be used (format, version): flash untouched
  24  fleet poll: the channel manifest is older than one already taken (replay): flash untouched
  25  fleet poll: no mirror answered after every retry: flash untouched
  26  fleet publish/poll --mqtt (and status --mqtt): no MQTT broker took or gave the status after
      every retry (the unit keeps working; the next poll publishes again): flash untouched
  27  fleet poll: the channel manifest is past its expiry time (stale): flash untouched";

#[derive(Debug, Parser)]
#[command(name = "snapshot", version, about = ABOUT, long_about = LONG_ABOUT, after_long_help = EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Args)]
struct Global {
    /// Partition to use: an MTD character device (/dev/mtdN), a UBI volume (/dev/ubiX_Y), a
    /// block device or an image file [default: the partition named by --partition]
    #[arg(long, short = 'd', global = true, value_name = "PATH")]
    device: Option<PathBuf>,
    /// Partition name to look up when --device is not given: an MTD partition in /proc/mtd,
    /// else a UBI volume of that name
    #[arg(
        long,
        global = true,
        default_value = "rootfs_data",
        value_name = "NAME"
    )]
    partition: String,
    /// Erase block size for block devices and image files: a multiple of 64, at least 512 (a
    /// NOR erase block, or a UBI LEB such as 65408)
    /// [default: the one the chain's headers record, else 65536]. An MTD device reports its
    /// own; a chain recorded for another size is an error (exit 16)
    #[arg(long, global = true, value_name = "BYTES", value_parser = parse_erase_size)]
    erase_size: Option<u32>,
    /// Seconds to wait for another running snapshot command to finish
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    wait: u64,
    /// Fail at once (exit 4) if another snapshot command is running
    #[arg(long, global = true)]
    no_wait: bool,
    /// The record snapinit (PID 1) leaves of this boot: `health` reads it, and `save`, `commit`
    /// and `upgrade` refuse (exit 5) once a write since boot changed the snapshots below the
    /// upper dir
    #[arg(long, global = true, default_value = record::DEFAULT, value_name = "FILE")]
    boot_record: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Show the partition, its layout and every block
    #[command(visible_alias = "list")]
    Info {
        /// Print one JSON object instead of the table
        #[arg(long)]
        json: bool,
    },
    /// Store the overlay's upper directory as the volatile block
    ///
    /// The volatile replaces the previous one and is unpacked into the upper directory at the
    /// next boot. Sockets, FIFOs and device nodes other than whiteouts are skipped (listed on
    /// stderr).
    #[command(visible_alias = "config")]
    Save {
        #[command(flatten)]
        pack: PackArgs,
    },
    /// Make the current state a new snapshot, then reboot
    ///
    /// If the upper directory has content it is packed and appended as a snapshot (superseding
    /// the volatile); otherwise the stored volatile is committed as it is.
    #[command(visible_alias = "push")]
    Commit {
        #[command(flatten)]
        pack: PackArgs,
        /// Do not reboot after writing
        #[arg(long)]
        no_reboot: bool,
    },
    /// Keep snapshots 1..=ID, drop the later ones and the volatile, then reboot
    Rollback {
        /// Number of snapshots to keep [default: all but the last]
        id: Option<usize>,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
        /// Do not reboot after writing
        #[arg(long)]
        no_reboot: bool,
    },
    /// Run the package manager; store what it changed as a new snapshot
    ///
    /// Runs `apk update && apk upgrade` (apk systems) or `opkg update` + `opkg upgrade` of every
    /// upgradable package (opkg systems). Only if it succeeds and changed the upper directory
    /// is the result appended as a snapshot. A failed upgrade leaves flash untouched (exit 10).
    Upgrade {
        #[command(flatten)]
        pack: PackArgs,
        /// `apk`, `opkg`, or a shell command to run instead [default: whichever is in PATH]
        #[arg(long, value_name = "apk|opkg|CMD")]
        pm: Option<String>,
        /// Reboot after storing the snapshot
        #[arg(long)]
        reboot: bool,
    },
    /// Turn a JFFS2 overlay partition into a snapinit chain (its content becomes snapshot 1)
    ///
    /// Packs the mounted JFFS2 overlay's upper directory, erases the partition and writes the
    /// packed tree as the first snapshot, then reboots. Between the erase and the write the
    /// content exists only in RAM (and in --backup FILE if given): see docs/SNAPSHOT.md.
    Convert {
        /// The mounted JFFS2 overlay's upper directory
        #[arg(long, default_value = "/overlay/upper", value_name = "DIR")]
        from: PathBuf,
        /// Write the packed payload to FILE (and sync it) before erasing anything
        #[arg(long, value_name = "FILE")]
        backup: Option<PathBuf>,
        /// Store the payload as a plain tar
        #[arg(long)]
        no_compress: bool,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
        /// Do not reboot after writing
        #[arg(long)]
        no_reboot: bool,
    },
    /// Make the partition an empty chain
    ///
    /// An empty or erased partition is formatted at once. One that holds snapshots, a volatile
    /// or another filesystem needs --force and confirmation.
    #[command(visible_alias = "mark")]
    Format {
        /// Erase a partition that holds data
        #[arg(long)]
        force: bool,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
        /// Back buffer size in erase blocks [default: an eighth of the partition]; recorded in
        /// a layout marker at offset 0
        #[arg(long, value_name = "N")]
        backbuf_blocks: Option<u32>,
    },
    /// Re-read and re-hash every block and decode every payload as the boot path would
    Verify,
    /// Keep the blocks on trial: the running state is good
    ///
    /// Programs the confirm mark of every block on trial (lowest first); from then on they
    /// boot without spending trial boots.
    Confirm,
    /// Check the running system; confirm the boot on trial when every check passes
    ///
    /// Checks come from the config (UCI syntax): commands that must succeed, hosts that must
    /// answer ping, a least number of batman-adv neighbours. They are retried until they pass
    /// or the unit has been up `deadline` seconds; then it reboots, spending the next trial
    /// boot (with none left, the unit boots the state below the trial). Does nothing when
    /// nothing is on trial.
    Health {
        /// The checks [default: /etc/config/snapshot, through `uci export` when uci exists;
        /// no checks when it does not exist]. A FILE given that cannot be read: exit 18
        // An Option, not a default value: only the default may be missing (a unit with no
        // checks configured); a --config that names no file is a typo, never a check less.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// One round of checks: confirm if they pass, else reboot at once
        #[arg(long)]
        once: bool,
        /// Do not reboot on failure (exit 17 instead)
        #[arg(long)]
        no_reboot: bool,
        /// Where the verdict is recorded (health.json, for `fleet status` and `fleet publish`)
        #[arg(long, default_value = DEFAULT_FLEET_STATE, value_name = "DIR")]
        state: PathBuf,
    },
    /// Erase the leftovers of interrupted or dropped writes (done before every write anyway)
    ///
    /// Leftovers the writer can prove are its own (torn, dropped, superseded blocks) are erased
    /// at once. Anything that might be data (a damaged or unreachable block) is listed with the
    /// erase blocks it occupies and erased only after confirmation or --yes.
    Repair {
        /// Erase blocks that might be data without asking
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Unpack a snapshot, the volatile, or all of them layered, into a directory
    ///
    /// Uses the boot path's own readers and replay rules: it refuses exactly what PID 1
    /// refuses, with the same reason, and builds the tree PID 1 builds.
    Extract {
        /// Snapshot number (1 = oldest), `volatile`, or `all` (every snapshot, then the volatile)
        id: String,
        /// Destination directory (created if missing)
        dir: PathBuf,
        /// Ignore the chain: unpack every block whose header still decodes (also past a bad
        /// block, dropped or stale ones), each into its own subdirectory, as far as it decodes
        #[arg(long)]
        salvage: bool,
    },
    /// List what a snapshot or the volatile adds (A), modifies (M), deletes (D) or makes opaque (O)
    ///
    /// Compares the block's tar entries with the tree the snapshots below it build. `=` marks
    /// an entry whose type, mode, owner, mtime, size and xattrs equal the one below (overlayfs
    /// copies whole files up, so a volatile repeats unchanged parents).
    Diff {
        /// Snapshot number or `volatile` [default: the volatile, else the newest snapshot]
        id: Option<String>,
        /// The read-only root below the chain: an entry no snapshot below has but this
        /// directory has is shown as a modification (M), not an addition
        #[arg(long, default_value = "/rom", value_name = "DIR")]
        rom: PathBuf,
    },
    /// Signed bundles for fleets: verify, fingerprint, head (and on a build host: create,
    /// sign, keygen, channel)
    ///
    /// A bundle is one snapshot's payload plus a manifest naming the chain head it goes on top
    /// of, signed in OpenWrt's usign format. A unit's build (without the cargo feature
    /// fleet-admin) checks bundles; only a build host's writes and signs them. See
    /// docs/FLEET.md.
    #[cfg(feature = "fleet")]
    Bundle {
        #[command(subcommand)]
        cmd: fleet::args::BundleCmd,
    },
    /// Take signed bundles on a unit (see docs/FLEET.md)
    #[cfg(feature = "fleet")]
    Fleet {
        #[command(subcommand)]
        cmd: Box<fleet::args::FleetCmd>,
    },
}

#[derive(Debug, Args)]
struct PackArgs {
    /// The overlay upper directory to pack
    #[arg(long, default_value = "/overlay/upper", value_name = "DIR")]
    upper: PathBuf,
    /// Store the payload as a plain tar instead of gzip
    #[arg(long)]
    no_compress: bool,
    /// Write the new block on trial: boot it at most N times (1-15) until `snapshot confirm`
    /// (or `snapshot health`) keeps it; unconfirmed, the unit rolls back by itself
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=15))]
    trial: Option<u16>,
}

/// `--erase-size`: at least 512 bytes and a multiple of 64 (decimal or 0x hex): a NOR erase
/// block, or a UBI volume's LEB size for an image of one.
fn parse_erase_size(s: &str) -> Result<u32, String> {
    let n = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse::<u32>(),
    }
    .map_err(|e| format!("{s:?} is not a number of bytes: {e}"))?;
    if !snapinit::flash::usable_erase_size(n) {
        return Err(format!(
            "{n} is not a multiple of 64 of at least 512 (NOR erase blocks are 4096, 65536, 131072, ...; UBI LEBs 126976, 65408, ...)"
        ));
    }
    Ok(n)
}

/// What every command needs to reach the partition.
#[derive(Clone)]
pub struct Ctx {
    spec: DeviceSpec,
    wait: Option<Duration>,
    /// Trial boots for the block a write adds (`--trial`); 0: confirmed at write.
    trial: u16,
    /// This boot's record (`--boot-record`, record.rs).
    boot_record: PathBuf,
}

impl Ctx {
    /// How long a command waits for another's lock (`None`: it refuses at once).
    pub fn wait(&self) -> Option<Duration> {
        self.wait
    }

    pub fn boot_record(&self) -> &Path {
        &self.boot_record
    }

    /// The same partition, refused at once when another command holds it: for a caller that
    /// waits itself (health pets the watchdog meanwhile).
    pub fn no_wait(&self) -> Ctx {
        Ctx {
            wait: None,
            ..self.clone()
        }
    }

    /// Takes the lock (exclusive for writers), then opens the device with the erase size the
    /// chain on it records (see `device::open_checked`).
    pub fn open(&self, write: bool) -> Result<(lock::Lock, Device), CliError> {
        let path = self.spec.resolve()?;
        device::check_path(&path)?;
        let lock = lock::acquire(&path, write, self.wait)?;
        let dev = device::open_checked(&path, self.spec.erase_size, write)?;
        Ok((lock, dev))
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let g = cli.global;
    let ctx = Ctx {
        spec: DeviceSpec {
            device: g.device,
            partition: g.partition,
            erase_size: g.erase_size,
        },
        wait: (!g.no_wait).then(|| Duration::from_secs(g.wait)),
        trial: match &cli.cmd {
            Cmd::Save { pack } | Cmd::Commit { pack, .. } | Cmd::Upgrade { pack, .. } => {
                pack.trial.unwrap_or(0)
            }
            _ => 0,
        },
        boot_record: g.boot_record,
    };
    match cli.cmd {
        Cmd::Info { json } => read::info(&ctx, json),
        Cmd::Save { pack } => ops::save(&ctx, &pack.upper, !pack.no_compress),
        Cmd::Commit { pack, no_reboot } => {
            ops::commit(&ctx, &pack.upper, !pack.no_compress, !no_reboot)
        }
        Cmd::Rollback { id, yes, no_reboot } => ops::rollback(&ctx, id, yes, !no_reboot),
        Cmd::Upgrade { pack, pm, reboot } => {
            ops::upgrade(&ctx, &pack.upper, !pack.no_compress, pm.as_deref(), reboot)
        }
        Cmd::Convert {
            from,
            backup,
            no_compress,
            yes,
            no_reboot,
        } => ops::convert(
            &ctx,
            &from,
            backup.as_deref(),
            !no_compress,
            yes,
            !no_reboot,
        ),
        Cmd::Format {
            force,
            yes,
            backbuf_blocks,
        } => ops::format(&ctx, force, yes, backbuf_blocks),
        Cmd::Verify => read::verify(&ctx),
        Cmd::Confirm => ops::confirm(&ctx),
        Cmd::Health {
            config,
            once,
            no_reboot,
            state,
        } => health::health(&ctx, config.as_deref(), once, !no_reboot, &state),
        Cmd::Repair { yes } => ops::repair(&ctx, yes),
        Cmd::Extract { id, dir, salvage } => read::extract(&ctx, &id, &dir, salvage),
        Cmd::Diff { id, rom } => read::diff(&ctx, id.as_deref(), &rom),
        #[cfg(feature = "fleet")]
        Cmd::Bundle { cmd } => fleet::args::bundle(&ctx, cmd),
        #[cfg(feature = "fleet")]
        Cmd::Fleet { cmd } => fleet::args::fleet(&ctx, *cmd),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every message already carries its cause.
            eprintln!("snapshot: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
