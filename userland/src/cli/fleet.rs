//! `snapshot bundle create|sign|verify|keygen` (build host) and `snapshot fleet apply` (unit).
//! docs/FLEET.md describes the formats and the trust model.

use super::error::CliError;
use super::{ops, tree, Ctx};
use snapinit::header::Compression;
use snapshot::fleet::bundle::{
    chain_id, check_signatures, hex, sha256_hex, unhex32, BundleError, BundleManifest, BundleSpec,
    PayloadRef, API_VERSION, KIND_BUNDLE, MANIFEST, MAX_MANIFEST, SIG_SUFFIX,
};
use snapshot::fleet::sign::{Keyring, PublicKey, SecretKey};
use snapshot::writer::{Outcome, Payload};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Where a unit keeps the keys it trusts (one file per key, named by key number).
pub const DEFAULT_KEYS: &str = "/etc/snapshot/keys.d";
/// The largest payload a unit takes by default (it is held in RAM).
pub const DEFAULT_MAX_SIZE: u64 = 16 * 1024 * 1024;

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CliError {
    let path = path.to_path_buf();
    move |source| CliError::Io { what, path, source }
}

/// Reads at most `limit` bytes of `path`; a larger file is refused before it is read whole.
fn read_limited(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, CliError> {
    let f = std::fs::File::open(path).map_err(io_err("reading", path))?;
    let mut data = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut data)
        .map_err(io_err("reading", path))?;
    if data.len() as u64 > limit {
        return Err(BundleError::TooLarge {
            what: what.to_string(),
            size: std::fs::metadata(path)
                .map(|m| m.len())
                .unwrap_or(limit + 1),
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
    println!("{}", hex(&view_id(&view)));
    Ok(())
}

/// The base's chain id: `--base-hash HEX`, or the top snapshot of the chain in `--base IMAGE`.
fn base_hash(ctx: &Ctx, image: Option<&Path>, hash: Option<&str>) -> Result<[u8; 32], CliError> {
    match (image, hash) {
        (_, Some(h)) => unhex32(&h.to_ascii_lowercase()).ok_or_else(|| CliError::BadHash(h.into())),
        (Some(img), None) => {
            let c = Ctx {
                spec: super::device::DeviceSpec {
                    device: Some(img.to_path_buf()),
                    partition: ctx.spec.partition.clone(),
                    erase_size: ctx.spec.erase_size,
                },
                wait: ctx.wait,
                trial: 0,
            };
            let (_lock, mut dev) = c.open(false)?;
            Ok(view_id(&ops::read_view(&mut dev)))
        }
        (None, None) => Err(CliError::BadHash(String::new())),
    }
}

pub struct CreateArgs<'a> {
    pub base: Option<&'a Path>,
    pub base_hash: Option<&'a str>,
    pub upper: &'a Path,
    pub out: &'a Path,
    pub version: &'a str,
    pub note: &'a str,
    pub trial: u16,
    pub gzip: bool,
}

pub fn create(ctx: &Ctx, a: &CreateArgs<'_>) -> Result<(), CliError> {
    let base = base_hash(ctx, a.base, a.base_hash)?;
    let packed = tree::pack(a.upper, a.gzip)?;
    let file = match packed.compression {
        Compression::Gzip => "payload.tar.gz",
        Compression::None => "payload.tar",
    };
    let manifest = BundleManifest {
        api_version: API_VERSION.into(),
        kind: KIND_BUNDLE.into(),
        spec: BundleSpec {
            base: hex(&base),
            payload: PayloadRef {
                file: file.into(),
                sha256: sha256_hex(&packed.data),
                size: packed.data.len() as u64,
                unpacked_size: packed.unpacked_len,
                compression: match packed.compression {
                    Compression::Gzip => "gzip",
                    Compression::None => "none",
                }
                .into(),
            },
            trial_boots: a.trial,
            version: a.version.into(),
            note: a.note.into(),
        },
    };
    let mut json = serde_json::to_vec_pretty(&manifest).map_err(|e| CliError::Payload {
        what: "the manifest".into(),
        detail: e.to_string(),
    })?;
    json.push(b'\n');
    std::fs::create_dir_all(a.out).map_err(io_err("creating", a.out))?;
    write_file(&a.out.join(file), &packed.data)?;
    // A new manifest invalidates the old signatures.
    let sig = a.out.join(format!("{MANIFEST}{SIG_SUFFIX}"));
    if sig.exists() {
        std::fs::remove_file(&sig).map_err(io_err("removing", &sig))?;
    }
    write_file(&a.out.join(MANIFEST), &json)?;
    println!(
        "bundle {} written to {}: {} on top of {}, {} entries, {} bytes ({}); sign it with `snapshot bundle sign --key SECRET {}`",
        a.version,
        a.out.display(),
        file,
        hex(&base),
        packed.report.entries,
        packed.data.len(),
        manifest.spec.payload.compression,
        a.out.display()
    );
    Ok(())
}

/// The file a `sign` or `verify` argument names: a bundle directory means its manifest.
fn signed_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(MANIFEST)
    } else {
        path.to_path_buf()
    }
}

fn sig_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(SIG_SUFFIX);
    PathBuf::from(s)
}

/// Appends a signature by `key` over `target` (a file, or a bundle directory's manifest) to its
/// `.sig` file.
pub fn sign(key: &Path, target: &Path) -> Result<(), CliError> {
    let text = std::fs::read_to_string(key).map_err(io_err("reading", key))?;
    let sk = SecretKey::parse(&text).map_err(|err| CliError::Key {
        path: key.to_path_buf(),
        err,
    })?;
    let file = signed_file(target);
    let msg = std::fs::read(&file).map_err(io_err("reading", &file))?;
    let sig = sig_path(&file);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&sig)
        .map_err(io_err("writing", &sig))?;
    f.write_all(sk.sign(&msg).as_bytes())
        .map_err(io_err("writing", &sig))?;
    println!(
        "signed {} with key {} ({})",
        file.display(),
        sk.num,
        sig.display()
    );
    Ok(())
}

/// Writes PREFIX.pub and PREFIX.sec (unencrypted, as `usign -G` does).
pub fn keygen(prefix: &Path, comment: &str) -> Result<(), CliError> {
    let mut seed = [0u8; 32];
    let mut num = [0u8; 8];
    for buf in [&mut seed[..], &mut num[..]] {
        rustix::rand::getrandom(buf, rustix::rand::GetRandomFlags::empty()).map_err(|e| {
            CliError::Io {
                what: "getting random bytes for",
                path: prefix.to_path_buf(),
                source: e.into(),
            }
        })?;
    }
    let sk = SecretKey::from_seed(seed, num);
    let with = |ext: &str| {
        let mut s = prefix.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    let (pubf, secf) = (with(".pub"), with(".sec"));
    write_file(
        &pubf,
        sk.public()
            .to_file(&format!("{comment} public key"))
            .as_bytes(),
    )?;
    write_file(
        &secf,
        sk.to_file(&format!("{comment} secret key")).as_bytes(),
    )?;
    println!(
        "key {}: {} (install on units as {DEFAULT_KEYS}/{}), {}",
        sk.num,
        pubf.display(),
        sk.num,
        secf.display()
    );
    Ok(())
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
    let signers = check_signatures(MANIFEST, &msg, sig.as_deref(), &ring, t.min_sigs)?;
    let manifest = BundleManifest::parse(MANIFEST, &msg)?;
    let p = &manifest.spec.payload;
    if p.size > t.max_size {
        return Err(BundleError::TooLarge {
            what: format!("payload {} (as the manifest says)", p.file),
            size: p.size,
            limit: t.max_size,
        }
        .into());
    }
    let payload = read_limited(&dir.join(&p.file), &p.file, p.size.min(t.max_size))?;
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
        let out = ops::write_op(&mut dev, cost, "applying", |w| {
            w.trial_budget = s.trial_boots;
            w.append_snapshot(&payload)
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
