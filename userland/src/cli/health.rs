//! `snapshot health`: decides whether a boot on trial is good, and confirms it or reboots.
//!
//! The checks come from `/etc/config/snapshot` (UCI syntax; read through `uci export` when the
//! `uci` command exists, so OpenWrt's staged changes and includes apply): commands that must
//! succeed, hosts that must answer ping, a least number of batman-adv neighbours. They are
//! retried every `interval` seconds until they all pass (then the boot is confirmed) or the
//! unit has been up `deadline` seconds (then it reboots, which spends the next trial boot; when
//! none is left the unit comes back on the state below). While it waits it pets the watchdog
//! PID 1 armed, if nothing else (procd) owns it.

use super::error::CliError;
use super::Ctx;
use snapinit::header::Trial;
use snapshot::writer::Writer;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One UCI section: its type, name, options and lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    pub name: String,
    pub options: BTreeMap<String, String>,
    pub lists: BTreeMap<String, Vec<String>>,
}

/// Splits a UCI line into words as libuci reads them: a word is bare, 'single' and "double"
/// quoted pieces joined (libuci writes a `'` inside a value as `'\''`); a backslash escapes
/// the next character outside single quotes; `#` outside quotes ends the line. `None` for an
/// unterminated quote.
fn uci_words(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Some(out),
            Some(_) => {}
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            match c {
                '#' => {
                    out.push(word);
                    return Some(out);
                }
                '\\' => word.push(chars.next()?),
                '\'' => loop {
                    match chars.next()? {
                        '\'' => break,
                        d => word.push(d),
                    }
                },
                '"' => loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        d => word.push(d),
                    }
                },
                c => word.push(c),
            }
        }
        out.push(word);
    }
}

/// Parses UCI file syntax (what `uci export` prints). Unknown lines are errors with their
/// number, so a typo in a check is never silently a check less.
pub fn parse_uci(text: &str) -> Result<Vec<Section>, String> {
    let mut sections: Vec<Section> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let cannot = || format!("line {}: cannot read {line:?}", n + 1);
        let w = uci_words(line).ok_or_else(cannot)?;
        let Some(first) = w.first() else {
            continue;
        };
        match (first.as_str(), w.len()) {
            ("package", 2) => {}
            ("config", 2 | 3) => sections.push(Section {
                kind: w[1].clone(),
                name: w.get(2).cloned().unwrap_or_default(),
                ..Section::default()
            }),
            ("option", 3) | ("list", 3) => {
                let Some(sec) = sections.last_mut() else {
                    return Err(format!("line {}: {first} outside a section", n + 1));
                };
                if first == "option" {
                    sec.options.insert(w[1].clone(), w[2].clone());
                } else {
                    sec.lists
                        .entry(w[1].clone())
                        .or_default()
                        .push(w[2].clone());
                }
            }
            _ => return Err(cannot()),
        }
    }
    Ok(sections)
}

/// The checks and their timing, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    pub deadline: u64,
    pub interval: u64,
    pub commands: Vec<String>,
    pub ping: Vec<String>,
    pub batman_neighbours: u32,
    pub watchdog: bool,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            deadline: 600,
            interval: 20,
            commands: Vec::new(),
            ping: Vec::new(),
            batman_neighbours: 0,
            watchdog: true,
        }
    }
}

fn number(sec: &Section, key: &str, default: u64) -> Result<u64, String> {
    match sec.options.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("option {key} '{v}' is not a whole number")),
    }
}

/// The `health` section of the config (type `health`); defaults when there is none.
pub fn checks(sections: &[Section]) -> Result<Checks, String> {
    let mut c = Checks::default();
    let Some(sec) = sections.iter().find(|s| s.kind == "health") else {
        return Ok(c);
    };
    for key in sec.options.keys().chain(sec.lists.keys()) {
        if ![
            "deadline",
            "interval",
            "command",
            "ping",
            "batman_neighbours",
            "watchdog",
        ]
        .contains(&key.as_str())
        {
            return Err(format!("unknown option {key}"));
        }
    }
    // Timings are single values: one given as a list would otherwise be a default, silently.
    for key in ["deadline", "interval", "batman_neighbours", "watchdog"] {
        if sec.lists.contains_key(key) {
            return Err(format!("{key} is a list; it takes one value: option {key}"));
        }
    }
    c.deadline = number(sec, "deadline", c.deadline)?;
    c.interval = number(sec, "interval", c.interval)?.max(1);
    c.batman_neighbours = u32::try_from(number(sec, "batman_neighbours", 0)?)
        .map_err(|_| "option batman_neighbours is too large".to_string())?;
    c.watchdog = number(sec, "watchdog", 1)? != 0;
    // Checks are lists, but `uci set snapshot.health.ping=HOST` writes one value as an
    // option: a check all the same (first), never one silently dropped.
    let list = |key: &str| -> Vec<String> {
        sec.options
            .get(key)
            .into_iter()
            .chain(sec.lists.get(key).into_iter().flatten())
            .cloned()
            .collect()
    };
    c.commands = list("command");
    c.ping = list("ping");
    for host in &c.ping {
        let ok = !host.is_empty()
            && host
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ".-:".contains(ch));
        if !ok {
            return Err(format!("ping host {host:?} is not a host name or address"));
        }
    }
    Ok(c)
}

/// The checks of `given` (`--config`), else of the default config. Only the default may be
/// missing: a unit with no config has no checks but the deadline, while a `--config` naming no
/// file is a typo, an error (exit 18) before anything is confirmed.
fn read_config(given: Option<&Path>) -> Result<Checks, CliError> {
    let path = given.unwrap_or(Path::new(super::DEFAULT_HEALTH_CONFIG));
    let bad = |detail: String| CliError::Config {
        path: path.to_path_buf(),
        detail,
    };
    let default_path = path == Path::new(super::DEFAULT_HEALTH_CONFIG);
    let via_uci = default_path
        .then(|| {
            Command::new("uci")
                .args(["-q", "export", "snapshot"])
                .stderr(Stdio::null())
                .output()
                .ok()
        })
        .flatten()
        .filter(|o| o.status.success());
    let text = match via_uci {
        Some(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        None => match std::fs::read_to_string(path) {
            Ok(t) => t,
            // No config at the default path: the defaults (no check but the deadline and the
            // watchdog).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && given.is_none() => String::new(),
            Err(e) => return Err(bad(e.to_string())),
        },
    };
    checks(&parse_uci(&text).map_err(bad)?).map_err(bad)
}

/// The kinds of check, in the order of their failed-check marks on flash (docs/FORMAT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    Command,
    Ping,
    Batman,
}

impl CheckKind {
    pub const ALL: [CheckKind; snapinit::header::FAILED_MARKS_LEN] =
        [CheckKind::Command, CheckKind::Ping, CheckKind::Batman];

    /// Its bit in `Marks::failed`.
    pub fn bit(self) -> u8 {
        1 << self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Command => "command",
            CheckKind::Ping => "ping",
            CheckKind::Batman => "batman-adv neighbours",
        }
    }

    /// The kinds whose marks `failed` holds.
    pub fn named(failed: u8) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|k| failed & k.bit() != 0)
            .map(|k| k.name())
            .collect()
    }
}

/// One check that did not pass.
struct Failure {
    kind: CheckKind,
    text: String,
}

/// How a check's process ended.
enum Ran {
    Exited(std::process::ExitStatus),
    /// Still running when the round's time was up: killed, with its process group.
    Late,
}

/// Runs `cmd` until it exits or `until` passes, petting the watchdog meanwhile. It runs in a
/// process group of its own, killed whole when it is late, so that what it started (the
/// `sleep` of `sh -c`, a hung DNS lookup of `ping`) does not outlive the check. A piped
/// stdout is read as it comes (a full pipe must not stall the check), in this thread: a
/// thread for it would bring std's thread runtime into the tool (about 15 KB); its bytes are
/// returned.
fn run_until(
    cmd: &mut Command,
    until: Instant,
    dog: &mut Watchdog,
) -> std::io::Result<(Ran, Vec<u8>)> {
    const TICK: Duration = Duration::from_millis(50);
    // Out of the terminal's foreground group, a check that read the terminal would stop.
    let mut child = cmd.process_group(0).stdin(Stdio::null()).spawn()?;
    let mut pipe = child.stdout.take();
    let mut out = Vec::new();
    let mut exited = None;
    loop {
        if exited.is_none() {
            exited = child.try_wait()?;
        }
        match (exited, &pipe) {
            (Some(status), None) => return Ok((Ran::Exited(status), out)),
            _ if Instant::now() >= until => {
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::KILL,
                );
                let _ = child.kill();
                let status = child.wait()?;
                // Exited, with its output held open by something it left behind: its status
                // stands; else it was late.
                let ran = exited.map_or(Ran::Late, |_| Ran::Exited(status));
                return Ok((ran, out));
            }
            _ => {}
        }
        dog.pet();
        match &mut pipe {
            Some(p) => {
                if !read_within(p, TICK, &mut out)? {
                    pipe = None;
                }
            }
            None => std::thread::sleep(TICK),
        }
    }
}

/// Waits up to `wait` for `pipe`, reading what arrived into `out`; false at its end.
fn read_within(
    pipe: &mut std::process::ChildStdout,
    wait: Duration,
    out: &mut Vec<u8>,
) -> std::io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let timeout = Timespec::try_from(wait).map_err(std::io::Error::other)?;
    let ready = match poll(&mut [PollFd::new(&*pipe, PollFlags::IN)], Some(&timeout)) {
        Ok(n) => n > 0,
        Err(rustix::io::Errno::INTR) => false,
        Err(e) => return Err(e.into()),
    };
    if !ready {
        return Ok(true);
    }
    let mut buf = [0u8; 4096];
    match pipe.read(&mut buf) {
        Ok(0) => Ok(false),
        Ok(n) => {
            out.extend_from_slice(&buf[..n]);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(true),
        Err(e) => Err(e),
    }
}

/// Runs every check once, each stopped at `until` at the latest; the failures, with their
/// kinds.
fn run_checks(c: &Checks, until: Instant, dog: &mut Watchdog) -> Vec<Failure> {
    let mut r = Round {
        until,
        failed: Vec::new(),
    };
    const LATE: &str = "did not finish before the round's time was up (killed)";
    for cmd in &c.commands {
        if r.over() {
            return r.failed;
        }
        match run_until(Command::new("/bin/sh").args(["-c", cmd]), until, dog) {
            Ok((Ran::Exited(s), _)) if s.success() => {}
            Ok((Ran::Exited(s), _)) => r.fail(CheckKind::Command, format!("command `{cmd}` {s}")),
            Ok((Ran::Late, _)) => r.fail(CheckKind::Command, format!("command `{cmd}` {LATE}")),
            Err(e) => r.fail(CheckKind::Command, format!("command `{cmd}`: {e}")),
        }
    }
    for host in &c.ping {
        if r.over() {
            return r.failed;
        }
        let ran = run_until(
            Command::new("ping")
                .args(["-c", "1", "-W", "2", host])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            until,
            dog,
        );
        match ran {
            Ok((Ran::Exited(s), _)) if s.success() => {}
            Ok((Ran::Late, _)) => r.fail(CheckKind::Ping, format!("ping {host} {LATE}")),
            _ => r.fail(CheckKind::Ping, format!("{host} does not answer ping")),
        }
    }
    if c.batman_neighbours > 0 && !r.over() {
        let ran = run_until(
            Command::new("batctl")
                .args(["n", "-H"])
                .stdout(Stdio::piped()),
            until,
            dog,
        );
        let n = match &ran {
            Ok((Ran::Exited(s), out)) if s.success() => Some(
                String::from_utf8_lossy(out)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .count() as u32,
            ),
            _ => None,
        };
        match (n, ran) {
            (Some(n), _) if n >= c.batman_neighbours => {}
            (Some(n), _) => r.fail(
                CheckKind::Batman,
                format!(
                    "{n} batman-adv neighbour(s), at least {} needed",
                    c.batman_neighbours
                ),
            ),
            (None, Ok((Ran::Late, _))) => r.fail(CheckKind::Batman, format!("`batctl n` {LATE}")),
            (None, _) => r.fail(
                CheckKind::Batman,
                "`batctl n` does not run (no batman-adv)".into(),
            ),
        }
    }
    r.failed
}

/// One round of checks: its end, and what failed so far.
struct Round {
    until: Instant,
    failed: Vec<Failure>,
}

impl Round {
    fn fail(&mut self, kind: CheckKind, text: String) {
        self.failed.push(Failure { kind, text });
    }

    /// The round's time is up and its verdict is a failure already: the checks left are not
    /// run, since killed at once they would be marked failed for another check's hang. (With
    /// nothing failed yet, they run and are killed: no check left out can pass a round.)
    fn over(&self) -> bool {
        !self.failed.is_empty() && Instant::now() >= self.until
    }
}

fn uptime() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split('.').next().and_then(|s| s.trim().parse().ok()))
        .unwrap_or(0)
}

/// Whether /dev/watchdog (watchdog0) is running, as the kernel says in sysfs: opening one
/// starts it, so health's wait before it knows of a trial boot opens only a running one (PID
/// 1 armed it). A kernel without that view (`CONFIG_WATCHDOG_SYSFS` off) says nothing: taken
/// as running, and a wait that opened it stops it where no trial boot runs.
fn running() -> bool {
    std::fs::read_to_string("/sys/class/watchdog/watchdog0/state")
        .map_or(true, |s| s.trim() == "active")
}

/// Pets the watchdog PID 1 armed while the checks wait, when nothing else holds it.
struct Watchdog(Option<std::fs::File>);

impl Watchdog {
    fn open(wanted: bool) -> Self {
        Watchdog(
            wanted
                .then(|| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open("/dev/watchdog")
                })
                .and_then(Result::ok),
        )
    }
    fn pet(&mut self) {
        if let Some(f) = &mut self.0 {
            let _ = f.write_all(b"\0");
        }
    }
    /// Stops it (magic close): the boot is confirmed, nothing needs guarding.
    fn release(&mut self) {
        if let Some(mut f) = self.0.take() {
            let _ = f.write_all(b"V");
        }
    }
}

/// The verdict's file in the state directory.
pub const HEALTH: &str = "health.json";

/// Records a verdict on the lowest block on trial in `<state>/health.json` (best effort: a
/// read-only state directory must not stop the check), for `fleet status` to report and to
/// name as the reason when that block rolls back.
fn record(state: &Path, block: &snapinit::chain::Block, failed: &[Failure]) {
    let failed: Vec<&str> = failed.iter().map(|f| f.text.as_str()).collect();
    let doc = serde_json::json!({
        "time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "ok": failed.is_empty(),
        "failed": failed,
        "snapshot": block.header.fields.seq,
        "headerHash": snapshot::hex::hex(&block.header.hash),
    });
    let _ = std::fs::create_dir_all(state)
        .and_then(|()| std::fs::write(state.join(HEALTH), doc.to_string()));
}

/// Whether failed-check marks may be written to `device`: an image file is not what any PID 1
/// booted from; a unit's flash only when its PID 1 says in `record` that it reads them (an
/// older one takes them for a corrupt header and drops the block before its boots are spent,
/// and its tool refuses to write over it).
fn marks_readable(device: &Path, record: &Path) -> bool {
    std::fs::metadata(device).is_ok_and(|m| m.is_file())
        || super::record::says(record, "failed-check-marks")
}

/// Why this boot's root does not hold the chain, if it does not: the PID 1 that booted it
/// says so in `record` (failsafe, or a plain tmpfs overlay after a failed switch; or
/// `trial-not-booted`: the block on trial could not be replayed, the chain ends below it; or
/// `chain-partly-booted` or `volatile-not-booted`: a snapshot or the volatile could not be
/// laid out, so what runs is not what a confirmation would keep: a bundle that leaves the
/// unit's own saved changes no room rolls back), or `root` is read-only. snapinit's root over
/// the chain is an overlay with a tmpfs upper, always writable; a read-only root is its last
/// rung (the squashfs alone), where no record can be left, or a boot without snapinit.
fn chain_not_booted(record: &Path, root: &Path) -> Option<String> {
    if let Some(not_run) = super::record::NotRun::read(record) {
        return Some(format!("{} says {}", record.display(), not_run.word()));
    }
    let read_only = rustix::fs::statvfs(root)
        .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY));
    read_only.then(|| format!("{} is read-only", root.display()))
}

/// Sets the block's failed-check marks (docs/FORMAT.md) before the reboot, so the rollback
/// still says why once RAM is gone; best effort: a failure here must not stop the reboot.
fn mark_failed(ctx: &Ctx, block: &snapinit::chain::Block, failed: &[Failure], dog: &mut Watchdog) {
    let mask = failed.iter().fold(0, |m, f| m | f.kind.bit());
    let done = while_locked(ctx.wait(), &mut || dog.pet(), || {
        let (_lock, mut dev) = ctx.no_wait().open(true)?;
        if !marks_readable(&dev.path, ctx.boot_record()) {
            eprintln!(
                "health: the failed checks are not recorded on flash: the running snapinit does not read them (no failed-check-marks in {})",
                ctx.boot_record().display()
            );
            return Ok(0);
        }
        super::ops::write_op(&mut dev, 0, "recording", |w| {
            w.mark_failed(&block.header.hash, mask)
        })
    });
    if let Err(e) = done {
        eprintln!("health: the failed checks could not be recorded on flash: {e}");
    }
}

/// Runs `attempt`, a write that takes the partition's lock (`--no-wait`: refused at once when
/// another command holds it), until it gets the lock or `wait` has passed, calling `pet` every
/// 250 ms meanwhile.
fn while_locked<T>(
    wait: Option<Duration>,
    pet: &mut dyn FnMut(),
    attempt: impl FnMut() -> Result<T, CliError>,
) -> Result<T, CliError> {
    super::lock::while_busy(wait, Duration::from_millis(250), pet, attempt)
}

/// The lowest block on trial, read under the partition's shared lock.
fn lowest_on_trial(ctx: &Ctx) -> Result<Option<snapinit::chain::Block>, CliError> {
    let (_lock, mut dev) = ctx.open(false)?;
    let view = Writer::new(&mut dev).read();
    Ok(view
        .snapshots
        .iter()
        .chain(view.volatile())
        .find(|b| matches!(b.header.trial(), Trial::OnTrial { .. }))
        .copied())
}

pub fn health(
    ctx: &Ctx,
    config: Option<&Path>,
    once: bool,
    do_reboot: bool,
    state: &Path,
) -> Result<(), CliError> {
    // The verdict on a boot on trial is due whatever else runs: another command holding the
    // partition now (a save packing a large tree) must not end health without one (exit 4
    // reboots nothing, and where procd owns the watchdog the trial would run unjudged until
    // some power cut). Read again until it is free; `--once` has no later round.
    // Meanwhile the watchdog PID 1 armed for a trial boot is petted (off OpenWrt nothing else
    // does: a command holding the partition past its timeout, an `upgrade` running opkg, would
    // reset the unit and spend a trial boot). Opened only once there is a wait, and closed
    // without the magic character, so left as armed, on the ways out that leave a trial boot
    // unjudged; stopped where no trial boot runs.
    let mut early: Option<Watchdog> = None;
    let trial_block = if once {
        lowest_on_trial(ctx)?
    } else {
        // Petted until the deadline only: a command that hangs holding the lock (a stuck
        // opkg) must not keep a trial boot unjudged for good. Past it, a watchdog PID 1 armed
        // resets the unit, which spends the next trial boot, as a failed check would. Read
        // leniently here: a config that cannot be read is judged (exit 18) once a boot is.
        // Only once there is a wait: most runs find the partition free.
        let mut deadline = None;
        let mut pet = || {
            let deadline = *deadline.get_or_insert_with(|| {
                read_config(config).map_or(Checks::default().deadline, |c| c.deadline)
            });
            if uptime() < deadline {
                early.get_or_insert_with(|| Watchdog::open(running())).pet();
            }
        };
        while_locked(Some(Duration::MAX), &mut pet, || {
            lowest_on_trial(&ctx.no_wait())
        })?
    };
    // Opening a watchdog starts it: where no trial boot runs, PID 1 armed nothing (or what it
    // armed is settled), and the one the wait started must not be left to reset the unit.
    let stop_early = |early: &mut Option<Watchdog>| {
        if let Some(dog) = early.as_mut() {
            dog.release();
        }
    };
    let Some(trial_block) = trial_block else {
        stop_early(&mut early);
        println!("health: nothing is on trial");
        return Ok(());
    };
    // PID 1 spends a trial boot of the lowest block on trial before it runs anything: none
    // spent, this boot did not run it (it was written since, or the unit did not boot it).
    if matches!(trial_block.header.trial(), Trial::OnTrial { used: 0, .. }) {
        stop_early(&mut early);
        println!("health: the block on trial has not been booted yet: the next boot tries it");
        return Ok(());
    }
    // A boot whose root does not hold the chain (failsafe, or snapinit could not switch to
    // it) spent a trial boot without running the block: nothing here speaks for it.
    if let Some(why) = chain_not_booted(ctx.boot_record(), Path::new("/")) {
        println!(
            "health: this boot does not run the chain ({why}): the block on trial is left to the next boot"
        );
        return Ok(());
    }
    // Read only now that there is a boot to judge: the service reboots on a config that
    // cannot be read (exit 18), which with nothing to judge would be every boot.
    let checks = read_config(config)?;
    drop(early);
    let mut dog = Watchdog::open(checks.watchdog);
    loop {
        dog.pet();
        // A round ends by the deadline; once it has passed (a late start), and always with
        // `--once` (one round, its verdict at once), it gets `interval` seconds: a check that
        // hangs is killed then and fails.
        let round = if once {
            checks.interval
        } else {
            checks
                .deadline
                .saturating_sub(uptime())
                .max(checks.interval)
        };
        let until = Instant::now() + Duration::from_secs(round);
        let failed = run_checks(&checks, until, &mut dog);
        if failed.is_empty() {
            let confirmed = while_locked(ctx.wait(), &mut || dog.pet(), || {
                super::ops::confirm_booted(&ctx.no_wait())
            });
            match confirmed {
                // Another command holds the partition (a `save` packing, an `upgrade`): it
                // ends, and the verdict must not be lost meanwhile (an unconfirmed trial
                // spends its next boot at the next reboot). Checked and tried again at the
                // next round; `--once` has none.
                Err(e @ CliError::Locked { .. }) if !once => {
                    eprintln!("health: every check passed but {e}: confirming at the next round");
                }
                done => {
                    let blocks = done?;
                    // A verdict on a block no longer on trial (rolled back meanwhile) would
                    // show in the fleet's status as that block's passed check.
                    if blocks > 0 {
                        record(state, &trial_block, &failed);
                    }
                    dog.release();
                    if blocks == 0 {
                        // Another command settled it while the checks ran: nothing to vouch
                        // for is left, and saying "confirmed" would hide a rollback.
                        println!("health: every check passed, but nothing this boot tried is on trial any more (confirmed or rolled back meanwhile)");
                    } else {
                        println!("health: every check passed; the boot on trial is confirmed");
                    }
                    return Ok(());
                }
            }
        } else {
            for f in &failed {
                eprintln!("health: {}", f.text);
            }
            let up = uptime();
            if once || up >= checks.deadline {
                record(state, &trial_block, &failed);
                mark_failed(ctx, &trial_block, &failed, &mut dog);
                eprintln!(
                    "health: not confirmed {} s after boot: rebooting to spend the next trial (the unit rolls back when none is left)",
                    up
                );
                if !do_reboot {
                    return Err(CliError::Unhealthy(failed.len()));
                }
                // Leave the watchdog running: if the reboot hangs, it fires.
                std::mem::forget(dog);
                return super::ops::reboot(ctx).and(Err(CliError::Unhealthy(failed.len())));
            }
        }
        let up = uptime();
        let wait = checks
            .interval
            .min(checks.deadline.saturating_sub(up))
            .max(1);
        let mut left = wait;
        while left > 0 {
            let step = left.min(5);
            std::thread::sleep(Duration::from_secs(step));
            dog.pet();
            left -= step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::PathBuf;

    #[test]
    fn a_lock_wait_pets_the_watchdog_and_ends_at_the_wait() {
        let busy = || CliError::Locked {
            path: PathBuf::from("/dev/mtd5"),
            waited: None,
        };
        // Free after three refusals: the watchdog was petted at each.
        let (mut pets, mut tries) = (0, 0);
        let got = while_locked(Some(Duration::from_secs(30)), &mut || pets += 1, || {
            tries += 1;
            if tries <= 3 {
                Err(busy())
            } else {
                Ok(tries)
            }
        });
        assert!(matches!(got, Ok(4)), "{got:?}");
        assert_eq!(pets, 3);
        // No limit (health's wait before it knows what to judge): petted until free.
        let (mut pets, mut tries) = (0, 0);
        let got = while_locked(Some(Duration::MAX), &mut || pets += 1, || {
            tries += 1;
            if tries <= 6 {
                Err(busy())
            } else {
                Ok(tries)
            }
        });
        assert!(matches!(got, Ok(7)), "{got:?}");
        assert_eq!(pets, 6);
        // Held for good: refused once the wait has passed, saying how long it waited.
        let mut pets = 0;
        let start = Instant::now();
        let got: Result<(), _> =
            while_locked(Some(Duration::from_secs(1)), &mut || pets += 1, || {
                Err(busy())
            });
        assert!(
            matches!(
                got,
                Err(CliError::Locked {
                    waited: Some(1),
                    ..
                })
            ),
            "{got:?}"
        );
        assert!(start.elapsed() >= Duration::from_secs(1) && pets >= 3);
        // `--no-wait`: at once, unpetted; other errors pass through untouched.
        let got: Result<(), _> = while_locked(None, &mut || pets += 100, || Err(busy()));
        assert!(matches!(got, Err(CliError::Locked { waited: None, .. })));
        assert!(pets < 100);
        let got: Result<(), _> = while_locked(Some(Duration::from_secs(9)), &mut || {}, || {
            Err(CliError::Unhealthy(2))
        });
        assert!(matches!(got, Err(CliError::Unhealthy(2))));
    }

    #[test]
    fn a_boot_record_says_whether_the_chain_runs() {
        let d = tempfile::tempdir().expect("tempdir");
        let record = d.path().join("snapinit");
        // A writable root: only the record speaks (a read-only one: tests/cli_trial.rs).
        let root = d.path();
        assert_eq!(
            chain_not_booted(&record, root),
            None,
            "no record: nothing said"
        );
        std::fs::write(&record, "failed-check-marks\n").expect("record");
        assert_eq!(chain_not_booted(&record, root), None);
        std::fs::write(&record, "failed-check-marks\nchain-not-booted\n").expect("record");
        assert!(
            chain_not_booted(&record, root).is_some_and(|w| w.ends_with("says chain-not-booted"))
        );
        // PID 1 spent the trial of a block it could not replay: nothing here speaks for it.
        std::fs::write(&record, "failed-check-marks\ntrial-not-booted\n").expect("record");
        assert!(
            chain_not_booted(&record, root).is_some_and(|w| w.ends_with("says trial-not-booted"))
        );
        // Less of the chain than the flash holds runs: no confirmation of it.
        std::fs::write(&record, "failed-check-marks\nchain-partly-booted\n").expect("record");
        assert!(chain_not_booted(&record, root)
            .is_some_and(|w| w.ends_with("says chain-partly-booted")));
        // Nor when the saved changes on flash could not be laid out: a bundle that leaves
        // them no room rolls back.
        std::fs::write(&record, "failed-check-marks\nvolatile-not-booted\n").expect("record");
        assert!(chain_not_booted(&record, root)
            .is_some_and(|w| w.ends_with("says volatile-not-booted")));
    }

    /// Image files are always marked; a unit's flash only under a PID 1 that reads the marks.
    #[test]
    fn marks_are_written_only_where_pid1_reads_them() {
        let d = tempfile::tempdir().expect("tempdir");
        let (img, record) = (d.path().join("img"), d.path().join("snapinit"));
        std::fs::write(&img, b"").expect("image");
        let device = Path::new("/dev/null");
        assert!(marks_readable(&img, &record));
        assert!(
            !marks_readable(device, &record),
            "no record: an older PID 1"
        );
        std::fs::write(&record, "something-else\n").expect("record");
        assert!(!marks_readable(device, &record));
        std::fs::write(&record, "other\nfailed-check-marks\n").expect("record");
        assert!(marks_readable(device, &record));
    }

    #[test]
    fn uci_file_syntax() {
        let text = "\
# health checks
config health 'health'
\toption deadline '300'
\toption interval 10
\tlist command 'test -e /etc/config/network'
\tlist command \"grep -q 'up' /tmp/state\"
\tlist ping 10.0.0.1
\toption batman_neighbours '2'
";
        let c = checks(&parse_uci(text).expect("parse")).expect("valid");
        assert_eq!(c.deadline, 300);
        assert_eq!(c.interval, 10);
        assert_eq!(
            c.commands,
            ["test -e /etc/config/network", "grep -q 'up' /tmp/state"]
        );
        assert_eq!(c.ping, ["10.0.0.1"]);
        assert_eq!(c.batman_neighbours, 2);
        assert!(c.watchdog);
    }

    #[test]
    fn uci_words_as_libuci_reads_and_writes_them() {
        let w = |l: &str| uci_words(l).expect("terminated");
        // How libuci writes a ' inside a value (uci export, uci commit).
        assert_eq!(
            w("\tlist command 'grep -q '\\''up'\\'' /tmp/state'"),
            ["list", "command", "grep -q 'up' /tmp/state"]
        );
        assert_eq!(
            w("option a b'c d'\"e\\\"f\"g"),
            ["option", "a", "bc de\"fg"]
        );
        assert_eq!(w("option a x\\ y"), ["option", "a", "x y"]);
        assert_eq!(w("option a '#x' # comment"), ["option", "a", "#x"]);
        assert_eq!(w("option a b# c"), ["option", "a", "b"]);
        assert_eq!(w("option a ''"), ["option", "a", ""]);
        assert_eq!(w("  # only a comment"), Vec::<String>::new());
        for bad in [
            "option a 'b",
            "option a \"b",
            "option a b\\",
            "option a \"b\\\"",
        ] {
            assert_eq!(uci_words(bad), None, "{bad}");
        }
        assert!(parse_uci("config health\n\tlist command 'x\n").is_err());
    }

    #[test]
    fn the_shipped_config_is_valid() {
        let text = include_str!("../../../openwrt/files/etc/config/snapshot");
        let c = checks(&parse_uci(text).expect("parse")).expect("valid");
        assert_eq!((c.deadline, c.interval, c.watchdog), (600, 20, true));
    }

    /// `uci set snapshot.health.ping=10.0.0.1` writes an option, not a list: one check all
    /// the same, never a check silently dropped. A timing given as a list is an error.
    #[test]
    fn a_check_given_as_an_option_is_a_check() {
        let text = "config health 'health'\n\toption ping '10.0.0.1'\n\tlist ping 10.0.0.2\n\
                    \toption command 'exit 3'\n";
        let c = checks(&parse_uci(text).expect("parse")).expect("valid");
        assert_eq!(c.ping, ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(c.commands, ["exit 3"]);
        let bad = checks(&parse_uci("config health\n\tlist deadline 5\n").expect("parse"));
        assert!(bad.is_err_and(|e| e.contains("deadline")));
    }

    #[test]
    fn config_errors_are_named() {
        assert!(parse_uci("option x 1\n").is_err());
        assert!(parse_uci("config health\n\tbogus line here x\n").is_err());
        let bad = |t: &str| checks(&parse_uci(t).expect("parse")).unwrap_err();
        assert!(bad("config health\n\toption deadline soon\n").contains("deadline"));
        assert!(bad("config health\n\toption pingg x\n").contains("unknown option pingg"));
        assert!(bad("config health\n\tlist ping 'a;reboot'\n").contains("not a host"));
        assert_eq!(checks(&[]).expect("defaults"), Checks::default());
    }
}
