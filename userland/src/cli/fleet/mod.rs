//! The fleet client on a unit: `snapshot fleet apply|poll|status|publish` and `snapshot bundle
//! verify|fingerprint|head`; with `fleet-admin`, the build host's and admin's commands (admin.rs).
//! docs/FLEET.md describes the formats and the trust model.

#[cfg(feature = "fleet-admin")]
mod admin;
pub mod args;

#[cfg(feature = "fleet-admin")]
use admin::{channel, create, keygen, report, sign, status_mqtt, CreateArgs};

use super::error::CliError;
use super::health::HEALTH;
use super::{ops, Ctx};
use snapinit::header::{Compression, Trial};
use snapshot::fleet::bundle::{
    chain_id, check_signatures, hex, BundleError, BundleManifest, PayloadRef, API_VERSION,
    MANIFEST, MAX_MANIFEST, SIG_SUFFIX,
};
use snapshot::fleet::channel::{jitter, rollout, ChannelManifest};
use snapshot::fleet::deadline::{Deadline, MIN_RATE};
use snapshot::fleet::http::{Client, HttpError};
use snapshot::fleet::mqtt::{self, MqttError};
use snapshot::fleet::sign::{Keyring, PublicKey};
use snapshot::writer::{Outcome, Payload};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a unit keeps the keys it trusts (one file per key, named by key number).
pub const DEFAULT_KEYS: &str = "/etc/snapshot/keys.d";
/// The largest payload a unit takes by default (it is held in RAM).
pub const DEFAULT_MAX_SIZE: u64 = 16 * 1024 * 1024;

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CliError {
    let path = path.to_path_buf();
    move |source| CliError::Io { what, path, source }
}

/// The broker login of `--mqtt-user` and `--mqtt-password-file`: the password is the file's
/// first line (without its newline), so it never shows on a command line in `ps`.
pub fn read_login(user: &str, password_file: &Path) -> Result<mqtt::Login, CliError> {
    let bad = |detail: String| CliError::Config {
        path: password_file.to_path_buf(),
        detail,
    };
    let text = std::fs::read_to_string(password_file)
        .map_err(|e| bad(format!("cannot read the MQTT password: {e}")))?;
    let password = text.lines().next().unwrap_or("");
    if password.is_empty() {
        return Err(bad("the MQTT password file is empty".into()));
    }
    // MQTT strings have 16-bit lengths (the encoder asserts on a longer one).
    if password.len() > usize::from(u16::MAX) || user.len() > usize::from(u16::MAX) {
        return Err(bad(
            "the MQTT user name or password is longer than 65535 bytes".into(),
        ));
    }
    Ok(mqtt::Login {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// Reads at most `limit` bytes of `path`; a larger file is refused before it is read whole.
fn read_limited(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, CliError> {
    let f = std::fs::File::open(path).map_err(io_err("reading", path))?;
    let mut data = Vec::new();
    f.take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(io_err("reading", path))?;
    if data.len() as u64 > limit {
        return Err(BundleError::TooLarge {
            what: what.to_string(),
            size: std::fs::metadata(path)
                .map(|m| m.len())
                .unwrap_or(limit.saturating_add(1)),
            limit,
        }
        .into());
    }
    Ok(data)
}

fn write_file(path: &Path, data: &[u8]) -> Result<(), CliError> {
    std::fs::write(path, data).map_err(io_err("writing", path))
}

/// The chain id ([`chain_id`]) of the snapshots in `view`.
pub fn view_id(view: &snapinit::chain::ChainView) -> [u8; 32] {
    chain_id(
        view.snapshots
            .iter()
            .map(|b| &b.header.fields.payload_sha256),
    )
}

/// Prints the chain id of the device's chain (what `bundle create --base-hash` takes).
pub fn head(ctx: &Ctx) -> Result<(), CliError> {
    let (_lock, mut dev) = ctx.open(false)?;
    let view = ops::read_view(&mut dev);
    ops::require_chain(&mut dev, &view)?;
    println!("{}", hex(&view_id(&view)));
    Ok(())
}

fn sig_path(file: &Path) -> PathBuf {
    with_suffix(file, SIG_SUFFIX)
}

/// `file` with `suffix` appended to its last component (`a/m.json` -> `a/m.json.sig`).
fn with_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub struct Trust<'a> {
    pub keys: &'a Path,
    pub min_sigs: usize,
    pub max_size: u64,
}

/// A bundle whose signatures, manifest and payload all check out.
pub struct Checked {
    pub manifest: BundleManifest,
    pub payload: Vec<u8>,
    pub signers: Vec<String>,
}

/// Checks a bundle directory: k-of-m signatures over the manifest first (nothing unsigned is
/// parsed), then the manifest, then the payload's size (before reading it), hash and decoding.
pub fn check_bundle(dir: &Path, t: &Trust<'_>) -> Result<Checked, CliError> {
    let ring = Keyring::load(t.keys).map_err(CliError::Keyring)?;
    let mpath = dir.join(MANIFEST);
    let msg = read_limited(&mpath, MANIFEST, MAX_MANIFEST)?;
    let spath = sig_path(&mpath);
    let sig = if spath.exists() {
        let b = read_limited(&spath, "the signature file", MAX_MANIFEST)?;
        Some(String::from_utf8_lossy(&b).into_owned())
    } else {
        None
    };
    // Read up to the unit's limit, not the manifest's size: a longer file is a mismatch (20).
    check_parts(&msg, sig.as_deref(), &ring, t, |p, _| {
        read_limited(&dir.join(&p.file), &p.file, t.max_size)
    })
}

/// The checks of [`check_bundle`] on a manifest and signature already in memory; `payload`
/// fetches the payload, at most `limit` bytes.
pub fn check_parts(
    msg: &[u8],
    sig: Option<&str>,
    ring: &Keyring,
    t: &Trust<'_>,
    payload: impl FnOnce(&PayloadRef, u64) -> Result<Vec<u8>, CliError>,
) -> Result<Checked, CliError> {
    let signers = check_signatures(MANIFEST, msg, sig, ring, t.min_sigs)?;
    let manifest = BundleManifest::parse(MANIFEST, msg)?;
    let p = &manifest.spec.payload;
    if p.size > t.max_size {
        return Err(BundleError::TooLarge {
            what: format!("payload {} (as the manifest says)", p.file),
            size: p.size,
            limit: t.max_size,
        }
        .into());
    }
    let payload = payload(p, p.size)?;
    manifest.check_payload(&payload)?;
    Ok(Checked {
        manifest,
        payload,
        signers: signers.iter().map(|k| k.to_string()).collect(),
    })
}

pub fn verify(ctx: &Ctx, dir: &Path, t: &Trust<'_>, against: bool) -> Result<(), CliError> {
    let c = check_bundle(dir, t)?;
    let s = &c.manifest.spec;
    println!(
        "bundle {} ok: signed by {} ({} required); payload {} bytes, SHA-256 {}; on top of {}",
        s.version,
        c.signers.join(", "),
        t.min_sigs,
        s.payload.size,
        s.payload.sha256,
        s.base
    );
    if against {
        let (_lock, mut dev) = ctx.open(false)?;
        let head = view_id(&ops::read_view(&mut dev));
        if head != c.manifest.base() {
            return Err(BundleError::WrongBase {
                want: s.base.clone(),
                have: hex(&head),
            }
            .into());
        }
        println!("the chain's head is the bundle's base: it applies");
    }
    Ok(())
}

/// Checks a bundle, then appends it as a snapshot on trial (under the lock, after checking that
/// the chain's head is still the bundle's base). Refusals leave flash untouched.
pub fn apply(ctx: &Ctx, dir: &Path, t: &Trust<'_>, do_reboot: bool) -> Result<(), CliError> {
    let c = check_bundle(dir, t)?;
    apply_checked(ctx, &c, do_reboot)
}

fn apply_checked(ctx: &Ctx, c: &Checked, do_reboot: bool) -> Result<(), CliError> {
    let s = &c.manifest.spec;
    {
        let (_lock, mut dev) = ctx.open(true)?;
        let view = ops::read_view(&mut dev);
        ops::require_chain(&mut dev, &view)?;
        let head = view_id(&view);
        if head != c.manifest.base() {
            return Err(BundleError::WrongBase {
                want: s.base.clone(),
                have: hex(&head),
            }
            .into());
        }
        ops::require_room(&view)?;
        ops::precheck(&view, c.payload.len(), false)?;
        let payload = Payload {
            data: &c.payload,
            compression: if s.payload.compression == "gzip" {
                Compression::Gzip
            } else {
                Compression::None
            },
            unpacked_len: s.payload.unpacked_size,
        };
        let cost = ops::block_cost(&view, c.payload.len()) + ops::evacuation_cost(&view);
        let out = ops::moving(ctx, &mut dev, &view, true, |dev| {
            ops::write_op(dev, cost, "applying", |w| {
                w.trial_budget = s.trial_boots;
                w.append_snapshot(&payload)
            })
        })?;
        if let Outcome::Written { seq, offset, .. } = out {
            println!(
                "bundle {} applied as snapshot {seq} at {offset:#x}, on trial for {} boot(s) (signed by {})",
                s.version,
                s.trial_boots,
                c.signers.join(", ")
            );
        }
    }
    if do_reboot {
        ops::reboot(ctx)?;
    } else {
        println!("not rebooting (--no-reboot): reboot to run the bundle on trial");
    }
    Ok(())
}

/// Prints a public key file's key number (as `usign -F -p` does).
pub fn fingerprint(path: &Path) -> Result<(), CliError> {
    let text = std::fs::read_to_string(path).map_err(io_err("reading", path))?;
    let k = PublicKey::parse(&text).map_err(|err| CliError::Key {
        path: path.to_path_buf(),
        err,
    })?;
    println!("{}", k.num);
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub struct PollArgs<'a> {
    pub mirrors: &'a [String],
    pub channel: &'a str,
    pub state: &'a Path,
    pub unit: &'a str,
    pub now: Option<u64>,
    pub retries: u32,
    pub backoff: Duration,
    pub timeout: Duration,
    /// `--https-fetch`, split into words (empty: uclient-fetch).
    pub https_fetch: Vec<String>,
    /// Try the mirrors in the order given instead of a random one.
    pub in_order: bool,
}

/// The mirrors in random order (Fisher-Yates over getrandom bytes).
fn shuffled(mirrors: &[String]) -> Vec<String> {
    let mut v: Vec<String> = mirrors
        .iter()
        .map(|m| m.trim_end_matches('/').to_string())
        .collect();
    let mut r = vec![0u8; v.len() * 4];
    if rustix::rand::getrandom(&mut r, rustix::rand::GetRandomFlags::INSECURE).is_err() {
        let t = unix_now().to_le_bytes();
        for (i, b) in r.iter_mut().enumerate() {
            *b = t[i % 8] ^ (i as u8);
        }
    }
    for i in (1..v.len()).rev() {
        let x = u32::from_le_bytes([r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]]);
        v.swap(i, x as usize % (i + 1));
    }
    v
}

/// The longest wait between two rounds of retries (a `--backoff-ms` past it too: doubled, an
/// operator's huge value would overflow).
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Tries `f` on each mirror in turn, for `retries + 1` rounds with exponential backoff, until
/// one gives a result. Network errors are retried; a refusal (signatures, format, staleness) is
/// kept and the next mirror tried, but does not make rounds go on: a mirror that answers with
/// junk will answer with the same junk again.
fn over_mirrors<T>(
    a: &PollArgs<'_>,
    mirrors: &[String],
    what: &str,
    mut f: impl FnMut(&str) -> Result<T, CliError>,
) -> Result<(T, String), CliError> {
    let mut tries = 0;
    let mut wait = a.backoff.min(MAX_BACKOFF);
    loop {
        tries += 1;
        // Every mirror failed: the last refusal (some mirror served something refused) wins
        // over the last network error.
        let mut refusal = None;
        let mut net = String::new();
        for m in mirrors {
            match f(m) {
                Ok(t) => return Ok((t, m.clone())),
                Err(CliError::Http(e)) if !matches!(e, HttpError::TooLarge { .. }) => {
                    eprintln!("snapshot: fleet: {what}: {e}");
                    net = e.to_string();
                }
                Err(e) => {
                    eprintln!("snapshot: fleet: {what} from {m}: refused: {e}");
                    refusal = Some(e);
                }
            }
        }
        if let Some(e) = refusal {
            return Err(e);
        }
        if tries > a.retries {
            return Err(CliError::NoMirror { tries, last: net });
        }
        eprintln!(
            "snapshot: fleet: no mirror answered ({what}); retrying in {} ms",
            wait.as_millis()
        );
        std::thread::sleep(wait);
        wait = wait.saturating_mul(2).min(MAX_BACKOFF);
    }
}

fn fetch_signed(
    client: &Client,
    url: &str,
    ring: &Keyring,
    need: usize,
    what: &str,
) -> Result<(Vec<u8>, Option<String>), CliError> {
    let mut msg = Vec::new();
    client.get(url, 0, MAX_MANIFEST, &mut msg)?;
    let mut sig = Vec::new();
    let sig = match client.get(&format!("{url}{SIG_SUFFIX}"), 0, MAX_MANIFEST, &mut sig) {
        Ok(()) => Some(String::from_utf8_lossy(&sig).into_owned()),
        Err(HttpError::Status { status: 404, .. }) => None,
        Err(e) => return Err(e.into()),
    };
    check_signatures(what, &msg, sig.as_deref(), ring, need)?;
    Ok((msg, sig))
}

/// One poll: channel manifest, rollout decision, bundle, trial write; records how it ended in
/// `<state>/poll.json`, publishes the status when a broker is given (a failure to is logged:
/// exit 26 unless the poll itself failed or wrote), then reboots into a written bundle.
pub fn poll(
    ctx: &Ctx,
    a: &PollArgs<'_>,
    t: &Trust<'_>,
    do_reboot: bool,
    mqtt: Option<&MqttArgs<'_>>,
) -> Result<(), CliError> {
    let r = poll_once(ctx, a, t);
    let (result, detail) = match &r {
        Ok(Polled::Written(w)) if w.again => (
            "taken".to_string(),
            format!(
                "bundle {} on trial, not booted yet: its reboot is due",
                w.version
            ),
        ),
        Ok(Polled::Written(w)) => (
            "taken".to_string(),
            format!("bundle {} written on trial", w.version),
        ),
        Ok(Polled::Nothing(why)) => ("nothing".to_string(), why.clone()),
        Err(e) => (format!("exit {}", e.exit_code()), e.to_string()),
    };
    let _ = std::fs::create_dir_all(a.state).and_then(|()| {
        std::fs::write(
            a.state.join(POLL),
            serde_json::json!({
                "time": a.now.unwrap_or_else(unix_now),
                "result": result,
                "detail": detail,
            })
            .to_string(),
        )
    });
    let published = match mqtt {
        Some(m) => publish(ctx, a.state, a.unit, a.channel, m).map_err(|e| {
            eprintln!("snapshot: fleet: status not published: {e}");
            e
        }),
        None => Ok(()),
    };
    match r? {
        Polled::Written(w) if do_reboot => {
            note_reboot_due(ctx, a.state, &w);
            ops::reboot(ctx)
        }
        Polled::Written(_) => Ok(()),
        Polled::Nothing(_) => published,
    }
}

/// `<state>/reboot-due.json`: the bundle a poll wrote and rebooted for, with the boot it was
/// written in (`{bootId, payloadSha256, version}`). A reboot that failed (the command missing
/// or refused) left it on flash unbooted: the next poll of the same boot reboots again rather
/// than wait, on trial, for whatever reboot comes next.
const REBOOT_DUE: &str = "reboot-due.json";

/// This boot's id (a fresh UUID at every boot); `None` where the kernel gives none.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Best effort: unrecorded, a failed reboot waits for the next one, as before. Not for an
/// image file: `reboot` reboots nothing for it, so no reboot is due (noted, every later poll
/// of this boot would take the bundle on it for one whose reboot failed).
fn note_reboot_due(ctx: &Ctx, state: &Path, w: &Written) {
    if ops::image_file(ctx).is_some() {
        return;
    }
    let Some(boot) = boot_id() else { return };
    let doc = serde_json::json!({
        "bootId": boot,
        "payloadSha256": w.payload_sha256,
        "version": w.version,
    });
    let _ = write_file(&state.join(REBOOT_DUE), doc.to_string().as_bytes());
}

/// The version of the bundle an earlier poll of this boot wrote and rebooted for, when it is
/// the unbooted block on trial `unbooted` (its payload's SHA-256): its reboot did not happen.
/// Only in the boot that wrote it: a boot that ran without spending its trial (failsafe, a
/// chain PID 1 could not read) must not be rebooted at every poll.
fn reboot_missed(state: &Path, unbooted: Option<&str>) -> Option<String> {
    let unbooted = unbooted?;
    let due = read_json(&state.join(REBOOT_DUE))?;
    let boot = boot_id()?;
    (due["bootId"] == boot.as_str() && due["payloadSha256"] == unbooted)
        .then(|| due["version"].as_str().map(str::to_string))
        .flatten()
}

/// How a poll that did not fail ended.
enum Polled {
    /// A bundle is on trial, unbooted: written now, or by an earlier poll whose reboot failed.
    Written(Written),
    /// Nothing to take (up to date, waiting for the rollout, rolled back before): why.
    Nothing(String),
}

struct Written {
    version: String,
    payload_sha256: String,
    /// Written by an earlier poll of this boot, whose reboot did not happen.
    again: bool,
}

/// A bundle that rolled back on this unit (record `r`) is not taken again: says why.
fn not_again(version: &str, r: &serde_json::Value) -> Polled {
    let why = format!(
        "not taking bundle {version} again: it rolled back on this unit ({}: {})",
        r["reason"].as_str().unwrap_or("?"),
        r["detail"].as_str().unwrap_or("")
    );
    println!("{why}");
    Polled::Nothing(why)
}

fn poll_once(ctx: &Ctx, a: &PollArgs<'_>, t: &Trust<'_>) -> Result<Polled, CliError> {
    let ring = Keyring::load(t.keys).map_err(CliError::Keyring)?;
    let client = Client {
        timeout: a.timeout,
        https_fetch: a.https_fetch.clone(),
    };
    let mirrors = if a.in_order {
        a.mirrors
            .iter()
            .map(|m| m.trim_end_matches('/').to_string())
            .collect()
    } else {
        shuffled(a.mirrors)
    };
    std::fs::create_dir_all(a.state).map_err(io_err("creating", a.state))?;
    let (id, rolled, top, on_trial, unbooted) = {
        let (_lock, mut dev) = ctx.open(false)?;
        let view = ops::read_view(&mut dev);
        let trial = view
            .snapshots
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("snapshot {}", i + 1), b))
            .chain(view.volatile().map(|b| ("the volatile".to_string(), b)))
            .find(|(_, b)| matches!(b.header.trial(), Trial::OnTrial { .. }));
        let unbooted = trial
            .as_ref()
            .filter(|(_, b)| matches!(b.header.trial(), Trial::OnTrial { used: 0, .. }))
            .map(|(_, b)| hex(&b.header.fields.payload_sha256));
        let on_trial = trial.map(|(name, _)| name);
        // The chain below the top snapshot and the top's payload: which bundle it may be.
        let top = view.snapshots.split_last().map(|(last, below)| {
            (
                hex(&chain_id(
                    below.iter().map(|b| &b.header.fields.payload_sha256),
                )),
                hex(&last.header.fields.payload_sha256),
            )
        });
        (
            hex(&view_id(&view)),
            rollbacks(&mut dev, &view, a.state),
            top,
            on_trial,
            unbooted,
        )
    };
    // Before the network: the bundle is on flash and verified, only the reboot is missing.
    if let Some(version) = reboot_missed(a.state, unbooted.as_deref()) {
        println!(
            "bundle {version} is on trial but has not booted: the reboot after it was written did not happen"
        );
        return Ok(Polled::Written(Written {
            version,
            payload_sha256: unbooted.unwrap_or_default(),
            again: true,
        }));
    }
    let seen_path = a.state.join(format!("{}.published", a.channel));
    let seen: u64 = std::fs::read_to_string(&seen_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let cname = format!("{}.json", a.channel);
    let (chan, mirror) = over_mirrors(a, &mirrors, &cname, |m| {
        let (msg, _) = fetch_signed(&client, &format!("{m}/{cname}"), &ring, t.min_sigs, &cname)?;
        let c = ChannelManifest::parse(&cname, &msg)?;
        if c.spec.channel != a.channel {
            return Err(BundleError::BadManifest {
                what: cname.clone(),
                detail: format!("it is channel {:?}, not {:?}", c.spec.channel, a.channel),
            }
            .into());
        }
        let now = a.now.unwrap_or_else(unix_now);
        if let Some(expires) = c.spec.expires.filter(|x| now >= *x) {
            return Err(BundleError::Expired {
                what: cname.clone(),
                expires,
                now,
            }
            .into());
        }
        if c.spec.published < seen {
            return Err(BundleError::Stale {
                what: cname.clone(),
                published: c.spec.published,
                seen,
            }
            .into());
        }
        Ok(c)
    })?;
    write_file(&seen_path, format!("{}\n", chan.spec.published).as_bytes())?;
    let vpath = a.state.join(VERSION);
    if let (false, Some((below, top_sha))) = (vpath.exists(), &top) {
        // The version this unit runs is kept in RAM only: after a reboot it is learnt again
        // from the signed manifest of the bundle whose payload is the chain's top snapshot.
        if let Some(e) = chan.entry_for(below) {
            // One try at the mirror that served the channel: the version is only reported.
            let mname = format!("{}/{MANIFEST}", e.path);
            let url = format!("{mirror}/{mname}");
            let bm = fetch_signed(&client, &url, &ring, t.min_sigs, &mname)
                .ok()
                .and_then(|(msg, _)| BundleManifest::parse(&mname, &msg).ok());
            if let Some(bm) =
                bm.filter(|m| m.spec.payload.sha256 == *top_sha && m.spec.base == *below)
            {
                write_file(&vpath, format!("{}\n", bm.spec.version).as_bytes())?;
            }
        }
    }
    let Some(entry) = chan.entry_for(&id) else {
        let why = format!(
            "up to date: channel {} ({mirror}) has no bundle for chain {id}",
            a.channel
        );
        println!("{why}");
        return Ok(Polled::Nothing(why));
    };
    // A bundle that rolled back here is not taken again (the unit would loop through its
    // trial boots): a fixed bundle comes with a new version.
    if let Some(r) = rolled
        .iter()
        .find(|r| r["version"] == entry.version.as_str())
    {
        return Ok(not_again(&entry.version, r));
    }
    // A boot on trial is decided first (`snapshot health`): a bundle written and booted now
    // would spend that trial's boot, and a good bundle would roll back unconfirmed.
    if let Some(name) = on_trial {
        let why = format!(
            "waiting: {name} is on trial (`snapshot health` or `snapshot confirm` decides it before bundle {})",
            entry.version
        );
        println!("{why}");
        return Ok(Polled::Nothing(why));
    }
    let now = a.now.unwrap_or_else(unix_now);
    // In i128: `as i64` would take a `published` past i64 (a signer's slip) for a time long
    // gone, and roll the bundle out to every unit at once.
    let age = i128::from(now) - i128::from(chan.spec.published);
    let age = i64::try_from(age).unwrap_or(if age < 0 { i64::MIN } else { i64::MAX });
    let p = rollout(age, chan.spec.priority);
    let u = jitter(a.unit, &entry.version);
    if p <= u {
        let why = format!(
            "waiting: bundle {} rolls out over {} day(s); {p:.4} of units may take it now, unit {} at {u:.4}",
            entry.version, chan.spec.priority, a.unit
        );
        println!("{why}");
        return Ok(Polled::Nothing(why));
    }
    println!(
        "taking bundle {} ({:.4} of units may take it now, unit {} at {u:.4})",
        entry.version, p, a.unit
    );
    // The mirror that served the channel first, then the others.
    let mut order = vec![mirror.clone()];
    order.extend(mirrors.iter().filter(|m| **m != mirror).cloned());
    let mname = format!("{}/{MANIFEST}", entry.path);
    // Only the bundle the channel entry names: a mirror (or anyone on the path) answering with
    // another signed manifest, one whose payload rolled back here, would get that rollback
    // named after this entry's version below, and every later poll, from any mirror, would
    // skip the entry's bundle as rolled back. Refused (23), and the next mirror tried.
    let ((msg, sig, bm), _) = over_mirrors(a, &order, &mname, |m| {
        let (msg, sig) = fetch_signed(&client, &format!("{m}/{mname}"), &ring, t.min_sigs, &mname)?;
        let bm = BundleManifest::parse(&mname, &msg)?;
        if bm.spec.base != entry.base || bm.spec.version != entry.version {
            return Err(BundleError::BadManifest {
                what: mname.clone(),
                detail: format!(
                    "it is {} on top of {}, the channel says {} on top of {}",
                    bm.spec.version, bm.spec.base, entry.version, entry.base
                ),
            }
            .into());
        }
        Ok((msg, sig, bm))
    })?;
    // The same payload rolled back here before, even when the record lost its version (the
    // state directory is RAM: after a reboot the rollback is found on flash, by its payload).
    if let Some(r) = rolled
        .iter()
        .find(|r| r["payloadSha256"] == bm.spec.payload.sha256.as_str())
    {
        name_rollback(a.state, &bm.spec.payload.sha256, &entry.version);
        return Ok(not_again(&entry.version, r));
    }
    let checked = check_parts(&msg, sig.as_deref(), &ring, t, |pref, size| {
        if pref.size > t.max_size {
            return Err(BundleError::TooLarge {
                what: pref.file.clone(),
                size: pref.size,
                limit: t.max_size,
            }
            .into());
        }
        let pname = format!("{}/{}", entry.path, pref.file);
        let (buf, resumed) = download(a, &client, &order, &pname, size, None)?;
        // One bad copy spoils the whole: resumed across mirrors, a mirror that answered 200
        // with something shorter (an error page, a partial upload that is not a prefix) and a
        // good one that resumed after it; or the first mirror's copy itself damaged (a broken
        // disk, a truncated upload padded). Fetched again, each mirror's copy whole and checked
        // on its own, so a good mirror still brings it.
        if hex(&snapshot::writer::sha256(&buf)) != pref.sha256 {
            let how = if resumed {
                "resumed across mirrors"
            } else {
                "as fetched"
            };
            eprintln!(
                "snapshot: fleet: {pname} {how} does not match its SHA-256: fetching it again whole from each mirror"
            );
            return Ok(download(a, &client, &order, &pname, size, Some(&pref.sha256))?.0);
        }
        Ok(buf)
    });
    // Parsed from the very bytes checked against the channel entry above.
    let checked = checked?;
    // Recorded before the reboot: the version this unit now runs on trial, and the one below
    // it (back in force if it rolls back).
    let before = std::fs::read_to_string(&vpath).ok();
    apply_checked(ctx, &checked, false)?;
    // The bundle is on flash: from here nothing may stop the reboot that boots it (a full
    // state directory costs the versions in the report, not the update).
    let bpath = a.state.join(VERSION_BEFORE);
    let kept = match before {
        Some(v) => write_file(&bpath, v.as_bytes()),
        None => {
            let _ = std::fs::remove_file(&bpath);
            Ok(())
        }
    }
    .and_then(|()| {
        write_file(
            &vpath,
            format!("{}\n", checked.manifest.spec.version).as_bytes(),
        )
    });
    if let Err(e) = kept {
        eprintln!("snapshot: fleet: the bundle is written, but its version is not recorded: {e}");
    }
    Ok(Polled::Written(Written {
        version: checked.manifest.spec.version,
        payload_sha256: checked.manifest.spec.payload.sha256.clone(),
        again: false,
    }))
}

/// Downloads `pname` (`size` bytes) from the mirrors in `order` into RAM. Resumed across errors
/// and mirrors, each attempt asking for the bytes still missing; with `whole` (the payload's
/// SHA-256), every attempt from byte 0 and each mirror's copy checked against it. Also says
/// whether any bytes came from a resumed request.
fn download(
    a: &PollArgs<'_>,
    client: &Client,
    order: &[String],
    pname: &str,
    size: u64,
    whole: Option<&str>,
) -> Result<(Vec<u8>, bool), CliError> {
    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut resumed = false;
    // Nothing of a download outlives the poll, so a pass over the mirrors that brought
    // bytes is not a failed one: another pass resumes where it stopped (also with
    // `--retries 0`, as the OpenWrt service polls), or a link that drops more often than
    // the payload takes would never bring it. As long as the download as a whole keeps
    // the floor rate after the first timeout (deadline.rs): a mirror cannot hold the unit
    // longer by cutting its connections than by trickling one.
    let overall = Deadline::paced(a.timeout, MIN_RATE);
    loop {
        let before = buf.len();
        let pass = over_mirrors(a, order, pname, |m| {
            if whole.is_some() {
                buf.clear();
            }
            let from = buf.len() as u64;
            resumed |= from > 0;
            let r = client.get(&format!("{m}/{pname}"), from, size, &mut buf);
            if from > 0 {
                eprintln!(
                    "snapshot: fleet: resumed {pname} at byte {from} from {m}: now {} of {size}",
                    buf.len()
                );
            }
            match r {
                Err(e @ HttpError::TooLarge { .. }) => return Err(e.into()),
                // A failure after the last byte (a server that does not close) loses
                // nothing: asking again from the end would only be answered 416.
                Err(e) if (buf.len() as u64) < size => return Err(e.into()),
                _ => {}
            }
            if (buf.len() as u64) < size {
                // The mirror's copy ended early (a cut transfer, a partial upload): the
                // next mirror resumes where it stopped.
                return Err(HttpError::Short {
                    url: format!("{m}/{pname}"),
                    got: buf.len() as u64,
                    want: size,
                }
                .into());
            }
            // Whole copies are each checked: a damaged one is this mirror's refusal, and the
            // next mirror is tried.
            if let Some(sha) = whole {
                let got = hex(&snapshot::writer::sha256(&buf));
                if got != sha {
                    return Err(BundleError::Mismatch {
                        file: format!("{m}/{pname}"),
                        detail: format!("SHA-256 {got}, the manifest says {sha}"),
                    }
                    .into());
                }
            }
            Ok(())
        });
        match pass {
            Ok(_) => break,
            Err(CliError::NoMirror { .. })
                if whole.is_none()
                    && buf.len() > before
                    && overall.next_read(buf.len() as u64, a.timeout).is_ok() =>
            {
                eprintln!(
                    "snapshot: fleet: {pname}: {} of {size} bytes so far; resuming",
                    buf.len()
                );
            }
            Err(e) => return Err(e),
        }
    }
    Ok((buf, resumed))
}

/// The rollback the chain shows: the block right above the last snapshot whose trial boots
/// ran out unconfirmed (the boot left it out; the next write erases it). Its header, when it
/// still reads.
fn rolled_back_block(
    dev: &mut super::device::Device,
    view: &snapinit::chain::ChainView,
) -> Option<(u32, snapinit::header::Header)> {
    use snapinit::chain::{End, Reject};
    let r = match view.end {
        End::Rejected(r) if r.reason == Reject::TrialExhausted => r,
        _ => view
            .rejected_volatiles
            .iter()
            .find(|r| r.reason == Reject::TrialExhausted)
            .copied()?,
    };
    match snapinit::chain::read_header(dev, r.offset) {
        Ok(Ok(h)) => Some((r.offset, h)),
        _ => None,
    }
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    let bytes = read_limited(path, "a state file", MAX_MANIFEST).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Payload SHA-256s of bundles that rolled back on this unit (`<state>/rolled-back.json`, a
/// list of `{payloadSha256, version, reason, detail, time}`): `fleet poll` does not take them
/// again.
const ROLLED_BACK: &str = "rolled-back.json";
/// `<state>/version`: the bundle version `fleet poll` last wrote; `version.before`: the one
/// it replaced (put back when the new one rolls back).
const VERSION: &str = "version";
const VERSION_BEFORE: &str = "version.before";

/// Gives the version to the recorded rollback of payload `sha` when it has none (it was found
/// on flash after a reboot emptied the state directory); best effort.
fn name_rollback(state: &Path, sha: &str, version: &str) {
    let path = state.join(ROLLED_BACK);
    let Some(mut rolled) = read_json(&path).and_then(|v| v.as_array().cloned()) else {
        return;
    };
    let mut changed = false;
    for r in rolled.iter_mut() {
        if r["payloadSha256"] == sha && r["version"].is_null() {
            r["version"] = version.into();
            changed = true;
        }
    }
    if changed {
        if let Ok(bytes) = serde_json::to_vec(&rolled) {
            let _ = std::fs::write(path, bytes);
        }
    }
}

/// A health verdict's failures (`failed` of health.json), in one line.
fn failures(verdict: &serde_json::Value) -> String {
    verdict["failed"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

/// The most `rolled-back.json` keeps: 32 records and half the size it is read back with. By
/// count alone, records with long details (a failed check's command line, verbatim) could pass
/// that size, and a file read back as too large is no record at all: every bundle that rolled
/// back here would be taken again. The oldest go first; the newest is kept whatever its size.
fn keep_newest(rolled: &mut Vec<serde_json::Value>) {
    const RECORDS: usize = 32;
    let excess = rolled.len().saturating_sub(RECORDS);
    rolled.drain(..excess);
    let limit = usize::try_from(MAX_MANIFEST / 2).unwrap_or(usize::MAX);
    while rolled.len() > 1 && serde_json::to_vec(rolled).map_or(0, |v| v.len()) > limit {
        rolled.remove(0);
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn clip(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max.saturating_sub(3);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// The rollbacks this unit has seen, oldest first (`<state>/rolled-back.json`), with the one the
/// chain shows now added (and the recorded version put back to the one below it).
fn rollbacks(
    dev: &mut super::device::Device,
    view: &snapinit::chain::ChainView,
    state: &Path,
) -> Vec<serde_json::Value> {
    use snapinit::header::Trial;
    let read = |name: &str| {
        std::fs::read_to_string(state.join(name))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let last_health = read_json(&state.join(HEALTH));
    let mut rolled: Vec<serde_json::Value> = read_json(&state.join(ROLLED_BACK))
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    if let Some((offset, h)) = rolled_back_block(dev, view) {
        let sha = hex(&h.fields.payload_sha256);
        if !rolled.iter().any(|r| r["payloadSha256"] == sha.as_str()) {
            // Why: the health check's last verdict on that very block, when it failed; else
            // the kinds of check its failed-check marks name (the verdict's words went with
            // the reboot); else the boots ran out without any verdict (a hang, a unit that
            // never reached the check).
            let hh = hex(&h.hash);
            let failed = last_health
                .as_ref()
                .filter(|l| l["headerHash"] == hh.as_str() && l["ok"] == false);
            let marked = super::health::CheckKind::named(h.marks.failed);
            let (reason, detail) = match failed {
                None if !marked.is_empty() => (
                    "healthCheckFailed",
                    format!(
                        "failed on a trial boot: {} (from the block's marks on flash)",
                        marked.join(", ")
                    ),
                ),
                Some(l) => ("healthCheckFailed", failures(l)),
                None => (
                    "trialExhausted",
                    format!(
                        "{} trial boot(s) spent without a confirmation",
                        match h.trial() {
                            Trial::Exhausted { budget } => budget,
                            _ => 0,
                        }
                    ),
                ),
            };
            rolled.push(serde_json::json!({
                "snapshot": h.fields.seq,
                "offset": offset,
                "headerHash": hh,
                "payloadSha256": sha,
                "version": read("version"),
                "reason": reason,
                "detail": clip(detail, 4096),
                "time": unix_now(),
            }));
            keep_newest(&mut rolled);
            // Best effort: a read-only state directory still gets the document.
            if std::fs::create_dir_all(state).is_ok() {
                let _ = std::fs::write(
                    state.join(ROLLED_BACK),
                    serde_json::to_vec(&rolled).unwrap_or_default(),
                );
                // The unit runs the version below the rolled-back one again.
                let _ = match read(VERSION_BEFORE) {
                    Some(v) => std::fs::write(state.join(VERSION), format!("{v}\n")),
                    None => std::fs::remove_file(state.join(VERSION)),
                };
            }
        }
    }
    rolled
}

/// The unit's observed state as one versioned document (kind UnitStatus, docs/FLEET.md):
/// what `fleet status --json` prints and `fleet publish` sends. Records a rollback the chain
/// shows in the state directory, so it is still reported after the next write erases it.
pub fn unit_doc(
    ctx: &Ctx,
    state: &Path,
    unit: &str,
    channel: &str,
) -> Result<serde_json::Value, CliError> {
    use snapinit::header::Trial;
    let (_lock, mut dev) = ctx.open(false)?;
    let view = ops::read_view(&mut dev);
    let mut on_trial = false;
    let snaps: Vec<serde_json::Value> = view
        .snapshots
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let (trial, used, budget) = match b.header.trial() {
                // Written on trial and confirmed since: the boots it took stay on flash.
                Trial::Confirmed => (
                    "confirmed",
                    b.header.marks.trials_used,
                    b.header.fields.trial_budget,
                ),
                Trial::OnTrial { used, budget } => {
                    on_trial = true;
                    ("onTrial", used, budget)
                }
                Trial::Exhausted { budget } => ("exhausted", budget.min(255) as u8, budget),
            };
            serde_json::json!({
                "seq": i + 1,
                "headerHash": hex(&b.header.hash),
                "payloadSha256": hex(&b.header.fields.payload_sha256),
                "payloadSize": b.header.fields.payload_len,
                "created": b.header.fields.created,
                "trial": trial,
                "trialsUsed": used,
                "trialBudget": budget,
            })
        })
        .collect();
    // A volatile saved on trial is a trial too (`snapshot health` judges it, `fleet poll`
    // waits for it), though it is no snapshot.
    on_trial |= view
        .volatile()
        .into_iter()
        .any(|b| matches!(b.header.trial(), Trial::OnTrial { .. }));
    let read = |name: &str| {
        std::fs::read_to_string(state.join(name))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let last_health = read_json(&state.join(HEALTH)).or_else(|| confirmed_on_flash(&view));
    let rolled = rollbacks(&mut dev, &view, state);
    // A unit running less than its chain (a snapshot that no longer fits in RAM, a volatile
    // refused, failsafe) still answers and polls: the fleet view must show it degraded.
    let boot = ctx.spec.resolve().ok().and_then(|device| {
        super::record::booted(ctx.boot_record(), &device).map(|b| {
            serde_json::json!({
                "notRun": b.not_run.map(|n| n.word()),
                "chainMoved": b.moved,
            })
        })
    });
    Ok(serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "UnitStatus",
        "status": {
            "unit": unit,
            "channel": channel,
            "version": read("version"),
            "channelPublished": read(&format!("{channel}.published")).and_then(|s| s.parse::<u64>().ok()),
            "chainId": hex(&view_id(&view)),
            "snapshots": snaps,
            "onTrial": on_trial,
            "lastHealth": last_health,
            "lastPoll": read_json(&state.join(POLL)),
            "lastRollback": rolled.last(),
            "boot": boot,
            "reported": unix_now(),
        }
    }))
}

/// The last verdict the chain itself shows, for when `<state>/health.json` is gone (it is RAM:
/// every reboot empties it): the newest snapshot written on trial and confirmed since passed
/// its health check (or was confirmed by hand). A failed verdict leaves no mark on flash of its
/// own: it shows as the rollback that follows.
fn confirmed_on_flash(view: &snapinit::chain::ChainView) -> Option<serde_json::Value> {
    let b = view
        .snapshots
        .iter()
        .rev()
        .find(|b| b.header.fields.trial_budget > 0 && b.header.marks.confirmed)?;
    Some(serde_json::json!({
        "time": null,
        "ok": true,
        "failed": [],
        "snapshot": b.header.fields.seq,
        "headerHash": hex(&b.header.hash),
        "source": "flash",
    }))
}

/// `<state>/health.json`: `snapshot health`'s last verdict on a boot on trial.
/// `<state>/poll.json`: how the last `fleet poll` ended.
pub const POLL: &str = "poll.json";

/// `fleet status`: this unit's status document (`--json`) or a summary of it.
pub fn status(
    ctx: &Ctx,
    state: &Path,
    unit: &str,
    channel: &str,
    json: bool,
) -> Result<(), CliError> {
    let doc = unit_doc(ctx, state, unit, channel)?;
    if json {
        println!("{doc}");
        return Ok(());
    }
    let st = &doc["status"];
    println!(
        "unit {unit}: chain {} ({} snapshot(s)){}, channel {channel}, version {}",
        st["chainId"].as_str().unwrap_or("?"),
        st["snapshots"].as_array().map_or(0, Vec::len),
        if st["onTrial"] == true {
            ", on trial"
        } else {
            ""
        },
        st["version"].as_str().unwrap_or("-")
    );
    if let Some(word) = st["boot"]["notRun"].as_str() {
        println!(
            "this boot does not run the whole chain: {word} (`dmesg | grep snapinit` says why)"
        );
    }
    if let Some(r) = st["lastRollback"].as_object() {
        println!(
            "rolled back: snapshot {} ({}): {}",
            r["snapshot"],
            r["reason"].as_str().unwrap_or("?"),
            r["detail"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Where and how `fleet publish` (and `fleet poll --mqtt`) reach the broker.
pub struct MqttArgs<'a> {
    pub broker: &'a str,
    pub login: Option<&'a mqtt::Login>,
    pub prefix: &'a str,
    pub timeout: Duration,
    pub retries: u32,
    pub backoff: Duration,
}

/// Publishes this unit's status document, retained, under `<prefix>/<unit>/state`; retries with
/// backoff, then fails with exit 26 (the unit keeps working: the next poll publishes again).
pub fn publish(
    ctx: &Ctx,
    state: &Path,
    unit: &str,
    channel: &str,
    m: &MqttArgs<'_>,
) -> Result<(), CliError> {
    let topic = mqtt::state_topic(m.prefix, unit)?;
    let doc = unit_doc(ctx, state, unit, channel)?;
    let payload = doc.to_string();
    // The health check's last verdict also goes under a topic of its own, retained: the unit
    // keeps it in RAM only, and a failed check reboots the unit, but the broker still has it
    // when the trial rolls back, so the fleet view can tell why.
    let verdict = read_json(&state.join(HEALTH)).map(|v| v.to_string());
    let htopic = mqtt::health_topic(m.prefix, unit)?;
    with_broker(m, "publishing", |m| {
        let mut s =
            mqtt::Session::connect(m.broker, &format!("snapinit-{unit}"), m.login, m.timeout)?;
        s.publish_retained(&topic, payload.as_bytes())?;
        if let Some(v) = &verdict {
            s.publish_retained(&htopic, v.as_bytes())?;
        }
        s.disconnect();
        Ok(())
    })?;
    println!(
        "published the status of unit {unit} to {} as {topic} (retained, {} bytes)",
        m.broker,
        payload.len()
    );
    Ok(())
}

/// Runs one exchange with the broker; retries with doubling backoff (up to 5 minutes between
/// tries) while the broker cannot be reached, then fails with exit 26. A bad address or topic
/// fails at once: retrying cannot mend it.
fn with_broker<T>(
    m: &MqttArgs<'_>,
    what: &str,
    mut exchange: impl FnMut(&MqttArgs<'_>) -> Result<T, MqttError>,
) -> Result<T, CliError> {
    let mut wait = m.backoff.min(MAX_BACKOFF);
    let mut tries = 0;
    loop {
        tries += 1;
        match exchange(m) {
            Ok(v) => return Ok(v),
            Err(e @ (MqttError::BadAddress(_) | MqttError::BadTopic { .. })) => {
                return Err(e.into())
            }
            Err(e) if tries > m.retries => {
                return Err(CliError::NoBroker {
                    tries,
                    last: e.to_string(),
                })
            }
            Err(e) => {
                eprintln!(
                    "snapshot: fleet: {what}: {e}; retrying in {} ms",
                    wait.as_millis()
                );
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records with long details are dropped oldest first until the file is read back whole
    /// (it once kept 32 by count alone and could grow past what is read back: no record at
    /// all, and every bundle that rolled back taken again).
    #[test]
    fn the_rollback_record_stays_readable() {
        let long = "x".repeat(4000);
        let mut rolled: Vec<serde_json::Value> = (0..32)
            .map(|i| serde_json::json!({"payloadSha256": format!("{i:064x}"), "detail": clip(long.repeat(2), 4096)}))
            .collect();
        keep_newest(&mut rolled);
        let bytes = serde_json::to_vec(&rolled).expect("json");
        assert!(bytes.len() as u64 <= MAX_MANIFEST / 2, "{}", bytes.len());
        assert!(rolled.len() >= 7, "{}", rolled.len());
        assert_eq!(
            rolled.last().expect("newest")["payloadSha256"],
            format!("{:064x}", 31)
        );
        // A short list is left alone, and 40 records keep the newest 32.
        let mut few: Vec<serde_json::Value> =
            (0..40).map(|i| serde_json::json!({"n": i})).collect();
        keep_newest(&mut few);
        assert_eq!(few.len(), 32);
        assert_eq!(few[0]["n"], 8);
        assert_eq!(clip("aé".repeat(10), 8), "aéa...");
        assert_eq!(clip("short".into(), 8), "short");
    }
}
